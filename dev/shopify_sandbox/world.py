"""Plain, JSON round-trippable data classes describing the sandbox's shops and catalogue."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

MEDIA_CONTENT_TYPES = ("IMAGE", "VIDEO", "EXTERNAL_VIDEO", "MODEL_3D")

# GraphQL object type serving each MediaContentType, also the GID's resource name.
MEDIA_TYPENAMES = {
    "IMAGE": "MediaImage",
    "VIDEO": "Video",
    "EXTERNAL_VIDEO": "ExternalVideo",
    "MODEL_3D": "Model3d",
}

_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


def format_datetime(value: datetime) -> str:
    """Format an aware datetime as Shopify does (ISO 8601, UTC, `Z` suffix, whole seconds)."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str | datetime | None) -> datetime | None:
    """Parse an ISO 8601 string (or pass through a datetime) into a UTC-aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    # Naive datetimes are taken as UTC so that worlds written by hand stay simple.
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def slugify(title: str) -> str:
    """Derive a Shopify-like handle from a title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "product"


@dataclass
class SandboxMedia:
    """One product media; for IMAGE, `filename=None` means the image is still processing.

    `url`, when set, is the image URL handed out instead of the sandbox CDN's (a foreign host, for tests).
    """

    id: int
    content_type: str = "IMAGE"
    filename: str | None = "image.jpg"
    alt: str = ""
    url: str | None = None

    def __post_init__(self) -> None:
        if self.content_type not in MEDIA_CONTENT_TYPES:
            raise ValueError(f"unknown media content_type {self.content_type!r}")

    @property
    def typename(self) -> str:
        """Return the GraphQL object type name serving this media."""
        return MEDIA_TYPENAMES[self.content_type]

    @property
    def processing(self) -> bool:
        """Return True while an image has no file yet (Shopify answers `image: null`)."""
        return self.content_type == "IMAGE" and self.filename is None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        data = {"id": self.id, "content_type": self.content_type, "filename": self.filename, "alt": self.alt}
        return {**data, "url": self.url} if self.url else data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SandboxMedia":
        """Build from a dict made by `to_dict`."""
        return cls(
            id=int(data["id"]),
            content_type=data.get("content_type", "IMAGE"),
            filename=data.get("filename", "image.jpg"),
            alt=data.get("alt", ""),
            url=data.get("url"),
        )


@dataclass
class SandboxVariant:
    """One product variant; `media_ids` name media of the owning product, in order."""

    id: int
    title: str
    sku: str | None = None
    price: str = "10.00"
    media_ids: list[int] = field(default_factory=list)
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        self.created_at = parse_datetime(self.created_at)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "id": self.id,
            "title": self.title,
            "sku": self.sku,
            "price": self.price,
            "media_ids": list(self.media_ids),
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SandboxVariant":
        """Build from a dict made by `to_dict`."""
        return cls(
            id=int(data["id"]),
            title=data["title"],
            sku=data.get("sku"),
            price=str(data.get("price", "10.00")),
            media_ids=[int(m) for m in data.get("media_ids", [])],
            created_at=parse_datetime(data.get("created_at")),
        )


@dataclass
class SandboxProduct:
    """One product with its variants and media."""

    id: int
    title: str
    handle: str = ""
    status: str = "ACTIVE"
    vendor: str = "Sandbox"
    created_at: datetime = _EPOCH
    updated_at: datetime | None = None
    variants: list[SandboxVariant] = field(default_factory=list)
    media: list[SandboxMedia] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.created_at = parse_datetime(self.created_at) or _EPOCH
        self.updated_at = parse_datetime(self.updated_at)

    @property
    def effective_handle(self) -> str:
        """Return the handle, derived from the title when left empty."""
        return self.handle or slugify(self.title)

    @property
    def effective_updated_at(self) -> datetime:
        """Return updated_at, falling back to created_at (Shopify's field is non-null)."""
        return self.updated_at or self.created_at

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "id": self.id,
            "title": self.title,
            "handle": self.handle,
            "status": self.status,
            "vendor": self.vendor,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "variants": [v.to_dict() for v in self.variants],
            "media": [m.to_dict() for m in self.media],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SandboxProduct":
        """Build from a dict made by `to_dict`."""
        return cls(
            id=int(data["id"]),
            title=data["title"],
            handle=data.get("handle", ""),
            status=data.get("status", "ACTIVE"),
            vendor=data.get("vendor", "Sandbox"),
            created_at=parse_datetime(data.get("created_at")) or _EPOCH,
            updated_at=parse_datetime(data.get("updated_at")),
            variants=[SandboxVariant.from_dict(v) for v in data.get("variants", [])],
            media=[SandboxMedia.from_dict(m) for m in data.get("media", [])],
        )


@dataclass
class SandboxShop:
    """One shop: its myshopify domain, the app's access token (and refresh token, on expiring tokens), its OAuth
    client, catalogue and rate-limit plan."""

    domain: str
    access_token: str
    name: str = ""
    currency: str = "USD"
    products: list[SandboxProduct] = field(default_factory=list)
    restore_rate: float = 100.0
    bucket_size: float = 2000.0
    # The storefront's custom domain (Shop.primaryDomain.host); None: the myshopify domain is primary.
    primary_domain: str | None = None
    # The app's OAuth client, which the token endpoint checks ("ShopCredential"."apiKey"/"apiSecret").
    client_id: str = ""
    client_secret: str = ""
    # Set: the shop is on expiring offline tokens, ``access_token`` expiring at ``access_token_expires`` (None:
    # a full lifetime from when the sandbox starts serving it). None: ``access_token`` never expires.
    refresh_token: str | None = None
    access_token_expires: datetime | None = None

    def __post_init__(self) -> None:
        self.access_token_expires = parse_datetime(self.access_token_expires)

    @property
    def display_name(self) -> str:
        """Return the shop name, derived from the domain when left empty."""
        return self.name or self.domain.split(".")[0].title()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "domain": self.domain,
            "access_token": self.access_token,
            "name": self.name,
            "currency": self.currency,
            "restore_rate": self.restore_rate,
            "bucket_size": self.bucket_size,
            "primary_domain": self.primary_domain,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "access_token_expires": self.access_token_expires.isoformat() if self.access_token_expires else None,
            "products": [p.to_dict() for p in self.products],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SandboxShop":
        """Build from a dict made by `to_dict`."""
        return cls(
            domain=data["domain"],
            access_token=data["access_token"],
            name=data.get("name", ""),
            currency=data.get("currency", "USD"),
            products=[SandboxProduct.from_dict(p) for p in data.get("products", [])],
            restore_rate=float(data.get("restore_rate", 100.0)),
            bucket_size=float(data.get("bucket_size", 2000.0)),
            primary_domain=data.get("primary_domain"),
            client_id=data.get("client_id", ""),
            client_secret=data.get("client_secret", ""),
            refresh_token=data.get("refresh_token"),
            access_token_expires=parse_datetime(data.get("access_token_expires")),
        )


def save_world(path: str | Path, shops: Iterable[SandboxShop]) -> None:
    """Write shops to a JSON file as `{"shops": [...]}`."""
    payload = {"shops": [shop.to_dict() for shop in shops]}
    Path(path).write_text(json.dumps(payload, indent=1), encoding="utf-8")


def load_world(path: str | Path) -> list[SandboxShop]:
    """Read shops from a JSON file written by `save_world`."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    return [SandboxShop.from_dict(shop) for shop in payload.get("shops", [])]
