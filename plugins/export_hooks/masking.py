"""Many secrets masked in Airflow's logs at once.

Airflow's ``SecretsMasker.add_mask`` (task SDK 1.3) compiles one regular expression of every secret masked so
far each time it is given a new one, even when it is given a list. A packed unit holds the tokens of a few
hundred shops, so masking them one by one cost O(N²): about 1.4 s of CPU for a unit of 200 shops, in the task
and again in its supervisor (the worker), which registers whatever the task masks.

:func:`mask_secrets` registers a unit's tokens with one compile in each of the two processes. Airflow's
documented hook for this is ``[logging] secret_mask_adapter``: a function that turns one masked secret into
more secrets to mask. With :func:`split_secret_list` configured there (the production image and the local
stacks set ``AIRFLOW__LOGGING__SECRET_MASK_ADAPTER``), the unit's tokens travel joined as one secret, and each
masker adds every token and compiles once. Without it, the task still compiles once, and the supervisor is
given the list (Airflow's own path, quadratic there).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from airflow.sdk._shared.secrets_masker import _secrets_masker
from airflow.sdk.log import mask_secret

# Joins a list of secrets into the one secret that :func:`split_secret_list` splits again. ASCII's unit
# separator: it occurs in no token, key or password (they are printable), so no other secret is ever split.
SECRET_LIST_SEPARATOR = "\x1f"
SECRET_MASK_ADAPTER = "export_hooks.masking.split_secret_list"


def split_secret_list(secret: str) -> list[str]:
    """Airflow's ``secret_mask_adapter``: the secrets of a joined list, each to be masked; nothing for others."""
    return secret.split(SECRET_LIST_SEPARATOR) if SECRET_LIST_SEPARATOR in secret else []


def mask_secret_once(secret: str) -> None:
    """Mask ``secret`` unless this process's masker has it already.

    Whatever this process masked went through Airflow's ``mask_secret`` (here, :func:`mask_secrets`), which
    tells the supervisor too: a hook given a token its unit masked sends no message per shop (each is a
    round trip to the supervisor, one at a time).
    """
    patterns = getattr(_secrets_masker(), "patterns", None)
    if isinstance(patterns, set) and re.escape(secret) in patterns:
        return
    mask_secret(secret)


def mask_secrets(secrets: Collection[str]) -> None:
    """Mask every secret of ``secrets`` in this task's logs and its supervisor's, in one registration."""
    values = sorted({secret.strip() for secret in secrets if secret and secret.strip()})
    if not values:
        return
    masker = _secrets_masker()
    if masker.secret_mask_adapter is split_secret_list:  # Airflow imported it by SECRET_MASK_ADAPTER, as we are
        # One secret, one message: each masker (here and the supervisor's) adds every value and compiles once.
        mask_secret(SECRET_LIST_SEPARATOR.join(values))
        return
    patterns = getattr(masker, "patterns", None)
    if isinstance(patterns, set) and hasattr(masker, "replacer"):
        fresh = {re.escape(value) for value in values if len(value) >= masker.min_length_to_mask} - patterns
        if fresh:
            patterns.update(fresh)
            masker.replacer = re.compile("|".join(patterns))
    # Airflow's public call: here it finds every value already masked (no compile); the supervisor gets one message.
    mask_secret(values)
