"""The retention period's task body (``statistics_retention``), with the redaction's database role."""

from __future__ import annotations

import logging
from datetime import date

from export_hooks.r2 import R2Hook
from include.statistics_export import retention, settings
from include.statistics_export.connections import redaction_db

log = logging.getLogger(__name__)


def expire_days(last_day: date) -> dict[str, int]:
    """Erase the days before the last ``STATISTICS_EXPORT_RETENTION_DAYS`` ending with ``last_day`` through the
    ``app_db_redaction`` connection and ``r2_default``; return what was erased, by kind (nothing when off)."""
    keep_days = settings.load().retention_days
    if keep_days is None:
        log.info("%s is off: every day is kept, nothing is erased", settings.RETENTION_DAYS.env)
        return {}
    before = retention.first_kept_day(last_day, keep_days)
    with redaction_db() as conn:
        return retention.expire_days(conn, R2Hook(), before).document()
