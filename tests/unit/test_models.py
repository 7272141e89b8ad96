import json

import pytest
from pydantic import ValidationError

from airflow_provider_orchestrator_audit.models import AuditLogPage
from airflow_provider_orchestrator_audit.timestamps import parse_timestamp

ENTRY = {
    "createdOn": "2021-10-14T13:10:15.1964174+00:00",
    "category": "User",
    "action": "Login",
    "auditLogDetails": '{\r\n "userName": "Zoë"\r\n}',
    "userName": 'Zoë "Z" Ångström',
    "email": "",
    "message": "line one\nline two\u2028after a line separator \\ backslash",
    "detailsVersion": "1.0",
    "source": "Cis",
    "tenantName": "DefaultTenant",
}


def test_entries_keep_every_field_and_the_raw_timestamp():
    page = AuditLogPage.model_validate_json(json.dumps({"totalCount": 29, "results": [ENTRY]}))
    entry = page.results[0]
    assert page.total_count == 29
    assert entry.created_on == ENTRY["createdOn"]
    assert entry.created_on_ticks == parse_timestamp(ENTRY["createdOn"])
    assert entry.created_at.isoformat() == "2021-10-14T13:10:15.196417+00:00"
    line = entry.to_json()
    assert "\n" not in line and "\u2028" not in line and len(line.splitlines()) == 1
    assert json.loads(line) == ENTRY
    assert list(json.loads(line)) == list(ENTRY)


def test_absent_optional_fields_stay_absent():
    entry = AuditLogPage.model_validate({"totalCount": 1, "results": [{"createdOn": ENTRY["createdOn"]}]}).results[0]
    assert json.loads(entry.to_json()) == {"createdOn": ENTRY["createdOn"]}


@pytest.mark.parametrize(
    "body",
    [
        {"results": []},
        {"totalCount": 1, "items": []},
        {"totalCount": 1, "results": [{"createdOn": "yesterday"}]},
        {"totalCount": -1, "results": []},
    ],
)
def test_wrong_shapes_are_rejected(body):
    with pytest.raises(ValidationError):
        AuditLogPage.model_validate_json(json.dumps(body))


def test_a_lone_surrogate_in_a_reencoded_entry_is_written_escaped():
    """Fields decoded from ``"\\ud800"`` (valid JSON) hold a code point UTF-8 cannot encode: escaped again."""
    entry = AuditLogPage.model_validate(
        {"totalCount": 1, "results": [{"createdOn": ENTRY["createdOn"], "message": "\ud800 \U0001f600 \u2028"}]}
    ).results[0]
    line = entry.to_json_bytes().decode("utf-8")
    assert line == '{"createdOn":"2021-10-14T13:10:15.1964174+00:00","message":"\\ud800 \U0001f600 \\u2028"}'
    assert json.loads(line)["message"] == "\ud800 \U0001f600 \u2028"
