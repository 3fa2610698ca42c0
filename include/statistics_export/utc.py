"""Time, always UTC: which day a run exports, a day's half-open interval, and the app's naive timestamps.

The app's TIMESTAMP(3) columns hold naive UTC; everything else here is timezone-aware UTC.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from include.statistics_export.errors import DayNotFinished


def export_day(date_param: str | None, logical_date: datetime | None, run_after: datetime | None) -> date:
    """Return the day to export: the ``date`` param, else the logical date, else the day before the run."""
    if date_param:
        try:
            return date.fromisoformat(str(date_param).strip())
        except ValueError:
            raise ValueError(f"The date param must be YYYY-MM-DD, got {date_param!r}") from None
    if logical_date is not None:
        return as_utc(logical_date).date()
    reference = as_utc(run_after).date() if run_after is not None else today()
    return reference - timedelta(days=1)


def require_finished(day: date, now: datetime | None = None, run_after: datetime | None = None) -> date:
    """Return ``day`` if it has ended in UTC; raise naming the day and the time otherwise.

    A day still running would be counted "as of now", batch by batch, and reported as complete. ``run_after`` is
    when Airflow let the run start (the end of a scheduled run's data interval): a day that had ended by then has
    ended, whatever the clock of the worker judging it says (one running a little behind must not fail the
    scheduled day for good).
    """
    current = as_utc(now) if now is not None else datetime.now(timezone.utc)
    if run_after is not None:
        current = max(current, as_utc(run_after))
    if midnight(day) + timedelta(days=1) > current:
        yesterday = current.date() - timedelta(days=1)
        raise DayNotFinished(
            f"Day {day.isoformat()} has not ended (UTC now {current:%Y-%m-%d %H:%M}): only a finished day is "
            f"exported. Trigger with the date param, e.g. date={yesterday.isoformat()}, or with a logical date "
            "before today"
        )
    return day


def today() -> date:
    """Return the current UTC day."""
    return datetime.now(timezone.utc).date()


def midnight(day: date) -> datetime:
    """Return the start of a UTC day as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Return [day 00:00, next day 00:00) as naive UTC datetimes, as the app stores TIMESTAMP(3)."""
    start = datetime.combine(day, time.min)
    return start, start + timedelta(days=1)


def as_utc(value: datetime) -> datetime:
    """Return an aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def naive_utc(value: datetime) -> datetime:
    """Return a datetime as the naive UTC the app's TIMESTAMP(3) columns hold."""
    return as_utc(value).replace(tzinfo=None)


def now_ms() -> datetime:
    """Return the current UTC time cut to milliseconds: TIMESTAMP(3) keeps no more, and a rerun reading
    the row back must render the same instant."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def parse_shopify_datetime(value: str) -> datetime:
    """Parse Shopify's ISO-8601 DateTime (``2026-11-21T12:00:00Z``) into an aware UTC datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)


def iso_ms(value: datetime | None) -> str | None:
    """Return an instant as the files show it: ISO-8601 with milliseconds and ``Z`` (None stays None)."""
    if value is None:
        return None
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
