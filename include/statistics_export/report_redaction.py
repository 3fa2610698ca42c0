"""A day's report with one shop taken out (Shopify's ``shop/redact``): a pure function of the stored document.

The shop leaves every place the report names it: its figures (``perShop``), its failure, its reconciliation, its
size, the paused shops, and the informative sections (pixel health, session links, tokens), which other modules
write and which are therefore scrubbed generically: an entry keyed by the shop goes, a list item naming the shop
(its id or one of its domains) goes, and a line of text keeps its words but the shop's names. The totals and ``ok``
are then recounted from the shops that remain (``RunReport.recount``), so the page, the merge of a later run and
the failed-day alert read a valid report. Keys are the schema's (``report_schema``); none is spelled here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from include.statistics_export.report_schema import PER_SHOP, SUMMARY, RunReport

# What a redacted shop's name becomes in a line of text.
REDACTED = "[redacted shop]"
# Characters that continue an id or a domain: "shop_a" must not match inside "shop_alpha" or "shop_a-2".
_WORD = r"A-Za-z0-9_\-"


def _names_pattern(names: Iterable[str]) -> re.Pattern[str]:
    """Return a pattern of the shop's names inside text. An id of digits only is left out: inside text it cannot be
    told from a count (it is still matched as a whole key or list item)."""
    words = sorted({n for n in names if n and not n.isdigit()}, key=len, reverse=True)
    alternatives = "|".join(re.escape(name) for name in words) or r"(?!)"
    return re.compile(rf"(?<![{_WORD}.])(?:{alternatives})(?![{_WORD}]|\.[{_WORD}])")


def _mentions(value: Any, shop_id: str, pattern: re.Pattern[str]) -> bool:
    if isinstance(value, str):
        return value == shop_id or bool(pattern.search(value))
    if isinstance(value, Mapping):
        return any(_mentions(k, shop_id, pattern) or _mentions(v, shop_id, pattern) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions(item, shop_id, pattern) for item in value)
    return False


def _scrub(value: Any, shop_id: str, pattern: re.Pattern[str]) -> Any:
    """Return ``value`` without the shop: keys equal to its id dropped, list items naming it dropped, its names in
    other text replaced."""
    if isinstance(value, Mapping):
        return {k: _scrub(v, shop_id, pattern) for k, v in value.items() if k != shop_id}
    if isinstance(value, list):
        return [_scrub(item, shop_id, pattern) for item in value if not _mentions(item, shop_id, pattern)]
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    return value


def shop_domains_in(document: Mapping[str, Any], shop_id: str) -> set[str]:
    """Return the domains a report's sections give the shop (a section's ``perShop`` entry's domain fields)."""
    found = set()
    for section in document.values():
        entry = section.get(PER_SHOP, {}).get(shop_id) if isinstance(section, Mapping) else None
        if isinstance(entry, Mapping):
            found |= {str(v) for k, v in entry.items() if isinstance(v, str) and k.lower().endswith("domain") and v}
    return found


def names_shop(document: Mapping[str, Any], shop_id: str, domains: Iterable[str] = ()) -> bool:
    """Tell whether a stored report names the shop anywhere (its id, or one of ``domains``)."""
    pattern = _names_pattern([shop_id, *domains, *shop_domains_in(document, shop_id)])
    return _mentions(dict(document), shop_id, pattern)


def report_without_shop(
    document: Mapping[str, Any], shop_id: str, domains: Iterable[str] = ()
) -> dict[str, Any] | None:
    """Return the report's document without the shop, its totals recounted; None when it does not name the shop
    (nothing to rewrite). ``domains``: the shop's domains as the app knows them, scrubbed from text as well."""
    if not names_shop(document, shop_id, domains):
        return None
    pattern = _names_pattern([shop_id, *domains, *shop_domains_in(document, shop_id)])
    report = RunReport.from_document(document)
    report.per_shop.pop(shop_id, None)
    report.failed_shops.pop(shop_id, None)
    report.reconciliation.pop(shop_id, None)
    report.shop_sizes.pop(shop_id, None)
    report.paused_shops = [paused for paused in report.paused_shops if paused != shop_id]
    report.failed_shops = {k: pattern.sub(REDACTED, why) for k, why in report.failed_shops.items()}
    report.failed_tasks = {k: pattern.sub(REDACTED, why) for k, why in report.failed_tasks.items()}
    report.sections = {name: _scrub(section, shop_id, pattern) for name, section in report.sections.items()}
    report.section_lines = [str(section.get(SUMMARY, "")) for section in report.sections.values()]
    report.recount()
    return report.document()
