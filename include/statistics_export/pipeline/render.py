"""Stage 3, render: each variant's CSV and JSON, with their content hash (``formats``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from include.statistics_export.formats import RenderedFiles, VariantExport, render_files
from include.statistics_export.pipeline.enrich import EnrichedShop, SettledImages


@dataclass(frozen=True)
class RenderedShop:
    """One shop's variants and their rendered files, in the same order."""

    shop: EnrichedShop
    files: list[RenderedFiles]


def render(shops: Sequence[EnrichedShop]) -> list[RenderedShop]:
    """Render every shop's files. Rendering and hashing are pure Python (the GIL): done in this thread, a pool
    would only add switches."""
    return [RenderedShop(shop, [render_files(export) for export in shop.exports]) for shop in shops]


def without_failed_images(
    shop: RenderedShop, settled: SettledImages
) -> tuple[RenderedShop, list[tuple[VariantExport, RenderedFiles]]]:
    """Return the shop as its image copies left it: the variants of an image that could not be copied rendered
    again without its R2 copy, and those variants with their new files (to write over the first ones)."""
    if not settled.failed:
        return shop, []
    exports, files, again = list(shop.shop.exports), list(shop.files), []
    for index, export in enumerate(exports):
        corrected = settled.corrected(export)
        if corrected is not None:
            exports[index], files[index] = corrected, render_files(corrected)
            again.append((corrected, files[index]))
    return RenderedShop(replace(shop.shop, exports=exports), files), again
