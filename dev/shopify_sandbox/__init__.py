"""A faithful little Shopify Admin GraphQL server on loopback, for the demo, tests and benchmarks."""

from .bulk import BulkBehaviour
from .cost import MAX_QUERY_COST, actual_cost, requested_cost
from .faults import ImageFault
from .server import SUPPORTED_VERSIONS, ShopifySandbox
from .throttle import CostBucket
from .world import (
    SandboxMedia,
    SandboxProduct,
    SandboxShop,
    SandboxVariant,
    load_world,
    save_world,
)

__all__ = [
    "MAX_QUERY_COST",
    "BulkBehaviour",
    "ImageFault",
    "SUPPORTED_VERSIONS",
    "CostBucket",
    "SandboxMedia",
    "SandboxProduct",
    "SandboxShop",
    "SandboxVariant",
    "ShopifySandbox",
    "actual_cost",
    "load_world",
    "requested_cost",
    "save_world",
]
