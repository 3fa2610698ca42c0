"""The revenue cap's currency table against its sources: every currency a shop can have (Shopify's CurrencyCode
enum), every currency legal tender today (the Unicode CLDR data of the babel package), and the factor each gives."""

import re
from decimal import Decimal

import pytest
from babel.core import get_global
from conftest import real_schema_sdl

from include.statistics_export.currencies import UNITS_PER_USD, cap_factor, cap_note


def shopify_currency_codes() -> set[str]:
    sdl = real_schema_sdl()
    body = re.search(r"enum CurrencyCode \{(.*?)\n\}", sdl, re.S).group(1)
    return set(re.findall(r"^\s+([A-Z]{3})(?:\s+@deprecated.*)?$", body, re.M)) - {"XXX"}  # XXX: "no currency"


def legal_tender_today() -> set[str]:
    return {
        code
        for entries in get_global("territory_currencies").values()
        for code, _start, end, tender in entries
        if tender and end is None
    }


def test_every_currency_a_shop_can_have_is_in_the_table():
    assert sorted(shopify_currency_codes() - set(UNITS_PER_USD)) == []


def test_every_currency_legal_tender_today_is_in_the_table():
    assert sorted(legal_tender_today() - set(UNITS_PER_USD)) == []


def test_every_rate_is_a_positive_number_and_every_code_iso_shaped():
    assert all(re.fullmatch(r"[A-Z]{3}", code) and rate > 0 for code, rate in UNITS_PER_USD.items())


@pytest.mark.parametrize(
    ("currency", "factor"),
    [
        # the ones the old table missed, worth far less than a dollar
        ("SSP", 10_000), ("VES", 1_000), ("VED", 1_000), ("SRD", 100), ("CVE", 100), ("MVR", 100),
        ("ERN", 100), ("STN", 100),
        # the ones it set below their own rule
        ("CDF", 10_000), ("MWK", 10_000), ("SYP", 100_000),
        # and the ones it had right
        ("VND", 100_000), ("IDR", 100_000), ("KRW", 10_000), ("JPY", 1_000), ("INR", 100), ("CNY", 10),
        ("USD", 1), ("EUR", 1), ("KWD", 1), ("usd", 1),
    ],
)  # fmt: skip
def test_the_factor_is_the_power_of_ten_at_or_above_the_units_per_dollar(currency, factor):
    assert cap_factor(currency) == factor
    rate = UNITS_PER_USD[currency.upper()]
    assert factor >= rate and (factor == 1 or factor / 10 < rate)


def test_a_missing_or_unknown_currency_has_no_factor_and_a_reason():
    assert cap_factor(None) is None and cap_factor("XXX") is None and cap_factor("") is None
    assert "currency is missing" in cap_note(None) and "'ABC' is not in the revenue-cap table" in cap_note("ABC")
    assert cap_note("EUR") is None and isinstance(UNITS_PER_USD["EUR"], Decimal)
