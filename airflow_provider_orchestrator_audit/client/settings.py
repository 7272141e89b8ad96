"""What an ``orchestrator_audit`` Airflow connection says, checked and normalised."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["CONN_TYPE", "DEFAULT_SCOPE", "DEFAULT_TIMEOUT", "ORCHESTRATOR_SCOPE", "ConnectionSettings"]

CONN_TYPE = "orchestrator_audit"
#: The scope of the platform's audit APIs (the classic audit log and the unified audit events).
DEFAULT_SCOPE = "PM.Audit.Read"
#: The scope of Orchestrator's own audit log (``odata/AuditLogs``).
ORCHESTRATOR_SCOPE = "OR.Audit.Read"
DEFAULT_TIMEOUT = 60.0
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class ConnectionSettings:
    """
    Everything needed to talk to one organization's audit API.

    :param conn_id: the Airflow connection id, named in every error message.
    :param base_url: scheme and host (and port, and a path prefix if any), without a trailing slash.
    :param organization: the ``{organizationName}`` path segment.
    :param client_id: the external application's client id (OAuth2 client credentials).
    :param client_secret: its client secret.
    :param access_token: a personal access token; when set, no token request is made.
    :param scope: the scopes asked for when the connection pins them (extra ``scope``), space separated;
        else :data:`DEFAULT_SCOPE`, and each source asks for its own (see :meth:`scope_for`).
    :param token_url: the identity server's token endpoint.
    :param verify: verify TLS certificates (bool) or the path of a CA bundle.
    :param timeout: seconds for connecting and for each read.
    :param tenant: the default tenant (extra ``tenant``) for tenant-level audit events.
    :param scope_pinned: the connection's extra ``scope`` is set to other than :data:`DEFAULT_SCOPE`: every
        request asks for exactly it.
    :param orchestrator_url: a standalone Orchestrator's URL (extra ``orchestrator_url``): its audit log is
        ``{orchestrator_url}/odata/AuditLogs``, with no ``{org}/{tenant}/orchestrator_`` prefix.
    """

    conn_id: str
    base_url: str
    organization: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    scope: str = DEFAULT_SCOPE
    token_url: str = ""
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT
    tenant: str | None = None
    scope_pinned: bool = False
    orchestrator_url: str | None = None

    def __post_init__(self) -> None:
        if not self.token_url:
            # A standalone Orchestrator's identity server is at /identity, without the underscore.
            default = (
                f"{self.orchestrator_url}/identity/connect/token"
                if self.orchestrator_url
                else f"{self.base_url}/identity_/connect/token"
            )
            object.__setattr__(self, "token_url", default)

    def scope_for(self, required: str) -> str:
        """The scopes a token for a source that needs ``required`` asks for: the pinned ones, else ``required``."""
        return self.scope if self.scope_pinned else required

    @property
    def uses_personal_access_token(self) -> bool:
        """True when a personal access token is sent as the bearer token."""
        return bool(self.access_token)

    @property
    def audit_logs_url(self) -> str:
        """``{baseURL}/audit_/api/auditlogs`` where ``baseURL`` is ``{host}/{organization}``."""
        return f"{self.base_url}/{quote(self.organization, safe='')}/audit_/api/auditlogs"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in a log line."""
        return tuple(value for value in (self.client_secret, self.access_token) if value)

    @classmethod
    def from_connection(cls, conn: Connection) -> ConnectionSettings:
        """
        Read and check an Airflow connection.

        :raises OrchestratorConfigError: naming the field at fault and how to fix it.
        """
        conn_id = conn.conn_id or CONN_TYPE

        def problem(text: str) -> OrchestratorConfigError:
            return OrchestratorConfigError(f"Connection {conn_id!r}: {text}")

        extra = _extra_dict(conn, problem)
        orchestrator_url = _orchestrator_url(extra, problem)
        base_url = _base_url(conn, problem, orchestrator_url)
        organization = _organization(extra, problem, orchestrator_url)
        access_token = _extra_value(extra, "access_token") or None
        client_id = conn.login or None
        client_secret = conn.password or None
        if not access_token and not (client_id and client_secret):
            raise problem(
                "no credentials: set Login/Password to the external application's client id and client "
                "secret, or set extra 'access_token' to a personal access token"
            )
        pinned_scope = str(_extra_value(extra, "scope") or "").strip()
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            organization=organization,
            client_id=client_id,
            client_secret=client_secret,
            access_token=access_token,
            scope=pinned_scope or DEFAULT_SCOPE,
            token_url=_token_url(extra, problem),
            verify=_verify(_extra_value(extra, "verify")),
            timeout=_timeout(_extra_value(extra, "timeout"), problem),
            tenant=str(_extra_value(extra, "tenant") or "").strip().strip("/") or None,
            # The connection form fills in the default: only another value pins the scope of every source.
            scope_pinned=bool(pinned_scope) and pinned_scope != DEFAULT_SCOPE,
            orchestrator_url=orchestrator_url,
        )


def _extra_dict(conn: Connection, problem: Any) -> dict[str, Any]:
    raw = conn.extra
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        extra = json.loads(raw)
    except ValueError as exc:
        raise problem(
            f'Extra is not valid JSON ({exc}); write it as an object like {{"organization": "acme"}}'
        ) from None
    if not isinstance(extra, dict):
        raise problem('Extra must be a JSON object like {"organization": "acme"}')
    return extra


def _extra_value(extra: dict[str, Any], name: str) -> Any:
    # Forms of older Airflow UIs stored custom fields with an ``extra__<conn_type>__`` prefix.
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__{CONN_TYPE}__{name}")
    return None if value == "" else value


def _orchestrator_url(extra: dict[str, Any], problem: Any) -> str | None:
    url = str(_extra_value(extra, "orchestrator_url") or "").strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise problem(
            f"extra 'orchestrator_url' must be the http(s) URL of a standalone Orchestrator, e.g. "
            f"https://orchestrator.example.com, got {url!r}"
        )
    return url


def _organization(extra: dict[str, Any], problem: Any, orchestrator_url: str | None = None) -> str:
    organization = str(_extra_value(extra, "organization") or "").strip().strip("/")
    if not organization and orchestrator_url:
        # A standalone Orchestrator has no organization in its URLs; its host names it in the export's keys.
        organization = urlsplit(orchestrator_url).hostname or ""
    if not organization:
        raise problem(
            "extra 'organization' is required: the organization name that follows the host in your "
            "Orchestrator URL, e.g. 'acme' for https://cloud.uipath.com/acme"
        )
    return str(organization)


def _token_url(extra: dict[str, Any], problem: Any) -> str:
    token_url = (_extra_value(extra, "token_url") or "").strip().rstrip("/")
    if token_url and urlsplit(token_url).scheme not in ("http", "https"):
        raise problem(f"extra 'token_url' must be an http(s) URL, got {token_url!r}")
    return str(token_url)


def _base_url(conn: Connection, problem: Any, orchestrator_url: str | None = None) -> str:
    host = (conn.host or "").strip().rstrip("/") or (orchestrator_url or "")
    if not host:
        raise problem("Host is empty: set it to your Orchestrator base URL, e.g. https://cloud.uipath.com")
    if "://" not in host:
        scheme = (conn.schema or "https").strip().lower()
        if scheme not in ("http", "https"):
            scheme = "https"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise problem(f"Host {host!r} is not an http(s) URL; set it like https://cloud.uipath.com")
    default_port = 443 if parts.scheme == "https" else 80
    if conn.port and parts.port is None:
        # The scheme's own port is left out, so URLs (and lineage names) stay as users write them.
        if conn.port != default_port:
            host = f"{parts.scheme}://{parts.netloc}:{conn.port}{parts.path}"
    elif conn.port and parts.port != conn.port:
        raise problem(f"Port {conn.port} contradicts the port in Host {host!r}: leave Port empty or make them agree")
    return host


def _verify(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip()
    if not text or text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    return text  # a CA bundle path; httpx reports a missing file with its path


def _timeout(value: Any, problem: Any) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise problem(f"extra 'timeout' must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise problem(f"extra 'timeout' must be greater than 0, got {value!r}")
    return seconds
