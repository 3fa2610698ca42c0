"""Run Airflow's real components (scheduler, dag-processor, api-server, Celery workers) on loopback."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests

from local_stack.services import Endpoints, airflow_env, database_url

DAG_ID = "product_statistics_export"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
RUN_DONE = ("success", "failed")
T = TypeVar("T")


class StackError(RuntimeError):
    """An Airflow component did not start, or a wait ran out of time."""


def free_port() -> int:
    """Return a TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def metadata_database(server_url: str, prefix: str = "airflow_meta") -> Iterator[str]:
    """Create an empty database for Airflow's metadata (no app schema), yield its SQLAlchemy URL, drop it at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sqlalchemy_url(database_url(server_url, name))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlalchemy_url(url: str, driver: str = "postgresql+psycopg2") -> str:
    """Return a libpq URL with a SQLAlchemy driver prefix (Airflow and Celery's result backend need one)."""
    parts = urlsplit(url)
    return urlunsplit((driver, parts.netloc, parts.path, parts.query, parts.fragment))


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    """Poll ``check`` until it returns something truthy, or raise StackError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass
class AirflowStack:
    """A running set of Airflow components sharing one AIRFLOW_HOME and metadata database."""

    home: Path
    env: dict[str, str]
    api_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    http: requests.Session = field(default_factory=requests.Session)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``/api/v2/...``) and return the decoded JSON body; raise on an HTTP error."""
        response = self.http.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
        if response.status_code >= 400:
            raise StackError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def login(self, username: str, password: str) -> None:
        """Get a JWT for a SimpleAuthManager user and send it with every later REST call."""
        answer = self.http.post(
            f"{self.api_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        if answer.status_code >= 400:
            raise StackError(f"login as {username} failed: HTTP {answer.status_code}")
        self.http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Run an airflow CLI command against this stack's metadata database."""
        return subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def unpause(self, dag_id: str = DAG_ID) -> None:
        """Unpause a DAG through the REST API."""
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def dag_runs(self, dag_id: str = DAG_ID) -> list[dict]:
        """Return every run of a DAG, oldest logical date first."""
        body = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "logical_date"})
        return list(body["dag_runs"])

    def dag_run(self, run_id: str, dag_id: str = DAG_ID) -> dict:
        """Return one run of a DAG."""
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(self, run_id: str, timeout: float = 240, dag_id: str = DAG_ID) -> dict:
        """Wait until a run has finished (success or failed) and return it."""
        return wait_until(
            lambda: (run := self.dag_run(run_id, dag_id))["state"] in RUN_DONE and run,
            timeout,
            f"run {run_id} to finish\n{self.log_tails()}",
        )

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict]:
        """Return every task instance of a run, mapped ones included."""
        body = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return list(body["task_instances"])

    def log_tails(self, lines: int = 30) -> str:
        """Return the last lines of every component's log, to print when a test fails."""
        parts = []
        for path in sorted((self.home / "component-logs").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"===== {path.name} (last {len(tail)} lines) =====\n" + "\n".join(tail))
        return "\n".join(parts)


def stack_env(
    endpoints: Endpoints,
    home: Path,
    metadata_url: str,
    executor: str,
    api_port: int,
    extra_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """Return the environment every component of one stack shares."""
    env = airflow_env(home, endpoints)
    api_url = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # Every component signs or checks JWTs (task execution too): they must share one secret.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "local_stack.hostname.component_hostname",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # A re-parse costs a second of CPU on a 2-core machine; the first parse happens at once anyway.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
            # The scheduler (LocalExecutor) serves task logs on this port; the default 8793 may be taken.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        }
    )
    if executor == "CeleryExecutor":
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": broker_url(metadata_url),
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url(metadata_url, "postgresql"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            }
        )
    env.update(extra_env or {})
    return env


def start_component(stack: AirflowStack, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
    """Start one component in its own process group, its output going to component-logs/<name>.log."""
    logs = stack.home / "component-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as log:
        stack.processes[name] = subprocess.Popen(
            [AIRFLOW, *args],
            env=env or stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group, so stopping it takes its children (workers, supervisors) too
        )


def stop_components(stack: AirflowStack, grace: float = 20) -> None:
    """Terminate every component's process group, waiting ``grace`` seconds before killing what is left."""
    for process in stack.processes.values():
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in stack.processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in stack.processes.values():
        # Children may outlive the group leader (task supervisors, uvicorn workers): kill the whole group.
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """Send a signal to a process's group, ignoring a group that is already gone."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def check_alive(stack: AirflowStack) -> None:
    """Raise StackError when a component has exited."""
    for name, process in stack.processes.items():
        if process.poll() is not None:
            raise StackError(f"airflow {name} exited with code {process.returncode}\n{stack.log_tails()}")


def healthy(stack: AirflowStack) -> bool:
    """Tell whether the api-server answers and reports the database, scheduler and dag-processor healthy."""
    check_alive(stack)
    try:
        health = stack.http.get(f"{stack.api_url}/api/v2/monitor/health", timeout=5).json()
    except (requests.RequestException, ValueError):
        return False
    wanted = ("metadatabase", "scheduler", "dag_processor")
    return all((health.get(part) or {}).get("status") == "healthy" for part in wanted)


def dag_parsed(stack: AirflowStack, dag_id: str) -> bool:
    """Tell whether the dag-processor has serialized the DAG (the REST API knows it)."""
    check_alive(stack)
    return stack.http.get(f"{stack.api_url}/api/v2/dags/{dag_id}", timeout=10).status_code == 200


def redis_answers(url: str = REDIS_URL) -> bool:
    """Tell whether the Redis server of ``url`` accepts connections."""
    parts = urlsplit(url)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((parts.hostname or "127.0.0.1", parts.port or 6379)) == 0


def broker_url(metadata_url: str) -> str:
    """Return Celery's broker: the Redis of TEST_REDIS_URL (127.0.0.1:6379/5) when it answers, else kombu's
    SQLAlchemy transport in the metadata database, so a laptop with only Python still runs the Celery test."""
    return REDIS_URL if redis_answers() else "sqla+" + sqlalchemy_url(metadata_url, "postgresql")


def flush_broker(url: str) -> None:
    """Empty the Celery broker's Redis database (only that numbered database); a database broker goes with it."""
    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()


@contextmanager
def airflow_stack(
    endpoints: Endpoints,
    airflow_home: Path,
    metadata_url: str,
    executor: str = "LocalExecutor",
    *,
    extra_env: dict[str, str] | None = None,
    api_port: int | None = None,
    workers: tuple[str, ...] = ("worker-a", "worker-b"),
    user: tuple[str, str] | None = None,
    startup_timeout: float = 180,
) -> Iterator[AirflowStack]:
    """Migrate the metadata database, start the components, wait until they are healthy; stop them all at exit.

    Without ``user`` every request is an admin's (SimpleAuthManager's all-admins mode, for tests); with
    ``(username, password)`` the UI asks for that login and the REST helper logs in with it.
    """
    airflow_home.mkdir(parents=True, exist_ok=True)
    port = api_port or free_port()
    env = stack_env(endpoints, airflow_home, metadata_url, executor, port, extra_env)
    if user:
        passwords = airflow_home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({user[0]: user[1]}))
        passwords.chmod(0o600)
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{user[0]}:admin"
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
    stack = AirflowStack(home=airflow_home, env=env, api_url=f"http://127.0.0.1:{port}")
    migrate = stack.cli("db", "migrate", timeout=600)
    if migrate.returncode != 0:
        raise StackError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
    with ExitStack() as cleanup:
        cleanup.callback(stop_components, stack)
        if executor == "CeleryExecutor":
            flush_broker(env["AIRFLOW__CELERY__BROKER_URL"])
            cleanup.callback(flush_broker, env["AIRFLOW__CELERY__BROKER_URL"])
        start_component(stack, "api-server", ["api-server", "--host", "127.0.0.1", "--port", str(port)])
        start_component(stack, "dag-processor", ["dag-processor"])
        start_component(stack, "scheduler", ["scheduler"])
        if executor == "CeleryExecutor":
            for name in workers:
                worker_env = {
                    **env,
                    "AIRFLOW_COMPONENT_HOSTNAME": name,
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                }
                start_component(
                    stack,
                    f"celery-{name}",
                    ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2", "--without-gossip"],
                    env=worker_env,
                )
        wait_until(lambda: healthy(stack), startup_timeout, f"healthy components\n{stack.log_tails()}")
        if user:
            stack.login(*user)
        wait_until(lambda: dag_parsed(stack, DAG_ID), startup_timeout, f"{DAG_ID} parsed\n{stack.log_tails()}")
        yield stack
