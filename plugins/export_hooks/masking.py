"""Many secrets masked in Airflow's logs at once.

Airflow's ``SecretsMasker.add_mask`` (task SDK 1.3) compiles one regular expression of every secret masked so
far each time it is given a new one, even when it is given a list. A packed unit holds the tokens of a few
hundred shops, so masking them one by one cost O(N²): 2.1 s of CPU for a unit of 200 shops, about 10 ms per
shop, growing with the unit. :func:`mask_secrets` adds a unit's tokens to this process's masker with one
compile, then calls Airflow's own ``mask_secret`` once with them all, which finds them already masked here
and tells the task's supervisor in one message. The hook's own ``mask_secret`` of a token masked this way
then compiles nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from airflow.sdk._shared.secrets_masker import _secrets_masker
from airflow.sdk.log import mask_secret


def mask_secrets(secrets: Collection[str]) -> None:
    """Mask every secret of ``secrets`` in this task's logs and its supervisor's, in one registration."""
    values = sorted({secret.strip() for secret in secrets if secret and secret.strip()})
    if not values:
        return
    masker = _secrets_masker()
    patterns = getattr(masker, "patterns", None)
    if isinstance(patterns, set) and hasattr(masker, "replacer"):
        fresh = {re.escape(value) for value in values if len(value) >= masker.min_length_to_mask} - patterns
        if fresh:
            patterns.update(fresh)
            masker.replacer = re.compile("|".join(patterns))
    # Airflow's public call: here it finds every value already masked (no compile); the supervisor gets one message.
    mask_secret(values)
