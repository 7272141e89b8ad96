"""
The servers a distributed Airflow needs besides its own components: PostgreSQL and Redis, on loopback.

Both are Debian's packages (``postgresql``, ``redis-server``; scripts/test.sh installs them when it runs as
root), started as child processes in throw-away directories on free ports, and stopped with them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Self

from tests.e2e.airflow_cluster import free_port

# Debian installs each major version in its own directory: the newest first.
POSTGRES_BIN_DIRS = sorted(
    Path("/usr/lib/postgresql").glob("*/bin"),
    key=lambda path: [int(part) for part in path.parent.name.split(".") if part.isdigit()],
    reverse=True,
)
# PostgreSQL refuses to run as root: as root, the server runs as this unprivileged user instead.
UNPRIVILEGED_USER = "nobody"


def postgres_binary(name: str) -> str:
    """``initdb`` or ``postgres`` from PATH or Debian's versioned directory (the newest installed)."""
    for directory in POSTGRES_BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name!r} is not installed: scripts/test.sh installs Debian's postgresql when run as "
            "root (or: sudo apt-get install postgresql)"
        )
    return found


def _stop(process: subprocess.Popen[bytes] | None, sig: int, grace: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class PostgresServer:
    """
    A PostgreSQL cluster made by ``initdb`` in a temporary directory, serving one database on loopback.

    Durability is traded for speed (``fsync=off``): the cluster lives as long as one test run.

    :param database: the database created for the client, owned by ``user``.
    :param user: the superuser, who connects without a password (trust on loopback).
    """

    def __init__(self, database: str = "airflow", user: str = "airflow", startup_timeout: float = 60.0) -> None:
        self.database = database
        self.user = user
        self.port = free_port()
        self._startup_timeout = startup_timeout
        self.root = Path(tempfile.mkdtemp(prefix="postgres-"))
        self.data_dir = self.root / "data"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _as_server_user(self) -> dict:
        """Popen arguments that drop root to an unprivileged user (PostgreSQL will not run as root)."""
        if os.geteuid() != 0:
            return {}
        account = pwd.getpwnam(UNPRIVILEGED_USER)
        os.chown(self.root, account.pw_uid, account.pw_gid)
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def start(self) -> Self:
        as_server_user = self._as_server_user()
        os.chmod(self.root, 0o755)
        initdb = [postgres_binary("initdb"), "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "-E", "UTF8"]
        subprocess.run(
            [*initdb, "--no-sync", "--no-instructions"],
            cwd=self.root,
            check=True,
            capture_output=True,
            **as_server_user,
        )
        self._log = self.log_path.open("wb")
        server = [postgres_binary("postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(self.port)]
        settings = ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        # Every Airflow component and Celery worker process keeps its own connection pool.
        settings.append("max_connections=300")
        self._process = subprocess.Popen(
            [*server, "-k", str(self.root), *(option for setting in settings for option in ("-c", setting))],
            cwd=self.root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_server_user,
        )
        try:
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _create_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + self._startup_timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._process.returncode}:\n{_log_tail(self.log_path)}")
            try:
                connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"postgres did not accept connections:\n{_log_tail(self.log_path)}") from None
                time.sleep(0.3)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"')
        finally:
            connection.close()

    def stop(self) -> None:
        _stop(self._process, signal.SIGINT, 30)  # SIGINT: PostgreSQL's fast shutdown
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.remove()


class RedisServer:
    """``redis-server`` on loopback, in memory only, as a Celery broker."""

    def __init__(self, startup_timeout: float = 30.0) -> None:
        self.port = free_port()
        self._startup_timeout = startup_timeout
        self.root = Path(tempfile.mkdtemp(prefix="redis-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    def start(self) -> Self:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: scripts/test.sh installs Debian's redis-server when run as root "
                "(or: sudo apt-get install redis-server)"
            )
        self._log = self.log_path.open("wb")
        listen = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root)]
        self._process = subprocess.Popen(
            [binary, *listen, "--save", "", "--appendonly", "no", "--daemonize", "no"],
            cwd=self.root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + self._startup_timeout
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self._process.returncode}:\n{_log_tail(self.log_path)}"
                    )
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server did not answer PING:\n{_log_tail(self.log_path)}")
                time.sleep(0.2)
        finally:
            client.close()

    def stop(self) -> None:
        _stop(self._process, signal.SIGTERM, 15)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.remove()
