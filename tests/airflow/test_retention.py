"""A retention period through Airflow: two days exported for two shops, then `statistics_retention` (as the
redaction's least-privileged role) keeps the last day and erases the earlier one's files, Parquet and rows, and
nothing else; a second run changes nothing; with the setting off, nothing is erased."""

from dataclasses import replace
from datetime import timedelta

import pytest
from test_least_privilege import login_role
from test_shop_redaction import listing, read_json

from helpers import DAY, NOON_ON_DAY, add_event, product, register_shop
from local_stack.services import connection_env

pytestmark = pytest.mark.airflow

NEXT = DAY + timedelta(days=1)
DAY_TABLES = ("StatisticsExport", "VariantDailyStatistics")


@pytest.fixture
def world(db, sandbox):
    register_shop(db, sandbox, "shop_alpha", [product(n, variants=3, images=1) for n in range(1, 3)])
    register_shop(db, sandbox, "shop_beta", [product(n, variants=2, images=1) for n in range(10, 12)])
    add_event(db, "shop_alpha", "1001", "PURCHASE", NOON_ON_DAY, "9.90")
    add_event(db, "shop_beta", "10001", "IMPRESSION", NOON_ON_DAY + timedelta(days=1))


def rows_by_day(db) -> dict[str, list[tuple]]:
    """Every row of the two tables of the days' figures, by day (ISO)."""
    found: dict[str, list[tuple]] = {}
    for table in DAY_TABLES:
        for row in db.execute(f'SELECT date, * FROM "{table}" ORDER BY id').fetchall():
            found.setdefault(row[0].isoformat(), []).append((table, *row[1:]))
    db.commit()
    return found


def is_of(key: str, day) -> bool:
    """Whether a key is one of the day's own: a variant's file of the day, or a Parquet part of the day (the day's
    report, under _runs/, is not)."""
    if key.startswith("statistic-exports/_runs/"):
        return False
    return key.endswith((f"/{day:%Y%m%d}.csv", f"/{day:%Y%m%d}.json")) or f"/date={day.isoformat()}/" in key


def test_a_retention_period_erases_the_days_before_it_and_nothing_else(
    world, db, run_airflow, s3, endpoints, pg_server_url, app_db_url
):
    for day in (DAY, NEXT):
        exported = run_airflow("dags", "test", "product_statistics_export", day.isoformat())
        assert exported.returncode == 0, (exported.stdout + exported.stderr)[-3000:]
    before, rows_before = listing(s3, endpoints.bucket), rows_by_day(db)
    old = {key for key in before if is_of(key, DAY)}
    # Each shop's variants' two files and a Parquet part, per day.
    assert len(old) == 2 * (2 * 3 + 2 * 2) + 2 == len({key for key in before if is_of(key, NEXT)})
    assert set(rows_before) == {DAY.isoformat(), NEXT.isoformat()}

    with login_role(pg_server_url, app_db_url, granted=True, variable="redaction_role") as (_, role_url):
        as_role = {
            "AIRFLOW_CONN_APP_DB_REDACTION": connection_env(replace(endpoints, app_db_url=role_url))[
                "AIRFLOW_CONN_APP_DB"
            ]
        }

        def retain(setting: str):
            result = run_airflow(
                "dags",
                "test",
                "statistics_retention",
                NEXT.isoformat(),
                extra_env={**as_role, "STATISTICS_EXPORT_RETENTION_DAYS": setting},
            )
            return result.returncode, result.stdout + result.stderr

        # Off (the default): nothing is erased.
        code, output = retain("off")
        assert code == 0, output[-3000:]
        assert "STATISTICS_EXPORT_RETENTION_DAYS is off: every day is kept" in output
        assert listing(s3, endpoints.bucket) == before and rows_by_day(db) == rows_before

        # One day kept, the run's: the day before it goes, files, Parquet and rows.
        code, output = retain("1")
        assert code == 0, output[-3000:]
        assert "permission denied" not in output
        after = listing(s3, endpoints.bucket)
        assert after == {key: modified for key, modified in before.items() if key not in old}
        assert rows_by_day(db) == {NEXT.isoformat(): rows_before[NEXT.isoformat()]}
        # The reports of both days and the image backups stay.
        assert {f"statistic-exports/_runs/{day:%Y%m%d}.json" for day in (DAY, NEXT)} <= set(after)
        assert len([key for key in after if "/products/" in key]) == 4
        assert db.execute('SELECT count(*) FROM "ProductImageBackup"').fetchone() == (4,)
        db.commit()
        assert read_json(s3, endpoints.bucket, f"statistic-exports/_runs/{DAY:%Y%m%d}.json")["ok"] is True
        # 2 x 3 + 2 x 2 variants: their 20 files, 2 Parquet parts, 10 rows in each table.
        expired = f"Day {DAY.isoformat()}: expired (kept from {NEXT.isoformat()} on); erased so far: 20 files, "
        assert expired + "0 images, 2 parquet, 0 staged, 10 export rows, 10 statistics rows, 0 image rows" in output

        # Again: nothing is left to erase, and nothing changes.
        code, output = retain("1")
        assert code == 0, output[-3000:]
        assert f"No day before {NEXT.isoformat()} is left: nothing to erase" in output
        assert listing(s3, endpoints.bucket) == after and rows_by_day(db) == {
            NEXT.isoformat(): rows_before[NEXT.isoformat()]
        }
