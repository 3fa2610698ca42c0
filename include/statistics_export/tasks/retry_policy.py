"""The export's retry policy, stated once: which layer tries what again, and what one fault can cost at worst.

| layer | tries again | at most |
| --- | --- | --- |
| Shopify hook (``export_hooks.shopify_retry``) | 429, 5xx, a body that is not JSON, INTERNAL_SERVER_ERROR, resets, timeouts; THROTTLED and one 401 renewal spend no try | ``SHOPIFY_ATTEMPTS`` (8) a query |
| Shopify pager (``export_hooks.shopify_pager``) | MAX_COST_EXCEEDED, with half the page: not a retry of the same request | until a page of one |
| bulk result download (``shopify_bulk``) | resets and timeouts of the signed download | ``BULK_RESULT_ATTEMPTS`` (4) |
| image CDN hook (``export_hooks.image_cdn``) | 5xx, 429, resets, timeouts, a name that does not resolve; a failed image never fails the export (next run) | ``DOWNLOAD_ATTEMPTS`` (3) an image |
| R2 hook (obstore/botocore, ``export_hooks.r2``) | 5xx, SlowDown, resets, timeouts; refused credentials never | the connection's ``retries`` (5 retries) a request |
| packed unit (here: ``retried``) | a shop's read, or the unit's shared export, on a ``TRANSIENT`` failure only | ``UNIT_SHOP_ATTEMPTS`` (3) |
| Airflow (the DAG's ``default_args``) | a task that failed with anything but a ``PermanentError`` | ``AIRFLOW_RETRIES`` + 1 (3) tries |

Worst case of one Shopify query that keeps failing transiently: hook x unit x Airflow =
``SHOPIFY_ATTEMPTS * UNIT_SHOP_ATTEMPTS * (AIRFLOW_RETRIES + 1)`` = 72 tries. A batch of a shop alone has no
unit layer: 8 x 3 = 24. A bug (a KeyError, say) is tried by no layer but Airflow: 3 tries. A ``PermanentError``
once. ``tests/unit/test_retry_policy.py`` holds these figures to the constants the layers use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from export_hooks.shopify_retry import SHOPIFY_ATTEMPTS
from include.statistics_export.errors import TransientError

# Airflow's retries of a task (the DAG's default_args): a failure that is not permanent is tried twice more.
AIRFLOW_RETRIES = 2
# Tries of one shop inside a packed unit before it is recorded as failed (Airflow retries the unit later).
UNIT_SHOP_ATTEMPTS = 3
# What the unit tries again: the failures a retry may fix. Anything else (a PermanentError, a bug) fails the shop
# at once; Airflow still retries the unit for a failure that is not permanent.
TRANSIENT = (TransientError, psycopg.OperationalError, requests.ConnectionError, requests.Timeout)

T = TypeVar("T")


def worst_case_tries(*, shopify_attempts: int = SHOPIFY_ATTEMPTS, in_unit: bool = True, bug: bool = False) -> int:
    """Return how many times one request can be tried at worst: through every layer that retries it."""
    airflow = AIRFLOW_RETRIES + 1
    if bug:
        return airflow
    return shopify_attempts * (UNIT_SHOP_ATTEMPTS if in_unit else 1) * airflow


def retried(body: Callable[..., T], *args: Any) -> T:
    """Run ``body``, trying it again on transient failures only (``UNIT_SHOP_ATTEMPTS`` in all), with a short
    backoff: the packed unit's layer."""
    for attempt in Retrying(
        retry=retry_if_exception_type(TRANSIENT),
        stop=stop_after_attempt(UNIT_SHOP_ATTEMPTS),
        wait=wait_exponential(multiplier=1, max=10),
        reraise=True,
    ):
        with attempt:
            return body(*args)
    raise AssertionError("unreachable: tenacity reraises the last error")
