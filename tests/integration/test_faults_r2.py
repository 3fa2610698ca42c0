"""R2 misbehaving behind a fault proxy: throttling, 5xx, timeouts, dropped connections, bad credentials, a cut batch."""

import json
import os
import time
import traceback
from collections import Counter

import pytest

from export_hooks.r2 import R2CredentialsError, R2Hook, R2WriteError
from faults_support import world_fixture  # noqa: F401 - provides the `world` fixture
from local_stack.services import S3_KEY_ID, S3_SECRET


def puts_per_key(proxy) -> Counter:
    return Counter(seen.key for seen in proxy.requests("PUT"))


def test_slowdown_and_internal_errors_are_retried_and_the_export_completes(world):
    slowdown = world.proxy.fail(503, "SlowDown", key_prefix="statistic-exports/shop_a/1/1001/", times=2)
    internal = world.proxy.fail(500, "InternalError", key_prefix="shop_a/products/1/media/", times=1)

    world.run()

    assert (slowdown.applied, internal.applied) == (2, 1)
    assert sum(puts_per_key(world.proxy).values()) == 21 + 3  # each failed PUT was sent once more
    assert world.state() == world.expected


def test_a_read_timeout_and_a_dropped_connection_are_retried(world):
    stalled = world.proxy.delay(30.0, key_prefix="statistic-exports/shop_a/3/")  # read_timeout is 1 s
    dropped = world.proxy.drop(key_prefix="shop_a/products/4/")

    started = time.monotonic()
    world.run()

    assert time.monotonic() - started < 15  # the client gave up on the stalled PUT and sent it again
    assert (stalled.applied, dropped.applied) == (1, 1)
    answered = Counter(seen.key for seen in world.proxy.requests("PUT") if seen.status == 200)
    assert set(answered) == set(world.expected.objects)
    assert world.state() == world.expected


def test_exhausted_retries_fail_the_batch_naming_the_key_and_the_retry_converges(world):
    key = "statistic-exports/shop_a/2/2001/20261121.json"
    world.proxy.fail(503, "SlowDown", key_prefix=key, times=None)

    with pytest.raises(R2WriteError) as failure:
        world.run()

    message = str(failure.value)
    assert key in message and world.bucket in message and "SlowDown" in message and "3 attempt" in message
    assert puts_per_key(world.proxy)[key] == 3  # max_attempts from the connection's config_kwargs
    world.proxy.clear()
    world.run()
    assert world.state() == world.expected


def test_config_kwargs_from_the_connection_apply_but_never_the_checksum_modes_r2_rejects(connections, monkeypatch):
    extra = {"read_timeout": 7, "request_checksum_calculation": "when_supported", "max_pool_connections": 99}
    conn = json.loads(os.environ["AIRFLOW_CONN_R2_DEFAULT"])
    conn["extra"]["config_kwargs"] = extra
    monkeypatch.setenv("AIRFLOW_CONN_R2_DEFAULT", json.dumps(conn))

    config = R2Hook(max_pool_connections=3).client.meta.config

    # The extra's read_timeout wins; the hook's defaults fill the rest (max_attempts 5 = 6 tries in all).
    assert (config.read_timeout, config.connect_timeout) == (7, 10)
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}
    assert (config.request_checksum_calculation, config.response_checksum_validation) == ("when_required",) * 2
    assert config.max_pool_connections == 3  # sized to the thread pool using it


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch"])
def test_bad_credentials_fail_at_once_without_a_retry_storm(world, monkeypatch, code):
    wrong_key_id, wrong_secret = "AKIAWRONGKEYID000000", "wrong-secret-0123456789abcdef"
    conn = world.env["AIRFLOW_CONN_R2_DEFAULT"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_R2_DEFAULT", conn.replace(S3_KEY_ID, wrong_key_id).replace(S3_SECRET, wrong_secret)
    )
    world.proxy.reject_access_key(wrong_key_id, code)
    # 4 writes in flight per event loop: the files' (16) and the image copies' (4) loops, 20 objects in all.
    monkeypatch.setenv("STATISTICS_EXPORT_STORE_IN_FLIGHT", "4")

    with pytest.raises(R2CredentialsError) as failure:
        world.run()

    message = str(failure.value)
    assert world.bucket in message and "'r2_default'" in message and code in message
    logged = "".join(traceback.format_exception(failure.value))  # with the botocore error it was raised from
    assert wrong_key_id not in logged and wrong_secret not in logged
    tries = puts_per_key(world.proxy)
    # One try per object already in flight (at most 4 on each loop), none repeated; every later write was never
    # sent.
    assert 1 <= sum(tries.values()) <= 8 and set(tries.values()) == {1}
    assert world.keys() == set()

    monkeypatch.setenv("AIRFLOW_CONN_R2_DEFAULT", conn)
    world.run()
    assert world.state() == world.expected


def test_a_batch_cut_between_uploads_fails_and_its_retry_leaves_exactly_the_expected_objects(world):
    cut = world.proxy.fail(400, "InvalidRequest", skip=7, times=None)  # every PUT after the 7th is refused

    with pytest.raises(R2WriteError) as failure:
        world.run()

    message = str(failure.value)
    assert "InvalidRequest" in message and world.bucket in message
    assert any(f"'{key}'" in message for key in world.expected.objects)  # the object that could not be written
    assert cut.applied >= 1 and len(world.keys()) == 7
    world.proxy.clear()
    world.run()
    assert world.keys() == set(world.expected.objects)
    assert world.state() == world.expected
