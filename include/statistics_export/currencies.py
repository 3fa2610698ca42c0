"""How much a unit of each currency is worth, to the order of magnitude the revenue cap needs.

A PURCHASE above ``STATISTICS_EXPORT_MAX_EVENT_REVENUE`` (in units of about a US dollar) is almost surely a unit or
parsing error. In a currency whose unit is worth far less than a dollar the cap is the setting times the power of
ten at or above the currency's units per dollar (:func:`cap_factor`), so an ordinary purchase of 30,000,000 VND
(about 1,200 USD) counts and a 1,000-fold error in it does not.

The table covers every currency a shop can have: each value of Shopify's ``CurrencyCode`` enum (the Admin API's
2026-07 schema, deprecated ones included), and every currency that is legal tender somewhere today by the Unicode
CLDR data the ``babel`` package carries (``tests/unit/test_currencies.py`` checks both). ``XXX`` (Shopify's "no
currency") is not a currency: a shop whose currency is missing or not in the table gets no guessed cap, and the
day's report says so (:func:`cap_note`).

Source of the values: approximate units of each currency per US dollar near the end of 2025, as the central banks'
and markets' quotes stood then (for a currency with an official and a parallel rate, the weaker one, so that the
cap never rejects an ordinary purchase); the order of magnitude is all that is used, so ordinary moves of a rate
change nothing. A currency that loses a power of ten (or is redenominated) must have its line updated: the test
names the factor every line gives. Currencies no longer issued keep their last rate (Shopify's enum still lists
them). Compiled 2026-12; review it yearly.
"""

from __future__ import annotations

import math
from decimal import Decimal

UNITS_PER_USD_AS_OF = "2025-11"

# ISO 4217 code -> approximate units per US dollar.
UNITS_PER_USD: dict[str, Decimal] = {
    code: Decimal(rate)
    for code, rate in {
        # worth a dollar or more
        "BHD": "0.376", "KWD": "0.307", "OMR": "0.385", "JOD": "0.709", "GBP": "0.76", "GIP": "0.76",
        "FKP": "0.76", "SHP": "0.76", "JEP": "0.76", "KYD": "0.833", "CHF": "0.80", "EUR": "0.86",
        "LVL": "0.61", "USD": "1", "BSD": "1", "BMD": "1", "PAB": "1", "CUC": "1",
        # up to 10 a dollar
        "CAD": "1.40", "AUD": "1.53", "KID": "1.53", "NZD": "1.75", "SGD": "1.30", "BND": "1.30",
        "AZN": "1.70", "BGN": "1.68", "BAM": "1.68", "ANG": "1.79", "AWG": "1.79", "XCG": "1.79",
        "BBD": "2.0", "BZD": "2.0", "FJD": "2.27", "TOP": "2.4", "GEL": "2.7", "XCD": "2.7", "WST": "2.75",
        "TND": "2.95", "LTL": "2.97", "BYN": "3.0", "ILS": "3.25", "PEN": "3.38", "TMT": "3.5", "QAR": "3.64",
        "PLN": "3.65", "AED": "3.67", "SAR": "3.75", "MYR": "4.15", "PGK": "4.2", "RON": "4.38",
        "LYD": "5.45", "BRL": "5.35", "DKK": "6.45", "HRK": "6.5", "TTD": "6.78", "BOB": "6.91",
        "CNY": "7.1", "GTQ": "7.66", "HKD": "7.78", "MOP": "8.0", "SBD": "8.2", "SVC": "8.75",
        "MAD": "9.2", "TJS": "9.3", "SEK": "9.5",
        # up to 100 a dollar
        "NOK": "10.1", "GHS": "10.9", "BWP": "13.5", "SCR": "14.5", "ERN": "15", "MVR": "15.4", "MDL": "17",
        "LSL": "17.3", "NAD": "17.3", "SZL": "17.3", "ZAR": "17.3", "MXN": "18.4", "CZK": "21",
        "STN": "21", "SLE": "23", "ZMW": "23", "CUP": "24", "ZWG": "26.5", "HNL": "26.3", "TWD": "30.5",
        "THB": "32.5", "NIO": "36.8", "SRD": "38.5", "MRU": "40", "UYU": "40", "UAH": "41.5", "TRY": "42",
        "MUR": "46", "EGP": "47.5", "MKD": "53", "PHP": "59", "DOP": "63", "MZN": "63.9", "AFN": "66",
        "GMD": "72", "RUB": "80", "ALL": "83", "KGS": "87.4", "BTN": "88.5", "INR": "88.5", "CVE": "95",
        # up to 1,000 a dollar
        "RSD": "101", "XPF": "103", "VUV": "120", "BDT": "122", "ISK": "125", "KES": "129", "DZD": "130",
        "HTG": "131", "NPR": "141", "ETB": "150", "JPY": "155", "JMD": "160", "DJF": "178", "LRD": "180",
        "GYD": "209", "VES": "230", "VED": "230", "PKR": "281", "LKR": "303", "HUF": "330", "AMD": "385",
        "KMF": "420", "CRC": "500", "KZT": "520", "XAF": "565", "XOF": "565", "SOS": "571",
        "KPW": "900", "AOA": "915", "CLP": "940",
        # up to 10,000 a dollar
        "IQD": "1310", "ARS": "1450", "KRW": "1450", "NGN": "1450", "RWF": "1450", "YER": "1600",
        "MWK": "1735", "TZS": "2450", "CDF": "2850", "BIF": "2950", "SDG": "3000", "UGX": "3500",
        "MNT": "3580", "COP": "3800", "KHR": "4000", "MMK": "4200", "MGA": "4450", "SSP": "6000",
        "PYG": "7100", "GNF": "8700",
        # over 10,000 a dollar
        "UZS": "12000", "SYP": "13000", "IDR": "16600", "STD": "21000", "LAK": "21700", "SLL": "23000",
        "VND": "26300", "BYR": "30000", "LBP": "89500", "IRR": "1100000", "VEF": "23000000",
    }.items()
}  # fmt: skip


def cap_factor(currency: str | None) -> int | None:
    """Return the power of ten at or above the currency's units per dollar (1 for a currency worth a dollar or
    more), or None for a currency missing or not in the table."""
    rate = UNITS_PER_USD.get((currency or "").strip().upper())
    if rate is None:
        return None
    return max(1, 10 ** math.ceil(math.log10(rate)))


def cap_note(currency: str | None) -> str | None:
    """Return why a shop's purchases have no cap of their currency (None when they have one)."""
    if cap_factor(currency) is not None:
        return None
    shown = f"{currency!r} is not in the revenue-cap table" if currency else "is missing"
    return (
        f"the shop's currency {shown} (include/statistics_export/currencies.py): its purchases are capped only by "
        "what a row holds, not by the revenue cap setting"
    )
