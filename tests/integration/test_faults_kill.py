"""A worker killed with SIGKILL mid-batch: its retry converges to exactly what an undisturbed run leaves."""

import os
import signal

import pytest

from faults_support import (
    TABLES,
    order_export,
    row_counts,
    start_worker,
    world_fixture,  # noqa: F401 - provides the `world` fixture
)


@pytest.fixture
def worker():
    """A worker process, started before the world is built so its imports overlap the reference run."""
    with start_worker() as process:  # closes its pipes and reaps it at the end
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.parametrize(
    "killed_at_put",
    [
        pytest.param(7, id="among-the-uploads"),
        pytest.param(20, id="after-the-last-file-before-the-rows"),
    ],
)
def test_a_worker_killed_mid_batch_is_redone_by_its_retry(worker, world, killed_at_put):
    # The proxy holds the answer to that PUT until the worker is dead: the kill lands at an exact point.
    hook = world.proxy.on_request(lambda seen: os.kill(worker.pid, signal.SIGKILL), killed_at_put)
    order_export(worker, world)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == -signal.SIGKILL, stderr[-2000:]
    assert hook.errors == [] and hook.matched >= killed_at_put

    # Uploads already in flight in the worker's other threads may land: at least N objects, never the rows.
    left = world.keys()
    assert killed_at_put <= len(left) <= 20 and left <= set(world.expected.objects)
    assert row_counts(world.app_db_url) == dict.fromkeys(TABLES, 0)

    world.run()
    assert world.keys() == set(world.expected.objects)
    assert world.state() == world.expected
