"""The Statistics exports page in a real headless Chromium (Debian's package, driven by Playwright) against the
real scheduler, dag-processor and api-server: a day with one failed shop, signed in through Airflow's login,
opened from the nav, retried after fixing the token, turning green, and a file downloaded through its link.

Screenshots go to a folder the test prints (docs/ holds a copy of the overview and of the day page).
"""

from __future__ import annotations

import secrets
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from helpers import add_event, product, register_shop
from include.statistics_export.keys import export_key
from include.statistics_export.utc import midnight, today
from local_stack.airflow_stack import airflow_stack, metadata_database, wait_until
from local_stack.services import Endpoints, create_bucket, scratch_database
from shopify_sandbox import ShopifySandbox

pytestmark = pytest.mark.scheduler

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DAY = today() - timedelta(days=1)
USER = "operator"
FRAME = 'iframe[title="Statistics exports"]'


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium installed (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def test_an_operator_sees_a_failed_shop_retries_it_and_downloads_a_file(
    browser, pg_server_url, s3_endpoint, s3, tmp_path_factory
):
    shots = tmp_path_factory.mktemp("statistics-ui-screenshots")
    print(f"screenshots: {shots}")
    password = secrets.token_urlsafe(12)
    with scratch_database(pg_server_url, prefix="browser") as app_db_url, ShopifySandbox() as sandbox:
        bucket = f"browser-{uuid.uuid4().hex[:12]}"
        create_bucket(s3_endpoint, bucket)
        with psycopg.connect(app_db_url) as db:
            register_shop(db, sandbox, "shop_alpha", [product(n, variants=2) for n in range(1, 3)])
            gamma = register_shop(db, sandbox, "shop_gamma", [product(20)])
            add_event(db, "shop_alpha", "1001", "IMPRESSION", midnight(DAY) + timedelta(hours=12))
            sandbox.revoke_token(gamma.domain)
            endpoints = Endpoints(app_db_url, s3_endpoint, bucket, sandbox.endpoint_template)
            extra_env = {"STATISTICS_EXPORT_START_DATE": DAY.isoformat()}
            home = tmp_path_factory.mktemp("browser") / "airflow-home"
            with (
                metadata_database(pg_server_url) as metadata_url,
                airflow_stack(endpoints, home, metadata_url, extra_env=extra_env, user=(USER, password)) as stack,
            ):
                stack.unpause()  # catchup from yesterday: the scheduled run of DAY (named after DAY + 1)
                run = wait_until(lambda: next(iter(stack.dag_runs()), None), 120, "the scheduled run")
                assert stack.wait_for_run(run["dag_run_id"], timeout=300)["state"] == "failed"

                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)
                # 2. Sign in through Airflow's own login page, then open the page from the nav.
                page.goto(stack.api_url + "/")
                page.fill("input[name=username]", USER)
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                page.get_by_role("button", name="Browse").click()
                page.get_by_role("menuitem", name="Statistics exports").click()
                frame = page.frame_locator(FRAME)
                row = frame.locator(f'tr[data-day="{DAY.isoformat()}"]')
                row.wait_for()
                assert "failed" in row.inner_text()
                page.screenshot(path=str(shots / "overview.png"), full_page=True)

                # 3. The day: the failed shop and its reason.
                row.get_by_role("link", name=DAY.isoformat()).click()
                gamma_row = frame.locator('tr[data-shop="shop_gamma"]')
                gamma_row.wait_for()
                assert "failed" in gamma_row.inner_text()
                assert "rejected the access token" in gamma_row.inner_text()
                assert gamma.access_token not in page.content()
                page.screenshot(path=str(shots / "day-failed.png"), full_page=True)

                # 4. The token is fixed (the merchant reinstalled: a new token in Shopify and in the session).
                fixed = "shpat_fixed_" + secrets.token_hex(8)
                sandbox.set_token(gamma.domain, fixed)
                db.execute('UPDATE "Session" SET "accessToken" = %s WHERE "shopId" = %s', (fixed, "shop_gamma"))
                db.commit()
                gamma_row.get_by_role("button", name="Retry").click()
                frame.locator(".notice").wait_for()
                assert "Retrying shop_gamma" in frame.locator(".notice").inner_text()

                # 5. The shop's tasks run again; the page shows the day green (reloaded until then).
                def green():
                    # The page's own frame (the UI's address bar mirrors its path under /plugin/...).
                    target = next(
                        f for f in page.frames if f != page.main_frame and "/statistics-exports/day/" in f.url
                    )
                    target.goto(target.url)
                    status = target.locator("#day-status")
                    return "ok" in (status.get_attribute("class") or "").split() and status

                wait_until(green, 300, f"the day to turn green\n{stack.log_tails()}", every=3)
                assert stack.wait_for_run(run["dag_run_id"], timeout=60)["state"] == "success"
                assert "failed" not in frame.locator('tr[data-shop="shop_gamma"]').inner_text()
                page.screenshot(path=str(shots / "day.png"), full_page=True)

                # 6. A file through its link (signed at click time) equals the object in the bucket.
                frame.locator('tr[data-shop="shop_gamma"]').get_by_role("link", name="files").click()
                link = frame.get_by_role("link", name="csv").first
                href = link.get_attribute("href")
                downloaded = page.request.get(stack.api_url.rstrip("/") + href.split(stack.api_url)[-1])
                assert downloaded.ok, downloaded.status
                key = export_key("shop_gamma", "20", "20001", DAY, "csv")
                assert downloaded.body() == s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                page.screenshot(path=str(shots / "files.png"), full_page=True)
    print(f"screenshots: {sorted(p.name for p in Path(shots).iterdir())} in {shots}")
