"""A shop's access tokens as Shopify issues them (../shared/shopify/tokens.md).

- A non-expiring offline token is accepted until it is revoked, or, once the sandbox is told the 2027 deadline
  has passed (``non_expiring_rejected``), answered 403 with the body observed for new apps.
- An expiring offline token lasts ``lifetime`` seconds (Shopify: 3600) and comes with a refresh token (90 days).
  ``POST /{shop}/admin/oauth/access_token`` with ``grant_type=refresh_token`` rotates them:
  - the newest refresh token gets a new pair, a new access token and a new refresh token;
  - the previous access token stays valid until its own expiry;
  - the refresh token just used is retained: a retry with it returns the same pair, until its replacement is
    used to refresh in turn; any other refresh token is ``invalid_grant``.
- Token exchange (``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``, ``expiring=1``) turns a
  non-expiring offline token into an expiring pair, revokes the old token, invalidates older refresh tokens,
  and answers a retry with the original token (within 7 days) with the same pair.
- Wrong client credentials are ``invalid_client`` (HTTP 401); ``invalid_grant`` is HTTP 400.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .world import SandboxShop

TOKEN_LIFETIME = 3600.0
REFRESH_TOKEN_LIFETIME = 90 * 86400.0
EXCHANGE_RETRY_SECONDS = 7 * 86400.0
REFRESH_GRANT = "refresh_token"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
OFFLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
NON_EXPIRING_REJECTED = (
    "[API] Non-expiring access tokens are no longer accepted for the Admin API. "
    "Use expiring offline access tokens instead."
)


class TokenRefused(Exception):
    """An OAuth error answer: its HTTP status and Shopify's ``error`` code."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        """Return the JSON error body."""
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class Grant:
    """One issued pair, with when each of its tokens expires (epoch seconds)."""

    access_token: str
    access_expires: float
    refresh_token: str
    refresh_expires: float
    scope: str

    def answer(self, now: float) -> dict[str, Any]:
        """Return the token endpoint's answer for this pair at ``now`` (a retry gets what is left of its hour)."""
        return {
            "access_token": self.access_token,
            "expires_in": max(0, round(self.access_expires - now)),
            "refresh_token": self.refresh_token,
            "refresh_token_expires_in": max(0, round(self.refresh_expires - now)),
            "scope": self.scope,
        }


class ShopTokens:
    """Which access and refresh tokens of one shop Shopify accepts now, and the rotation that changes them."""

    def __init__(self, shop: SandboxShop, lifetime: float = TOKEN_LIFETIME, clock: Callable[[], float] = time.time):
        self.shop = shop
        self.lifetime = lifetime
        self.clock = clock
        self.lock = threading.Lock()
        # Every access token still known, with its expiry (None: a non-expiring token).
        self.access: dict[str, float | None] = {}
        self.current: Grant | None = None  # the newest pair: its refresh token is the one to use next
        self.retained: dict[str, Grant] = {}  # the refresh token just used -> the pair it was answered
        self.exchanged: dict[str, tuple[Grant, float]] = {}  # an exchanged offline token -> its pair, when
        self.issued: list[Grant] = []  # every pair issued, in order (what a secrets test looks for)
        now = clock()
        if shop.refresh_token:
            expires = shop.access_token_expires.timestamp() if shop.access_token_expires else now + lifetime
            self.current = Grant(shop.access_token, expires, shop.refresh_token, now + REFRESH_TOKEN_LIFETIME, "")
            self.access[shop.access_token] = expires
        else:
            self.access[shop.access_token] = None

    # -- the Admin API's check --------------------------------------------------------------------

    def check(self, token: str, non_expiring_rejected: bool) -> tuple[int, str] | None:
        """Return None when ``token`` is accepted now, else the HTTP status and the ``errors`` text."""
        with self.lock:
            known = next((t for t in self.access if hmac.compare_digest(t.encode(), token.encode())), None)
            if known is None:
                return 401, INVALID_TOKEN
            expires = self.access[known]
        if expires is None:
            return (403, NON_EXPIRING_REJECTED) if non_expiring_rejected else None
        return None if expires > self.clock() else (401, INVALID_TOKEN)

    # -- the token endpoint -----------------------------------------------------------------------

    def grant(self, form: dict[str, str]) -> tuple[Grant, bool]:
        """Answer one token request: the pair, and whether it is newly issued (False: a retry's same pair)."""
        self._check_client(form.get("client_id", ""), form.get("client_secret", ""))
        grant_type = form.get("grant_type")
        if grant_type == REFRESH_GRANT:
            return self._refresh(form.get("refresh_token", ""))
        if grant_type == EXCHANGE_GRANT:
            return self._exchange(form)
        raise TokenRefused(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def _check_client(self, client_id: str, client_secret: str) -> None:
        expected = (self.shop.client_id.encode(), self.shop.client_secret.encode())
        given = (client_id.encode(), client_secret.encode())
        if not self.shop.client_id or not all(hmac.compare_digest(a, b) for a, b in zip(expected, given)):
            raise TokenRefused(401, "invalid_client", "Client credentials are invalid")

    def _refresh(self, refresh_token: str) -> tuple[Grant, bool]:
        now = self.clock()
        with self.lock:
            current = self.current
            if current and refresh_token == current.refresh_token and current.refresh_expires > now:
                issued = self._issue(now)
                self.retained = {refresh_token: issued}  # the one used before it is retired now
                return issued, True
            if refresh_token in self.retained:
                return self.retained[refresh_token], False
        raise TokenRefused(400, "invalid_grant", "The refresh token is invalid, expired or revoked")

    def _exchange(self, form: dict[str, str]) -> tuple[Grant, bool]:
        wanted = {
            "subject_token_type": OFFLINE_TOKEN_TYPE,
            "requested_token_type": OFFLINE_TOKEN_TYPE,
            "expiring": "1",
        }
        for name, value in wanted.items():
            if form.get(name) != value:
                raise TokenRefused(400, "invalid_request", f"{name} must be {value!r}")
        subject = form.get("subject_token", "")
        now = self.clock()
        with self.lock:
            if subject in self.exchanged and self.exchanged[subject][1] + EXCHANGE_RETRY_SECONDS > now:
                return self.exchanged[subject][0], False
            if subject not in self.access or self.access[subject] is not None:
                raise TokenRefused(400, "invalid_grant", "The subject token is not a valid non-expiring offline token")
            del self.access[subject]  # revoked: the exchange cannot be undone
            self.retained = {}  # a token obtained another way invalidates the older refresh tokens
            issued = self._issue(now)
            self.exchanged[subject] = (issued, now)
            return issued, True

    def _issue(self, now: float) -> Grant:
        """Issue a new pair (the caller holds the lock) and make it the current one."""
        issued = Grant(
            access_token=f"shpat_{secrets.token_hex(16)}",
            access_expires=now + self.lifetime,
            refresh_token=f"shprt_{secrets.token_hex(16)}",
            refresh_expires=now + REFRESH_TOKEN_LIFETIME,
            scope="read_products",
        )
        self.access[issued.access_token] = issued.access_expires
        self.current = issued
        self.issued.append(issued)
        return issued

    # -- what tests do to it ----------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """End the hour of every expiring access token now (a token that stops being accepted mid-run)."""
        now = self.clock()
        with self.lock:
            self.access = {t: (e if e is None else min(e, now)) for t, e in self.access.items()}

    def revoke_refresh_tokens(self) -> None:
        """Make every refresh token of the shop invalid (the merchant must authenticate again)."""
        with self.lock:
            self.current = None
            self.retained = {}

    def replace_with_non_expiring(self, token: str) -> None:
        """Make ``token`` the shop's only valid token, a non-expiring one (``ShopifySandbox.set_token``)."""
        with self.lock:
            self.access = {token: None}
            self.current = None
            self.retained = {}

    def accepts(self, access_token: str, refresh_token: str | None) -> bool:
        """Tell whether Shopify would accept this stored pair now: the access token for the Admin API (or
        expired but refreshable) and the refresh token for a refresh."""
        now = self.clock()
        with self.lock:
            if refresh_token is None:
                return self.access.get(access_token, 0.0) is None
            refreshable = (
                self.current is not None
                and refresh_token == self.current.refresh_token
                and self.current.refresh_expires > now
            ) or refresh_token in self.retained
            return refreshable and access_token in self.access
