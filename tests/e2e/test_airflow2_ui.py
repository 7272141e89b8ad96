"""
What users do in Airflow 2.11's web UI, done in a real browser against a real Airflow 2.11.

``airflow standalone`` (the Flask web server, scheduler, triggerer) runs a deferrable sensor; the local
Orchestrator stands in for UiPath; Debian's Chromium, driven by Playwright, fills the connection form
(built from the hook's ``get_connection_form_widgets``/``get_ui_field_behaviour``), presses Test and
saves it; the sensor then waits in the triggerer on that saved connection. Screenshots land in
``test-artifacts/airflow-ui/``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_orchestrator_audit.testing import AuditDataset, LocalOrchestratorServer
from tests.e2e.airflow_cluster import ADMIN_USER, Airflow2Cluster
from tests.e2e.browser import CHROMIUM_ARGS, chromium_path, keep_log, screenshot, sign_in_fab
from tests.e2e.scenarios import EXTRA_LABELS, FORM_LABELS, check_the_sensor_defers_and_resumes, write_sensor_dag

pytestmark = pytest.mark.timeout(600)

CONN_ID = "orchestrator_audit_default"
ENTRIES = 2_000
CLIENT_SECRET = f"ui-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def orchestrator() -> Iterator[LocalOrchestratorServer]:
    with LocalOrchestratorServer(AuditDataset(size=ENTRIES, seed=11), client_secret=CLIENT_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def airflow(orchestrator, tmp_path_factory) -> Iterator[Airflow2Cluster]:
    # The sensor uses the connection the form test saves: what the UI stored is what a task gets.
    sensor_dag = write_sensor_dag(tmp_path_factory.mktemp("dags"), CONN_ID)
    cluster = Airflow2Cluster([sensor_dag], {})
    with cluster:
        yield cluster
    keep_log(cluster, "airflow2-ui-standalone.log")
    cluster.remove()


@pytest.fixture(scope="module")
def page(airflow) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # Generous: the single web server worker builds the providers' form on the first visit, on a
            # machine shared with other work.
            page.set_default_timeout(60_000)
            sign_in_fab(page, airflow.url, ADMIN_USER, airflow.password)
            yield page
        finally:
            browser.close()


def open_connection_form(page: Any, airflow: Airflow2Cluster, conn_id: str) -> None:
    """Admin -> Connections -> + (Add a new record), with our connection type picked in its drop-down."""
    page.goto(f"{airflow.url}/connection/list/")
    page.locator("a[href*='/connection/add']").first.click()
    page.wait_for_url(re.compile(r"/connection/add"))
    page.get_by_label("Connection Id").fill(conn_id)
    # The type is a Select2 drop-down: open it, search, pick.
    page.locator("#select2-conn_type-container").click()
    page.locator(".select2-search__field").fill("orchestrator")
    page.locator(".select2-results__option", has_text="UiPath Orchestrator Audit").click()
    page.get_by_label("Base URL", exact=True).wait_for()  # the form follows the type


def fill_connection_form(page: Any, orchestrator: LocalOrchestratorServer, secret: str) -> None:
    """The fields as the README tells users to fill them."""
    page.get_by_label("Base URL", exact=True).fill("http://127.0.0.1")
    page.get_by_label("Port", exact=True).fill(str(orchestrator.port))
    page.get_by_label("Client ID", exact=True).fill(orchestrator.client_id)
    page.get_by_label("Client secret", exact=True).fill(secret)
    page.get_by_label("Organization", exact=True).fill(orchestrator.organization)


def press_test(page: Any) -> dict:
    """The form's Test button, and the web server's answer to the request it sends."""
    with page.expect_response(re.compile(r"/api/v1/connections/test$")) as answer:
        page.locator("#test-connection").click()
    return answer.value.json()


def shows_answer(page: Any, text: str) -> None:
    """The answer in the alert box above the form (2.11 shows a failed test's message in it too)."""
    alert = page.locator(".alert", has_text=text)
    alert.wait_for()
    alert.scroll_into_view_if_needed()


def test_the_connection_form_tests_and_saves_a_masked_secret(page, airflow, orchestrator):
    open_connection_form(page, airflow, CONN_ID)
    for label in (*FORM_LABELS, *EXTRA_LABELS):
        assert page.get_by_label(label, exact=True).is_visible(), f"no field labelled {label!r}"
    fill_connection_form(page, orchestrator, CLIENT_SECRET)
    assert page.get_by_label("Client secret", exact=True).get_attribute("type") == "password"
    assert page.get_by_label("Personal access token", exact=True).get_attribute("type") == "password"
    assert page.get_by_label("Scope", exact=True).input_value() == "PM.Audit.Read"  # the field's default
    screenshot(page, "airflow2-connection-form")

    # 2.11's Test button sits on the form and tests what is typed, before it is saved.
    assert page.locator("#test-connection").is_enabled()
    result = press_test(page)
    expected = f"Connected to organization 'acme' at {orchestrator.url}: {ENTRIES} audit entries"
    assert result == {"status": True, "message": expected}
    shows_answer(page, expected)
    screenshot(page, "airflow2-connection-test-succeeded")

    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/connection/list/"))
    row = page.locator("table tr", has_text=CONN_ID)
    row.wait_for()
    assert "orchestrator_audit" in row.inner_text()
    assert CLIENT_SECRET not in page.content()
    stored = airflow.api(f"connections/{CONN_ID}")
    assert (stored["conn_type"], stored["host"], stored["port"], stored["login"]) == (
        "orchestrator_audit",
        "http://127.0.0.1",
        orchestrator.port,
        orchestrator.client_id,
    )
    assert CLIENT_SECRET not in str(stored)

    # Editing shows the secret's field empty, never its value.
    row.locator("a[href*='/connection/edit/']").click()
    page.wait_for_url(re.compile(r"/connection/edit/"))
    assert page.get_by_label("Client secret", exact=True).input_value() == ""
    assert page.get_by_label("Organization", exact=True).input_value() == orchestrator.organization
    assert CLIENT_SECRET not in page.content()


def test_test_with_a_wrong_secret_says_what_to_fix_without_showing_it(page, airflow, orchestrator):
    wrong_secret = f"wrong-{uuid.uuid4().hex}"
    open_connection_form(page, airflow, "orchestrator_wrong_secret")
    fill_connection_form(page, orchestrator, wrong_secret)
    result = press_test(page)
    assert result["status"] is False
    message = result["message"]
    assert message.startswith("The identity server at ") and "invalid_client" in message, message
    assert "Password (client secret)" in message, message
    shows_answer(page, "invalid_client")
    screenshot(page, "airflow2-connection-test-failed")
    assert wrong_secret not in message and wrong_secret not in page.content()


def test_a_deferred_sensor_waits_in_the_triggerer_and_resumes_the_task(page, airflow, orchestrator):
    """The sensor defers, its trigger polls in the triggerer, and new entries resume the task."""
    try:
        airflow.api(f"connections/{CONN_ID}")
    except httpx.HTTPStatusError as error:  # the form test did not run first
        assert error.response.status_code == 404, error
        open_connection_form(page, airflow, CONN_ID)
        fill_connection_form(page, orchestrator, CLIENT_SECRET)
        page.get_by_role("button", name="Save").click()
        page.wait_for_url(re.compile(r"/connection/list/"))
    check_the_sensor_defers_and_resumes(airflow, orchestrator)
