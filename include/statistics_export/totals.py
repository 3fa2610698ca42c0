"""Summed metrics of a set of variants, and the one way to read them off export CSV files."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

METRICS = ("impressions", "addToCarts", "orders", "revenue")


@dataclass(frozen=True)
class Totals:
    """Summed metrics of a set of variants; revenue is exact (Decimal)."""

    variants: int = 0
    impressions: int = 0
    addToCarts: int = 0  # noqa: N815 - the files' own field names
    orders: int = 0
    revenue: Decimal = Decimal("0.00")

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Totals)))

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Totals:
        """Build totals from :meth:`document`'s dict (revenue as a decimal string)."""
        return cls(
            variants=int(document.get("variants", 0)),
            impressions=int(document.get("impressions", 0)),
            addToCarts=int(document.get("addToCarts", 0)),
            orders=int(document.get("orders", 0)),
            revenue=Decimal(str(document.get("revenue", "0"))),
        )

    def document(self) -> dict[str, Any]:
        """Return the totals as JSON-ready values (revenue as a string with 2 decimals)."""
        return {
            "variants": self.variants,
            "impressions": self.impressions,
            "addToCarts": self.addToCarts,
            "orders": self.orders,
            "revenue": f"{self.revenue:.2f}",
        }


def csv_totals(csv_files: Iterable[bytes]) -> Totals:
    """Sum what export CSV files say (one variant row each, header included), read back with the csv module."""
    total = Totals()
    for content in csv_files:
        for row in csv.DictReader(io.StringIO(content.decode("utf-8"))):
            total += Totals(
                1, int(row["impressions"]), int(row["addToCarts"]), int(row["orders"]), Decimal(row["revenue"])
            )
    return total


def sum_totals(parts: Iterable[Totals]) -> Totals:
    """Add several totals (one per batch) into one."""
    total = Totals()
    for part in parts:
        total += part
    return total
