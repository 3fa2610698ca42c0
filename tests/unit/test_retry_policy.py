"""The one retry policy's figures, held to the constants each layer really uses."""

from export_hooks import image_cdn, shopify_retry
from export_hooks.shopify_transport import EXTRA_DEFAULTS
from include.statistics_export.tasks import retry_policy
from include.statistics_export.tasks.retry_policy import AIRFLOW_RETRIES, UNIT_SHOP_ATTEMPTS, worst_case_tries


def test_a_shopify_query_that_keeps_failing_is_tried_72_times_at_most_and_a_bug_3():
    assert EXTRA_DEFAULTS["max_attempts"] == shopify_retry.SHOPIFY_ATTEMPTS == 8
    assert (UNIT_SHOP_ATTEMPTS, AIRFLOW_RETRIES) == (3, 2)
    assert worst_case_tries() == 72
    assert worst_case_tries(in_unit=False) == 24
    assert worst_case_tries(bug=True) == 3


def test_the_policy_states_the_figures_its_layers_use():
    stated = retry_policy.__doc__ or ""
    for figure in (
        f"``SHOPIFY_ATTEMPTS`` ({shopify_retry.SHOPIFY_ATTEMPTS})",
        f"``BULK_RESULT_ATTEMPTS`` ({shopify_retry.BULK_RESULT_ATTEMPTS})",
        f"``DOWNLOAD_ATTEMPTS`` ({image_cdn.DOWNLOAD_ATTEMPTS})",
        f"``UNIT_SHOP_ATTEMPTS`` ({UNIT_SHOP_ATTEMPTS})",
        f"``AIRFLOW_RETRIES`` + 1 ({AIRFLOW_RETRIES + 1})",
        f"= {worst_case_tries()} tries",
    ):
        assert figure in stated
