"""Every setting is read in one place, with one default, and documented by the README's table."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from include.statistics_export import settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_defaults_are_the_documented_ones():
    assert settings.load({}) == settings.Settings()
    assert settings.Settings() == settings.Settings(
        start_date=None,
        catchup=True,
        max_active_runs=3,
        batch_variants=500,
        concurrency=16,
        store_in_flight=64,
        bulk_threshold=150,
        bulk_poll_seconds=30.0,
        image_max_bytes=20 * 1024 * 1024,
        image_timeout=30.0,
        max_event_revenue=Decimal("1000000.00"),
        shop_tasks_up_to=50,
        unit_shops=200,
        unit_variants=2000,
        paused_shops=(),
    )


def test_each_variable_sets_its_field_and_blank_means_the_default():
    environ = {
        "STATISTICS_EXPORT_START_DATE": "2025-01-31",
        "STATISTICS_EXPORT_CATCHUP": "off",
        "STATISTICS_EXPORT_MAX_ACTIVE_RUNS": "1",
        "STATISTICS_EXPORT_BATCH_VARIANTS": "250",
        "STATISTICS_EXPORT_CONCURRENCY": " 16 ",
        "STATISTICS_EXPORT_STORE_IN_FLIGHT": "128",
        "STATISTICS_EXPORT_IMAGE_IN_FLIGHT": "32",
        "STATISTICS_EXPORT_BULK_THRESHOLD": "",
        "STATISTICS_EXPORT_BULK_POLL_SECONDS": "2.5",
        "STATISTICS_EXPORT_IMAGE_MAX_BYTES": "1000",
        "STATISTICS_EXPORT_IMAGE_TIMEOUT": "0.5",
        "STATISTICS_EXPORT_IMAGE_HOSTS": "https://cdn.shopify.com,http://127.0.0.1:8300",
        "STATISTICS_EXPORT_MAX_EVENT_REVENUE": "99.99",
        "STATISTICS_EXPORT_DOWNLOAD_LINK_SECONDS": "604800",
        "STATISTICS_EXPORT_SHOP_TASKS_UP_TO": "0",
        "STATISTICS_EXPORT_UNIT_SHOPS": "20",
        "STATISTICS_EXPORT_UNIT_VARIANTS": "300",
        "STATISTICS_EXPORT_DEADLINE_HOURS": "0",
        "STATISTICS_EXPORT_RETRY_DELAY_SECONDS": "5",
        "STATISTICS_EXPORT_DEADLINE_ALERT": "OFF",
        "STATISTICS_EXPORT_PAUSED_SHOPS": " shop_b, shop_a,,shop_b ",
        "STATISTICS_EXPORT_RETENTION_DAYS": "400",
    }
    loaded = settings.load(environ)
    hosts = ("https://cdn.shopify.com", "http://127.0.0.1:8300")
    assert loaded == settings.Settings(
        date(2025, 1, 31),
        False,
        1,
        250,
        16,
        128,
        32,
        150,
        2.5,
        1000,
        0.5,
        hosts,
        Decimal("99.99"),
        604800,
        0,
        20,
        300,
        0,
        5,
        False,
        ("shop_a", "shop_b"),
        400,
    )
    assert settings.Settings().deadline_alert is True and settings.load({}).deadline_alert is True
    assert settings.load({}).retention_days is None  # off: every day kept, as the original promised
    assert set(environ) == {s.env for s in settings.ALL} and len(settings.ALL) == len(settings.FIELDS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STATISTICS_EXPORT_START_DATE", "21/11/2026"),
        ("STATISTICS_EXPORT_BATCH_VARIANTS", "0"),
        ("STATISTICS_EXPORT_CONCURRENCY", "eight"),
        ("STATISTICS_EXPORT_STORE_IN_FLIGHT", "0"),
        ("STATISTICS_EXPORT_RETENTION_DAYS", "0"),
        ("STATISTICS_EXPORT_RETENTION_DAYS", "forever"),
        ("STATISTICS_EXPORT_BULK_POLL_SECONDS", "-1"),
        ("STATISTICS_EXPORT_IMAGE_TIMEOUT", "nan"),
        ("STATISTICS_EXPORT_MAX_EVENT_REVENUE", "-5"),
        ("STATISTICS_EXPORT_DOWNLOAD_LINK_SECONDS", "604801"),
        ("STATISTICS_EXPORT_DOWNLOAD_LINK_SECONDS", "0"),
        ("STATISTICS_EXPORT_DEADLINE_ALERT", "no"),
        ("STATISTICS_EXPORT_CATCHUP", "yes"),
        ("STATISTICS_EXPORT_MAX_ACTIVE_RUNS", "0"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable_and_the_value(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be .*got {value!r}"):
        settings.load({name: value})


def test_the_readme_table_is_the_module_table():
    assert settings.markdown_table() in README.read_text()


def test_without_a_start_date_the_dag_has_no_first_day_and_the_message_names_the_variables():
    with pytest.raises(ValueError) as unset:
        settings.first_day(settings.load({}))
    assert str(unset.value).startswith("STATISTICS_EXPORT_START_DATE is not set: set it to the first day (UTC")
    assert "STATISTICS_EXPORT_CATCHUP=off" in str(unset.value)
    assert settings.first_day(settings.load({"STATISTICS_EXPORT_START_DATE": "2026-12-01"})) == date(2026, 12, 1)
