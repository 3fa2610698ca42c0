"""Where product images may come from: the origin and address rules of every image URL, and its redirects.

The URL is Shopify's answer, but nothing else stops it pointing inside our network. A URL is fetched only
when it is http or https and its origin (scheme, host and port, https's default port 443) is one of the allowed
origins (STATISTICS_EXPORT_IMAGE_HOSTS, default ``https://cdn.shopify.com``): :func:`url_refusal`, before any
lookup. A host name must then resolve to public addresses only: none loopback, private, link-local, multicast,
reserved or unspecified, IPv4-mapped IPv6 included (:func:`answers_refusal`, applied by the CDN hook's resolver
to the very addresses it connects to). An IP address listed as an origin (the local sandbox's
``http://127.0.0.1:PORT``) is the operator's own choice and is not checked further; a name is, whatever it is
(``localhost`` is refused). Pure rules, no client: the settings parse the allowed origins with
:func:`canonical_origin`, and the CDN hook (``image_cdn``) applies the rules to every hop.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable
from urllib.parse import urlsplit

from export_hooks.errors import ImageDownloadError

_HOST_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The ipaddress properties that make an address unfit to serve images, in the order a message names them.
_NOT_PUBLIC = (
    ("a loopback", "is_loopback"),
    ("an unspecified", "is_unspecified"),
    ("a link-local", "is_link_local"),
    ("a multicast", "is_multicast"),
    ("a private", "is_private"),
    ("a reserved", "is_reserved"),
)


class HostUnresolved(ImageDownloadError):
    """An image host name that does not resolve (now): retried within the run."""


def canonical_origin(scheme: str, host: str, port: int | None) -> str:
    """Return ``scheme://host[:port]`` in one spelling: lower case, the default port left out, an IP address
    in its short form (IPv6 in brackets); raise ValueError for a host that is neither a name nor an IP."""
    scheme, host = scheme.lower(), host.lower().strip("[]")
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"the scheme must be http or https, not {scheme or 'none'!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host):
            raise ValueError(f"{host!r} is not a host name or an IP address") from None
        shown = host
    else:
        shown = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return f"{scheme}://{shown}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{shown}:{port}"


def address_refusal(address: str) -> str | None:
    """Return why an IP address may not serve images ("a loopback address", ...), or None when it is public.

    An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) is judged as the IPv4 address it carries.
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, attribute in _NOT_PUBLIC:
        if getattr(ip, attribute):
            return f"{kind} address"
    return None if ip.is_global else "not a public address"


def is_ip_literal(host: str) -> bool:
    """Tell whether a URL's host is an IP address (as written), not a name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def url_refusal(url: str, allowed_origins: Collection[str], origins_setting: str = "") -> str | None:
    """Return why ``url`` may not be fetched, or None: it must be http(s) and of an allowed origin. No lookup:
    a host name's addresses are judged where they are resolved (:func:`answers_refusal`).

    ``allowed_origins`` are canonical (:func:`canonical_origin`); ``origins_setting`` names where they are set,
    for the message.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return f"{scheme or 'no'} scheme, only http and https are fetched"
    try:
        host, port = parts.hostname or "", parts.port
        if parts.username is not None or parts.password is not None:
            return "the URL carries credentials"
        origin = canonical_origin(scheme, host, port)
    except ValueError as exc:
        return f"not a URL that can be fetched ({exc})"
    if origin not in allowed_origins:
        return f"{origin} is not an allowed image origin" + (f" ({origins_setting})" if origins_setting else "")
    return None


def answers_refusal(host: str, addresses: Iterable[str]) -> str | None:
    """Return why a host name whose lookup answered ``addresses`` may not serve images, or None when every one
    is public: a name is refused when any of its addresses is not."""
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            return f"{host} resolves to {address}, {reason}"
    return None
