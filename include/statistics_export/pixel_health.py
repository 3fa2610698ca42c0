"""Pixel health (the original's ``check-pixel-status``): is each shop's storefront pixel recording events?

Per shop, for the exported UTC day: the events by type (raw, as the pixel sent them, whether or not they
count; every type but IMPRESSION, ADD_TO_CART and PURCHASE under one ``other`` key, since "eventType" is a free
string from the storefront and the report must not grow with it), the shop's active AB tests, and two flags:

- ``silent``: the shop has active tests but recorded no event at all that day (the pixel is not firing,
  or was removed from the theme);
- ``inactiveTestEvents``: events arrived for tests that are not ACTIVE (a draft, paused or completed test
  still wired into the storefront).

One query serves every shop of the run, so a fleet of thousands of shops costs one round trip (the
events are found through the ``("testId","createdAt")`` index). It only reads and never fails the run:
the caller turns an error into a note in the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from include.statistics_export.event_rules import EVENT_TYPES
from include.statistics_export.handoffs import ShopRef
from include.statistics_export.utc import day_bounds

# Every event type the storefront may send that the export does not know is counted under this one key.
OTHER_EVENT_TYPE = "other"

# A shop's active tests with their events of the day (none: one row with a NULL type), and its other tests
# only when they received events that day. Unknown types are grouped in SQL: at most four rows per test.
_PIXEL_HEALTH = """
SELECT t.shop, t.id, t.name, t.status,
  CASE
    WHEN e."testId" IS NULL THEN NULL
    WHEN e."eventType" = ANY(%(known_types)b::text[]) THEN e."eventType"
    ELSE %(other)s
  END AS event_type,
  count(e."testId")
FROM "ABTest" t
LEFT JOIN "ABTestEvent" e
  ON e."testId" = t.id AND e."createdAt" >= %(start)s AND e."createdAt" < %(end)s
WHERE t.shop = ANY(%(shop_ids)b::text[])
GROUP BY t.shop, t.id, t.name, t.status, event_type
HAVING t.status = 'ACTIVE' OR count(e."testId") > 0
ORDER BY t.shop, t.id, event_type
"""


@dataclass
class ShopPixelHealth:
    """One shop's pixel figures for the day."""

    shop_id: str
    shop_domain: str
    events: dict[str, int] = field(default_factory=dict)
    active_tests: dict[str, str] = field(default_factory=dict)  # test id -> name
    inactive_test_events: dict[str, dict[str, Any]] = field(default_factory=dict)  # test id -> status, events

    @property
    def silent(self) -> bool:
        """Active tests, and not a single event of any test that day."""
        return bool(self.active_tests) and not self.events

    @classmethod
    def from_document(cls, shop_id: str, document: Mapping[str, Any]) -> ShopPixelHealth:
        """Rebuild a shop's figures from its entry of a report's ``pixelHealth.perShop``."""
        return cls(
            shop_id,
            str(document.get("shopDomain", "")),
            dict(document.get("events") or {}),
            {str(test["id"]): str(test["name"]) for test in document.get("activeTests") or []},
            dict(document.get("inactiveTestEvents") or {}),
        )

    def document(self) -> dict[str, Any]:
        return {
            "shopDomain": self.shop_domain,
            "events": dict(sorted(self.events.items())),
            "activeTests": [{"id": test_id, "name": name} for test_id, name in sorted(self.active_tests.items())],
            "silent": self.silent,
            "inactiveTestEvents": self.inactive_test_events,
        }


@dataclass
class PixelHealth:
    """Every listed shop's pixel figures for one day."""

    date: str
    shops: dict[str, ShopPixelHealth]

    @property
    def silent(self) -> list[ShopPixelHealth]:
        return [shop for shop in self.shops.values() if shop.silent]

    @property
    def with_inactive_test_events(self) -> list[ShopPixelHealth]:
        return [shop for shop in self.shops.values() if shop.inactive_test_events]

    def document(self) -> dict[str, Any]:
        """The report's ``pixelHealth`` section: totals naming the flagged shops, then each shop."""
        return {
            "shops": len(self.shops),
            "silentShops": [f"{s.shop_id} ({s.shop_domain})" for s in self.silent],
            "shopsWithInactiveTestEvents": [f"{s.shop_id} ({s.shop_domain})" for s in self.with_inactive_test_events],
            "perShop": {shop_id: shop.document() for shop_id, shop in sorted(self.shops.items())},
        }

    def text(self) -> str:
        """One line for the run's log."""
        silent = ", ".join(f"{s.shop_id} ({s.shop_domain})" for s in self.silent) or "none"
        inactive = ", ".join(f"{s.shop_id} ({s.shop_domain})" for s in self.with_inactive_test_events) or "none"
        events = sum(sum(s.events.values()) for s in self.shops.values())
        return (
            f"Pixel health of {self.date}: {len(self.shops)} shop(s), {events} events; "
            f"silent pixel (active tests, no event): {silent}; events for inactive tests: {inactive}"
        )


def checked(section: Mapping[str, Any] | None) -> bool:
    """Tell whether a report's ``pixelHealth`` section holds shops (not the note of a check that failed)."""
    return bool(section) and "perShop" in (section or {})


def merged_pixel_health(day: str, previous: Mapping[str, Any], current: Mapping[str, Any]) -> PixelHealth:
    """Return the pixel health of a day's report merged with a run of some of its shops (theirs replaced)."""
    entries = {**dict(previous.get("perShop") or {}), **dict(current.get("perShop") or {})}
    return PixelHealth(day, {shop_id: ShopPixelHealth.from_document(shop_id, doc) for shop_id, doc in entries.items()})


def pixel_health(conn: Any, shops: Sequence[ShopRef], day: date) -> PixelHealth:
    """Read the day's events by type and the active tests of every shop, in one query."""
    start, end = day_bounds(day)
    health = {shop.shop_id: ShopPixelHealth(shop.shop_id, shop.shop_domain) for shop in shops}
    with conn.cursor() as cur:
        parameters = {
            "shop_ids": list(health),
            "start": start,
            "end": end,
            "known_types": list(EVENT_TYPES),
            "other": OTHER_EVENT_TYPE,
        }
        cur.execute(_PIXEL_HEALTH, parameters)
        rows = cur.fetchall()
    for shop_id, test_id, name, status, event_type, count in rows:
        shop = health[shop_id]
        if status == "ACTIVE":
            shop.active_tests[test_id] = name
        elif count:
            flagged = shop.inactive_test_events.setdefault(test_id, {"status": status, "events": 0})
            flagged["events"] += count
        if event_type is not None and count:
            shop.events[event_type] = shop.events.get(event_type, 0) + count
    return PixelHealth(day.isoformat(), health)
