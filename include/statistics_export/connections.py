"""The export's connections, opened from Airflow's: the app's database (``app_db``) and a shop's Shopify hook
with the token of its linked session. Every task module opens them from here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import psycopg
from airflow.providers.postgres.hooks.postgres import PostgresHook

from export_hooks.shopify import ShopifyHook
from include.statistics_export.errors import (
    DatabasePermissionError,
)
from include.statistics_export.shops import shop_credentials

log = logging.getLogger(__name__)


APP_DB_CONN_ID = "app_db"


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
def shopify_for(shop_id: str) -> Iterator[ShopifyHook]:
    """Open the Shopify hook of one shop with the token of its linked session (the hook masks it)."""
    with app_db() as conn:
        creds = shop_credentials(conn, shop_id)
    with ShopifyHook(creds.api_domain, creds.access_token) as hook:
        yield hook
