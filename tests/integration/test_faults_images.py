"""Image CDN faults: none fails the export; each is reported with its media id and reason and retried next run."""

import json
import tracemalloc

import pytest

from export_hooks.errors import ImageDownloadError
from export_hooks.image_cdn import ImageClient, is_image
from faults_support import DOMAIN, SHOP, world_fixture  # noqa: F401 - provides the `world` fixture
from helpers import download_image
from include.statistics_export import settings
from include.statistics_export.pipeline import publish
from shopify_sandbox.faults import HTML_ERROR_PAGE
from shopify_sandbox.images import image_bytes

MAX_BYTES_ENV, TIMEOUT_ENV = settings.IMAGE_MAX_BYTES.env, settings.IMAGE_TIMEOUT.env

FAILED_MEDIA = 102  # variant 1002's own image, and product 1's second image
CAP = 100_000


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        pytest.param({"status": 404}, "HTTP 404", id="404"),
        pytest.param({"status": 403}, "HTTP 403", id="403"),
        pytest.param({"stall_seconds": 5.0}, "timed out after 0.3 s", id="stall-past-the-timeout"),
        pytest.param({"html": True}, "text/html, not an image", id="html-page"),
        pytest.param({"size_bytes": CAP + 1}, f"over the {CAP}-byte cap", id="over-the-cap"),
        pytest.param({"size_bytes": 50 * CAP, "chunked": True}, f"over the {CAP}-byte cap", id="over-the-cap-chunked"),
    ],
)
def test_an_image_fault_does_not_fail_the_export_and_the_next_run_backs_it_up(
    world, sandbox, monkeypatch, fault, reason
):
    monkeypatch.setenv(TIMEOUT_ENV, "0.3")
    monkeypatch.setenv(MAX_BYTES_ENV, str(CAP))
    sandbox.image_fault(DOMAIN, FAILED_MEDIA, **fault)

    (result,) = world.run()

    assert (result.images_backed_up, result.images_failed) == (3, 1)
    (failure,) = result.image_failures
    assert failure.startswith(f"shop {SHOP} product 1 image gid://shopify/MediaImage/{FAILED_MEDIA}: ")
    assert reason in failure
    state = world.state()
    assert f"{SHOP}/products/1/media/{FAILED_MEDIA}.jpg" not in state.objects
    own = json.loads(state.objects[f"statistic-exports/{SHOP}/1/1002/20261121.json"])["variant"]["images"]
    assert [(i["mediaId"], i["r2Key"], i["r2Url"]) for i in own] == [
        (f"gid://shopify/MediaImage/{FAILED_MEDIA}", None, None)
    ]
    assert len(state.rows["ProductImageBackup"]) == 3  # nothing recorded for it: the next run tries again

    sandbox.image_fault(DOMAIN, FAILED_MEDIA)  # the CDN recovers
    (result,) = world.run()
    assert (result.images_backed_up, result.images_reused, result.image_failures) == (1, 3, [])
    assert world.state() == world.expected


def test_the_files_upload_while_an_image_is_still_downloading(world, sandbox):
    # The image copies are settled after the files' uploads have started: a slow image delays the batch by its
    # own download, not every file by it. Its copy is written last, and the export is as if it had been quick.
    sandbox.image_fault(DOMAIN, FAILED_MEDIA, stall_seconds=2.0)

    (result,) = world.run()

    assert (result.images_backed_up, result.images_failed) == (4, 0)
    puts = [seen.key for seen in world.proxy.requests("PUT")]
    slow = f"{SHOP}/products/1/media/{FAILED_MEDIA}.jpg"
    files = [n for n, key in enumerate(puts) if key.startswith(f"statistic-exports/{SHOP}/")]
    assert len(files) == 16 and max(files) < puts.index(slow)
    assert world.state() == world.expected


def test_a_batch_that_fails_ends_its_image_copies_before_raising(world, sandbox, monkeypatch):
    # The batch fails in its publication, after its image copies started and before it waits for them. The slow
    # image's copy has ended (its PUT is in) by the time the error is raised: nothing of a failed batch writes on.
    sandbox.image_fault(DOMAIN, FAILED_MEDIA, stall_seconds=2.0)

    def lost(*args, **kwargs):
        raise ConnectionError("the database went away")

    monkeypatch.setattr(publish, "shops_recorded_hashes", lost)
    with pytest.raises(ConnectionError, match="the database went away"):
        world.run()

    assert f"{SHOP}/products/1/media/{FAILED_MEDIA}.jpg" in [seen.key for seen in world.proxy.requests("PUT")]


def test_an_oversized_body_is_read_only_up_to_the_cap(world, sandbox):
    body_size, cap = 64 * 1024 * 1024, 1024 * 1024
    sandbox.image_fault(DOMAIN, FAILED_MEDIA, size_bytes=body_size, chunked=True)  # no Content-Length to go by
    url = f"{sandbox.base_url}/cdn/{DOMAIN}/{FAILED_MEDIA}/img2.jpeg"
    with ImageClient(1) as session:
        tracemalloc.start()
        try:
            with pytest.raises(ImageDownloadError, match=f"over the {cap}-byte cap"):
                download_image(session, url, max_bytes=cap, timeout=10)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * cap  # a 64 MB body never sat in memory


def test_a_body_must_be_an_image_whatever_its_content_type():
    assert is_image(image_bytes(7, "a.jpeg"), "image/jpeg")
    assert is_image(image_bytes(7, "a.png"), "image/png")
    assert not is_image(HTML_ERROR_PAGE.encode(), "image/jpeg")
    assert not is_image(b'{"errors": "Not Found"}', "image/png")
    assert is_image(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")
    assert not is_image(b"<html><svg/></html>", "image/jpeg")


def test_the_cap_and_timeout_default_to_20_mb_and_30_s_and_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(MAX_BYTES_ENV, raising=False)
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    limits = settings.load()
    assert (limits.image_max_bytes, limits.image_timeout) == (20 * 1024 * 1024, 30.0)
    monkeypatch.setenv(MAX_BYTES_ENV, "5000")
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    limits = settings.load()
    assert (limits.image_max_bytes, limits.image_timeout) == (5000, 2.5)
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=TIMEOUT_ENV):
        settings.load()
    monkeypatch.setenv(TIMEOUT_ENV, "0")
    with pytest.raises(ValueError, match=TIMEOUT_ENV):
        settings.load()
