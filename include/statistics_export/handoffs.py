"""What one task hands the next: small typed records, serialized one way each (``to_xcom``/``from_xcom``).

XComs carry ids, domains, counts and object keys only: never a token, never a catalog.
The fleet: ShopRefs -> FleetPlan (shops alone, and ShopUnits of small shops packed together).
Per shop alone: ShopRef -> CatalogRead -> ShopPlan (its BatchPlans); per batch: BatchPlan -> BatchResult.
Per packed unit: ShopUnit -> UnitResult (each shop's ShopPlan and BatchResult, or why it failed).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from datetime import date
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from include.statistics_export.errors import MissingHandoff
from include.statistics_export.totals import Totals

H = TypeVar("H", bound="Handoff")
# What Airflow stores of a mapped task instance's label (task_instance.rendered_map_index is a String(250)): a
# longer one is refused by the database and the task instance cannot even record that it failed.
MAX_LABEL = 250
ReadMode = Literal["pages", "bulk", "packed"]


class Handoff:
    """A dataclass that crosses an XCom as a plain JSON-ready dict."""

    def to_xcom(self) -> dict[str, Any]:
        """Return the record as the dict an XCom carries: a field left at its default is omitted (``from_xcom``
        puts it back), so a day of ten thousand shops carries only what each shop did."""
        return {
            f.name: _plain(value)
            for f in fields(self)  # type: ignore[arg-type]
            if not _is_default(f, value := getattr(self, f.name))
        }

    @classmethod
    def from_xcom(cls: type[H], data: Mapping[str, Any]) -> H:
        """Rebuild the record from :meth:`to_xcom`'s dict, each field by its annotation (keys it does not know are
        refused; a field left out takes its default)."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        hints = _FIELD_TYPES.get(cls) or _FIELD_TYPES.setdefault(cls, get_type_hints(cls))
        return cls(**{name: _typed(value, hints[name]) for name, value in data.items()})


# Each record's field types, resolved once (get_type_hints evaluates the annotations' strings).
_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _typed(value: Any, annotation: Any) -> Any:
    """Return a field's JSON value as its annotation's type: records, totals, and lists and dicts of them."""
    if value is None:
        return None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        (present,) = [a for a in args if a is not type(None)]  # a field is X or X | None
        return _typed(value, present)
    if isinstance(annotation, type) and issubclass(annotation, Handoff):
        return value if isinstance(value, annotation) else annotation.from_xcom(value)
    if annotation is Totals:
        return value if isinstance(value, Totals) else Totals.from_document(value)
    if annotation is date:
        return value if isinstance(value, date) else date.fromisoformat(value)
    if origin is list:
        return [_typed(item, args[0]) for item in value]
    if origin is dict:
        return {key: _typed(item, args[1]) for key, item in value.items()}
    return value


def _is_default(spec: Field[Any], value: Any) -> bool:
    if spec.default is not MISSING:
        return bool(value == spec.default)
    if spec.default_factory is not MISSING:
        return bool(value == spec.default_factory())
    return False


def _plain(value: Any) -> Any:
    """Return a field's value as JSON-ready data: records by their own ``to_xcom``, containers item by item."""
    if isinstance(value, Handoff):
        return value.to_xcom()
    if isinstance(value, Totals):
        return value.document()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class ShopRef(Handoff):
    """An active shop as the DAG passes it around: ids only, never a token."""

    shop_id: str
    shop_domain: str


@dataclass(frozen=True)
class CatalogRead(Handoff):
    """How a shop's catalog is being read: page by page, or by the bulk operation Shopify runs for it."""

    shop_id: str
    shop_domain: str
    mode: ReadMode = "pages"
    currency: str | None = None
    products: int | None = None
    operation_id: str | None = None
    # Why the read is what it is when that is not the rule (some products only, a bulk query fell back).
    note: str | None = None
    # Once a bulk operation completed: its result (None when it found nothing) and its object count.
    result_url: str | None = None
    objects: int = 0

    @property
    def shop(self) -> ShopRef:
        return ShopRef(self.shop_id, self.shop_domain)

    def as_pages(self, note: str) -> CatalogRead:
        """Return this read falling back to pages, saying why."""
        return replace(self, mode="pages", operation_id=None, note=note)


@dataclass(frozen=True)
class BatchPlan(Handoff):
    """One batch of one shop's products: the small descriptor the DAG maps over (no token, no catalog)."""

    shop_id: str
    shop_domain: str
    date: str
    index: int
    count: int
    product_ids: list[str]
    currency: str | None = None
    variants: int = 0
    # Set when the shop's catalog was read in bulk: the batch reads its products from the bucket.
    staged_key: str | None = None
    # False when the run exports some products only: such a batch writes no Parquet part (a part holds every
    # variant of its batch of the whole shop's plan, and a partial plan would replace the day's parts).
    whole_shop: bool = True
    # A staged batch: the bulk result it was cut from (Shopify keeps it a week) and the cut's size, so the
    # batch can stage itself again if its staging was deleted.
    bulk_result_url: str | None = None
    cut_variants: int = 0

    @property
    def label(self) -> str:
        """Return the label the UI shows for this batch."""
        return f"{self.shop_domain} · batch {self.index}/{self.count}"


@dataclass(frozen=True)
class ShopPlan(Handoff):
    """A shop's catalog cut into batches."""

    shop_id: str
    shop_domain: str
    mode: ReadMode
    note: str | None
    variants: int
    batches: list[BatchPlan]


@dataclass(frozen=True)
class BatchResult(Handoff):
    """What one batch did, for the reconciliation and the day's report."""

    shop_id: str
    shop_domain: str
    batch: int
    products: int = 0
    variants: int = 0
    files: int = 0
    files_unchanged: int = 0
    images_backed_up: int = 0
    images_reused: int = 0
    images_failed: int = 0
    missing_products: list[str] = field(default_factory=list)
    image_failures: list[str] = field(default_factory=list)
    file_totals: Totals = field(default_factory=Totals)
    seconds: float = 0.0
    graphql_cost: float = 0.0
    # The batch's Parquet part (None: none for this batch), whether it was (re)written, and its rows' totals.
    parquet_key: str | None = None
    parquet_written: bool = False
    parquet_totals: Totals | None = None
    # Per phase of the batch (catalog, metrics_sql, images, rendering, uploads, parquet, rows): [wall s, CPU s].
    phases: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportSection(Handoff):
    """An informative section of the day's report a task hands the report (session links, tokens, pixel health):
    its name in the report, its JSON document, and its one line for the log."""

    name: str
    document: dict[str, Any]
    line: str


@dataclass(frozen=True)
class DayFigures(Handoff):
    """What a whole day holds, for its asset event: where its files are, and what its report counted."""

    day: str
    bucket: str
    prefix: str
    shops: int
    variants: int
    files: int
    failed_shops: list[str] = field(default_factory=list)

    def asset_extra(self) -> dict[str, Any]:
        """Return the asset event's extra, in the keys README's "Downstream DAGs" documents."""
        return {
            "day": self.day,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "shops": self.shops,
            "variants": self.variants,
            "files": self.files,
            "failedShops": list(self.failed_shops),
        }


def fit_label(text: str) -> str:
    """Return a task instance's label cut to what Airflow stores (its ``rendered_map_index`` column)."""
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


@dataclass(frozen=True)
class ShopUnit(Handoff):
    """Several small shops exported by one task instance, each on its own (a failed shop fails alone)."""

    index: int
    count: int
    shops: list[ShopRef]

    @property
    def label(self) -> str:
        """Return the label the UI shows for this unit."""
        return f"{len(self.shops)} shops · unit {self.index}/{self.count}"


@dataclass(frozen=True)
class FleetPlan(Handoff):
    """The day's shops as units of work: large shops (and every shop of a small fleet) alone, the rest packed."""

    single: list[ShopRef]
    units: list[ShopUnit]
    # The variants per batch of the shops alone today (the setting, or more for a fleet of many large shops).
    batch_variants: int
    # Each shop alone's most batches (fleet.batch_budgets): together at most Airflow's max_map_length.
    batch_budgets: dict[str, int] = field(default_factory=dict)

    def batch_sizing(self) -> BatchSizing:
        """What each shop alone's planning needs of the day's plan (a few bytes a shop, not the whole plan)."""
        return BatchSizing(self.batch_variants, self.batch_budgets)


@dataclass(frozen=True)
class BatchSizing(Handoff):
    """How the shops alone cut their catalogs today: the variants per batch, and each shop's most batches."""

    batch_variants: int
    max_batches: dict[str, int] = field(default_factory=dict)

    def budget_of(self, shop_id: str) -> int:
        """Return a shop's most batches (1 for a shop the plan did not budget: it was not alone today)."""
        return self.max_batches.get(shop_id, 1)


@dataclass
class UnitResult(Handoff):
    """What a packed unit did: each exported shop's plan and result, and why each other shop failed."""

    index: int
    plans: list[ShopPlan] = field(default_factory=list)
    results: list[BatchResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    # True when every failure is one retrying cannot fix (the unit is then not retried by Airflow).
    permanent: bool = True
    # The shops found large on their first page: they left the unit and are exported alone.
    moved: list[ShopRef] = field(default_factory=list)
    # Per phase of the unit's shared export (as BatchResult.phases): once for the unit, not once per shop.
    phases: dict[str, list[float]] = field(default_factory=dict)

    def failed_domains(self, unit: ShopUnit) -> list[str]:
        """Return the domains of the unit's failed shops, in the unit's order."""
        return [shop.shop_domain for shop in unit.shops if shop.shop_id in self.failures]

    def failed_label(self, unit: ShopUnit) -> str:
        """Return the unit's label naming its failed shops, as many as the UI's label holds (then "and N more":
        the day's report names every one)."""
        head, domains = f"{unit.label} · failed: ", self.failed_domains(unit)
        for shown in range(len(domains), 0, -1):
            more = len(domains) - shown
            text = head + ", ".join(domains[:shown]) + (f" and {more} more" if more else "")
            if len(text) <= MAX_LABEL:
                return text
        return fit_label(f"{head}{len(domains)} shops (see the day's report)")


def decode_xcom(value: Any, annotation: Any) -> Any:
    """Return an XCom value as the record (or list of records) ``annotation`` names; other values as they are.

    A list of records also accepts the bare value: Airflow 3.3 hands a downstream task the value itself, not a
    one-item list, when a single map index of a task inside a mapped task group produced a result.
    """
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:  # Optional[X]
        return None if value is None else decode_xcom(value, args[0])
    if isinstance(annotation, type) and issubclass(annotation, Handoff):
        return value if isinstance(value, annotation) else annotation.from_xcom(value)
    if get_origin(annotation) is list and args and isinstance(args[0], type) and issubclass(args[0], Handoff):
        items = [value] if isinstance(value, Mapping) else list(value or [])
        return [decode_xcom(item, args[0]) for item in items]
    return value


def encode_xcom(value: Any) -> Any:
    """Return a record (or a list of records) as the JSON-ready value an XCom carries; other values as they are."""
    if isinstance(value, Handoff):
        return value.to_xcom()
    if isinstance(value, list) and value and all(isinstance(item, Handoff) for item in value):
        return [item.to_xcom() for item in value]
    return value


def handoff_task(body: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a task body so it takes and returns records: each argument is decoded by its annotation, the
    result encoded for its XCom. The wrapper keeps the body's signature (Airflow reads it for the context)."""
    hints = get_type_hints(body)
    signature = inspect.signature(body)

    @functools.wraps(body)
    def typed(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs)
        for name, value in bound.arguments.items():
            if name not in hints:
                continue
            if value is None and not _admits_none(hints[name]):
                # Its upstream task failed (a task that runs whatever happened gets None): nothing to retry.
                raise MissingHandoff(f"{body.__name__} got no {name}: the task that hands it over did not finish")
            bound.arguments[name] = decode_xcom(value, hints[name])
        return encode_xcom(body(*bound.args, **bound.kwargs))

    return typed


def _admits_none(annotation: Any) -> bool:
    """Tell whether an annotation allows None (``X | None``, ``Any``). A list does not: None is what a failed task
    hands over (a mapped one hands over what its finished instances returned), never an empty list."""
    if annotation is Any or annotation is type(None):
        return True
    return get_origin(annotation) in (Union, UnionType) and type(None) in get_args(annotation)
