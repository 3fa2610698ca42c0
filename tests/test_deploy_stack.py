"""Static checks of docker-compose.yaml, the Dockerfile and .env.example (no Docker engine runs here)."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from local_stack.services import Endpoints, connection_env

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
ONE_SHOT = ("airflow-init", "create-bucket", "demo-seed")
LONG_RUNNING = ("postgres", "redis", "s3", "shopify-sandbox", *(s for s in AIRFLOW_SERVICES if s not in ONE_SHOT))
# Edges the stack needs beyond "every Airflow service waits for postgres and redis".
REQUIRED_EDGES = {
    "airflow-worker": ("airflow-apiserver", "airflow-init", "s3", "create-bucket", "shopify-sandbox"),
    "airflow-apiserver": ("airflow-init",),
    "airflow-scheduler": ("airflow-init",),
    "airflow-dag-processor": ("airflow-init",),
    "airflow-triggerer": ("airflow-init",),
    "shopify-sandbox": ("demo-seed",),
    "demo-seed": ("postgres",),
    "create-bucket": ("s3",),
}
PROJECT_MOUNTS = ("dags", "plugins", "include", "logs")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|KEY_ID")
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_TOKEN = re.compile(r"\x00[A-Za-z0-9_]+\x00")
RUNTIME_MARKER = "# Local stand-ins and tests"
TEST_ONLY_PACKAGES = ("moto", "pgserver", "pytest")


def compose_text() -> str:
    """Return docker-compose.yaml as text."""
    return (REPO / "docker-compose.yaml").read_text()


def load_compose(text: str | None = None) -> dict:
    """Parse docker-compose.yaml (YAML merge keys resolved)."""
    return yaml.safe_load(compose_text() if text is None else text)


def env_example() -> dict[str, str]:
    """Parse .env.example into {name: value}, comments skipped."""
    lines = (REPO / ".env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def referenced_variables(text: str) -> list[re.Match]:
    """Return every ${...} reference of a compose text ($$ is Compose's escaped dollar, not a reference)."""
    return list(VARIABLE.finditer(text.replace("$$", "")))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Substitute ${VAR}, ${VAR:-default} and ${VAR:?error} as Compose does."""

    def one(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        value = env.get(name)
        if (not value) if op.startswith(":") else (value is None):
            if op.endswith("?"):
                raise ValueError(f"{name} is required: {arg}")
            return arg if op.endswith("-") else ""
        return value

    return VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: dict) -> dict[str, str]:
    """Return a service's environment as a dict, from either Compose form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: str(value) for name, value in env.items()}


def missing_services(compose: dict) -> list[str]:
    """List the services the stack needs but the file lacks."""
    needed = {*LONG_RUNNING, *ONE_SHOT}
    return sorted(needed - set(compose.get("services", {})))


def healthcheck_problems(compose: dict) -> list[str]:
    """List long-running services without a working health check."""
    problems = []
    for name in LONG_RUNNING:
        check = compose["services"].get(name, {}).get("healthcheck") or {}
        if check.get("disable") or not check.get("test") or check["test"] in (["NONE"], "NONE"):
            problems.append(f"{name} has no health check")
    return problems


def dependency_problems(compose: dict) -> list[str]:
    """List depends_on entries without the right condition, and missing required edges."""
    services, problems = compose["services"], []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on without conditions")
            continue
        for target, spec in depends.items():
            wanted = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            if target not in services or (spec or {}).get("condition") != wanted:
                problems.append(f"{name} -> {target}: want {wanted}, got {(spec or {}).get('condition')}")
    edges = {name: ("postgres", "redis") for name in AIRFLOW_SERVICES}
    for name, targets in REQUIRED_EDGES.items():
        edges[name] = (*edges.get(name, ()), *targets)
    for name, targets in edges.items():
        depends = services.get(name, {}).get("depends_on") or {}
        problems += [f"{name} does not wait for {target}" for target in targets if target not in depends]
    return problems


def mount_problems(compose: dict) -> list[str]:
    """List Airflow services that do not mount dags/, plugins/, include/ and logs/ into /opt/airflow."""
    problems = []
    for name in AIRFLOW_SERVICES:
        volumes = compose["services"][name].get("volumes") or []
        mounted = {tuple(v.split(":")[:2]) for v in volumes if isinstance(v, str)}
        problems += [f"{name} lacks ./{d}" for d in PROJECT_MOUNTS if (f"./{d}", f"/opt/airflow/{d}") not in mounted]
    return problems


def airflow_config_problems(compose: dict) -> list[str]:
    """List Airflow services whose env lacks the import path, the Celery executor or its Redis broker."""
    problems = []
    for name in AIRFLOW_SERVICES:
        env = environment(compose["services"][name])
        if "/opt/airflow" not in env.get("PYTHONPATH", "").split(":"):
            problems.append(f"{name}: PYTHONPATH lacks /opt/airflow")
        if env.get("AIRFLOW__CORE__EXECUTOR") != "CeleryExecutor":
            problems.append(f"{name}: executor is {env.get('AIRFLOW__CORE__EXECUTOR')}")
        if not env.get("AIRFLOW__CELERY__BROKER_URL", "").startswith("redis://redis:"):
            problems.append(f"{name}: broker is not the redis service")
        if not env.get("AIRFLOW__CELERY__RESULT_BACKEND", "").startswith("db+postgresql://"):
            problems.append(f"{name}: result backend is not postgres")
    worker = compose["services"]["airflow-worker"]
    if worker.get("command") != "celery worker" or "container_name" in worker or worker.get("ports"):
        problems.append("airflow-worker cannot be scaled: it needs `celery worker`, no container_name, no ports")
    return problems


def variable_problems(text: str, defined: dict[str, str]) -> list[str]:
    """List variables used but not in .env.example (and back), secrets with defaults, braces in defaults."""
    refs = referenced_variables(text)
    used = {m["name"] for m in refs}
    problems = [f"{v} is used but not in .env.example" for v in sorted(used - set(defined))]
    problems += [f"{v} is in .env.example but unused" for v in sorted(set(defined) - used)]
    for m in refs:
        if SECRET_NAME.search(m["name"]) and (m["op"] or "").endswith("-"):
            problems.append(f"secret {m['name']} has a default")
        if "{" in (m["arg"] or ""):
            problems.append(f"{m['name']}: Compose cuts a default at its first closing brace")
    problems += [f"secret {k} has a value in .env.example" for k, v in defined.items() if SECRET_NAME.search(k) and v]
    return problems


def secret_literal_problems(compose: dict) -> list[str]:
    """List secrets written as literals (or as variable defaults) instead of coming from variables."""
    holders = [v for k, v in compose.items() if k.startswith("x-")] + list(compose["services"].values())
    problems = []
    for holder in holders:
        for key, value in environment(holder).items():
            # A reference without a default becomes a token; anything else in a secret's place is a literal.
            tokens = VARIABLE.sub(lambda m: m[0] if (m["op"] or "").endswith("-") else f"\x00{m['name']}\x00", value)
            candidates = [tokens] if SECRET_NAME.search(key) else []
            if "://" in tokens:
                candidates += re.findall(r":([^:@/]*)@", tokens)  # a URL's password
            if key.startswith("AIRFLOW_CONN_"):
                candidates += re.findall(r'"password": "([^"]*)"', tokens)
            problems += [f"{key}: literal secret" for c in candidates if not SECRET_TOKEN.fullmatch(c)]
    return problems


def key_paths(document: dict, prefix: tuple = ()) -> set[tuple]:
    """Return the key path of every entry of a nested dict."""
    paths = set()
    for key, value in document.items():
        paths.add((*prefix, key))
        if isinstance(value, dict):
            paths |= key_paths(value, (*prefix, key))
    return paths


def connection_problems(compose: dict, env: dict[str, str]) -> list[str]:
    """List connections that are missing, not JSON, or lack what the hooks read."""
    common = environment(compose["x-airflow-common"])
    sample = {**env, **{k: "s3cr3t" for k in env if SECRET_NAME.search(k)}}
    expected = connection_env(Endpoints("postgresql://u:p@db:5432/app", "http://s3:5000", "b", "http://h/{shop}"))
    problems = []
    for var, reference in expected.items():
        try:
            conn = json.loads(interpolate(common.get(var, "null"), sample)) or {}
        except (ValueError, json.JSONDecodeError) as exc:
            problems.append(f"{var}: {exc}")
            continue
        reference = json.loads(reference)
        problems += [f"{var} lacks {'.'.join(path)}" for path in key_paths(reference) if path not in key_paths(conn)]
        if conn.get("conn_type") != reference["conn_type"]:
            problems.append(f"{var}: conn_type {conn.get('conn_type')}")
    r2 = json.loads(interpolate(common.get("AIRFLOW_CONN_R2_DEFAULT", "{}"), sample)).get("extra", {})
    if r2.get("config_kwargs", {}).get("request_checksum_calculation") != "when_required":
        problems.append("r2_default: config_kwargs must keep checksums to when_required for R2")
    shopify = json.loads(interpolate(common.get("AIRFLOW_CONN_SHOPIFY_DEFAULT", "{}"), sample)).get("extra", {})
    if not {"{shop}", "{api_version}"} <= set(re.findall(r"\{\w+\}", shopify.get("endpoint_template", ""))):
        problems.append("shopify_default: endpoint_template lacks {shop} or {api_version}")
    return problems


def dockerfile_problems(dockerfile: str, requirements: str) -> list[str]:
    """List a wrong base image, COPY sources that do not exist, and a runtime filter that would not filter."""
    pin = re.search(r"^apache-airflow==(\S+)$", requirements, re.M)
    base = re.search(r"^FROM apache/airflow:(\S+)", dockerfile, re.M)
    problems = []
    if not pin or not base or base[1].split("-")[0] != pin[1]:
        problems.append(f"FROM apache/airflow:{base and base[1]} does not match apache-airflow=={pin and pin[1]}")
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        sources = [p for p in line.split()[:-1] if not p.startswith("--")]
        problems += [f"COPY {s}: no such file" for s in sources if not (REPO / s).exists()]
    if RUNTIME_MARKER not in requirements.splitlines() or f"/^{RUNTIME_MARKER}$/,$d" not in dockerfile:
        problems.append("the Dockerfile's runtime filter does not match requirements.txt's marker")
    runtime = requirements.split(RUNTIME_MARKER)[0]
    problems += [f"{p} would be in the image" for p in TEST_ONLY_PACKAGES if re.search(rf"^{p}\b", runtime, re.M)]
    return problems


def code_defaults() -> dict[str, str]:
    """Return every STATISTICS_EXPORT_* variable the code reads, with its default as a string."""
    files = [*REPO.glob("dags/*.py"), *REPO.glob("plugins/**/*.py"), *REPO.glob("include/statistics_export/*.py")]
    trees = [ast.parse(path.read_text()) for path in files]
    constants = {
        target.id: node.value.value
        for tree in trees
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def value_of(node: ast.expr):
        if isinstance(node, ast.Constant):
            return node.value
        return constants.get(node.id) if isinstance(node, ast.Name) else None

    found = {}
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = value_of(node.args[0])
            if isinstance(name, str) and name.startswith("STATISTICS_EXPORT_"):
                default = value_of(node.args[1]) if len(node.args) > 1 else None
                # An empty default means the code falls back on its own constant: any compose default will do.
                found[name] = None if default in (None, "") else str(default)
    return found


def setting_problems(compose: dict, settings: dict[str, str | None]) -> list[str]:
    """List settings the code reads that Airflow does not get, or gets with another default."""
    common = environment(compose["x-airflow-common"])
    problems = [f"{name} is not passed to Airflow" for name in settings if name not in common]
    for name, default in settings.items():
        if name in common and default is not None and interpolate(common[name], {}) != default:
            problems.append(f"{name}: compose default {interpolate(common[name], {})!r}, code default {default!r}")
    return problems


# -- the real files ------------------------------------------------------------------------------------


def test_every_service_the_stack_needs_is_defined():
    assert missing_services(load_compose()) == []


def test_every_long_running_service_has_a_health_check():
    compose = load_compose()
    assert healthcheck_problems(compose) == []
    assert "/api/v2/monitor/health" in " ".join(compose["services"]["airflow-apiserver"]["healthcheck"]["test"])


def test_services_wait_for_healthy_or_completed_dependencies():
    assert dependency_problems(load_compose()) == []


def test_airflow_services_mount_the_project_and_use_celery_with_redis():
    compose = load_compose()
    assert mount_problems(compose) == []
    assert airflow_config_problems(compose) == []


def test_compose_variables_and_env_example_match_and_secrets_have_no_value():
    assert variable_problems(compose_text(), env_example()) == []


def test_no_secret_is_written_in_the_compose_file():
    assert secret_literal_problems(load_compose()) == []


def test_the_three_connections_are_json_with_what_the_hooks_read():
    assert connection_problems(load_compose(), env_example()) == []


def test_the_dockerfile_matches_the_airflow_pin_and_copies_existing_runtime_files():
    dockerfile, requirements = (REPO / "Dockerfile").read_text(), (REPO / "requirements.txt").read_text()
    assert dockerfile_problems(dockerfile, requirements) == []
    moto_pin = re.search(r"^moto\[server\]==(\S+)$", requirements, re.M)[1]
    assert load_compose()["services"]["s3"]["image"] == f"motoserver/moto:{moto_pin}"


def test_every_statistics_export_setting_reaches_airflow_with_the_code_default():
    settings = code_defaults()
    assert {"STATISTICS_EXPORT_START_DATE", "STATISTICS_EXPORT_BATCH_VARIANTS"} <= set(settings)
    assert setting_problems(load_compose(), settings) == []


def test_the_build_context_leaves_out_secrets_and_the_virtualenv():
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".venv/" in ignored


# -- each check catches what it is for ------------------------------------------------------------------


def _connections(compose: dict) -> list[str]:
    return connection_problems(compose, env_example())


@pytest.mark.parametrize(
    "old, new, check",
    [
        ('["CMD", "redis-cli", "ping"]', '["NONE"]', healthcheck_problems),
        ("      shopify-sandbox:\n        condition: service_healthy", "      shopify-sandbox:\n", dependency_problems),
        ("    - ./include:/opt/airflow/include\n", "", mount_problems),
        ("EXECUTOR: CeleryExecutor", "EXECUTOR: LocalExecutor", airflow_config_problems),
        ("PYTHONPATH: /opt/airflow:/opt/airflow/plugins", "PYTHONPATH: /opt/airflow/plugins", airflow_config_problems),
        ("command: celery worker\n", "command: celery worker\n    container_name: w\n", airflow_config_problems),
        ('"password": "${APP_DB_PASSWORD:?set APP_DB_PASSWORD in .env}"', '"password": "x"', secret_literal_problems),
        (
            "POSTGRES_PASSWORD: ${AIRFLOW_DB_PASSWORD:?",
            "POSTGRES_PASSWORD: x${AIRFLOW_DB_PASSWORD:?",
            secret_literal_problems,
        ),
        ('"bucket_name": "${R2_BUCKET:-statistics}"', '"bucket": "${R2_BUCKET:-statistics}"', _connections),
        ('"conn_type": "postgres"', '"conn_type": "mysql"', _connections),
        (
            '"endpoint_template": "${SHOPIFY_ENDPOINT_TEMPLATE:?',
            '"template": "${SHOPIFY_ENDPOINT_TEMPLATE:?',
            _connections,
        ),
    ],
)
def test_a_broken_compose_file_is_caught(old, new, check):
    assert old in compose_text() and check(load_compose()) == []
    assert check(load_compose(compose_text().replace(old, new, 1))) != []


@pytest.mark.parametrize(
    "old, new",
    [
        ("redis://redis:6379/0", "redis://${REDIS_HOST}:6379/0"),  # a variable .env.example lacks
        ("${AIRFLOW_FERNET_KEY:?set AIRFLOW_FERNET_KEY in .env}", "${AIRFLOW_FERNET_KEY:-abc}"),  # a secret default
        ("${DEMO_PRODUCTS:-100}", "${DEMO_PRODUCTS:-{100}}"),  # a brace Compose would cut at
    ],
)
def test_a_variable_mistake_is_caught(old, new):
    assert old in compose_text()
    assert variable_problems(compose_text().replace(old, new), env_example()) != []


def test_a_missing_service_or_a_setting_drifting_from_the_code_is_caught():
    compose = copy.deepcopy(load_compose())
    del compose["services"]["s3"]
    assert missing_services(compose) == ["s3"]
    settings = code_defaults()
    assert setting_problems(load_compose(), {**settings, "STATISTICS_EXPORT_NEW_KNOB": "1"}) != []
    assert setting_problems(load_compose(), {**settings, "STATISTICS_EXPORT_START_DATE": "2020-01-01"}) != []


def test_a_variable_only_in_env_example_or_a_committed_secret_is_caught():
    defined = env_example()
    assert variable_problems(compose_text(), {**defined, "UNUSED_SETTING": "1"}) != []
    assert variable_problems(compose_text(), {**defined, "APP_DB_PASSWORD": "hunter2"}) != []


@pytest.mark.parametrize(
    "old, new",
    [
        ("FROM apache/airflow:3.3.2", "FROM apache/airflow:3.3.1"),
        ("COPY --chown=airflow:0 include/", "COPY --chown=airflow:0 missing/"),
        ("/^# Local stand-ins and tests$/,$d", "/^# Test stand-ins$/,$d"),
    ],
)
def test_a_broken_dockerfile_is_caught(old, new):
    dockerfile, requirements = (REPO / "Dockerfile").read_text(), (REPO / "requirements.txt").read_text()
    assert old in dockerfile
    assert dockerfile_problems(dockerfile.replace(old, new), requirements) != []


def test_test_only_packages_above_the_marker_are_caught():
    requirements = (REPO / "requirements.txt").read_text()
    moved = "moto[server]==5.2.5\n" + requirements
    assert dockerfile_problems((REPO / "Dockerfile").read_text(), moved) != []
