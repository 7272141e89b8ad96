"""The local Orchestrator simulator, exercised over real sockets with httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import airflow_provider_orchestrator_audit.testing as testing_package
from airflow_provider_orchestrator_audit.testing import AuditDataset, Fault, FaultSchedule, LocalOrchestratorServer

AUDIT = "/acme/audit_/api/auditlogs"
TOKEN = "/identity_/connect/token"
FORM = {"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "local-secret"}


@pytest.fixture
def server() -> Iterator[LocalOrchestratorServer]:
    with LocalOrchestratorServer(AuditDataset(size=5000, seed=1), seed=1) as running:
        yield running


@pytest.fixture
def client(server: LocalOrchestratorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as http:
        yield http


def get_token(client: httpx.Client, scope: str = "PM.Audit.Read") -> str:
    reply = client.post(TOKEN, data={**FORM, "scope": scope})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit(client: httpx.Client, token: str, **params: Any) -> httpx.Response:
    return client.get(AUDIT, params=params, headers=bearer(token))


# --- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/identity_/connect/token", "/acme/identity_/connect/token", "/identity/connect/token"]
)
def test_token_success(client: httpx.Client, path: str) -> None:
    reply = client.post(path, data={**FORM, "scope": "PM.Audit.Read"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    grant = reply.json()
    assert grant["token_type"] == "Bearer"
    assert grant["expires_in"] == 3600
    assert grant["scope"] == "PM.Audit.Read"
    assert len(grant["access_token"]) >= 32
    assert audit(client, grant["access_token"], top=1).status_code == 200


def test_token_with_basic_auth_and_all_scopes(client: httpx.Client) -> None:
    reply = client.post(TOKEN, data={"grant_type": "client_credentials"}, auth=("local-client", "local-secret"))
    assert reply.status_code == 200
    assert reply.json()["scope"] == "PM.Audit.Read PM.Audit OR.Audit.Read OR.Audit"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({**FORM, "client_id": "someone-else"}, "invalid_client"),
        ({**FORM, "client_secret": "wrong"}, "invalid_client"),
        ({k: v for k, v in FORM.items() if k != "client_secret"}, "invalid_client"),
        ({**FORM, "scope": "PM.Audit.Read OR.Execution"}, "invalid_scope"),
        ({**FORM, "grant_type": "password"}, "unsupported_grant_type"),
        ({k: v for k, v in FORM.items() if k != "grant_type"}, "invalid_request"),
    ],
)
def test_token_errors(client: httpx.Client, form: dict[str, str], error: str) -> None:
    reply = client.post(TOKEN, data=form)
    assert reply.status_code == 400
    assert reply.json()["error"] == error
    assert reply.json()["error_description"]


def test_token_request_must_be_a_form(client: httpx.Client) -> None:
    reply = client.post(TOKEN, json=FORM)
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"
    assert client.get(TOKEN).status_code == 405


def test_token_for_another_organization_is_not_found(client: httpx.Client) -> None:
    assert client.post("/globex/identity_/connect/token", data=FORM).status_code == 404


# --- authorisation ---------------------------------------------------------------------------


def _assert_invalid_token(reply: httpx.Response) -> None:
    assert reply.status_code == 401
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    assert reply.headers["www-authenticate"].startswith("Bearer ")
    assert reply.json()["error"] == "invalid_token"


def test_missing_and_unknown_tokens(client: httpx.Client) -> None:
    _assert_invalid_token(client.get(AUDIT))
    _assert_invalid_token(client.get(AUDIT, headers={"Authorization": "Basic abc"}))
    _assert_invalid_token(audit(client, "not-a-token"))


def test_revoked_token(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    token = get_token(client)
    assert audit(client, token, top=1).status_code == 200
    server.revoke_tokens()
    _assert_invalid_token(audit(client, token, top=1))
    assert audit(client, get_token(client), top=1).status_code == 200


def test_expired_token(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.token_lifetime_seconds = 1
    reply = client.post(TOKEN, data=FORM)
    assert reply.json()["expires_in"] == 1
    token = reply.json()["access_token"]
    assert audit(client, token, top=1).status_code == 200
    time.sleep(1.1)
    _assert_invalid_token(audit(client, token, top=1))


def test_token_without_audit_scope_is_forbidden() -> None:
    with (
        LocalOrchestratorServer(granted_scopes=("PM.Audit.Read", "OR.Folders")) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        token = get_token(client, scope="OR.Folders")
        reply = audit(client, token, top=1)
        assert reply.status_code == 403
        assert 'error="insufficient_scope"' in reply.headers["www-authenticate"]
        assert reply.json()["error"] == "insufficient_scope"
        assert audit(client, get_token(client, scope="PM.Audit.Read"), top=1).status_code == 200


def test_personal_access_token(client: httpx.Client) -> None:
    reply = audit(client, "local-pat", top=3)
    assert reply.status_code == 200
    assert len(reply.json()["results"]) == 3


def test_unknown_organization_and_path(client: httpx.Client) -> None:
    assert client.get("/globex/audit_/api/auditlogs", headers=bearer("local-pat")).status_code == 404
    assert client.get("/acme/audit_/api/other", headers=bearer("local-pat")).status_code == 404
    assert client.post(AUDIT, headers=bearer("local-pat")).status_code == 405


# --- paging ------------------------------------------------------------------------------------


@pytest.fixture
def plain_server() -> Iterator[LocalOrchestratorServer]:
    # Tie groups in a stable order, so pages can be compared with the data set directly.
    with LocalOrchestratorServer(AuditDataset(size=3000, shuffle_ties=False)) as running:
        yield running


def test_paging_descending_and_ascending(plain_server: LocalOrchestratorServer) -> None:
    dataset = plain_server.dataset
    with httpx.Client(base_url=plain_server.url) as client:
        reply = client.get(
            AUDIT,
            params={
                "language": "en",
                "top": 5,
                "skip": 10,
                "sortBy": "createdOn",
                "sortOrder": "desc",
                "api-version": "1",
            },
            headers=bearer("local-pat"),
        )
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/json; charset=utf-8"
        assert reply.http_version == "HTTP/1.1"
        page = reply.json()
        assert page["totalCount"] == 3000
        assert page["results"] == [dataset.entry(i) for i in range(2989, 2984, -1)]

        ascending = audit(client, "local-pat", top=4, skip=2, sortBy="createdOn", sortOrder="asc").json()
        assert ascending["results"] == [dataset.entry(i) for i in range(2, 6)]

        default = audit(client, "local-pat", top=2).json()  # the simulator's default: createdOn desc
        assert default["results"] == [dataset.entry(2999), dataset.entry(2998)]

        everything = audit(client, "local-pat", skip=2990).json()  # no top: all from skip
        assert [item["createdOn"] for item in everything["results"]] == [
            dataset.entry(i)["createdOn"] for i in range(9, -1, -1)
        ]
        assert audit(client, "local-pat", skip=5000, top=10).json() == {"totalCount": 3000, "results": []}
        assert audit(client, "local-pat", top=0).json() == {"totalCount": 3000, "results": []}


def test_unicode_is_sent_as_utf8(plain_server: LocalOrchestratorServer) -> None:
    with httpx.Client(base_url=plain_server.url) as client:
        raw = client.get(AUDIT, params={"top": 3000}, headers=bearer("local-pat")).content
    assert "Zoë Ångström".encode() in raw
    assert "\u2028".encode() in raw  # left unescaped, as ensure_ascii=False does
    assert b"\\u00eb" not in raw
    entries = json.loads(raw.decode("utf-8"))["results"]
    assert any("clientIp" in item or "tenantName" in item for item in entries)


def test_shuffled_pages_hold_the_same_entries(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    one = audit(client, "local-pat", top=5000).json()["results"]
    two = audit(client, "local-pat", top=5000).json()["results"]
    as_text = [json.dumps(item, sort_keys=True) for item in one]
    assert sorted(as_text) == sorted(json.dumps(item, sort_keys=True) for item in two)
    assert one != two  # tie groups listed in a different order
    assert [item["createdOn"] for item in one] == [item["createdOn"] for item in two]


def test_sort_by_other_fields(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    page = audit(client, "local-pat", top=100, sortBy="category", sortOrder="asc").json()["results"]
    categories = [item["category"] for item in page]
    assert categories == sorted(categories)
    assert categories[0] == "Asset"
    email_desc = audit(client, "local-pat", top=50, sortby="EMAIL", sortorder="DESC").json()["results"]
    assert [item["email"] for item in email_desc] == sorted((item["email"] for item in email_desc), reverse=True)
    server.dataset.max_sort_entries = 1000
    reply = audit(client, "local-pat", top=10, sortBy="category")
    assert reply.status_code == 400
    assert "createdOn" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"top": "-1"}, "top"),
        ({"top": "abc"}, "top"),
        ({"top": "2147483648"}, "top"),
        ({"skip": "1.5"}, "skip"),
        ({"sortOrder": "up"}, "sortOrder"),
        ({"sortBy": "nothing"}, "sortBy"),
    ],
)
def test_bad_parameters(client: httpx.Client, params: dict[str, str], field: str) -> None:
    reply = client.get(AUDIT, params=params, headers=bearer("local-pat"))
    assert reply.status_code == 400
    assert field in reply.json()["errors"]


def test_int32_max_is_accepted(client: httpx.Client) -> None:
    reply = audit(client, "local-pat", top=2**31 - 1, skip=2**31 - 1)
    assert reply.json() == {"totalCount": 5000, "results": []}


def test_page_size_cap(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.page_size_cap = 7
    assert len(audit(client, "local-pat", top=100).json()["results"]) == 7
    assert len(audit(client, "local-pat").json()["results"]) == 7
    assert len(audit(client, "local-pat", top=3).json()["results"]) == 3
    assert audit(client, "local-pat", top=100).json()["totalCount"] == 5000


def test_arrivals_and_removals_shift_positions(plain_server: LocalOrchestratorServer) -> None:
    dataset = plain_server.dataset
    plain_server.arrivals_per_request = 3
    with httpx.Client(base_url=plain_server.url) as client:
        first = audit(client, "local-pat", top=1).json()
        assert first["totalCount"] == 3003
        assert first["results"] == [dataset.entry(3002)]
        second = audit(client, "local-pat", top=1, skip=3).json()
        assert second["results"] == [dataset.entry(3002)]  # the same entry, 3 positions further down
        plain_server.arrivals_per_request = 0
        plain_server.removals_per_request = 2
        oldest = audit(client, "local-pat", top=1, sortOrder="asc").json()
        assert oldest["totalCount"] == 3004
        assert oldest["results"] == [dataset.entry(2)]
    assert dataset.visible_range() == (2, 3006)


# --- faults ------------------------------------------------------------------------------------


def test_status_fault(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(
        Fault.status(418, body="short and stout", headers={"X-Teapot": "yes"}, content_type="text/plain")
    )
    reply = audit(client, "local-pat", top=1)
    assert (reply.status_code, reply.text, reply.headers["x-teapot"]) == (418, "short and stout", "yes")
    assert reply.headers["content-type"] == "text/plain"
    assert audit(client, "local-pat", top=1).status_code == 200


def test_throttle_styles(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.throttle(2))
    reply = audit(client, "local-pat", top=1)
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "2"

    server.faults.push(Fault.throttle(2, style="header-date"))
    reply = audit(client, "local-pat", top=1)
    assert reply.status_code == 429
    wait = parsedate_to_datetime(reply.headers["retry-after"]).timestamp() - time.time()
    assert 1.5 <= wait <= 4

    server.faults.push(Fault.throttle(2, style="body"))
    reply = audit(client, "local-pat", top=1)
    assert reply.status_code == 429
    assert "retry-after" not in reply.headers
    assert reply.json()["retry_after"] == 2


def test_server_error_is_html(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.server_error(502))
    reply = audit(client, "local-pat", top=1)
    assert reply.status_code == 502
    assert reply.headers["content-type"].startswith("text/html")
    assert "<html>" in reply.text and "502 Bad Gateway" in reply.text


def test_reset(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    assert audit(client, "local-pat", top=1).status_code == 200  # a pooled keep-alive connection
    server.faults.push(Fault.reset())
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        audit(client, "local-pat", top=1)
    assert audit(client, "local-pat", top=1).status_code == 200
    assert server.stats.connection_resets == 1


def test_stall_triggers_read_timeout(server: LocalOrchestratorServer) -> None:
    server.faults.push(Fault.stall(0.8))
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(5, read=0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            audit(client, "local-pat", top=1)
        started = time.monotonic()
        assert audit(client, "local-pat", top=1).status_code == 200
        assert time.monotonic() - started < 0.5


def test_stall_then_normal_answer(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.stall(0.3))
    started = time.monotonic()
    reply = audit(client, "local-pat", top=2)
    assert time.monotonic() - started >= 0.3
    assert len(reply.json()["results"]) == 2


def test_malformed_json(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.malformed_json())
    reply = audit(client, "local-pat", top=1)
    assert reply.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.content)


def test_truncated(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.truncated())
    with pytest.raises(httpx.RemoteProtocolError):
        audit(client, "local-pat", top=1)
    assert audit(client, "local-pat", top=1).status_code == 200


def test_wrong_shape_and_missing_total_count(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.wrong_shape())
    assert audit(client, "local-pat", top=1).json() == {"items": []}
    server.faults.push(Fault.missing_total_count())
    page = audit(client, "local-pat", top=2).json()
    assert "totalCount" not in page
    assert len(page["results"]) == 2


def test_bad_created_on(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.bad_created_on())
    page = audit(client, "local-pat", top=3).json()
    assert page["results"][0]["createdOn"] == "yesterday"
    assert page["results"][1]["createdOn"].endswith("+00:00")
    assert page["totalCount"] == 5000


def test_page_damage_waits_for_a_page(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.bad_created_on())
    assert client.get(AUDIT, params={"top": 1}).status_code == 401
    assert audit(client, "local-pat", top=1).json()["results"][0]["createdOn"] == "yesterday"
    assert server.faults.pending() == 0


def test_non_utf8(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.non_utf8())
    reply = audit(client, "local-pat", top=2)
    assert reply.status_code == 200
    assert b"\xff" in reply.content
    with pytest.raises(UnicodeDecodeError):
        reply.content.decode("utf-8")
    fixed = reply.content.decode("utf-8", errors="replace")
    assert len(json.loads(fixed)["results"]) == 2


def test_token_endpoint_faults(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.throttle(1), endpoint="token", times=2)
    server.faults.push(Fault.server_error(), endpoint="token")
    assert client.post(TOKEN, data=FORM).status_code == 429
    assert client.post(TOKEN, data=FORM).status_code == 429
    assert audit(client, "local-pat", top=1).status_code == 200  # the audit endpoint is unaffected
    assert client.post(TOKEN, data=FORM).status_code == 503
    assert client.post(TOKEN, data=FORM).status_code == 200
    server.faults.push(Fault.wrong_shape(), endpoint="token")
    assert "access_token" not in client.post(TOKEN, data=FORM).json()
    with pytest.raises(ValueError):
        server.faults.push(Fault.bad_created_on(), endpoint="token")


def test_fault_queue_order_and_clear(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.faults.push(Fault.server_error(500), times=2)
    server.faults.push(Fault.throttle(0))
    assert server.faults.pending("audit") == 3
    assert [audit(client, "local-pat", top=1).status_code for _ in range(4)] == [500, 500, 429, 200]
    server.faults.push(Fault.server_error())
    server.faults.clear()
    assert audit(client, "local-pat", top=1).status_code == 200


def test_periodic_faults() -> None:
    with LocalOrchestratorServer(AuditDataset(size=100), throttle_every=3, error_every=4, reset_every=10) as server:
        statuses: list[int | str] = []
        with httpx.Client(base_url=server.url) as client:
            for _ in range(12):
                try:
                    statuses.append(audit(client, "local-pat", top=1).status_code)
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    statuses.append("reset")
        assert statuses == [200, 200, 429, 503, 200, 429, 200, 503, 429, "reset", 200, 503]
        assert server.stats.connection_resets == 1


def test_fault_schedule_validation() -> None:
    with pytest.raises(ValueError):
        FaultSchedule(throttle_every=0)
    with pytest.raises(ValueError):
        Fault.server_error(404)
    with pytest.raises(ValueError):
        Fault.throttle(style="header-minutes")  # type: ignore[arg-type]


# --- stats, latency, life cycle ----------------------------------------------------------------


def test_stats(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    token = get_token(client)
    audit(client, token, top=10, skip=0)
    audit(client, token, skip=4990)
    client.get(AUDIT)
    client.post(TOKEN, data={**FORM, "client_secret": "nope"})
    stats = server.stats
    assert stats.audit_requests == 3
    assert stats.token_requests == 2
    assert stats.responses_by_status == {200: 3, 401: 1, 400: 1}
    assert stats.pages == [(0, 10), (4990, None)]
    server.reset_stats()
    assert (server.stats.audit_requests, server.stats.token_requests, server.stats.pages) == (0, 0, [])
    assert server.stats.responses_by_status == {}


def test_latency_is_concurrent(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.latency_seconds = 0.3
    results: list[int] = []

    def fetch() -> None:
        results.append(audit(client, "local-pat", top=1).status_code)  # one pooled client, many connections

    started = time.monotonic()
    threads = [threading.Thread(target=fetch) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 20
    assert 0.3 <= elapsed < 1.5  # 20 sequential sleeps would take 6 s


def test_airflow_connection(server: LocalOrchestratorServer) -> None:
    assert server.airflow_connection() == {
        "conn_type": "orchestrator_audit",
        "host": server.url,
        "login": "local-client",
        "password": "local-secret",
        "extra": {"organization": "acme"},
    }
    assert server.airflow_connection(personal_access_token=True)["extra"] == {
        "organization": "acme",
        "access_token": "local-pat",
    }
    assert server.url.startswith("http://127.0.0.1:")
    assert server.audit_url == f"{server.url}{AUDIT}"


def test_stop_closes_keep_alive_connections() -> None:
    server = LocalOrchestratorServer(AuditDataset(size=10)).start()
    with httpx.Client(base_url=server.url) as client:
        assert audit(client, "local-pat", top=1).status_code == 200
        server.stop()
        with pytest.raises(httpx.TransportError):
            audit(client, "local-pat", top=1)
    server.stop()  # a second stop does nothing
    with pytest.raises(RuntimeError):
        _ = server.url


def test_cli_serves_and_stops() -> None:
    root = Path(testing_package.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_orchestrator_audit.testing",
            "serve",
            "--port",
            "0",
            "--entries",
            "500",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        url = lines[0].split()[-1]
        assert url.startswith("http://127.0.0.1:")
        export = lines[3]
        assert export.startswith("export AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT='")
        connection = json.loads(export.split("=", 1)[1].strip().strip("'"))
        assert connection["host"] == url
        with httpx.Client(base_url=url) as client:
            token = get_token(client)
            assert audit(client, token, top=1).json()["totalCount"] == 500
        process.terminate()
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "Stopped." in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
