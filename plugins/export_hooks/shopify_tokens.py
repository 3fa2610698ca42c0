"""Shopify's OAuth token endpoint: refreshing an expiring offline token, and exchanging a non-expiring one.

From 2027-01-01 public apps must use expiring offline tokens: an access token lasts an hour and comes with a
refresh token (90 days) that Shopify rotates on every refresh (../shared/shopify/tokens.md). One form-encoded
``POST`` to the ``shopify_default`` connection's ``token_endpoint_template`` (default
``https://{shop}/admin/oauth/access_token``) with the app's OAuth client (``client_id``/``client_secret``):

- refresh: ``grant_type=refresh_token`` and the refresh token; the answer is a new pair;
- token exchange: a non-expiring offline token as ``subject_token``, ``expiring=1``; the old token is revoked.

What Shopify refuses (``invalid_grant``, ``invalid_client``, ``invalid_request``) raises ShopifyTokenRefused, a
PermanentError whose message says what to do and never echoes a token or a secret. A transient failure (5xx,
429, a timeout, a reset) is retried within the connection's ``max_attempts``, with its backoff, in the hook's
retry loop (``shopify_retry``).

Every secret is masked in Airflow's logs from the moment the endpoint is given it or answers it: the client
secret and refresh token sent, the access and refresh tokens received.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import requests

from export_hooks.masking import mask_secrets
from export_hooks.shopify_protocol import (
    ShopifyError,
    ShopifyRetryableError,
    ShopifyTokenRefused,
    normalize_shop_domain,
    retry_after,
)
from export_hooks.shopify_retry import ShopifyTries
from export_hooks.shopify_transport import DEFAULT_CONN_ID, ShopifyConnection

log = logging.getLogger(__name__)

REFRESH_GRANT = "refresh_token"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
OFFLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"
# What each refusal means for the operator (Shopify's Python library and observed answers; tokens.md).
REFUSALS = {
    "invalid_grant": "the refresh token is invalid, expired or revoked: the merchant must open the app to "
    "authenticate again",
    "invalid_request": "Shopify holds no active refresh token for it: the merchant must open the app to "
    "authenticate again",
    "invalid_client": 'the app\'s client credentials ("ShopCredential"."apiKey"/"apiSecret") are wrong, or the '
    "app was uninstalled",
}
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")


@dataclass(frozen=True)
class IssuedTokens:
    """What the token endpoint issued: an access token, seconds it lasts, and its refresh token (rotated)."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_token_expires_in: int

    def __repr__(self) -> str:
        return f"IssuedTokens(access_token=***, expires_in={self.expires_in}, refresh_token=***)"


class ShopifyTokenEndpoint:
    """Refresh and exchange tokens at the shop's token endpoint, configured from the ``shopify_default``
    connection (``token_endpoint_template``, ``timeout``, ``max_attempts`` and the backoff settings).

    :param connection: the connection already read; default: ``shopify_conn_id`` read now.
    """

    def __init__(self, connection: ShopifyConnection | None = None, shopify_conn_id: str = DEFAULT_CONN_ID):
        self.connection = connection or ShopifyConnection.read(shopify_conn_id)

    def refresh(self, shop_domain: str, client_id: str, client_secret: str, refresh_token: str) -> IssuedTokens:
        """Exchange a refresh token for a new pair (the one sent is retired once the new one is used)."""
        return self._request(
            shop_domain,
            "refresh its access token",
            client_id,
            client_secret,
            {"grant_type": REFRESH_GRANT, "refresh_token": refresh_token},
        )

    def exchange(self, shop_domain: str, client_id: str, client_secret: str, offline_token: str) -> IssuedTokens:
        """Exchange a non-expiring offline token for an expiring pair; Shopify revokes the old token (for good)."""
        return self._request(
            shop_domain,
            "exchange its non-expiring token",
            client_id,
            client_secret,
            {
                "grant_type": EXCHANGE_GRANT,
                "subject_token": offline_token,
                "subject_token_type": OFFLINE_TOKEN_TYPE,
                "requested_token_type": OFFLINE_TOKEN_TYPE,
                "expiring": "1",
            },
        )

    def _request(
        self, shop_domain: str, what: str, client_id: str, client_secret: str, grant: dict[str, str]
    ) -> IssuedTokens:
        domain = normalize_shop_domain(shop_domain)
        secrets = [client_secret, *(grant[k] for k in ("refresh_token", "subject_token") if k in grant)]
        if not client_id or not all(secret and secret.strip() for secret in secrets):
            raise ShopifyTokenRefused(
                f"Shop {domain}: cannot {what}: the app's client id or secret, or the token, is empty",
                "invalid_request",
            )
        mask_secrets(secrets)
        url = self.connection.token_endpoint_template.format(shop=domain)
        form = {"client_id": client_id, "client_secret": client_secret, **grant}
        tries = ShopifyTries(self.connection, domain)
        issued = tries.run(lambda: self._post(url, domain, what, form))
        mask_secrets([issued.access_token, issued.refresh_token])
        return issued

    def _post(self, url: str, domain: str, what: str, form: dict[str, str]) -> IssuedTokens:
        response = requests.post(
            url, data=form, headers={"Accept": "application/json"}, timeout=self.connection.timeout
        )
        status = response.status_code
        if status == 429 or status >= 500:
            raise ShopifyRetryableError(f"Shop {domain}: HTTP {status} from the token endpoint", retry_after(response))
        body = _json_object(response)
        if status != 200:
            error = str(body.get("error", ""))
            error = error if _ERROR_CODE.match(error) else "unknown"  # a code only: the body is never echoed
            meaning = REFUSALS.get(error, "see Shopify's answer code")
            raise ShopifyTokenRefused(
                f"Shop {domain}: Shopify refused to {what} (HTTP {status}, {error}): {meaning}", error
            )
        try:
            return IssuedTokens(
                access_token=_token(body["access_token"]),
                expires_in=int(body["expires_in"]),
                refresh_token=_token(body["refresh_token"]),
                refresh_token_expires_in=int(body["refresh_token_expires_in"]),
            )
        except (KeyError, TypeError, ValueError):
            # The new pair may be in this body: nothing of it goes into the message.
            raise ShopifyError(
                f"Shop {domain}: the token endpoint's answer lacks a usable access_token, expires_in, refresh_token "
                "or refresh_token_expires_in"
            ) from None


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


def _token(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("not a token")
    return value.strip()
