"""The Statistics page's own connections: a read-only database role and a read-only R2 key.

The page runs in the api-server, where a role that can read every merchant's ``"Session"."accessToken"`` or
a key that can write the bucket has no business. It reads through ``statistics_page_db`` (the page role of
docs/least_privilege.sql) and ``r2_page`` (an R2 token with Object Read only). Where one is not defined it
falls back to the export's connection (``app_db``, ``r2_default``) and logs a warning once per process:
the page then runs with the export's powers. Either way its database sessions are read-only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.exceptions import AirflowNotFoundException
from airflow.sdk import BaseHook

from export_hooks.r2 import R2Hook
from include.statistics_export.connections import postgres_session

log = logging.getLogger(__name__)

PAGE_DB_CONN_ID = "statistics_page_db"
EXPORT_DB_CONN_ID = "app_db"
PAGE_R2_CONN_ID = "r2_page"
EXPORT_R2_CONN_ID = "r2_default"

_warned: set[str] = set()
_warned_lock = threading.Lock()


class PagePermissionError(RuntimeError):
    """The page's database role lacks a grant the page needs (docs/least_privilege.sql's page role)."""


def is_defined(conn_id: str) -> bool:
    """Tell whether Airflow knows a connection (environment, secrets backend or metadata database)."""
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def page_conn_id(own: str, fallback: str) -> str:
    """Return ``own`` when it is defined, else ``fallback``, warning once per process that the page then
    holds the export's powers."""
    if is_defined(own):
        return own
    with _warned_lock:
        first = own not in _warned
        _warned.add(own)
    if first:
        log.warning(
            "Connection %r is not defined: the Statistics page uses %r, the export's own, with more power "
            "than the page needs (define %r; see the README's configuration contract)",
            own,
            fallback,
            own,
        )
    return fallback


@contextmanager
def page_db() -> Iterator[Any]:
    """Open a read-only session as the page's role (``statistics_page_db``, else ``app_db``), closed at the end."""
    conn_id = page_conn_id(PAGE_DB_CONN_ID, EXPORT_DB_CONN_ID)
    # Read-only transactions whatever the role: even on the export's fallback role the page writes nothing.
    grants = "grant the page role what docs/least_privilege.sql lists"
    with postgres_session(conn_id, PagePermissionError, grants, read_only=True) as conn:
        yield conn


def page_store(max_pool_connections: int = 10) -> R2Hook:
    """Return the bucket through the page's read-only key (``r2_page``, else ``r2_default``): listing,
    reading the reports and files, and signing GET links need nothing more."""
    conn_id = page_conn_id(PAGE_R2_CONN_ID, EXPORT_R2_CONN_ID)
    return R2Hook(conn_id, max_pool_connections=max_pool_connections)
