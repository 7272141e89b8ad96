import json

import pytest

from airflow_provider_orchestrator_audit.client.page_parser import PageFormatError, parse_page

ENTRY = '{"createdOn":"2021-10-14T13:10:15.1964174+00:00","category":"User","ratio":1.10,"name":"Jos\\u00e9"}'


def test_entries_keep_the_servers_exact_text():
    page = parse_page(f'{{"totalCount":29,"results":[{ENTRY},{ENTRY}]}}'.encode())
    assert page.total_count == 29 and len(page.results) == 2
    assert page.results[0].to_json() == ENTRY  # "1.10" and "\u00e9" untouched
    assert page.results[0].raw["name"] == "José"


def test_any_key_order_whitespace_and_extra_keys():
    body = f' {{ "results" : [ {ENTRY} ] ,\t"extra": {{"a": [1, 2]}}, "totalCount" : 3 }}\n'
    page = parse_page(body.encode())
    assert page.total_count == 3 and page.results[0].to_json() == ENTRY
    assert parse_page(b'{"totalCount": 0, "results": []}').results == []


def test_pretty_printed_entries_are_written_on_one_line():
    body = json.dumps({"totalCount": 1, "results": [json.loads(ENTRY)]}, indent=2).encode()
    line = parse_page(body).results[0].to_json()
    assert "\n" not in line and json.loads(line) == json.loads(ENTRY)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>503</html>", "not valid JSON"),
        (b'{"totalCount": 1, "results": [', "not valid JSON"),
        (b'{"totalCount": 1, "results": []} trailing', "not valid JSON: Extra data"),
        (b'{"results": []}', "totalCount: Field required"),
        (b'{"totalCount": "many", "results": []}', "totalCount: must be a non-negative integer"),
        (b'{"totalCount": 1}', "results: Field required"),
        (b'{"totalCount": 1, "results": [42]}', "results.0: Input should be a valid dictionary"),
        (b'{"totalCount": 1, "results": [{"createdOn": "yesterday"}]}', "results.0: createdOn is not a timestamp"),
        (b'{"totalCount": 1, "results": [{"category": "User"}]}', "results.0: createdOn must be a timestamp string"),
        (b'{"totalCount": 1, "results": [{"createdOn": "\xff"}]}', "not valid JSON: the body is not UTF-8"),
        (b"[]", "not valid JSON: Expecting '{'"),
    ],
)
def test_malformed_pages_say_what_is_wrong(body, message):
    with pytest.raises(PageFormatError, match=message.replace("(", r"\(")):
        parse_page(body)


@pytest.mark.parametrize(
    ("body", "damaged"),
    [
        (b"<html>503</html>", True),  # a proxy's page
        (b'{"totalCount": 1, "results": [', True),  # cut short
        (b'{"totalCount": 1, "results": [{"createdOn": "\xff"}]}', True),  # not UTF-8
        (b'{"totalCount": 1, "results": []} trailing', True),
        (b"[]", False),  # valid JSON, wrong shape
        (b'{"items": []}', False),
        (b'{"totalCount": 1, "results": [{"createdOn": "yesterday"}]}', False),
    ],
)
def test_damaged_bodies_are_told_from_well_formed_wrong_ones(body, damaged):
    with pytest.raises(PageFormatError) as info:
        parse_page(body)
    assert info.value.damaged is damaged
