"""Shopify ids: global ids (gid://shopify/Type/123) and the numeric ids used in keys and rows."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

_NUMERIC = re.compile(r"^[0-9]{1,20}$")
_GID = re.compile(r"^gid://shopify/([A-Za-z0-9]+)/([0-9]{1,20})(\?.*)?$")
VARIANT_GID_PREFIX = "gid://shopify/ProductVariant/"
# Deterministic row ids: a rerun finds the same row by its natural key and the id never changes.
_ROW_NAMESPACE = uuid.UUID("6f1c3c52-7a43-4e0e-9a57-3f0e0c1b2a10")


def _parts(value: str) -> tuple[str, str]:
    match = _GID.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a Shopify global id (gid://shopify/<Type>/<number>)")
    return match.group(1), match.group(2)


def numeric_id(value: str | int, resource: str) -> str:
    """Return the numeric id of a GID or bare number of the given resource, or raise ValueError naming it."""
    text = str(value).strip()
    if _NUMERIC.match(text):
        return text
    match = _GID.match(text)
    if match and match.group(1) == resource:
        return match.group(2)
    raise ValueError(f"{value!r} is not a {resource} id (a number or gid://shopify/{resource}/<number>)")


def gid(resource: str, value: str | int) -> str:
    """Return the global id of a resource from its numeric id."""
    return f"gid://shopify/{resource}/{numeric_id(value, resource)}"


def gid_type(value: str) -> str:
    """Return the resource type of a GID (``gid://shopify/ProductVariant/1`` -> ``ProductVariant``)."""
    return _parts(value)[0]


def gid_number(value: str) -> int:
    """Return the numeric part of any GID (MediaImage, Video, Product, ...) as an integer."""
    return int(_parts(value)[1])


def media_numeric_id(media_gid: str) -> str:
    """Return the numeric part of any media GID (MediaImage, Video, ...)."""
    return str(gid_number(media_gid))


def row_id(*natural_key: object) -> str:
    """Return a stable id for an output row from its natural key."""
    return str(uuid.uuid5(_ROW_NAMESPACE, "|".join(str(part) for part in natural_key)))


def variant_keys(variant_ids: Iterable[str]) -> list[str]:
    """Return both spellings under which events may name each variant: the number and the GID."""
    return [key for variant_id in variant_ids for key in (variant_id, f"{VARIANT_GID_PREFIX}{variant_id}")]
