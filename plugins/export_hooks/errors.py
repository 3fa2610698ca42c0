"""The bases of every error the hooks raise, and the export's error tree builds on: the one "do not retry" base.

The hooks own them, so imports point one way, from the export's logic (include/) to the hooks (plugins/).
Every message names the shop, object or request concerned and never carries a secret.
"""

from __future__ import annotations


class ExportError(Exception):
    """The export cannot go on as things are; the message says which shop, product or row and why."""


class TransientError(ExportError):
    """A failure a retry may fix (a network fault, a throttle, a server error)."""


class PermanentError(ExportError):
    """Retrying cannot fix this: the task fails at once, alone, and the day's report names the reason."""


class ImageDownloadError(ExportError):
    """An image could not be fetched; the export goes on and the next run tries again."""


class ImageURLRefused(ImageDownloadError):
    """An image URL, or a redirect's target, that may not be fetched: not http(s), an origin not allowed, or a
    host that is not public. Never retried within the run."""
