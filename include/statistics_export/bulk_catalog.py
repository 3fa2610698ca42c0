"""Rebuild products from a bulk operation's JSONL, whose lines come in any order, with flat memory.

Since API 2026-01 a bulk result does not put children under their parent: a variant can arrive before
its product. Every line goes into a SQLite file on local disk first, keyed by id and parent: a media
can be both the product's and a variant's, and a line repeated by a resumed download is harmless.
Products are then read back one at a time with their children.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import closing
from typing import Any

from include.statistics_export.errors import BadInputError
from include.statistics_export.ids import gid_number, gid_type

_SCHEMA = """
CREATE TABLE line (id TEXT NOT NULL, parent TEXT NOT NULL, kind TEXT NOT NULL, num INTEGER NOT NULL, body TEXT NOT NULL,
                   PRIMARY KEY (id, parent));
CREATE INDEX line_parent ON line (parent);
CREATE INDEX line_kind_num ON line (kind, num);
"""


def assemble_products(lines: Iterable[dict[str, Any]], *, batch_rows: int = 5000) -> Iterator[dict[str, Any]]:
    """Yield each product of a bulk result with its ``media`` and ``variants`` (each with its ``media``),
    shaped like ShopifyHook.iter_products' products, in ascending product id."""
    with tempfile.NamedTemporaryFile(prefix="bulk-catalog-", suffix=".sqlite") as file:
        with closing(sqlite3.connect(file.name)) as db:
            db.executescript(_SCHEMA)
            _load(db, lines, batch_rows)
            yield from _products(db)


def _load(db: sqlite3.Connection, lines: Iterable[dict[str, Any]], batch_rows: int) -> None:
    pending: list[tuple[str, str, str, int, str]] = []
    for line in lines:
        gid = line.get("id")
        if not gid:
            raise BadInputError(f"Bulk result line without an id: {json.dumps(line)[:200]}")
        try:
            kind, number = gid_type(gid), gid_number(gid)
        except (TypeError, ValueError):
            raise BadInputError(f"Bulk result line with an unexpected id {gid!r}: {json.dumps(line)[:200]}") from None
        pending.append((gid, line.get("__parentId") or "", kind, number, json.dumps(line)))
        if len(pending) >= batch_rows:
            db.executemany("INSERT OR REPLACE INTO line VALUES (?, ?, ?, ?, ?)", pending)
            pending.clear()
    db.executemany("INSERT OR REPLACE INTO line VALUES (?, ?, ?, ?, ?)", pending)
    db.commit()


def _children(db: sqlite3.Connection, parent: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return a parent's variants and media, each in ascending id (the JSONL order means nothing)."""
    variants: list[dict[str, Any]] = []
    media: list[dict[str, Any]] = []
    for kind, body in db.execute("SELECT kind, body FROM line WHERE parent = ? ORDER BY num", (parent,)):
        node = json.loads(body)
        node.pop("__parentId", None)
        (variants if kind == "ProductVariant" else media).append(node)
    return variants, media


def _products(db: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    for (body,) in db.execute("SELECT body FROM line WHERE kind = 'Product' AND parent = '' ORDER BY num"):
        product = json.loads(body)
        variants, media = _children(db, product["id"])
        for variant in variants:
            variant["media"] = _children(db, variant["id"])[1]
        yield {**product, "media": media, "variants": variants}
