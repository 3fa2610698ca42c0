"""Stage 3, render: each variant's CSV and JSON, with their content hash (``formats``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from include.statistics_export.formats import RenderedFiles, render_files
from include.statistics_export.pipeline.enrich import EnrichedShop


@dataclass(frozen=True)
class RenderedShop:
    """One shop's variants and their rendered files, in the same order."""

    shop: EnrichedShop
    files: list[RenderedFiles]


def render(shops: Sequence[EnrichedShop]) -> list[RenderedShop]:
    """Render every shop's files. Rendering and hashing are pure Python (the GIL): done in this thread, a pool
    would only add switches."""
    return [RenderedShop(shop, [render_files(export) for export in shop.exports]) for shop in shops]
