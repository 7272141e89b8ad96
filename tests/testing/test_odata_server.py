"""The local Orchestrator's odata/AuditLogs over HTTP: the query subset, caps, errors, scopes and paths."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_orchestrator_audit.testing import Fault, LocalOrchestratorServer
from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import (
    FIRST_ID,
    OdataSwitches,
    OrchestratorDataset,
)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalOrchestratorServer]:
    with LocalOrchestratorServer(orchestrator_audit=OrchestratorDataset(size=3000, seed=2)) as running:
        yield running


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    server.faults.clear()
    server.odata_listing.switches = OdataSwitches()
    with httpx.Client() as http:
        yield http


def token(server: LocalOrchestratorServer, http: httpx.Client, scope: str) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "local-secret"}
    answer = http.post(server.token_url, data={**form, "scope": scope})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_keyset_page_with_count_and_entities(server, client):
    params = {
        "$filter": "ExecutionTime ge 2026-01-01T00:10:00Z and ExecutionTime lt 2026-01-01T00:20:00Z and Id gt 100700",
        "$orderby": "Id asc",
        "$top": "5000",
        "$count": "true",
        "$expand": "Entities",
    }
    answer = client.get(server.orchestrator_audit_url("HR"), params=params, headers=token(server, client, "OR.Audit"))
    document = answer.json()
    ids = [entry["Id"] for entry in document["value"]]
    assert answer.status_code == 200 and ids == sorted(ids) and ids[0] > 100700
    assert document["@odata.count"] == len(ids) < 1000 and all(entry["Entities"] for entry in document["value"])
    assert document["@odata.context"].endswith("/acme/HR/orchestrator_/odata/$metadata#AuditLogs(Entities())")


def test_top_is_capped_at_1000_and_skip_pages(server, client):
    headers = token(server, client, "OR.Audit.Read")
    first = client.get(server.orchestrator_audit_url(), params={"$top": "1500"}, headers=headers).json()["value"]
    later = client.get(server.orchestrator_audit_url(), params={"$skip": "999", "$top": "2"}, headers=headers).json()
    assert len(first) == 1000 and first[0]["Id"] == FIRST_ID
    assert [entry["Id"] for entry in later["value"]] == [FIRST_ID + 999, FIRST_ID + 1000]


def test_newest_first_by_execution_time_sees_late_entries(server, client):
    server.orchestrator_audit.record_late("DefaultTenant", 1, [10**7])
    headers = token(server, client, "OR.Audit.Read")
    params = {"$orderby": "ExecutionTime desc,Id desc", "$top": "2"}
    newest = client.get(server.orchestrator_audit_url("DefaultTenant"), params=params, headers=headers).json()["value"]
    assert (
        newest[0]["Id"] == FIRST_ID + 2999 and newest[1]["Id"] == FIRST_ID + 3000
    )  # the late one: a new Id, 1 s older
    server.orchestrator_audit.reset("DefaultTenant", 3000)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"$filter": "UserName eq 'x'"}, "Filtering on 'UserName' is not supported"),
        ({"$filter": "ExecutionTime ge yesterday"}, "Edm.DateTimeOffset"),
        ({"$filter": "Id gt 1 or Id lt 5"}, "is not supported"),
        ({"$orderby": "UserName"}, "$orderby 'UserName'"),
        ({"$expand": "Robots"}, "property named 'Robots'"),
        ({"$select": "Id"}, "'$select' is not supported"),
    ],
)
def test_unsupported_queries_answer_odata_400(server, client, params, fragment):
    answer = client.get(server.orchestrator_audit_url(), params=params, headers=token(server, client, "OR.Audit.Read"))
    document = answer.json()
    assert answer.status_code == 400 and set(document) == {"message", "errorCode", "traceId"}
    assert fragment in document["message"]


def test_scope_and_permission_refusals(server, client):
    refused = client.get(server.orchestrator_audit_url(), headers=token(server, client, "PM.Audit.Read"))
    assert refused.status_code == 403 and 'scope="OR.Audit.Read"' in refused.headers["WWW-Authenticate"]
    classic = client.get(server.audit_url, headers=token(server, client, "OR.Audit.Read"))
    assert classic.status_code == 403, "an OR token does not read the platform's audit log"
    server.odata_listing.switches = OdataSwitches(audit_view=False)
    denied = client.get(server.orchestrator_audit_url(), headers=token(server, client, "OR.Audit.Read"))
    assert denied.status_code == 403 and "Audit.View" in denied.json()["message"]


def test_precision_and_offset_switches(server, client):
    headers = token(server, client, "OR.Audit.Read")
    for switches, pattern in (
        (OdataSwitches(fraction_digits=7), r"^2026-01-01T00:00:\d\d\.\d{7}Z$"),
        (OdataSwitches(fraction_digits=3, offset="+00:00"), r"^2026-01-01T00:00:\d\d\.\d{3}\+00:00$"),
        (OdataSwitches(fraction_digits=0, offset="+02:00"), r"^2026-01-01T02:00:\d\d\+02:00$"),
    ):
        server.odata_listing.switches = switches
        answer = client.get(server.orchestrator_audit_url(), params={"$top": "3"}, headers=headers)
        assert all(re.match(pattern, entry["ExecutionTime"]) for entry in answer.json()["value"])


def test_faults_apply_to_the_odata_endpoint(server, client):
    headers = token(server, client, "OR.Audit.Read")
    server.faults.push(Fault.throttle(3))
    throttled = client.get(server.orchestrator_audit_url("Finance"), headers=headers)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    unknown = client.get(f"{server.url}/acme/Nope/orchestrator_/odata/AuditLogs", headers=headers)
    assert unknown.status_code == 404 and "Tenant 'Nope'" in unknown.json()["message"]
