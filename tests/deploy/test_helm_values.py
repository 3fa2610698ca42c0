"""Static checks of deploy/helm/values.yaml, deploy/helm/export-migrations-job.yaml and docs/helm.md.

No Kubernetes runs here: the files are parsed, every key the values set is looked up in the chart's documented
parameters, and what they name (image, settings, policy, connections, Secrets) is compared with the project's.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from include import airflow_local_settings
from include.statistics_export import connections
from include.statistics_export import settings as settings_module
from include.statistics_export.tasks import alert_channels
from local_stack.services import SECRET_MASK_ADAPTER
from statistics_ui import page_connections

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "helm" / "values.yaml"
MIGRATIONS_JOB = REPO / "deploy" / "helm" / "export-migrations-job.yaml"
HELM_DOC = REPO / "docs" / "helm.md"

# The keys deploy/helm/values.yaml relies on, named exactly as the Parameters reference of the official chart
# apache-airflow/airflow 1.22.0 lists them: https://airflow.apache.org/docs/helm-chart/1.22.0/parameters-ref.html
# (the page is generated from the chart's values.schema.json). What lies under one of them is free-form: airflow.cfg
# sections under `config`, EnvVar items under `env` and `apiServer.env`, a templated string in `extraEnvFrom` and
# `airflowLocalSettings`.
DOCUMENTED_KEYS = frozenset(
    {
        "airflowVersion",
        "images.airflow.repository",
        "images.airflow.tag",
        "executor",
        "config",
        "airflowLocalSettings",
        "env",
        "extraEnvFrom",
        "apiServer.env",
    }
)
MIGRATE_MODULE = "include.statistics_export.migrate"


def load_values() -> dict:
    """Parse deploy/helm/values.yaml."""
    return yaml.safe_load(VALUES.read_text())


def load_job() -> dict:
    """Parse deploy/helm/export-migrations-job.yaml."""
    return yaml.safe_load(MIGRATIONS_JOB.read_text())


def read(name: str) -> str:
    """Return a repository file as text."""
    return (REPO / name).read_text()


def conn_env(conn_id: str) -> str:
    """Return the environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def set_key_paths(values: dict, documented: frozenset[str] = DOCUMENTED_KEYS, prefix: str = "") -> set[str]:
    """Return the dotted path of every key the values set, stopping at a documented key (its content is free-form)."""
    paths = set()
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if path in documented or not isinstance(value, dict):
            paths.add(path)
        else:
            paths |= set_key_paths(value, documented, path)
    return paths


def key_problems(values: dict, documented: frozenset[str] = DOCUMENTED_KEYS) -> list[str]:
    """List the keys the values set that the chart does not document, and documented keys the values no longer use."""
    paths = set_key_paths(values, documented)
    problems = [
        f"{path}: not among the chart's documented keys (DOCUMENTED_KEYS)" for path in sorted(paths - documented)
    ]
    problems += [f"{key}: listed as relied on, but the values do not set it" for key in sorted(documented - paths)]
    return problems


def created_secrets(markdown: str) -> dict[str, set[str]]:
    """Return {Secret name: its keys} of every `kubectl create secret generic` command of a page."""
    joined = markdown.replace("\\\n", " ")
    commands = re.finditer(r"kubectl(?: -n \S+)? create secret generic (\S+)([^\n]*)", joined)
    return {match[1]: set(re.findall(r"--from-literal=([A-Za-z0-9_]+)=", match[2])) for match in commands}


def env_from_secret_names(values: dict) -> set[str]:
    """Return the Secrets the values' extraEnvFrom string hands whole to every Airflow container."""
    return {item["secretRef"]["name"] for item in yaml.safe_load(values["extraEnvFrom"]) if "secretRef" in item}


def secret_key_refs(env: list[dict]) -> dict[str, tuple[str, str]]:
    """Return {variable: (Secret, key)} of the EnvVar items read from a Secret."""
    refs = {}
    for item in env:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[item["name"]] = (ref["name"], ref["key"])
    return refs


def job_container(job: dict) -> dict:
    """Return the migrations Job's one container."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def secret_problems(values: dict, job: dict, markdown: str) -> list[str]:
    """List the Secrets (and keys) the values or the Job read that docs/helm.md does not tell the operator to create."""
    created = created_secrets(markdown)
    problems = [
        f"extraEnvFrom reads Secret {name}, never created" for name in env_from_secret_names(values) - set(created)
    ]
    refs = {**secret_key_refs(values["apiServer"]["env"]), **secret_key_refs(job_container(job)["env"])}
    for variable, (secret, key) in sorted(refs.items()):
        if key not in created.get(secret, set()):
            problems.append(f"{variable} reads key {key} of Secret {secret}, which docs/helm.md does not create")
    return problems


def airflow_pin() -> str:
    """Return the apache-airflow version requirements.txt pins."""
    return re.search(r"^apache-airflow==(\S+)$", read("requirements.txt"), re.M)[1]


def test_every_key_the_values_set_is_documented_by_the_chart():
    assert key_problems(load_values()) == []


def test_the_image_is_the_production_image_of_the_pinned_airflow():
    values, pin = load_values(), airflow_pin()
    image_name = re.search(r"docker build -t ([^:\s]+):", read("README.md"))[1]
    assert image_name == "statistics-export-airflow"
    assert values["images"]["airflow"]["repository"].rsplit("/", 1)[-1] == image_name
    # The chart decides Airflow 3's components from airflowVersion; the image is built FROM that Airflow.
    assert values["airflowVersion"] == pin
    assert values["images"]["airflow"]["tag"] == pin
    assert f"FROM apache/airflow:{pin}-" in read("Dockerfile")


def test_the_executor_is_the_one_the_compose_stack_runs():
    compose = yaml.safe_load(read("docker-compose.yaml"))
    assert load_values()["executor"] == compose["x-airflow-common"]["environment"]["AIRFLOW__CORE__EXECUTOR"]


def test_the_config_sets_base_url_and_the_projects_secret_mask_adapter():
    config = load_values()["config"]
    assert config["logging"]["secret_mask_adapter"] == SECRET_MASK_ADAPTER
    dockerfile_value = re.search(r"^ENV AIRFLOW__LOGGING__SECRET_MASK_ADAPTER=(\S+)$", read("Dockerfile"), re.M)[1]
    assert dockerfile_value == SECRET_MASK_ADAPTER
    base_url = urlsplit(config["api"]["base_url"])
    assert (base_url.scheme, bool(base_url.netloc)) == ("https", True), "the page's Origin check needs the full address"


def test_airflow_local_settings_reexports_the_repositorys_cluster_policy(monkeypatch):
    source = load_values()["airflowLocalSettings"]
    assert "{{" not in source, "the chart templates this string: braces would be Helm's, not Python's"
    monkeypatch.syspath_prepend(str(REPO))  # the image's PYTHONPATH holds /opt/airflow, the repository's root
    namespace: dict = {"__name__": "airflow_local_settings"}
    exec(compile(source, "airflow_local_settings.py", "exec"), namespace)
    assert namespace["task_policy"] is airflow_local_settings.task_policy
    assert namespace["__all__"] == ["task_policy"]  # what Airflow registers from the file: the policy, nothing else


def test_every_variable_is_a_setting_of_the_package_and_the_start_date_is_left_to_the_operator():
    env = {item["name"]: item["value"] for item in load_values()["env"]}
    known = {setting.env for setting in settings_module.ALL}
    required = {setting.env for setting in settings_module.ALL if setting.required}
    assert set(env) <= known, f"not settings of the package: {sorted(set(env) - known)}"
    assert required <= set(env), f"required settings the values do not name: {sorted(required - set(env))}"
    # Blank: no first day is chosen for the operator, so an unedited file loads no DAG rather than backfilling.
    assert env[settings_module.START_DATE.env] == ""
    assert settings_module.START_DATE.read(env) is None


def test_the_secrets_the_values_and_the_job_read_are_the_ones_docs_tell_the_operator_to_create():
    values, markdown = load_values(), HELM_DOC.read_text()
    assert env_from_secret_names(values) == {"statistics-export-connections"}
    assert secret_problems(values, load_job(), markdown) == []


def test_every_connection_the_export_needs_is_in_the_secret_every_airflow_container_reads():
    needed = (
        connections.APP_DB_CONN_ID,
        connections.R2Hook.default_conn_name,
        connections.ShopifyHook.default_conn_name,
    )
    assert needed == ("app_db", "r2_default", "shopify_default")
    markdown = HELM_DOC.read_text()
    (secret,) = env_from_secret_names(load_values())
    assert {conn_env(conn_id) for conn_id in needed} <= created_secrets(markdown)[secret]
    optional = (alert_channels.SMTP_CONN_ID, alert_channels.SLACK_CONN_ID)
    named = (*needed, *optional, page_connections.PAGE_DB_CONN_ID, page_connections.PAGE_R2_CONN_ID)
    assert [conn_id for conn_id in named if not re.search(rf"\b{conn_id}\b", markdown)] == []
    assert all(conn_env(conn_id) in markdown for conn_id in optional)


def test_the_page_connections_reach_the_api_server_alone():
    values, markdown = load_values(), HELM_DOC.read_text()
    page = {conn_env(page_connections.PAGE_DB_CONN_ID), conn_env(page_connections.PAGE_R2_CONN_ID)}
    refs = secret_key_refs(values["apiServer"]["env"])
    assert set(refs) == page
    (page_secret,) = {secret for secret, _ in refs.values()}
    assert page_secret not in env_from_secret_names(values)
    everyone = set().union(*(created_secrets(markdown)[name] for name in env_from_secret_names(values)))
    assert not page & (everyone | {item["name"] for item in values["env"]})


def test_the_migrations_job_runs_the_projects_migrate_module_from_the_release_image():
    values, container = load_values(), job_container(load_job())
    assert importlib.util.find_spec(MIGRATE_MODULE) is not None
    assert container["command"] == ["python", "-m", MIGRATE_MODULE, "--url", "$(MIGRATE_URL)"]
    assert "MIGRATE_URL" in {item["name"] for item in container["env"]}  # Kubernetes expands $(…) from env only
    image = f"{values['images']['airflow']['repository']}:{values['images']['airflow']['tag']}"
    assert container["image"] == image
    assert f'sed "s|{image}|$IMAGE|"' in HELM_DOC.read_text(), "the page substitutes the build's image in the Job"


def test_the_pool_the_page_creates_is_the_readmes_and_the_policys():
    command = re.compile(r'airflow pools set (\S+) (\d+) "([^"]+)"')
    readme_pool = command.search(read("README.md")).groups()
    assert command.search(HELM_DOC.read_text()).groups() == readme_pool
    assert readme_pool[0] == airflow_local_settings.SHOPIFY_POOL


# -- each check catches what it is for ------------------------------------------------------------------


def test_an_undocumented_or_unused_key_is_caught():
    values = load_values()
    values["apiServer"]["connections"] = {"page": "statistics-export-page-connections"}
    values["images"]["airflow"]["registry"] = "registry.example.com"
    del values["executor"]
    assert key_problems(values) == [
        "apiServer.connections.page: not among the chart's documented keys (DOCUMENTED_KEYS)",
        "images.airflow.registry: not among the chart's documented keys (DOCUMENTED_KEYS)",
        "executor: listed as relied on, but the values do not set it",
    ]


def test_a_secret_or_key_the_docs_do_not_create_is_caught():
    values, job, markdown = load_values(), load_job(), HELM_DOC.read_text()
    renamed = copy.deepcopy(values)
    renamed["extraEnvFrom"] = "- secretRef:\n    name: other-connections"
    assert secret_problems(renamed, job, markdown) == ["extraEnvFrom reads Secret other-connections, never created"]
    without_key = markdown.replace("--from-literal=AIRFLOW_CONN_R2_PAGE=", "--from-literal=R2_PAGE=")
    assert secret_problems(values, job, without_key) == [
        "AIRFLOW_CONN_R2_PAGE reads key AIRFLOW_CONN_R2_PAGE of Secret statistics-export-page-connections, "
        "which docs/helm.md does not create"
    ]
