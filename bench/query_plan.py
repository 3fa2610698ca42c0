"""The metrics query of one batch on the bench's events: EXPLAIN (ANALYZE, BUFFERS), its time and plan."""

from __future__ import annotations

import re
from datetime import date

import psycopg

from include.statistics_export.event_rules import day_parameters
from include.statistics_export.ids import variant_keys
from include.statistics_export.metrics import _VARIANT_METRICS


def explain_metrics(app_db_url: str, shop_id: str, variant_ids: list[str], day: date) -> dict:
    """Run the batch's metrics query under EXPLAIN ANALYZE twice (cold, then warm) and return times and plan."""
    params = {**day_parameters(day), "shop_ids": [shop_id], "variant_keys": variant_keys(variant_ids)}
    params["max_revenues"] = [params["max_revenue"]]
    runs = []
    with psycopg.connect(app_db_url) as conn:
        for _ in range(2):
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + _VARIANT_METRICS, params).fetchall()
            runs.append("\n".join(row[0] for row in rows))
    times = [float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1)) for plan in runs]
    # The key list is the batch's 2 x 500 ids: shown as a count so the plan stays readable.
    plan = re.sub(r"'\{[^}]*\}'::text\[\]", f"'{{...{len(params['variant_keys'])} keys...}}'::text[]", runs[1])
    return {"variants": len(variant_ids), "cold_ms": times[0], "warm_ms": times[1], "plan": plan}
