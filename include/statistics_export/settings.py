"""Every setting of the export: its environment variable, its default and what it means, in one table.

The environment is read here and nowhere else. The DAG reads it once at parse time (start date, poll
interval); each task reads it again when it starts, so a changed value reaches the next task without a
new DAG version.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from export_hooks.image_origins import canonical_origin

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: its name, its default as the environment would spell it, and its meaning."""

    env: str
    default: str
    parse: Callable[[str], T]
    kind: str
    meaning: str
    required: bool = False  # no default: where it is read, unset is an error naming it (the DAG's start date)

    def read(self, environ: Mapping[str, str]) -> T:
        """Return the value from ``environ`` (the default when unset or blank), or raise naming the variable."""
        raw = (environ.get(self.env) or "").strip() or self.default
        try:
            return self.parse(raw)
        except (ValueError, InvalidOperation) as exc:
            raise ValueError(f"{self.env} must be {self.kind}, got {raw!r} ({exc})") from None


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("at least 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("0 or more")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("above 0")
    return value


def _link_seconds(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 604800:
        raise ValueError("from 1 to 604800 (7 days, the longest a presigned URL lives)")
    return value


def _switch(raw: str) -> bool:
    value = raw.lower()
    if value not in ("on", "off"):
        raise ValueError("on or off")
    return value == "on"


def _days_or_off(raw: str) -> int | None:
    if raw.lower() == "off":
        return None
    return _positive_int(raw)


def _optional_day(raw: str) -> date | None:
    return date.fromisoformat(raw) if raw else None


def _amount(raw: str) -> Decimal:
    value = Decimal(raw)
    if not value.is_finite() or value < 0:
        raise ValueError("a non-negative amount")
    return value


def _shop_ids(raw: str) -> tuple[str, ...]:
    return tuple(sorted({piece.strip() for piece in raw.split(",") if piece.strip()}))


def _origins(raw: str) -> tuple[str, ...]:
    origins: list[str] = []
    for entry in (piece.strip() for piece in raw.split(",")):
        if not entry:
            continue  # a trailing comma
        if "://" not in entry:
            raise ValueError(f"{entry!r} lacks its scheme (https://...)")
        parts = urlsplit(entry)
        if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{entry!r} is more than scheme://host[:port]")
        try:
            origin = canonical_origin(parts.scheme, parts.hostname or "", parts.port)
        except ValueError as exc:
            raise ValueError(f"{entry!r}: {exc}") from None
        if origin not in origins:
            origins.append(origin)
    if not origins:
        raise ValueError("no origin")
    return tuple(origins)


START_DATE = Setting(
    "STATISTICS_EXPORT_START_DATE", "", _optional_day, "a day YYYY-MM-DD",
    "required: the first day (UTC) the DAG exports; unset, the DAG does not load, so no run starts for a day nobody chose",
    required=True,
)  # fmt: skip
CATCHUP = Setting(
    "STATISTICS_EXPORT_CATCHUP", "on", _switch, "on or off",
    "on: every day from the start date is exported once the DAG is unpaused; off: only the latest ended day "
    "(`airflow backfill create` makes history either way)",
)  # fmt: skip
MAX_ACTIVE_RUNS = Setting(
    "STATISTICS_EXPORT_MAX_ACTIVE_RUNS", "3", _positive_int, "a whole number above 0",
    "days exported at once (catchup, backfill, manual runs); each holds its own batches' task slots",
)  # fmt: skip
BATCH_VARIANTS = Setting(
    "STATISTICS_EXPORT_BATCH_VARIANTS", "500", _positive_int, "a whole number above 0",
    "target variants per batch (a product is never split)",
)  # fmt: skip
CONCURRENCY = Setting(
    "STATISTICS_EXPORT_CONCURRENCY", "16", _positive_int, "a whole number above 0",
    "threads for Parquet parts and for linking sessions",
)  # fmt: skip
STORE_IN_FLIGHT = Setting(
    "STATISTICS_EXPORT_STORE_IN_FLIGHT", "64", _positive_int, "a whole number above 0",
    "requests to R2 in flight per batch process (they wait without a thread)",
)  # fmt: skip
IMAGE_IN_FLIGHT = Setting(
    "STATISTICS_EXPORT_IMAGE_IN_FLIGHT", "64", _positive_int, "a whole number above 0",
    "image downloads in flight per batch process, none holding a thread",
)  # fmt: skip
BULK_THRESHOLD = Setting(
    "STATISTICS_EXPORT_BULK_THRESHOLD", "150", _positive_int, "a whole number above 0",
    "shops with at least this many products are read with a bulk operation",
)  # fmt: skip
BULK_POLL_SECONDS = Setting(
    "STATISTICS_EXPORT_BULK_POLL_SECONDS", "30", _positive_float, "a number of seconds above 0",
    "seconds between two polls of a running bulk operation",
)  # fmt: skip
IMAGE_MAX_BYTES = Setting(
    "STATISTICS_EXPORT_IMAGE_MAX_BYTES", "20971520", _positive_int, "a whole number of bytes above 0",
    "largest image backed up (bigger ones keep their Shopify URL, tried again next run)",
)  # fmt: skip
IMAGE_TIMEOUT = Setting(
    "STATISTICS_EXPORT_IMAGE_TIMEOUT", "30", _positive_float, "a number of seconds above 0",
    "seconds one image download may take in all",
)  # fmt: skip
IMAGE_HOSTS = Setting(
    "STATISTICS_EXPORT_IMAGE_HOSTS", "https://cdn.shopify.com", _origins,
    "a comma-separated list of origins scheme://host[:port]",
    "the only origins images are downloaded from, redirects included; a name must resolve to public addresses only "
    "(a listed IP address is trusted as is)",
)  # fmt: skip
MAX_EVENT_REVENUE = Setting(
    "STATISTICS_EXPORT_MAX_EVENT_REVENUE", "1000000.00", _amount, "a non-negative decimal amount",
    "a PURCHASE above this is rejected as bad input",
)  # fmt: skip

DOWNLOAD_LINK_SECONDS = Setting(
    "STATISTICS_EXPORT_DOWNLOAD_LINK_SECONDS", "3600", _link_seconds, "a whole number of seconds from 1 to 604800",
    "lifetime of a download link the Statistics page signs when clicked (R2 allows up to 7 days)",
)  # fmt: skip
SHOP_TASKS_UP_TO = Setting(
    "STATISTICS_EXPORT_SHOP_TASKS_UP_TO", "50", _non_negative_int, "a whole number",
    "fleets of up to this many active shops get one mapped task group per shop; larger ones pack small shops into units",
)  # fmt: skip
UNIT_SHOPS = Setting(
    "STATISTICS_EXPORT_UNIT_SHOPS", "200", _positive_int, "a whole number above 0",
    "most small shops in one packed unit (more when the fleet would need over 500 units)",
)  # fmt: skip
UNIT_VARIANTS = Setting(
    "STATISTICS_EXPORT_UNIT_VARIANTS", "2000", _positive_int, "a whole number above 0",
    "variants a packed unit may hold, by each shop's last report (a shop alone may exceed it)",
)  # fmt: skip
DEADLINE_HOURS = Setting(
    "STATISTICS_EXPORT_DEADLINE_HOURS", "6", _non_negative_int, "a whole number of hours",
    "hours after the end of day D by which its run must have succeeded, else the Deadline Alert goes out "
    "(6: D+1 06:00 UTC; read when the DAG is parsed)",
)  # fmt: skip
RETRY_DELAY_SECONDS = Setting(
    "STATISTICS_EXPORT_RETRY_DELAY_SECONDS", "60", _positive_int, "a whole number of seconds above 0",
    "seconds before Airflow tries a failed task again (2 retries, the wait doubling; read when the DAG is parsed)",
)  # fmt: skip
RETENTION_DAYS = Setting(
    "STATISTICS_EXPORT_RETENTION_DAYS", "off", _days_or_off, "off or a whole number of days above 0",
    "N: `statistics_retention` erases days before the last N ([retention](docs/scale.md#retention-and-storage-cost))",
)  # fmt: skip
PAUSED_SHOPS = Setting(
    "STATISTICS_EXPORT_PAUSED_SHOPS", "", _shop_ids, "a comma-separated list of shop ids",
    "shops (`\"ShopCredential\".id`) the daily export skips, named in the day's report as "
    "`pausedShops` (not a failure); what they had exported is kept",
)  # fmt: skip

DEADLINE_ALERT = Setting(
    "STATISTICS_EXPORT_DEADLINE_ALERT", "on", _switch, "on or off",
    "`off`: the DAG without its Deadline Alert, for `airflow dags test` only (see above); read when the DAG is parsed",
)  # fmt: skip

# Each field of Settings and the variable it is read from.
FIELDS: dict[str, Setting[Any]] = {
    "start_date": START_DATE,
    "catchup": CATCHUP,
    "max_active_runs": MAX_ACTIVE_RUNS,
    "batch_variants": BATCH_VARIANTS,
    "concurrency": CONCURRENCY,
    "store_in_flight": STORE_IN_FLIGHT,
    "image_in_flight": IMAGE_IN_FLIGHT,
    "bulk_threshold": BULK_THRESHOLD,
    "bulk_poll_seconds": BULK_POLL_SECONDS,
    "image_max_bytes": IMAGE_MAX_BYTES,
    "image_timeout": IMAGE_TIMEOUT,
    "image_hosts": IMAGE_HOSTS,
    "max_event_revenue": MAX_EVENT_REVENUE,
    "download_link_seconds": DOWNLOAD_LINK_SECONDS,
    "shop_tasks_up_to": SHOP_TASKS_UP_TO,
    "unit_shops": UNIT_SHOPS,
    "unit_variants": UNIT_VARIANTS,
    "deadline_hours": DEADLINE_HOURS,
    "retry_delay_seconds": RETRY_DELAY_SECONDS,
    "deadline_alert": DEADLINE_ALERT,
    "paused_shops": PAUSED_SHOPS,
    "retention_days": RETENTION_DAYS,
}
ALL: tuple[Setting[Any], ...] = tuple(FIELDS.values())


@dataclass(frozen=True)
class Settings:
    """The settings of one run; build it with :func:`load`, or directly in tests and the benchmark."""

    start_date: date | None = START_DATE.parse(START_DATE.default)
    catchup: bool = CATCHUP.parse(CATCHUP.default)
    max_active_runs: int = MAX_ACTIVE_RUNS.parse(MAX_ACTIVE_RUNS.default)
    batch_variants: int = BATCH_VARIANTS.parse(BATCH_VARIANTS.default)
    concurrency: int = CONCURRENCY.parse(CONCURRENCY.default)
    store_in_flight: int = STORE_IN_FLIGHT.parse(STORE_IN_FLIGHT.default)
    image_in_flight: int = IMAGE_IN_FLIGHT.parse(IMAGE_IN_FLIGHT.default)
    bulk_threshold: int = BULK_THRESHOLD.parse(BULK_THRESHOLD.default)
    bulk_poll_seconds: float = BULK_POLL_SECONDS.parse(BULK_POLL_SECONDS.default)
    image_max_bytes: int = IMAGE_MAX_BYTES.parse(IMAGE_MAX_BYTES.default)
    image_timeout: float = IMAGE_TIMEOUT.parse(IMAGE_TIMEOUT.default)
    image_hosts: tuple[str, ...] = IMAGE_HOSTS.parse(IMAGE_HOSTS.default)
    max_event_revenue: Decimal = MAX_EVENT_REVENUE.parse(MAX_EVENT_REVENUE.default)
    download_link_seconds: int = DOWNLOAD_LINK_SECONDS.parse(DOWNLOAD_LINK_SECONDS.default)
    shop_tasks_up_to: int = SHOP_TASKS_UP_TO.parse(SHOP_TASKS_UP_TO.default)
    unit_shops: int = UNIT_SHOPS.parse(UNIT_SHOPS.default)
    unit_variants: int = UNIT_VARIANTS.parse(UNIT_VARIANTS.default)
    deadline_hours: int = DEADLINE_HOURS.parse(DEADLINE_HOURS.default)
    retry_delay_seconds: int = RETRY_DELAY_SECONDS.parse(RETRY_DELAY_SECONDS.default)
    deadline_alert: bool = DEADLINE_ALERT.parse(DEADLINE_ALERT.default)
    paused_shops: tuple[str, ...] = PAUSED_SHOPS.parse(PAUSED_SHOPS.default)
    retention_days: int | None = RETENTION_DAYS.parse(RETENTION_DAYS.default)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Return the settings from the environment (``os.environ`` unless given), defaults where unset."""
    env = os.environ if environ is None else environ
    return Settings(**{name: setting.read(env) for name, setting in FIELDS.items()})


def first_day(config: Settings) -> date:
    """Return the DAG's start date, or raise naming the variable when it is unset: a default would make an
    operator who forgot it unpause into a run for every day since that default."""
    if config.start_date is None:
        raise ValueError(
            f"{START_DATE.env} is not set: set it to the first day (UTC, YYYY-MM-DD) the DAG exports before the DAG "
            f"can load. With {CATCHUP.env}=on (the default) every day from it is exported once the DAG is unpaused; "
            f"set {CATCHUP.env}=off to export only from the latest ended day on."
        )
    return config.start_date


def markdown_table() -> str:
    """Return the settings as the README's table (a test keeps the README in step with this module)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{s.env}` | {f'`{s.default}`' if s.default else 'unset'} | {s.meaning} |" for s in ALL]
    return "\n".join(rows)
