"""Pure functions: the export day, its bounds, and Shopify ids."""

from datetime import date, datetime, timedelta, timezone

import pytest

from include.statistics_export.errors import DayNotFinished
from include.statistics_export.ids import gid, media_numeric_id, numeric_id
from include.statistics_export.keys import safe_key_part
from include.statistics_export.utc import day_bounds, export_day, require_finished


def test_date_param_wins_over_logical_date():
    assert export_day("2026-03-04", datetime(2026, 5, 1, tzinfo=timezone.utc), None) == date(2026, 3, 4)


def test_logical_date_is_the_export_day():
    # A scheduled run for day D has logical date D 00:00 UTC (CronDataIntervalTimetable).
    assert export_day(None, datetime(2026, 11, 20, tzinfo=timezone.utc), None) == date(2026, 11, 20)


def test_logical_date_in_another_zone_is_read_in_utc():
    tz = timezone(timedelta(hours=-5))
    assert export_day(None, datetime(2026, 11, 20, 21, 0, tzinfo=tz), None) == date(2026, 11, 21)


def test_manual_run_without_logical_date_exports_the_previous_utc_day():
    assert export_day(None, None, datetime(2026, 11, 22, 0, 30, tzinfo=timezone.utc)) == date(2026, 11, 21)


def test_bad_date_param_is_a_clear_error():
    with pytest.raises(ValueError, match="YYYY-MM-DD.*'21/11/2026'"):
        export_day("21/11/2026", None, None)


def test_day_bounds_are_half_open_utc():
    start, end = day_bounds(date(2026, 2, 28))
    assert (start, end) == (datetime(2026, 2, 28), datetime(2026, 3, 1))


@pytest.mark.parametrize("value", ["123", "gid://shopify/ProductVariant/123", " 123 "])
def test_numeric_id_accepts_both_spellings(value):
    assert numeric_id(value, "ProductVariant") == "123"


@pytest.mark.parametrize("value", ["gid://shopify/Product/123", "gid://shopify/ProductVariant/abc", "", "12a"])
def test_numeric_id_rejects_other_resources_and_garbage(value):
    with pytest.raises(ValueError, match="ProductVariant"):
        numeric_id(value, "ProductVariant")


def test_gid_and_media_ids():
    assert gid("Product", 7) == "gid://shopify/Product/7"
    assert media_numeric_id("gid://shopify/MediaImage/99") == "99"


@pytest.mark.parametrize("value", ["..", "a/b", "", "x" * 200])
def test_key_parts_cannot_escape_their_prefix(value):
    with pytest.raises(ValueError, match="shop id"):
        safe_key_part(value, "shop id")


def test_a_day_ended_when_airflow_let_its_run_start_is_finished_whatever_the_workers_clock_says():
    day = date(2026, 11, 21)
    behind = datetime(2026, 11, 21, 23, 59, 58, tzinfo=timezone.utc)  # a worker's clock two seconds behind
    scheduled = datetime(2026, 11, 22, tzinfo=timezone.utc)  # the scheduled run's data interval ends at midnight
    assert require_finished(day, now=behind, run_after=scheduled) == day
    with pytest.raises(DayNotFinished, match="Day 2026-11-21 has not ended"):
        require_finished(day, now=behind)
    # A run triggered before the day ended (a manual run for today) is refused by every clock.
    with pytest.raises(DayNotFinished):
        require_finished(day, now=behind, run_after=datetime(2026, 11, 21, 18, tzinfo=timezone.utc))
