"""The app database failing mid-batch: backends terminated (a restart, as clients see it) and statement timeouts."""

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from export_hooks.r2 import R2WriteError
from faults_support import (
    TABLES,
    database_name,
    output_table_locks,
    row_counts,
    world_fixture,  # noqa: F401 - provides the `world` fixture
)
from include.statistics_export.errors import BatchRowsError

NO_ROWS = dict.fromkeys(TABLES, 0)


def causes(error: BaseException | None) -> list[str]:
    """Return the messages of an exception and of the ones it was raised from or while handling."""
    messages = []
    while error is not None:
        messages.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return messages


def terminate_backends(server_url: str, db_url: str) -> int:
    """Terminate every connection to the test's own database (the shared server itself keeps running)."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        return admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database_name(db_url),),
        ).fetchone()[0]


def test_backends_terminated_between_the_files_and_the_rows_fail_the_batch_and_the_retry_converges(
    world, pg_server_url
):
    terminated = []
    # At the last PUT every file is in R2 and no row is written yet: the server "restarts" right there.
    hook = world.proxy.on_request(
        lambda seen: terminated.append(terminate_backends(pg_server_url, world.app_db_url)), 20
    )

    with pytest.raises(BatchRowsError, match=r"Shop shop_a batch 1/1: the files are in R2 but the rows") as failure:
        world.run()

    assert hook.errors == [] and terminated == [1]  # the export's one connection
    assert isinstance(failure.value.__cause__, psycopg.OperationalError)
    assert "terminating connection due to administrator command" in " | ".join(causes(failure.value))
    assert world.keys() == set(world.expected.objects)
    assert row_counts(world.app_db_url) == NO_ROWS
    world.run()
    assert world.state() == world.expected


def wait_for_blocked_upsert(db_url: str, timeout: float = 10.0) -> list[tuple[int, str, bool]]:
    """Wait until an upsert into StatisticsExport is waiting for its lock; return the output-table locks then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        locks = output_table_locks(db_url)
        if any(table == "StatisticsExport" and not granted for _, table, granted in locks):
            return locks
        time.sleep(0.02)  # polling pg_locks: the condition, not this pause, decides
    raise TimeoutError("no upsert waited for the lock on StatisticsExport")


def test_a_statement_timeout_on_the_last_upsert_rolls_back_every_table_and_the_retry_converges(world):
    with psycopg.connect(world.app_db_url) as locker, ThreadPoolExecutor(1) as runner:
        # Another session holds the last table: the batch's earlier upserts run, the last one waits.
        locker.execute('LOCK TABLE "StatisticsExport" IN EXCLUSIVE MODE')
        export = runner.submit(world.run, options="-c statement_timeout=1500")
        locks = wait_for_blocked_upsert(world.app_db_url)
        with pytest.raises(BatchRowsError, match=r"Shop shop_a batch 1/1") as failure:
            export.result(timeout=20)
        locker.rollback()

    exporter = next(pid for pid, table, granted in locks if not granted)
    # The same transaction had already inserted into the two other tables when it timed out.
    assert {table for pid, table, granted in locks if pid == exporter and granted} == {
        "ProductImageBackup",
        "VariantDailyStatistics",
    }
    assert isinstance(failure.value.__cause__, psycopg.errors.QueryCanceled)
    assert "statement timeout" in str(failure.value)
    assert row_counts(world.app_db_url) == NO_ROWS  # none of it was committed
    assert world.keys() == set(world.expected.objects)
    world.run()
    assert world.state() == world.expected


def test_rows_are_written_only_once_every_file_is_in_r2(world):
    seen_at_each_put = []
    hook = world.proxy.on_request(
        lambda seen: seen_at_each_put.append((row_counts(world.app_db_url), output_table_locks(world.app_db_url)))
    )

    world.run()

    assert hook.errors == [] and len(seen_at_each_put) == 21
    # At every upload, nothing is committed and no upsert has even started.
    assert all(counts == NO_ROWS and locks == [] for counts, locks in seen_at_each_put)
    assert world.state() == world.expected


def test_no_row_is_written_when_no_file_can_be_written(world):
    refused = world.proxy.fail(400, "InvalidRequest", times=None)

    with pytest.raises(R2WriteError):
        world.run()

    assert refused.applied >= 1 and world.keys() == set()
    assert row_counts(world.app_db_url) == NO_ROWS
