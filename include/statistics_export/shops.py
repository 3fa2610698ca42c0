"""Active shops and their credentials, read from the Shopify app's database."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from include.statistics_export.errors import ShopConfigurationError
from include.statistics_export.handoffs import ShopRef
from include.statistics_export.shop_fence import NOT_REDACTED
from include.statistics_export.tokens import HOLDS_REFRESH_TOKEN, NO_REFRESH_TOKEN, has_refresh_columns, is_stale


@dataclass(frozen=True)
class ShopCredentials:
    """What the export needs to call Shopify for one shop; never put it in an XCom or a log line.

    ``session_id`` is the linked session the token comes from; ``expires`` its token's expiry (naive UTC, None:
    never); ``refreshable`` whether it holds a refresh token (an expiring offline token, ``tokens``).
    """

    shop_id: str
    shop_domain: str
    api_domain: str
    access_token: str
    session_id: str = ""
    expires: datetime | None = None
    refreshable: bool = False

    def __repr__(self) -> str:
        return f"ShopCredentials(shop_id={self.shop_id!r}, api_domain={self.api_domain!r}, access_token=***)"

    @property
    def stale(self) -> bool:
        """Tell whether the token must be refreshed before use (it expires within the margin, and can be)."""
        return self.refreshable and is_stale(self.expires)


# A shop whose data was erased (shop/redact, redaction.py) is never exported again, even while still active
# (a forced redaction); a paused shop (STATISTICS_EXPORT_PAUSED_SHOPS) is skipped while it is named there.
_ACTIVE_SHOPS = f"""
SELECT id, "shopDomain"
FROM "ShopCredential" c
WHERE "isActive"
  AND (%(shop_ids)b::text[] IS NULL OR id = ANY(%(shop_ids)b::text[]))
  AND NOT id = ANY(%(paused)b::text[])
  AND {NOT_REDACTED}
ORDER BY id
"""

# A session whose token can be used now: offline (a non-expiring token, or an expiring one, refreshed when stale),
# or online and not yet expired.
USABLE_SESSION = """(NOT s."isOnline" OR s.expires IS NULL OR s.expires > (now() AT TIME ZONE 'UTC'))"""

# The token comes from the session linked by "shopId", never by matching domains: a custom domain never equals the
# session's myshopify domain (sessions.py links unlinked sessions first). Offline sessions first (an expiring one
# is refreshed before use when stale), then unexpired online sessions, newest expiry first. The last column says
# whether the session holds a refresh token (never where "Session" has no such column yet).
_CREDENTIALS_SELECT = 'SELECT DISTINCT ON (c.id) c.id, c."shopDomain", s.shop, s."accessToken", s.id, s.expires, '
_CREDENTIALS_FROM = f"""
FROM "ShopCredential" c
JOIN "Session" s ON s."shopId" = c.id
WHERE c.id = ANY(%(shop_ids)b::text[])
  AND {USABLE_SESSION}
ORDER BY c.id, s."isOnline" ASC, s.expires DESC NULLS FIRST, s.id
"""
_CREDENTIALS = {
    True: f"{_CREDENTIALS_SELECT}{HOLDS_REFRESH_TOKEN}{_CREDENTIALS_FROM}",
    False: f"{_CREDENTIALS_SELECT}{NO_REFRESH_TOKEN}{_CREDENTIALS_FROM}",
}


def display_domain(domain: str) -> str:
    """Return a shop's storefront domain as the files show it: no scheme, no trailing slash, lower case."""
    return re.sub(r"^https?://", "", domain.strip(), flags=re.IGNORECASE).rstrip("/").lower()


def active_shops(conn: Any, shop_ids: list[str] | None = None, paused: Sequence[str] = ()) -> list[ShopRef]:
    """Return the active shops to export (optionally only those among ``shop_ids``), ordered by id: never one of
    ``paused``, never one whose data was erased."""
    with conn.cursor() as cur:
        cur.execute(_ACTIVE_SHOPS, {"shop_ids": list(shop_ids) if shop_ids else None, "paused": list(paused)})
        return [ShopRef(shop_id=row[0], shop_domain=display_domain(row[1])) for row in cur.fetchall()]


def shops_credentials(conn: Any, shop_ids: list[str]) -> dict[str, ShopCredentials | ShopConfigurationError]:
    """Return each shop's API domain and access token from its linked session, in one query; a shop that
    has none gets the error naming it instead."""
    with conn.cursor() as cur:
        cur.execute(_CREDENTIALS[has_refresh_columns(conn)], {"shop_ids": list(shop_ids)})
        rows = {row[0]: row for row in cur.fetchall()}
    found: dict[str, ShopCredentials | ShopConfigurationError] = {}
    for shop_id in shop_ids:
        if shop_id not in rows:
            found[shop_id] = ShopConfigurationError(
                f'Shop {shop_id}: no usable session is linked to it ("Session"."shopId"); '
                "the merchant must open the app again to create one"
            )
            continue
        _, shop_domain, api_domain, token, session_id, expires, refreshable = rows[shop_id]
        if not token or not token.strip():
            found[shop_id] = ShopConfigurationError(
                f"Shop {shop_id} ({shop_domain}): its linked session has an empty access token"
            )
            continue
        found[shop_id] = ShopCredentials(
            shop_id=shop_id,
            shop_domain=display_domain(shop_domain),
            api_domain=api_domain,
            access_token=token,
            session_id=session_id,
            expires=expires,
            refreshable=bool(refreshable),
        )
    return found


def shop_credentials(conn: Any, shop_id: str) -> ShopCredentials:
    """Return the shop's API domain and access token from its linked session, or raise naming the shop."""
    found = shops_credentials(conn, [shop_id])[shop_id]
    if isinstance(found, ShopConfigurationError):
        raise found
    return found
