"""The export's connections, opened from Airflow's: the app's database (``app_db``, and ``app_db_redaction`` for
the shop redaction's own role), a shop's Shopify hook
with the token of its linked session, refreshed when it has expired (``tokens``), the image CDN's hook and the
export's R2 hook. Every task module opens them from here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

import psycopg
from airflow.providers.postgres.hooks.postgres import PostgresHook

from export_hooks.image_cdn import ImageCdnHook, ImageRules
from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyConnection, ShopifyHook
from export_hooks.shopify_tokens import IssuedTokens, ShopifyTokenEndpoint
from include.statistics_export import settings as settings_table
from include.statistics_export.errors import DatabasePermissionError
from include.statistics_export.shops import ShopCredentials, shop_credentials
from include.statistics_export.tokens import SessionSecrets, renew_session

log = logging.getLogger(__name__)


APP_DB_CONN_ID = "app_db"
# The redaction's own role (docs/least_privilege.sql, -v redaction_role): the one role that deletes, only a shop's rows.
REDACTION_DB_CONN_ID = "app_db_redaction"


@contextmanager
def postgres_session(conn_id: str, refused: type[Exception], grants: str, *, read_only: bool = False) -> Iterator[Any]:
    """Open a connection of the Airflow connection ``conn_id``, closed when the block ends.

    A privilege the role lacks is the deployment's grants, not a passing fault: it becomes ``refused`` (a
    PermanentError for the export), naming the connection and ``grants``.
    """
    with closing(PostgresHook(postgres_conn_id=conn_id).get_conn()) as conn:
        if read_only:
            conn.read_only = True
        try:
            yield conn
        except Exception as exc:
            denied = next(
                (e for e in (exc, exc.__cause__) if isinstance(e, psycopg.errors.InsufficientPrivilege)), None
            )
            if denied is None:
                raise
            raise refused(
                f"The app database refused the {conn_id} connection's role: {str(denied).splitlines()[0]} ({grants})"
            ) from exc


@contextmanager
def app_db() -> Iterator[Any]:
    """Open a connection to the Shopify app's database as the export's role, closed when the block ends."""
    with postgres_session(APP_DB_CONN_ID, DatabasePermissionError, "grant what docs/least_privilege.sql lists") as conn:
        yield conn


@contextmanager
def redaction_db() -> Iterator[Any]:
    """Open a connection to the app's database as the redaction's role (``shop_data_redaction``), closed at the end."""
    grants = "grant what docs/least_privilege.sql lists under redaction_role"
    with postgres_session(REDACTION_DB_CONN_ID, DatabasePermissionError, grants) as conn:
        yield conn


@contextmanager
def shopify_for(shop_id: str) -> Iterator[ShopifyHook]:
    """Open the Shopify hook of one shop with the token of its linked session (the hook masks it)."""
    with app_db() as conn:
        creds = shop_credentials(conn, shop_id)
    with shopify_hook(creds) as hook:
        yield hook


def shopify_hook(creds: ShopCredentials, connection: ShopifyConnection | None = None) -> ShopifyHook:
    """Return the shop's Shopify hook with a token fit to use: refreshed first when it expires within the margin,
    and renewed once by the same path when Shopify answers 401 (its hour ended mid-task, or the app rotated it)."""
    connection = connection or ShopifyConnection.read()
    renew = session_renewer(creds, connection)
    token = (renew(None) if creds.stale else None) or creds.access_token
    return ShopifyHook(creds.api_domain, token, connection=connection, renew=renew if creds.session_id else None)


def session_renewer(creds: ShopCredentials, connection: ShopifyConnection) -> Callable[[str | None], str | None]:
    """Return the renewal of one shop's session: under its row lock, refreshed at the token endpoint only if
    still stale (or still the token Shopify rejected), the new pair written back (``tokens.renew_session``)."""
    endpoint = ShopifyTokenEndpoint(connection)

    def refresh(secrets: SessionSecrets) -> IssuedTokens:
        log.info("Shop %s: refreshing its expiring access token", creds.shop_domain)
        return endpoint.refresh(secrets.api_domain, secrets.client_id, secrets.client_secret, secrets.token)

    def renew(rejected: str | None) -> str | None:
        with app_db() as conn:
            return renew_session(conn, creds.shop_id, creds.session_id, rejected, refresh)

    return renew


def image_source(config: settings_table.Settings) -> ImageCdnHook:
    """Return the image CDN's hook under the settings' allowed origins, size cap and timeout, with
    ``config.image_in_flight`` downloads in flight (the caller closes it)."""
    rules = ImageRules(
        frozenset(config.image_hosts),
        config.image_max_bytes,
        config.image_timeout,
        origins_setting=settings_table.IMAGE_HOSTS.env,
        cap_setting=settings_table.IMAGE_MAX_BYTES.env,
    )
    return ImageCdnHook(rules, config.image_in_flight)


def object_store(config: settings_table.Settings) -> R2Hook:
    """Return the R2 hook of a batch: ``config.store_in_flight`` writes in flight, ``config.concurrency`` pooled
    connections for the threads that list and read."""
    return R2Hook(max_pool_connections=config.concurrency, max_in_flight=config.store_in_flight)
