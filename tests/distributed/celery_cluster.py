"""
A distributed Airflow 3 on one machine: CeleryExecutor workers on a PostgreSQL metadata database.

The control plane (scheduler, dag-processor, api-server, triggerer) shares one ``AIRFLOW_HOME``; each
Celery worker has its own home, DAG folder copy, log folder, temp directory and host name, as if it ran
on a machine of its own. All processes run the provider from this checkout (the tests' interpreter).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Self

import httpx

from tests.distributed.worker_identity import HOSTNAME_ENV
from tests.e2e.airflow_cluster import ADMIN_USER, free_port

REPOSITORY = Path(__file__).resolve().parents[2]
CONTROL_COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")


@dataclass
class Component:
    """One Airflow process (its own process group) and the file its output goes to."""

    name: str
    command: list[str]
    env: dict[str, str]
    home: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.home,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, for its forked processes (tasks have their own: kill_tree)
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def kill_tree(self) -> None:
        """
        SIGKILL to the process and everything it forked, wherever they are.

        Airflow runs each task in a process group of its own (under a supervisor in the Celery worker's
        pool), which a signal to the worker's group would miss: a lost machine loses those too.
        """
        if self.process is None:
            return
        tree = [self.process.pid, *descendants(self.process.pid)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)  # frozen first: none forks or reaps while the tree is taken
        for pid in [*tree, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class Worker(Component):
    """A Celery worker: its host name (the task instances' ``hostname``) and its own directories."""

    hostname: str = ""

    @property
    def task_log_folder(self) -> Path:
        return self.home / "logs"

    def log_files(self) -> Iterator[Path]:
        """The worker's own output and every task log it wrote."""
        yield self.log_path
        yield from (path for path in self.task_log_folder.rglob("*") if path.is_file())


class CeleryAirflowCluster:
    """
    Scheduler, dag-processor, api-server and triggerer, plus Celery workers, in throw-away homes.

    :param dag_files: DAG files, copied into the control plane's DAG folder and every worker's.
    :param env: extra environment for every Airflow process (connections, variables, settings).
    :param database_url: the metadata database (SQLAlchemy URL); also Celery's result backend.
    :param broker_url: Celery's broker.
    :param workers: the workers' host names.
    :param worker_concurrency: task slots per worker.
    """

    def __init__(
        self,
        dag_files: list[Path],
        env: Mapping[str, str],
        *,
        database_url: str,
        broker_url: str,
        workers: tuple[str, ...] = ("worker-a", "worker-b"),
        worker_concurrency: int = 2,
        startup_timeout: float = 300.0,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="airflow-celery-"))
        self.home = self.root / "control"
        self.port = free_port()
        # The triggerer serves its logs on a port of its own: not the default one another Airflow may hold.
        self.trigger_log_port = free_port()
        self.password = secrets.token_hex(9)
        self._database_url = database_url
        self._broker_url = broker_url
        self._extra_env = dict(env)
        self._startup_timeout = startup_timeout
        # Shared by every component, as a deployment shares them: tokens the api-server signs for a task
        # must verify on the workers, and connections encrypted by one must decrypt on the others.
        self._shared_secrets = {
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
        }
        self._dag_files = list(dag_files)
        self._make_home(self.home)
        self.components = [
            Component(name, self._airflow(name), self.environment(self.home), self.home, self.home / f"{name}.log")
            for name in CONTROL_COMPONENTS
        ]
        self.workers = [self._worker(hostname, worker_concurrency) for hostname in workers]

    # --- set-up ------------------------------------------------------------------------------------

    def _make_home(self, home: Path) -> None:
        (home / "dags").mkdir(parents=True)
        (home / "tmp").mkdir()
        for path in self._dag_files:
            shutil.copy(path, home / "dags" / path.name)

    @staticmethod
    def _airflow(*arguments: str) -> list[str]:
        return [str(Path(sys.executable).parent / "airflow"), *arguments]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "passwords.json"

    def environment(self, home: Path) -> dict[str, str]:
        """The environment of an Airflow process whose home is ``home``; this test run's own settings left out."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_HOME"))
        }
        env.update(
            {
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                # The workers' hostname_callable lives in this checkout's tests.
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")])),
                "TMPDIR": str(home / "tmp"),
                # A process that stops making progress can be made to print every thread's stack (SIGABRT).
                "PYTHONFAULTHANDLER": "1",
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self._database_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
                "AIRFLOW__CELERY__BROKER_URL": self._broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self._database_url}",
                # Sending a task to the broker may take longer than the default second on a loaded machine.
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
                # Only what the test starts runs.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                # A lost worker's task is failed (and retried) this long after its last heartbeat.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                # A task a lost worker had taken from the broker but not started yet never heartbeats: it stays
                # queued (its message unacknowledged until the broker's visibility timeout, a day) until this
                # timeout sends it again, 10 minutes by default.
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
                **self._shared_secrets,
            }
        )
        env.update(self._extra_env)
        return env

    def _worker(self, hostname: str, concurrency: int) -> Worker:
        home = self.root / hostname
        self._make_home(home)
        env = self.environment(home)
        env[HOSTNAME_ENV] = hostname
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "tests.distributed.worker_identity.hostname"
        command = self._airflow("celery", "worker", "--celery-hostname", f"{hostname}@%h")
        command += ["--concurrency", str(concurrency), "--skip-serve-logs", "--without-mingle", "--without-gossip"]
        return Worker(hostname, command, env, home, home / "worker.log", hostname=hostname)

    # --- running -----------------------------------------------------------------------------------

    def start(self) -> Self:
        self.passwords_file.write_text(json.dumps({ADMIN_USER: self.password}))
        try:
            migrate = subprocess.run(
                self._airflow("db", "migrate"),
                env=self.environment(self.home),
                cwd=self.home,
                capture_output=True,
                timeout=self._startup_timeout,
            )
            if migrate.returncode != 0:
                output = (migrate.stdout + migrate.stderr).decode(errors="replace")
                raise RuntimeError(f"airflow db migrate failed:\n{output[-4000:]}")
            for component in [*self.components, *self.workers]:
                component.start()
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        checks = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        status: dict = {}
        while time.monotonic() < deadline:
            for component in [*self.components, *self.workers]:
                if not component.running():
                    raise RuntimeError(f"{component.name} exited:\n{self.log_tail(component)}")
            try:
                status = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                status = {}
            healthy = all((status.get(name) or {}).get("status") == "healthy" for name in checks)
            if healthy and all(" ready." in worker.log_path.read_text(errors="replace") for worker in self.workers):
                return
            time.sleep(1)
        raise TimeoutError(f"the cluster was not ready within {self._startup_timeout:.0f} s ({status}):\n{self.logs()}")

    def worker(self, hostname: str) -> Worker:
        return next(worker for worker in self.workers if worker.hostname == hostname)

    def kill_worker(self, hostname: str) -> None:
        """Lose a worker as a machine is lost: SIGKILL to it, its pool processes and the tasks they run."""
        worker = self.worker(hostname)
        worker.kill_tree()
        assert worker.process is not None
        worker.process.wait(timeout=30)

    def stop(self) -> None:
        everything = [*self.workers, *self.components]
        # Task processes (their own process groups) that a stopping worker might leave behind.
        leftovers = [
            pid
            for component in everything
            if component.process is not None and component.running()
            for pid in descendants(component.process.pid)
        ]
        for component in everything:
            if component.running():
                component.signal_group(signal.SIGTERM)
        # Nothing of the cluster outlives the test: a short grace, then SIGKILL.
        deadline = time.monotonic() + 10
        for component in everything:
            if component.process is not None:
                try:
                    component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            # Forked children may outlive their parent for a moment.
            component.signal_group(signal.SIGKILL)
            if component.process is not None:
                # Reaped, whether it stopped in its grace or was killed: a process never waited for is a
                # zombie until its Popen is collected, which warns (ResourceWarning) in whatever test runs then.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    component.process.wait(timeout=10)
            component.close_log()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def keep_logs(self, destination: Path) -> None:
        """Copy every component's output and every task log to ``destination`` (replacing what it held)."""
        shutil.rmtree(destination, ignore_errors=True)
        for home in [self.home, *(worker.home for worker in self.workers)]:
            for path in [*home.glob("*.log"), *(home / "logs").rglob("*")]:
                if path.is_file():
                    target = destination / home.name / path.relative_to(home)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- the REST API ------------------------------------------------------------------------------

    @cached_property
    def token(self) -> str:
        answer = httpx.post(
            f"{self.url}/auth/token", json={"username": ADMIN_USER, "password": self.password}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def api(self, path: str) -> dict:
        """GET ``/api/v2/{path}`` as the admin."""
        return self._request("GET", path)

    def api_post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def api_patch(self, path: str, body: dict) -> dict:
        return self._request("PATCH", path, body)

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        answer = httpx.request(
            method,
            f"{self.url}/api/v2/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        answer.raise_for_status()
        return answer.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        """Wait until the dag-processor has parsed ``dag_id`` into the database."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api(f"dags/{dag_id}")
                return
            except httpx.HTTPStatusError as error:
                if error.response.status_code != 404:
                    raise
            time.sleep(1)
        raise TimeoutError(f"DAG {dag_id!r} was not parsed within {timeout:.0f} s:\n{self.logs()}")

    # --- what the processes printed ----------------------------------------------------------------

    @staticmethod
    def log_tail(component: Component, lines: int = 40) -> str:
        if not component.log_path.exists():
            return ""
        text = component.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {component.name} ---\n" + "\n".join(text)

    def stall_report(self, dag_id: str, run_id: str) -> str:
        """
        What a run that stopped advancing looks like from inside, for the failure message: the DAG and the run
        as the database holds them, every task instance's state, the executor's queues (the scheduler logs them
        on SIGUSR2), and the stack of every thread of the scheduler and the dag-processor (faulthandler prints
        them on SIGABRT, which ends those two processes: only for a test that has already failed).
        """
        parts: list[str] = []
        run = f"dags/{dag_id}/dagRuns/{run_id}"
        for title, path in (
            ("DAG", f"dags/{dag_id}"),
            ("run", run),
            ("task instances", f"{run}/taskInstances?limit=100"),
        ):
            try:
                answer = self.api(path)
            except (httpx.HTTPError, ValueError) as error:
                parts.append(f"--- {title}: the API did not answer ({error})")
                continue
            if title == "task instances":
                rows = [
                    f"{ti['task_id']}[{ti['map_index']}] try {ti['try_number']}: {ti['state']} on {ti['hostname']}"
                    for ti in answer["task_instances"]
                ]
                parts.append(f"--- {title}\n" + "\n".join(rows))
            else:
                parts.append(f"--- {title}\n{json.dumps(answer, indent=1, default=str)}")
        stuck = [component for component in self.components if component.name in ("scheduler", "dag-processor")]
        for component in stuck:
            if component.name == "scheduler" and component.running():
                os.kill(component.process.pid, signal.SIGUSR2)  # type: ignore[union-attr]  # running
        time.sleep(2)
        for component in stuck:
            if component.running():
                os.kill(component.process.pid, signal.SIGABRT)  # type: ignore[union-attr]  # running
        time.sleep(3)
        parts.extend(self.log_tail(component, 300) for component in stuck)
        return "\n".join(parts)

    def logs(self, lines: int = 40) -> str:
        """The last lines of every component's output, for a failure message."""
        return "\n".join(self.log_tail(component, lines) for component in [*self.components, *self.workers])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from Linux's ``/proc``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
