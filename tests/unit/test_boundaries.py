"""Each concern has one home: these scans fail when a module reaches past its boundary."""

import ast
import inspect
import re
from pathlib import Path

import pytest

from export_hooks.r2 import R2Hook
from include.statistics_export.protocols import ObjectStore

REPO = Path(__file__).resolve().parents[2]
LOGIC = REPO / "include" / "statistics_export"
TASK_LAYER = LOGIC / "tasks"
HOOKS = REPO / "plugins" / "export_hooks"
PRODUCT = sorted([*LOGIC.rglob("*.py"), *(REPO / "plugins").rglob("*.py"), *(REPO / "dags").glob("*.py")])
# The logic: everything of the package but the task layer and the connections it opens.
PLAIN_LOGIC = sorted(p for p in LOGIC.rglob("*.py") if TASK_LAYER not in p.parents and p.name != "connections.py")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def code_strings(path: Path) -> list[tuple[int, str]]:
    """Return the string constants of a module that are not docstrings, with their line."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def offenders(paths, allowed: set[str], found) -> list[str]:
    return [f"{p.relative_to(REPO)}:{line}" for p in paths if p.name not in allowed for line in found(p)]


def test_only_the_task_layer_and_the_hooks_import_airflow_and_only_the_task_layer_opens_hooks():
    # The plain logic may build on the hooks' error bases (export_hooks.errors) and the image origin rules, which
    # the settings parse with (pure functions, no client), nothing else of theirs.
    pure = {"export_hooks.errors", "export_hooks.image_origins"}

    def airflow_imports(path):
        return [m for m in imported_modules(path) if m.split(".")[0] in ("airflow", "export_hooks") and m not in pure]

    assert offenders(PLAIN_LOGIC, set(), airflow_imports) == []


def test_imports_point_from_the_logic_to_the_hooks_never_back():
    def logic_imports(path):
        return [m for m in imported_modules(path) if m.split(".")[0] == "include"]

    assert offenders(sorted(HOOKS.rglob("*.py")), set(), logic_imports) == []


def test_only_the_dag_and_the_page_import_the_task_layer():
    page = REPO / "plugins" / "statistics_ui"

    def task_imports(path):
        return [m for m in imported_modules(path) if m.startswith("include.statistics_export.tasks")]

    others = [p for p in PRODUCT if TASK_LAYER not in p.parents and page not in p.parents and p.parent != REPO / "dags"]
    assert offenders(others, set(), task_imports) == []
    # The DAG imports the package's task layer as a whole, never reaching into its modules.
    dag_imports = imported_modules(REPO / "dags" / "product_statistics_export.py")
    assert not [m for m in dag_imports if m.startswith("include.statistics_export.tasks.")]


def test_bucket_prefixes_are_written_only_in_the_keys_module():
    def prefixes(path):
        return [line for line, text in code_strings(path) if "statistic-exports" in text or "_staging/" in text]

    assert offenders(PRODUCT, {"keys.py"}, prefixes) == []


def test_time_is_read_only_in_the_utc_module():
    def clocks(path):
        tree = ast.parse(path.read_text())
        return [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr in ("now", "utcnow", "today", "timezone")
            and isinstance(node.value, ast.Name)
            and node.value.id in ("datetime", "date")
        ] + [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module == "datetime"
            and any(alias.name == "timezone" for alias in node.names)
        ]

    assert offenders(PRODUCT, {"utc.py"}, clocks) == []


def test_airflow_fail_exception_is_raised_in_one_place():
    def raises(path):
        tree = ast.parse(path.read_text())
        return [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Raise) and "AirflowFailException" in ast.unparse(node.exc or ast.Constant(None))
        ]

    found = [f"{p.relative_to(REPO)}:{line}" for p in PRODUCT for line in raises(p)]
    assert len(found) == 1 and found[0].startswith("include/statistics_export/tasks/runtime.py:")


def test_shopify_requests_are_retried_in_one_loop_and_pages_halved_in_one_pager():
    # tenacity for the Admin API and the token endpoint only in shopify_retry (shopify_bulk: the signed download).
    def tenacity_imports(path):
        return [m for m in imported_modules(path) if m.split(".")[0] == "tenacity"]

    def cost_refusals_caught(path):
        tree = ast.parse(path.read_text())
        return [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.ExceptHandler) and "ShopifyQueryCostError" in ast.unparse(node.type or ast.Pass())
        ]

    assert offenders(sorted(HOOKS.glob("shopify*.py")), {"shopify_retry.py", "shopify_bulk.py"}, tenacity_imports) == []
    assert offenders(PRODUCT, {"shopify_pager.py"}, cost_refusals_caught) == []


@pytest.mark.parametrize("name", [n for n in dir(ObjectStore) if not n.startswith("_")])
def test_the_r2_hook_offers_everything_the_object_store_protocol_states(name):
    wanted = inspect.signature(getattr(ObjectStore, name))
    offered = inspect.signature(getattr(R2Hook, name))
    assert list(offered.parameters) == list(wanted.parameters)


def test_the_logic_never_reaches_into_a_client():
    def reaches(path):
        return [line for line, text in enumerate(path.read_text().splitlines(), 1) if ".client." in text]

    assert offenders(sorted(LOGIC.rglob("*.py")), set(), reaches) == []


def test_the_statistics_page_never_imports_the_task_bodies_nor_names_the_exports_connections():
    # The page reads with its own connections; only page_connections.py names the export's, as the fallback.
    page = sorted((REPO / "plugins" / "statistics_ui").rglob("*.py")) + [REPO / "plugins" / "statistics_ui_plugin.py"]

    def task_imports(path):
        return [m for m in imported_modules(path) if m == "include.statistics_export.tasks"]

    def export_connections(path):
        return [line for line, text in code_strings(path) if text in ("app_db", "r2_default")]

    assert offenders(page, set(), task_imports) == []
    assert offenders(page, {"page_connections.py"}, export_connections) == []


PIPELINE = LOGIC / "pipeline"
# The stages in the order a row flows through them; the clock is the run's, lent to the stages it times.
STAGES = ["clock", "read", "enrich", "render", "publish", "run"]


def test_the_pipeline_has_one_module_a_stage():
    assert sorted(p.stem for p in PIPELINE.glob("*.py") if p.stem != "__init__") == sorted(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_the_stages_before_it(stage):
    earlier = STAGES[: STAGES.index(stage)]
    imported = [
        m.rsplit(".", 1)[1]
        for m in imported_modules(PIPELINE / f"{stage}.py")
        if m.startswith("include.statistics_export.pipeline.")
    ]
    assert [m for m in imported if m not in earlier] == []


def test_nothing_outside_the_pipeline_imports_a_stage_but_the_task_layer_and_the_stage_after_it():
    # The task layer hands a stage what it reads; the pipeline's own stages are checked above.
    outside = [p for p in PLAIN_LOGIC if PIPELINE not in p.parents]

    def stage_imports(path):
        return [m for m in imported_modules(path) if m.startswith("include.statistics_export.pipeline")]

    assert offenders(outside, set(), stage_imports) == []


def names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | {
        node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
    }


def test_only_the_read_stage_talks_to_shopify():
    shopify = {"Catalog", "ShopCatalog", "iter_products", "iter_product_summaries", "shop_catalog_pages"}
    talking = {p.stem for p in PIPELINE.glob("*.py") if names_used(p) & shopify}
    assert talking == {"read"}


def test_only_the_publish_stage_writes_the_days_outputs():
    # Files, Parquet parts and rows, under the day's fence. The enrich stage stores image copies (backups, kept
    # across days, not the day's outputs): the one other PUT of the pipeline.
    writes = {"write_shops_rows", "write_parquet_part", "export_key", "day_fence"}
    writing = {p.stem for p in PIPELINE.glob("*.py") if names_used(p) & writes}
    assert writing == {"publish"}
    putting = {
        p.stem for p in PIPELINE.glob("*.py") if names_used(p) & {"put_object", "start_puts", "put_object_async"}
    }
    assert putting == {"enrich", "publish"}


def test_only_the_redaction_deletes_a_shops_outputs_and_only_with_its_own_role():
    # The stated exception to "only the publish stage writes the day's outputs": the shop redaction (shop/redact)
    # erases a shop's files, rows and report entries, after recording it and under the shop's fence
    # (shop_fence), so no publication of the shop is in flight; the retention period erases expired days under
    # each day's fence, with the same role. Beside them only the run's staging cleanup and a Parquet partition's
    # stale parts delete objects, and no other module deletes a row.
    deleting_objects = {p.relative_to(LOGIC).as_posix() for p in PLAIN_LOGIC if "delete_keys" in names_used(p)}
    assert deleting_objects == {"staging.py", "parquet.py", "redaction.py", "retention.py"}

    def row_deletes(path):
        return [line for line, text in code_strings(path) if re.search(r"\bDELETE\s+FROM\b", text, re.I)]

    assert offenders(PRODUCT, {"redaction.py", "retention.py"}, row_deletes) == []
    # Their role (app_db_redaction, the one with DELETE) is opened by their task bodies only.
    opening = {p.relative_to(REPO).as_posix() for p in PRODUCT if "redaction_db" in names_used(p)}
    assert opening == {"include/statistics_export/tasks/redaction.py", "include/statistics_export/tasks/retention.py"}


def test_no_module_of_the_product_is_over_400_lines():
    assert [f"{p.relative_to(REPO)}: {n}" for p in PRODUCT if (n := len(p.read_text().splitlines())) > 400] == []


def test_the_reports_keys_are_spelled_only_in_its_schema():
    # Keys of the day's report no other document shares (pixelHealth has a perShop of its own; the asset's extra a
    # failedShops), in today's spelling and the previous code's.
    keys = {
        "failedTasks", "shopSizes", "filesUnchanged", "imagesBackedUp", "imagesFailed", "skippedProducts",
        "catalogRead", "catalogNote", "revenueCapNote", "catalog_read", "catalog_note", "revenue_cap_note",
        "missing_products",
    }  # fmt: skip

    def spelled(path):
        return [line for line, text in code_strings(path) if text in keys]

    assert offenders(PRODUCT, {"report_schema.py"}, spelled) == []


def test_no_logic_module_names_a_task_of_the_dag():
    from include.statistics_export.tasks import task_ids

    names = {value for name, value in vars(task_ids).items() if name.isupper() and isinstance(value, str)}
    ids = names - {task_ids.SHOP_GROUP}  # "shop" alone is a word, not a task
    ids |= {task_ids.in_shop_group(task_id) for task_id in ids}

    def named(path):
        return [line for line, text in code_strings(path) if text in ids]

    assert offenders(PLAIN_LOGIC, set(), named) == []
