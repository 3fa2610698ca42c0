"""The export's errors. Every message names the shop, product or row concerned and never carries a secret.

:class:`PermanentError` (from ``export_hooks.errors``, which the hooks own) is the one "do not retry" base:
raised by the hooks and the logic when retrying cannot help (the shop's data or token, the database role's grants, the R2 credentials), and turned into
Airflow's fail-fast exception in one place, the DAG's task wrapper. Any other error is retried by Airflow.
"""

from __future__ import annotations

from export_hooks.errors import ExportError, ImageDownloadError, ImageURLRefused, PermanentError, TransientError

# The bases and the image hook's errors, re-exported: one tree.
__all__ = ["ExportError", "ImageDownloadError", "ImageURLRefused", "PermanentError", "TransientError"]


class ShopConfigurationError(PermanentError):
    """A shop cannot be exported as configured (no linked session, empty token, an id unfit for keys)."""


class BadInputError(PermanentError, ValueError):
    """A value from Shopify or the app's tables the export cannot use (an id unfit for a key, a malformed GID)."""


class DatabasePermissionError(PermanentError):
    """The app database refused the export's role a read or write its grants should allow."""


class StagedCatalogMissing(PermanentError):
    """A staged catalog batch is gone and its bulk result has expired: its shop's catalog must be read again."""


class DayNotFinished(PermanentError, ValueError):
    """The day asked for has not ended (UTC): only a finished day is exported."""


class DayWrittenByAnotherRun(PermanentError):
    """Another run of the DAG holds the day's claim: this run must not write any of the day."""


class RevenueOverflow(BadInputError):
    """Shops whose day's revenue of a variant is over what the rows hold; each fails alone (``by_shop``)."""

    def __init__(self, by_shop: dict[str, str]) -> None:
        super().__init__("; ".join(by_shop.values()))
        self.by_shop = by_shop


class ShopRedacted(PermanentError):
    """Shops whose data was erased on Shopify's shop/redact: nothing of them may be written again (``shops``)."""

    def __init__(self, message: str, shops: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.shops = shops


class ShopStillActive(PermanentError):
    """A redaction was asked for a shop that is still active (installed): refused unless forced."""


class MissingHandoff(PermanentError):
    """A task that runs whatever happened upstream got nothing where a record was due (its upstream failed)."""


class DayFailed(PermanentError):
    """The day's export is incomplete: a shop failed or did not reconcile (the report names each and why)."""


class UnitShopsFailed(ExportError):
    """Shops of a packed unit failed after their retries; the others are exported. Airflow retries the unit."""


class UnitShopsFailedPermanently(UnitShopsFailed, PermanentError):
    """Shops of a packed unit failed in ways retrying cannot fix; the others are exported."""


class BatchRowsError(TransientError):
    """A batch's files are written but its rows are not (the database went away or timed out): retry the batch."""


def failure_reason(exc: BaseException) -> str:
    """Return why a task or a shop failed, for the day's report: the export's own errors name the shop and
    never carry a secret; any other error is reduced to its type (its message may hold anything)."""
    if isinstance(exc, (ExportError, ValueError)):
        return str(exc)[:500]
    return f"{type(exc).__name__} (see the task log)"
