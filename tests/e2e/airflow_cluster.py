"""
A real Airflow on loopback, started by ``airflow standalone``.

Airflow 3: api-server, scheduler, dag-processor and triggerer (:class:`AirflowCluster`); Airflow 2.11:
the Flask web server, scheduler and triggerer (:class:`Airflow2Cluster`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import IO, Self

import httpx
import psutil

ADMIN_USER = "admin"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (below SeaweedFS's range)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 55000:
            return port
    raise RuntimeError("no free loopback port below 55000")


#: What marks a line worth showing from a log of many components: an error, a traceback's start, an
#: exception's own line ("package.module.SomeError: message"), the statement a database error names, and the
#: frames of Airflow's and the provider's code (where in them it went wrong).
_ERROR_LINE = re.compile(
    r"\bERROR\b|\bCRITICAL\b|Traceback \(most recent call last\)|^\S+ \| [\w.]+(Error|Exception)\b"
    r"|\| \[SQL: |File \".*/(airflow|airflow_provider_orchestrator_audit)/"
)

_SITE_PACKAGES = re.compile(r'File "[^"]*/site-packages/')


def errors_in_log(lines: list[str], limit: int = 200) -> list[str]:
    """The lines of ``lines`` that say what failed (see ``_ERROR_LINE``), the first and last if too many."""
    found = [_SITE_PACKAGES.sub('File "', line)[:400] for line in lines if _ERROR_LINE.search(line)]
    if len(found) <= limit:
        return found
    return [*found[: limit // 2], f"... {len(found) - limit} more ...", *found[-limit // 2 :]]


_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>[^ ?"]+)\S* HTTP/[\d.]+" (?P<status>\d{3})')


def _is_telling_request(line: str, paths: tuple[str, ...]) -> bool:
    """Whether ``line`` logs a request to one of ``paths`` (or below it) other than a GET answered 2xx."""
    request = _ACCESS_LINE.search(line)
    if request is None or not any(request["path"].startswith(path) for path in paths):
        return False
    return request["method"] != "GET" or not request["status"].startswith("2")


class AirflowCluster:
    """
    ``airflow standalone`` in a throw-away ``AIRFLOW_HOME``, started and stopped by the tests.

    It runs the provider from this checkout (the interpreter running the tests), the LocalExecutor, the
    metadata database at ``database_url`` (SQLite in the home without one) and the simple auth manager with
    one admin whose password the tests choose.

    :param dag_files: DAG files copied into the DAG folder before the start.
    :param env: extra environment for every Airflow process (connections, variables, settings).
    :param startup_timeout: seconds to wait for the API server and the DAGs.
    :param database_url: the metadata database's SQLAlchemy URL, an empty database that standalone migrates.
    """

    #: The public REST API's root, and the components whose health the start waits for.
    api_root = "api/v2"
    health_path = "api/v2/monitor/health"
    components: tuple[str, ...] = ("metadatabase", "scheduler", "triggerer", "dag_processor")

    def __init__(
        self,
        dag_files: list[Path],
        env: Mapping[str, str],
        startup_timeout: float = 240.0,
        database_url: str | None = None,
    ) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="airflow-e2e-"))
        self.dags_folder = self.home / "dags"
        self.dags_folder.mkdir()
        for path in dag_files:
            shutil.copy(path, self.dags_folder / path.name)
        self.port = free_port()
        self.password = os.urandom(9).hex()
        self._extra_env = dict(env)
        self._startup_timeout = startup_timeout
        self._database_url = database_url
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Everything the Airflow components printed, prefixed by component."""
        return self.home / "standalone.log"

    def environment(self) -> dict[str, str]:
        """The environment of the Airflow processes: this test run's own Airflow settings left out."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_HOME"))
        }
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                # Only what a user starts runs: no scheduled run of the current hour next to a backfill.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
            }
        )
        if self._database_url is not None:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self._database_url
        env.update(self.server_settings())
        env.update(self._extra_env)
        return env

    def server_settings(self) -> dict[str, str]:
        """The web server's address and its users."""
        return {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
        }

    @property
    def passwords_file(self) -> Path:
        """The simple auth manager's users and passwords."""
        return self.home / "passwords.json"

    def prepare_home(self) -> None:
        """What the home needs before the start: the admin's password."""
        self.passwords_file.write_text(json.dumps({ADMIN_USER: self.password}))

    def start(self) -> Self:
        self.prepare_home()
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "standalone"],
            env=self.environment(),
            cwd=self.home,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: stop() ends every component it spawned
        )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        status: dict = {}
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"airflow standalone exited with {self._process.returncode}:\n{self.failure_report()}"
                )
            try:
                status = httpx.get(f"{self.url}/{self.health_path}", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                status = {}
            if all((status.get(name) or {}).get("status") == "healthy" for name in self.components):
                return
            time.sleep(1)
        raise TimeoutError(
            f"Airflow was not healthy within {self._startup_timeout:.0f} s ({status}):\n{self.failure_report()}"
        )

    @cached_property
    def token(self) -> str:
        """A JWT for the public REST API, as the admin; asked for once (it outlives any test run)."""
        answer = httpx.post(
            f"{self.url}/auth/token", json={"username": ADMIN_USER, "password": self.password}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        answer = httpx.request(
            method,
            f"{self.url}/{self.api_root}/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json()

    def api(self, path: str) -> dict:
        """GET ``{api_root}/{path}`` as the admin."""
        return self._request("GET", path)

    def api_post(self, path: str, body: dict) -> dict:
        """POST ``body`` to ``{api_root}/{path}`` as the admin."""
        return self._request("POST", path, body)

    def api_patch(self, path: str, body: dict) -> dict:
        """PATCH ``{api_root}/{path}`` with ``body`` as the admin."""
        return self._request("PATCH", path, body)

    def trigger(self, dag_id: str) -> str:
        """A manual run of ``dag_id`` now, through the REST API; returns its run id."""
        return self.api_post(f"dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
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
        raise TimeoutError(f"DAG {dag_id!r} was not parsed within {timeout:.0f} s:\n{self.failure_report()}")

    def wait_for_log(self, text: str, timeout: float = 120.0) -> None:
        """Wait until a component has logged ``text`` (what the REST API does not show)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not logged within {timeout:.0f} s: {text}\n{self.failure_report()}")
            time.sleep(0.5)

    def log_lines(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_lines()[-lines:])

    def failure_report(self, requests_to: tuple[str, ...] = (), tail: int = 60) -> str:
        """
        What explains a failure, from the whole log: the web server's access-log lines of the requests to
        the paths in ``requests_to`` that changed something or failed (a GET answered 2xx is left out: the
        tests poll), every error with its traceback in short, and the last ``tail`` lines. What went wrong
        minutes before the failure is long gone from the tail.
        """
        lines = self.log_lines()
        requests = [line for line in lines if _is_telling_request(line, requests_to)]
        errors = errors_in_log(lines)
        return "\n".join(
            [
                *(
                    [f"requests to {', '.join(requests_to)} (GETs answered 2xx left out):", *requests]
                    if requests_to
                    else []
                ),
                f"errors and tracebacks in the whole log ({len(errors)} lines):",
                *errors,
                f"the log's last {tail} lines:",
                *lines[-tail:],
            ]
        )

    def stop(self) -> None:
        # Airflow 2.11's scheduler runs its DAG file processor in a process group of its own, which the
        # group's signals miss: every descendant is noted before the stop and ended after it.
        strays = self._descendants()
        if self._process is not None and self._process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self._process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Components in the group may outlive the standalone parent for a moment.
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process = None
        for process in strays:
            try:
                process.kill()  # (psutil checks that the pid still names the same process)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(strays, timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _descendants(self) -> list[psutil.Process]:
        if self._process is None:
            return []
        try:
            return psutil.Process(self._process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Airflow2Cluster(AirflowCluster):
    """
    ``airflow standalone`` of Airflow 2.11: the Flask web server, the scheduler and the triggerer.

    Standalone picks the SequentialExecutor for SQLite and makes the Flask-AppBuilder user ``admin`` with
    a random password, which it writes into the home; the REST API (``/api/v1``) takes that user by basic
    auth, and the web UI's own calls (the connection form's Test button) by its session.
    """

    api_root = "api/v1"
    health_path = "health"
    components = ("metadatabase", "scheduler", "triggerer")

    def server_settings(self) -> dict[str, str]:
        return {
            "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
            "AIRFLOW__WEBSERVER__BASE_URL": self.url,
            # One gunicorn worker is enough for one browser, and the machine is shared; on a loaded machine a
            # worker can take longer than the default two minutes to boot.
            "AIRFLOW__WEBSERVER__WORKERS": "1",
            "AIRFLOW__WEBSERVER__WEB_SERVER_MASTER_TIMEOUT": "300",
            "AIRFLOW__WEBSERVER__WARN_DEPLOYMENT_EXPOSURE": "False",
            # Not the sixty example connections of other providers that 2.11 adds to a new database.
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
            # The UI's own calls by its session (2.11's default backend, which its configuration check
            # wants to find by this name), the tests' calls by basic auth.
            "AIRFLOW__API__AUTH_BACKENDS": (
                "airflow.api.auth.backend.session,airflow.providers.fab.auth_manager.api.auth.backend.basic_auth"
            ),
            # 2.11 warns on every start until its metrics use the unit that Airflow 3 made the default.
            "AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY": "True",
        }

    def prepare_home(self) -> None:
        """Nothing: standalone makes the admin itself."""

    def start(self) -> Self:
        super().start()
        # Written before the web server starts, so there once the cluster is healthy.
        self.password = (self.home / "standalone_admin_password.txt").read_text().strip()
        return self

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        answer = httpx.request(
            method, f"{self.url}/{self.api_root}/{path}", json=body, auth=(ADMIN_USER, self.password), timeout=30
        )
        answer.raise_for_status()
        return answer.json()

    def trigger(self, dag_id: str) -> str:
        return self.api_post(f"dags/{dag_id}/dagRuns", {})["dag_run_id"]
