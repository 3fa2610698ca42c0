"""Expiring offline tokens in the app's ``"Session"`` table: when a stored token is stale, refreshing a shop's
session under its row lock and writing the new pair back, the census of who holds which kind of token, and the
migration of non-expiring tokens by token exchange.

From 2027-01-01 Shopify rejects public apps' non-expiring offline tokens; an expiring one lasts an hour and its
refresh token is rotated on every refresh (../shared/shopify/tokens.md). At 00:00 UTC nearly every stored token
is over an hour old, so the export refreshes them itself:

- **Stale**: a token that expires within :data:`REFRESH_MARGIN` (5 minutes, the margin shopify-app-js refreshes
  at, so the export and the app agree) is refreshed before use; a token Shopify answers 401 although it looked
  valid (its hour ended mid-task, or the app rotated it) is renewed once by the same path.
- **One refresh per shop at a time**, across task processes and workers: the session's row is locked
  (``FOR UPDATE``) and read again; only if what is stored is still stale (or still the token Shopify rejected)
  is the token endpoint called. The lock is held around that call and the write only.
- **Written back atomically**: all four columns in one statement, committed at once. Shopify retires the old
  refresh token once its replacement is used, so a pair refreshed and not stored would lock the app out.
- **Non-expiring tokens** (no refresh token; custom and merchant-created apps are exempt from the rule) are used as
  before and their row is never written; an app database whose ``"Session"`` has no ``refreshToken`` column (not
  migrated yet) is read as before.

The refresh and exchange calls themselves are the Shopify token hook's, handed in by the task layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from include.statistics_export.errors import ShopConfigurationError
from include.statistics_export.protocols import IssuedTokens
from include.statistics_export.shop_fence import NOT_REDACTED
from include.statistics_export.utc import as_utc, naive_utc, now_ms

# A stored token expiring within this is refreshed before use (shopify-app-js: 5 minutes).
REFRESH_MARGIN = timedelta(minutes=5)
# When Shopify starts rejecting public apps' non-expiring offline tokens.
NON_EXPIRING_DEADLINE = "2027-01-01"
REFRESH_COLUMNS = ("refreshToken", "refreshTokenExpires")


@dataclass(frozen=True)
class SessionSecrets:
    """What a refresh or an exchange sends for one shop: never in an XCom, a log line or a message."""

    api_domain: str
    client_id: str
    client_secret: str
    token: str  # the refresh token (a refresh) or the non-expiring access token (an exchange)

    def __repr__(self) -> str:
        return f"SessionSecrets(api_domain={self.api_domain!r}, client_id=***, client_secret=***, token=***)"


# The token hook's refresh (or exchange) of one shop's session.
Grant = Callable[[SessionSecrets], IssuedTokens]


def has_refresh_columns(conn: Any) -> bool:
    """Tell whether the app's ``"Session"`` has the refresh token columns (the catalog is readable by any role)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass('\"Session\"') "
            "AND attname = ANY(%(names)s) AND attnum > 0 AND NOT attisdropped",
            {"names": list(REFRESH_COLUMNS)},
        )
        row = cur.fetchone()
    return bool(row and row[0] == len(REFRESH_COLUMNS))


# Whether session ``s`` holds a refresh token, in SQL, where "Session" has the column, and where it has not yet.
HOLDS_REFRESH_TOKEN = '(s."refreshToken" IS NOT NULL)'
NO_REFRESH_TOKEN = "false"


def is_stale(expires: datetime | None, now: datetime | None = None) -> bool:
    """Tell whether a stored token expiring at ``expires`` (naive or aware UTC; None: never) must be refreshed."""
    if expires is None:
        return False
    return as_utc(expires) <= as_utc(now or now_ms()) + REFRESH_MARGIN


# The shop's session, locked: one refresh (or exchange) per shop at a time, across processes.
_LOCKED_SESSION = """
SELECT s."accessToken", s.expires, s."refreshToken", s.shop, c."apiKey", c."apiSecret"
FROM "Session" s
JOIN "ShopCredential" c ON c.id = s."shopId"
WHERE s.id = %(session_id)s AND c.id = %(shop_id)s
FOR UPDATE OF s
"""

# All four columns in one statement: the app never sees half a pair.
_STORE_PAIR = """
UPDATE "Session"
SET "accessToken" = %(access_token)s, expires = %(expires)s,
    "refreshToken" = %(refresh_token)s, "refreshTokenExpires" = %(refresh_expires)s
WHERE id = %(session_id)s
"""


@dataclass(frozen=True)
class LockedSession:
    """A session row as read under its lock (its secrets only ever go to the token endpoint)."""

    access_token: str
    expires: datetime | None
    refresh_token: str | None
    api_domain: str
    client_id: str | None
    client_secret: str | None

    def __repr__(self) -> str:
        return f"LockedSession(api_domain={self.api_domain!r}, expires={self.expires!r}, tokens=***)"


def _lock(cur: Any, shop_id: str, session_id: str) -> LockedSession:
    cur.execute(_LOCKED_SESSION, {"session_id": session_id, "shop_id": shop_id})
    row = cur.fetchone()
    if row is None:
        raise ShopConfigurationError(
            f"Shop {shop_id}: its session {session_id} is gone or no longer linked to it; the merchant must open "
            "the app again"
        )
    return LockedSession(*row)


def _secrets(shop_id: str, session: LockedSession, token: str) -> SessionSecrets:
    if not session.client_id or not session.client_secret:
        raise ShopConfigurationError(
            f'Shop {shop_id}: its credential has no "apiKey"/"apiSecret" (the app\'s OAuth client), so its '
            "expiring token cannot be refreshed"
        )
    return SessionSecrets(session.api_domain, session.client_id, session.client_secret, token)


def _store(cur: Any, session_id: str, issued: IssuedTokens) -> None:
    now = now_ms()
    cur.execute(
        _STORE_PAIR,
        {
            "access_token": issued.access_token,
            "expires": naive_utc(now + timedelta(seconds=issued.expires_in)),
            "refresh_token": issued.refresh_token,
            "refresh_expires": naive_utc(now + timedelta(seconds=issued.refresh_token_expires_in)),
            "session_id": session_id,
        },
    )


def renew_session(conn: Any, shop_id: str, session_id: str, rejected: str | None, refresh: Grant) -> str | None:
    """Return the access token to use for the shop's session, refreshing it first if it must be.

    ``rejected`` None: the stored token looked stale; it is refreshed unless another process (a task, the app)
    refreshed it meanwhile. ``rejected`` a token: Shopify answered it 401; the session is refreshed unless what is
    stored now is another token that is not stale. Returns None when the session cannot be refreshed (no refresh
    token: a non-expiring token, whose row is never written). A refused refresh raises (the hook's
    ShopifyTokenRefused, naming what the merchant or operator must do).
    """
    try:
        with conn.cursor() as cur:
            session = _lock(cur, shop_id, session_id)
            # Not known to be rejected: the proactive case, or another process stored another token meanwhile.
            unrejected = rejected is None or session.access_token != rejected
            if session.refresh_token is None or (unrejected and not is_stale(session.expires)):
                conn.commit()
                return session.access_token if unrejected else None
            issued = refresh(_secrets(shop_id, session, session.refresh_token))
            _store(cur, session_id, issued)
        conn.commit()
    except BaseException:
        conn.rollback()  # the row's lock goes with the transaction
        raise
    return issued.access_token


# -- the day's census -------------------------------------------------------------------------------------


# Each active shop's offline session, as the export picks it (shops.py), with what kind of token it holds.
_CENSUS_HEAD = """
SELECT c.id, c.mode, s.expires, s.refreshable
FROM "ShopCredential" c
JOIN LATERAL (
    SELECT s.expires, """
_CENSUS_TAIL = f""" AS refreshable
    FROM "Session" s
    WHERE s."shopId" = c.id AND NOT s."isOnline"
    ORDER BY s.expires DESC NULLS FIRST, s.id
    LIMIT 1
) s ON true
WHERE c."isActive" AND {NOT_REDACTED} AND (%(shop_ids)b::text[] IS NULL OR c.id = ANY(%(shop_ids)b::text[]))
ORDER BY c.id
"""
_CENSUS = {
    True: f"{_CENSUS_HEAD}{HOLDS_REFRESH_TOKEN}{_CENSUS_TAIL}",
    False: f"{_CENSUS_HEAD}{NO_REFRESH_TOKEN}{_CENSUS_TAIL}",
}


@dataclass
class TokenCensus:
    """Which active shops hold expiring offline tokens, and which still hold non-expiring ones."""

    expiring: list[str] = field(default_factory=list)
    non_expiring: list[str] = field(default_factory=list)
    non_expiring_public: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The report's ``tokens`` section (ids and counts only, never a token)."""
        return {
            "expiring": len(self.expiring),
            "nonExpiring": len(self.non_expiring),
            "nonExpiringPublic": self.non_expiring_public,
            "deadline": NON_EXPIRING_DEADLINE,
        }

    def text(self) -> str:
        """One line for the run's log and the report."""
        line = (
            f"Tokens: {len(self.expiring)} shop(s) on expiring offline tokens, {len(self.non_expiring)} on "
            f"non-expiring tokens"
        )
        if self.non_expiring_public:
            line += (
                f"; Shopify rejects PUBLIC apps' non-expiring tokens from {NON_EXPIRING_DEADLINE}, migrate "
                f"({len(self.non_expiring_public)}): {', '.join(self.non_expiring_public)}"
            )
        return line


def token_census(conn: Any, shop_ids: Sequence[str] | None = None) -> TokenCensus:
    """Count the active shops by the kind of offline token their linked session holds."""
    census = TokenCensus()
    with conn.cursor() as cur:
        cur.execute(_CENSUS[has_refresh_columns(conn)], {"shop_ids": list(shop_ids) if shop_ids else None})
        for shop_id, mode, expires, refreshable in cur.fetchall():
            if refreshable or expires is not None:
                census.expiring.append(shop_id)
                continue
            census.non_expiring.append(shop_id)
            if mode == "PUBLIC":
                census.non_expiring_public.append(shop_id)
    return census


# -- migrating non-expiring tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One shop whose non-expiring token the exchange would turn (or turned) into an expiring pair."""

    shop_id: str
    shop_domain: str
    session_id: str


_MIGRATION_CANDIDATES = """
SELECT c.id, c."shopDomain", s.id
FROM "ShopCredential" c
JOIN LATERAL (
    SELECT s.id, s.expires, s."refreshToken"
    FROM "Session" s
    WHERE s."shopId" = c.id AND NOT s."isOnline"
    ORDER BY s.expires DESC NULLS FIRST, s.id
    LIMIT 1
) s ON true
WHERE c."isActive" AND c.mode = 'PUBLIC' AND s.expires IS NULL AND s."refreshToken" IS NULL
  AND (%(shop_ids)b::text[] IS NULL OR c.id = ANY(%(shop_ids)b::text[]))
ORDER BY c.id
"""


def migration_candidates(conn: Any, shop_ids: Sequence[str] | None = None) -> list[Migration]:
    """Return the active PUBLIC shops whose linked offline session still holds a non-expiring token."""
    if not has_refresh_columns(conn):
        raise ShopConfigurationError(
            'The app\'s "Session" table has no "refreshToken"/"refreshTokenExpires" columns: migrate the app\'s '
            "session storage (shopify-app-js session-storage-prisma 9.x) before its tokens"
        )
    with conn.cursor() as cur:
        cur.execute(_MIGRATION_CANDIDATES, {"shop_ids": list(shop_ids) if shop_ids else None})
        return [Migration(*row) for row in cur.fetchall()]


def exchange_session(conn: Any, migration: Migration, exchange: Grant) -> bool:
    """Exchange the shop's non-expiring token for an expiring pair and store it; False when the session holds an
    expiring token already (the app, or another run, migrated it meanwhile). Shopify revokes the old token."""
    try:
        with conn.cursor() as cur:
            session = _lock(cur, migration.shop_id, migration.session_id)
            if session.expires is not None or session.refresh_token is not None:
                conn.commit()
                return False
            issued = exchange(_secrets(migration.shop_id, session, session.access_token))
            _store(cur, migration.session_id, issued)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return True
