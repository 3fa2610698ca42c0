"""Which UTC day a run exports, and that day's half-open interval."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone


def export_day(date_param: str | None, logical_date: datetime | None, run_after: datetime | None) -> date:
    """Return the day to export: the ``date`` param, else the logical date, else the day before the run."""
    if date_param:
        try:
            return date.fromisoformat(str(date_param).strip())
        except ValueError:
            raise ValueError(f"The date param must be YYYY-MM-DD, got {date_param!r}") from None
    if logical_date is not None:
        return _as_utc(logical_date).date()
    reference = _as_utc(run_after) if run_after is not None else datetime.now(timezone.utc)
    return reference.date() - timedelta(days=1)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Return [day 00:00, next day 00:00) as naive UTC datetimes, as the app stores TIMESTAMP(3)."""
    start = datetime.combine(day, time.min)
    return start, start + timedelta(days=1)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
