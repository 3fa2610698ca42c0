"""Pixel health on a real PostgreSQL: events by type, active tests, the silent-pixel and inactive-test flags,
one query for the whole fleet, and a failed read that never fails the run."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from include.statistics_export import tasks
from include.statistics_export.handoffs import ShopRef
from include.statistics_export.pixel_health import pixel_health
from include.statistics_export.report_schema import RunReport

DAY = date(2026, 11, 21)
NOON = datetime(2026, 11, 21, 12)


@pytest.fixture
def fleet(db):
    """Four shops: busy (active test, events), silent (active test, no event that day), stale (a completed
    test still receiving events), idle (no active test, no event)."""
    tests = {
        "busy": [("t_busy", "ACTIVE")],
        "silent": [("t_silent", "ACTIVE"), ("t_silent_draft", "DRAFT")],
        "stale": [("t_stale_done", "COMPLETED"), ("t_stale_paused", "PAUSED"), ("t_stale_on", "ACTIVE")],
        "idle": [("t_idle", "PAUSED")],
    }
    with db.cursor() as cur:
        for shop, shop_tests in tests.items():
            cur.execute('INSERT INTO "ShopCredential" (id, "shopDomain") VALUES (%s, %s)', (shop, f"{shop}.example"))
            for test_id, status in shop_tests:
                cur.execute(
                    'INSERT INTO "ABTest" (id, shop, name, "productId", status) VALUES (%s, %s, %s, %s, %s)',
                    (test_id, shop, f"name of {test_id}", "1", status),
                )
    db.commit()

    def event(test_id: str, event_type: str, at: datetime = NOON, n: int = 1) -> None:
        with db.cursor() as cur:
            for _ in range(n):
                cur.execute(
                    'INSERT INTO "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId",'
                    ' "createdAt") VALUES (gen_random_uuid()::text, %s, %s, %s, %s, %s, %s)',
                    (test_id, "s", event_type, "1", "11", at),
                )
        db.commit()

    event("t_busy", "IMPRESSION", n=5)
    event("t_busy", "ADD_TO_CART", n=2)
    event("t_busy", "PURCHASE")
    event("t_busy", "SCROLL")  # an unknown type is still a sign of life, counted under "other"
    event("t_silent", "IMPRESSION", at=datetime(2026, 11, 20, 23, 59, 59))  # the day before: not this day
    event("t_silent", "IMPRESSION", at=datetime(2026, 11, 22, 0, 0))  # the day after
    event("t_stale_done", "IMPRESSION", n=3)
    event("t_stale_paused", "ADD_TO_CART")
    event("t_stale_on", "IMPRESSION", n=2)
    return [ShopRef(shop, f"{shop}.example") for shop in tests]


def test_events_by_type_and_active_tests(db, fleet):
    health = pixel_health(db, fleet, DAY)
    busy = health.shops["busy"].document()
    assert busy["events"] == {"ADD_TO_CART": 2, "IMPRESSION": 5, "PURCHASE": 1, "other": 1}
    assert busy["activeTests"] == [{"id": "t_busy", "name": "name of t_busy"}]
    assert (busy["silent"], busy["inactiveTestEvents"]) == (False, {})
    # Events of every test of the shop, active or not, are the shop's events of the day.
    assert health.shops["stale"].events == {"IMPRESSION": 5, "ADD_TO_CART": 1}


def test_unknown_event_types_are_counted_under_one_other_key_whatever_the_storefront_sends(db, fleet):
    # "eventType" is a free string from the storefront: 50 distinct unknown types (and known types in the
    # wrong case, an empty string) must not give 50 keys to the report, in any shop or test.
    with db.cursor() as cur:
        for n in range(50):
            cur.execute(
                'INSERT INTO "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId",'
                ' "createdAt") VALUES (gen_random_uuid()::text, %s, %s, %s, %s, %s, %s)',
                ("t_stale_done", "s", f"<b>type {n}</b> {'x' * n}", "1", "11", NOON),
            )
        for odd in ("impression", "", " PURCHASE"):
            cur.execute(
                'INSERT INTO "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId",'
                ' "createdAt") VALUES (gen_random_uuid()::text, %s, %s, %s, %s, %s, %s)',
                ("t_stale_on", "s", odd, "1", "11", NOON),
            )
    db.commit()

    health = pixel_health(db, fleet, DAY)
    stale = health.shops["stale"].document()
    assert stale["events"] == {"IMPRESSION": 5, "ADD_TO_CART": 1, "other": 53}
    assert stale["inactiveTestEvents"]["t_stale_done"] == {"status": "COMPLETED", "events": 53}
    assert health.shops["busy"].events["other"] == 1
    assert all(set(s.events) <= {"IMPRESSION", "ADD_TO_CART", "PURCHASE", "other"} for s in health.shops.values())


def test_fifty_distinct_unknown_types_give_one_other_count_of_fifty(db, fleet):
    with db.cursor() as cur:
        for n in range(50):
            cur.execute(
                'INSERT INTO "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId",'
                ' "createdAt") VALUES (gen_random_uuid()::text, %s, %s, %s, %s, %s, %s)',
                ("t_silent", "s", f"CUSTOM_{n}", "1", "11", NOON),
            )
    db.commit()
    assert pixel_health(db, fleet, DAY).shops["silent"].document()["events"] == {"other": 50}


def test_silent_pixel_flag(db, fleet):
    health = pixel_health(db, fleet, DAY)
    assert health.shops["silent"].silent  # an active test, and nothing in [D 00:00, D+1 00:00)
    assert health.shops["silent"].events == {}
    assert not health.shops["idle"].silent  # no active test: nothing is expected from its pixel
    assert not health.shops["busy"].silent
    document = health.document()
    assert document["silentShops"] == ["silent (silent.example)"]
    assert "silent pixel (active tests, no event): silent (silent.example)" in health.text()


def test_events_for_inactive_tests_flag(db, fleet):
    health = pixel_health(db, fleet, DAY)
    assert health.shops["stale"].inactive_test_events == {
        "t_stale_done": {"status": "COMPLETED", "events": 3},
        "t_stale_paused": {"status": "PAUSED", "events": 1},
    }
    assert not health.shops["stale"].silent
    assert health.shops["silent"].inactive_test_events == {}  # a draft without events is not flagged
    assert health.document()["shopsWithInactiveTestEvents"] == ["stale (stale.example)"]


def test_one_query_serves_the_whole_fleet(db, fleet):
    statements = []

    class CountingCursor:
        def __init__(self):
            self.cursor = db.cursor()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.cursor.close()

        def execute(self, query, params=None):
            statements.append(query)
            return self.cursor.execute(query, params)

        def fetchall(self):
            return self.cursor.fetchall()

    class CountingConnection:
        def cursor(self):
            return CountingCursor()

    many = fleet + [ShopRef(f"other_{n}", f"other-{n}.example") for n in range(2000)]
    health = pixel_health(CountingConnection(), many, DAY)
    assert len(statements) == 1
    assert len(health.shops) == 2004 and health.shops["other_7"].document()["events"] == {}


def test_the_task_reports_and_logs_and_a_failed_read_never_raises(db, fleet, connections, caplog):
    section = tasks.check_pixel_health(DAY, fleet)
    assert section.document["silentShops"] == ["silent (silent.example)"]
    assert any("Pixel health of 2026-11-21" in r.getMessage() for r in caplog.records)

    report = tasks.add_report_sections(RunReport(date="2026-11-21", shops=4), [section])
    assert report.document()["pixelHealth"]["silentShops"] == ["silent (silent.example)"]
    assert section.line in report.text()
    assert not report.failed  # a silent pixel informs; it does not fail the day

    with db.cursor() as cur:
        cur.execute('ALTER TABLE "ABTest" RENAME TO "ABTestGone"')
    db.commit()
    broken = tasks.check_pixel_health(DAY, fleet)
    assert broken.document["error"].startswith("Pixel health of 2026-11-21: not checked (UndefinedTable")
    missing = tasks.add_report_sections(RunReport(date="2026-11-21", shops=4), [])
    assert missing.document()["pixelHealth"]["error"] == "its task did not finish" and not missing.failed
