"""The one integer check of the client, and the client parameters it guards."""

import doctest

import pytest

from airflow_provider_orchestrator_audit import validation
from airflow_provider_orchestrator_audit.client.drivers import AsyncOrchestratorAuditClient, OrchestratorAuditClient
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError
from airflow_provider_orchestrator_audit.validation import checked_int

SETTINGS = ConnectionSettings(conn_id="c", base_url="https://o.example", organization="acme", access_token="pat")


def test_integers_in_range_pass_through():
    assert checked_int("page_size", 1) == 1
    assert checked_int("skip", 0, minimum=0, maximum=10) == 0
    assert checked_int("skip", 10, minimum=0, maximum=10) == 10


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "page_size must be at least 1, got 0"),
        (-3, "page_size must be at least 1, got -3"),
        (True, "page_size must be an integer of at least 1, got True"),
        (2.0, "page_size must be an integer of at least 1, got 2.0"),
        ("5", "page_size must be an integer of at least 1, got '5'"),
        (None, "page_size must be an integer of at least 1, got None"),
    ],
)
def test_anything_else_is_refused_naming_the_parameter(value, message):
    with pytest.raises(ValueError) as info:
        checked_int("page_size", value)
    assert str(info.value) == message


def test_a_bounded_range_is_stated_whole_and_the_error_class_is_the_callers():
    for value in (-1, 11, False, 3.5):
        with pytest.raises(OrchestratorConfigError, match=f"^skip must be an integer from 0 to 10, got {value!r}$"):
            checked_int("skip", value, minimum=0, maximum=10, error=OrchestratorConfigError)


def test_the_module_example_holds():
    result = doctest.testmod(validation)
    assert result.attempted == 1 and result.failed == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1, got 0"),
        ({"max_attempts": 2.5}, "max_attempts must be an integer of at least 1, got 2.5"),
        ({"max_damaged_body_attempts": 0}, "max_damaged_body_attempts must be at least 1, got 0"),
        ({"max_damaged_body_attempts": "3"}, "max_damaged_body_attempts must be an integer of at least 1, got '3'"),
    ],
)
def test_retry_policy_counts_are_checked(fields, message):
    with pytest.raises(ValueError) as info:
        RetryPolicy(**fields)
    assert str(info.value) == message


@pytest.mark.parametrize("client_class", [OrchestratorAuditClient, AsyncOrchestratorAuditClient])
def test_clients_need_at_least_one_connection(client_class):
    with pytest.raises(ValueError, match="^max_connections must be at least 1, got 0$"):
        client_class(SETTINGS, max_connections=0)
