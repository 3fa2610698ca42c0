"""The shop redaction's task body (``shop_data_redaction``): Shopify's shop/redact, with its own database role."""

from __future__ import annotations

from export_hooks.r2 import R2Hook
from include.statistics_export import redaction
from include.statistics_export.connections import redaction_db


def redact_shop(shop_id: str, force: bool, run_id: str) -> dict[str, int]:
    """Erase everything the export wrote of the shop (``redaction.redact_shop``) through the ``app_db_redaction``
    connection and ``r2_default``; return what this run erased, by kind (ids and counts only)."""
    with redaction_db() as conn:
        return redaction.redact_shop(conn, R2Hook(), shop_id, run_id, force=force).document()
