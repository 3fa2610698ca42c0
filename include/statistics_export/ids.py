"""Shopify ids: global ids (gid://shopify/Type/123) and the numeric ids used in keys and rows."""

from __future__ import annotations

import re

_NUMERIC = re.compile(r"^[0-9]{1,20}$")
_GID = re.compile(r"^gid://shopify/([A-Za-z0-9]+)/([0-9]{1,20})(\?.*)?$")


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


def media_numeric_id(media_gid: str) -> str:
    """Return the numeric part of any media GID (MediaImage, Video, ...)."""
    match = _GID.match(str(media_gid).strip())
    if not match:
        raise ValueError(f"{media_gid!r} is not a media GID")
    return match.group(2)


def safe_key_part(value: str, what: str) -> str:
    """Return an id that is safe inside an object key (no '/', no '..'), or raise ValueError naming it."""
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", text):
        raise ValueError(f"{what} {value!r} cannot be used in an object key")
    return text
