"""
What users do in the Airflow UI, done in a real browser against a real Airflow 3.

``airflow standalone`` (api-server, scheduler, dag-processor, triggerer) runs the example export DAG on a
PostgreSQL metadata database; the local Orchestrator and SeaweedFS stand in for UiPath and S3; Debian's
Chromium, driven by
Playwright, creates the connection through the form, presses Test, and starts a backfill over three
hours. Screenshots land in ``test-artifacts/airflow-ui/``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_orchestrator_audit.compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS
from airflow_provider_orchestrator_audit.testing import AuditDataset, LocalOrchestratorServer
from tests.distributed.servers import PostgresServer
from tests.e2e.airflow_cluster import ADMIN_USER, AirflowCluster
from tests.e2e.browser import CHROMIUM_ARGS, chromium_path, keep_log, modal_dialog, pick_datetime, screenshot, sign_in
from tests.e2e.scenarios import EXTRA_LABELS, FORM_LABELS, check_the_sensor_defers_and_resumes, write_sensor_dag
from tests.integration.test_export import canonical, expected_lines, read_objects

pytestmark = pytest.mark.timeout(900)

EXAMPLE_DAG = Path(__file__).resolve().parents[2] / "example_dags" / "example_orchestrator_audit_to_s3.py"
DAG_ID = "example_orchestrator_audit_to_s3"
CONN_ID = "orchestrator_audit_default"
# The deferred sensor's connection, set in the environment as deployments often do.
SENSOR_CONN_ID = "orchestrator_audit_sensor"
# Four hours of entries from 2026-01-01T00:00Z (3,600 an hour), ties and unicode included.
HOURS = 4
CLIENT_SECRET = f"ui-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def orchestrator() -> Iterator[LocalOrchestratorServer]:
    dataset = AuditDataset(size=HOURS * 3600, seed=11)
    with LocalOrchestratorServer(dataset, client_secret=CLIENT_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def export_bucket(s3_server) -> str:
    name = f"airflow-ui-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture(scope="module")
def metadata_database() -> Iterator[PostgresServer]:
    """
    PostgreSQL, as deployments have, not standalone's SQLite: on SQLite, Airflow 3 (3.0 to 3.2 at least)
    can fail to create a backfill's runs. It commits the backfill, then creates each run in a savepoint that
    reads before it writes; SQLite refuses such a write at once ("database is locked", its busy timeout not
    consulted) when another component wrote meanwhile, and the request fails with the backfill left
    without its runs and in the way of another. PostgreSQL waits for the row locks instead.
    """
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def airflow(orchestrator, s3_server, export_bucket, metadata_database, tmp_path_factory) -> Iterator[AirflowCluster]:
    env = {
        **s3_server.airflow_connection_env("aws_default"),
        f"AIRFLOW_CONN_{SENSOR_CONN_ID.upper()}": json.dumps(orchestrator.airflow_connection()),
        "AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET": export_bucket,
    }
    sensor_dag = write_sensor_dag(tmp_path_factory.mktemp("dags"), SENSOR_CONN_ID)
    cluster = AirflowCluster([EXAMPLE_DAG, sensor_dag], env, database_url=metadata_database.sqlalchemy_url)
    with cluster:
        cluster.wait_for_dag(DAG_ID)
        yield cluster
    keep_log(cluster, "airflow-ui-standalone.log")
    cluster.remove()


@pytest.fixture(scope="module")
def page(airflow) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            sign_in(page, airflow.url, ADMIN_USER, airflow.password)
            yield page
        finally:
            browser.close()


def create_connection_in_form(page: Any, airflow: AirflowCluster, orchestrator: LocalOrchestratorServer) -> None:
    """Admin -> Connections -> Add Connection, filled in as the README tells users."""
    page.goto(f"{airflow.url}/connections")
    page.get_by_role("button", name="Add Connection").first.click()
    dialog = modal_dialog(page)
    dialog.get_by_label("Connection ID").fill(CONN_ID)
    dialog.get_by_role("combobox").fill("orchestrator")
    # Airflow 3.1 and later list the hook's name, 3.0 the connection type.
    page.get_by_role("option", name=re.compile(r"^(UiPath Orchestrator Audit|orchestrator_audit)$")).click()

    for label in FORM_LABELS:
        assert dialog.get_by_label(label, exact=True).is_visible(), f"no field labelled {label!r}"
    dialog.get_by_label("Base URL").fill("http://127.0.0.1")
    dialog.get_by_label("Port").fill(str(orchestrator.port))
    dialog.get_by_label("Client ID").fill(orchestrator.client_id)
    secret = dialog.get_by_label("Client secret")
    secret.fill(CLIENT_SECRET)
    assert secret.get_attribute("type") == "password", "the client secret must be masked while typed"
    screenshot(page, "connection-form")

    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for label in EXTRA_LABELS:
        assert dialog.get_by_text(label, exact=True).is_visible(), f"no extra field labelled {label!r}"
    if AIRFLOW_V_3_2_PLUS:
        assert dialog.locator("[name=element_access_token]").get_attribute("type") == "password"
    else:
        # 3.0 and 3.1's form masks only the standard password field while typing; the API still returns
        # the stored token as "***" (its name is a sensitive one).
        assert dialog.locator("[name=element_access_token]").get_attribute("type") is None
    dialog.locator("[name=element_organization]").fill(orchestrator.organization)
    screenshot(page, "connection-form-extras")

    dialog.get_by_role("button", name="Save").click()
    # The form (with the typed secret in its field) fades out before it leaves the page.
    dialog.wait_for(state="detached")
    page.get_by_role("row", name=CONN_ID).wait_for()


def press_test(page: Any, airflow: AirflowCluster, row: Any, connection: dict) -> dict:
    """
    The connection list's Test button, and the API server's answer to it.

    Airflow 3.0's list has no Test button; its API server answers the same request the button sends in
    later lines (``POST /api/v2/connections/test`` with the connection's fields).
    """
    if not AIRFLOW_V_3_1_PLUS:
        assert row.get_by_role("button", name="Test Connection").count() == 0
        return airflow.api_post("connections/test", connection)
    with page.expect_response(re.compile(r"/api/v2/connections/test$")) as answer:
        row.get_by_role("button", name="Test Connection").click()
    return answer.value.json()


def form_connection(orchestrator: LocalOrchestratorServer, conn_id: str, password: str) -> dict:
    """A connection as the form submits it."""
    return {
        "connection_id": conn_id,
        "conn_type": "orchestrator_audit",
        "host": "http://127.0.0.1",
        "port": orchestrator.port,
        "login": orchestrator.client_id,
        "password": password,
        "extra": json.dumps({"organization": orchestrator.organization}),
    }


def test_the_connection_form_saves_a_masked_secret_and_test_succeeds(page, airflow, orchestrator):
    create_connection_in_form(page, airflow, orchestrator)

    row = page.get_by_role("row", name=CONN_ID)
    assert "UiPath" in row.inner_text() or "orchestrator_audit" in row.inner_text()
    assert CLIENT_SECRET not in page.content()
    result = press_test(page, airflow, row, form_connection(orchestrator, CONN_ID, CLIENT_SECRET))
    expected = f"Connected to organization 'acme' at {orchestrator.url}: {HOURS * 3600} audit entries"
    assert result == {"status": True, "message": expected}
    if AIRFLOW_V_3_1_PLUS:
        page.get_by_text("Test Connection Successful").wait_for()
        page.get_by_text(expected).wait_for()
        screenshot(page, "connection-test-succeeded")

    # Editing shows the secret masked, never its value.
    row.get_by_role("button", name="Edit Connection").click()
    dialog = modal_dialog(page)
    shown = dialog.get_by_label("Client secret").input_value()
    assert shown != CLIENT_SECRET and CLIENT_SECRET not in page.content()
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="detached")


def test_test_with_a_wrong_secret_says_what_to_fix_without_showing_it(page, airflow, orchestrator):
    wrong_secret = f"wrong-{uuid.uuid4().hex}"
    connection = form_connection(orchestrator, "orchestrator_wrong_secret", wrong_secret)
    airflow.api_post("connections", connection)
    page.goto(f"{airflow.url}/connections")
    row = page.get_by_role("row", name="orchestrator_wrong_secret")
    result = press_test(page, airflow, row, connection)
    assert result["status"] is False
    message = result["message"]
    assert message.startswith("The identity server at ") and "invalid_client" in message, message
    assert "Password (client secret)" in message, message
    if AIRFLOW_V_3_1_PLUS:
        page.get_by_text("Test Connection Failed").wait_for()
        page.get_by_text("invalid_client").first.wait_for()
        screenshot(page, "connection-test-failed")
    assert wrong_secret not in result["message"] and wrong_secret not in page.content()


def backfill_report(airflow: AirflowCluster) -> str:
    """The DAG's backfills as the API shows them, and what the cluster's whole log says about them."""
    backfills = airflow.api(f"backfills?dag_id={DAG_ID}")["backfills"]
    return f"backfills: {backfills}\n{airflow.failure_report(requests_to=('/api/v2/backfills',))}"


def wait_for_runs(airflow: AirflowCluster, count: int, timeout: float = 420.0) -> list[dict]:
    """Wait until ``count`` runs of the DAG succeeded; fail at once, with the log, if one fails."""
    deadline = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = airflow.api(f"dags/{DAG_ID}/dagRuns?order_by=logical_date")["dag_runs"]
        states = [run["state"] for run in runs]
        assert "failed" not in states, f"a backfill run failed: {runs}\n{backfill_report(airflow)}"
        if states.count("success") >= count:
            return runs
        time.sleep(2)
    paused = airflow.api(f"dags/{DAG_ID}")["is_paused"]
    raise TimeoutError(
        f"runs after {timeout:.0f} s (DAG paused: {paused}): {[(r['dag_run_id'], r['state']) for r in runs]}\n"
        f"{backfill_report(airflow)}"
    )


def wait_for_backfill_to_complete(airflow: AirflowCluster, timeout: float = 60.0) -> None:
    """The scheduler marks a backfill complete a moment after its last run (the UI's banner goes then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfills = airflow.api(f"backfills?dag_id={DAG_ID}")["backfills"]
        if backfills and all(backfill["completed_at"] for backfill in backfills):
            return
        time.sleep(1)
    raise TimeoutError(f"the backfill was not marked complete within {timeout:.0f} s")


def wait_for_backfill_created(page: Any, dialog: Any, airflow: AirflowCluster, timeout: float = 120.0) -> None:
    """
    Wait until the dialog's one API call created the backfill, and the dialog is closed.

    Airflow 3.0's dialog can stay open after the backfill was created: on a loaded machine Chromium may
    send the request a second time (a kept-alive connection closed under it), and the dialog then shows
    that second answer, 409 "already a running backfill". The backfill the first created is what counts,
    so the API decides, and the dialog is closed by hand in that case.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not dialog.is_visible():
            break
        if airflow.api(f"backfills?dag_id={DAG_ID}")["backfills"]:
            _closes_by_itself(dialog)
            break
        time.sleep(1)
    else:
        screenshot(page, "backfill-dialog-still-open")  # what the dialog said, for the failure report
        raise TimeoutError(
            f"no backfill was created within {timeout:.0f} s of pressing Run Backfill\n{backfill_report(airflow)}"
        )
    if dialog.is_visible():
        screenshot(page, "backfill-dialog-open-after-create")
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
    backfills = airflow.api(f"backfills?dag_id={DAG_ID}")["backfills"]
    assert len(backfills) == 1, backfills


def _closes_by_itself(dialog: Any) -> bool:
    """Whether the dialog closes within 10 s (it normally does right after the backfill is created)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        dialog.wait_for(state="hidden", timeout=10_000)
    except PlaywrightTimeout:
        return False
    return True


def test_a_backfill_of_three_hours_started_in_the_ui_exports_each_hour_once(
    page, airflow, orchestrator, s3_server, export_bucket
):
    if not any(row["connection_id"] == CONN_ID for row in airflow.api("connections")["connections"]):
        create_connection_in_form(page, airflow, orchestrator)

    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    # Logical dates are the hours' starts: 00:00, 01:00 and 02:00 export [00:00, 03:00).
    if AIRFLOW_V_3_1_PLUS:  # a mode of the Trigger dialog, with date-time pickers
        page.get_by_role("button", name="Trigger").first.click()
        dialog = modal_dialog(page)
        dialog.get_by_text("Backfill", exact=True).click()
        pick_datetime(page, dialog, 0, "2026/01/01", "00:00")
        pick_datetime(page, dialog, 1, "2026/01/01", "02:00")
    else:  # 3.0: a dialog of its own, with the browser's date-time inputs
        page.get_by_role("button", name="Run Backfill").first.click()
        dialog = modal_dialog(page)
        dialog.locator("[name=from_date]").fill("2026-01-01T00:00")
        dialog.locator("[name=to_date]").fill("2026-01-01T02:00")
    dialog.get_by_text("3 runs will be triggered").wait_for()
    dialog.get_by_role("spinbutton").fill("3")  # Max Active Runs: the hours are independent
    dialog.get_by_text("3 runs will be triggered").wait_for()  # re-checked after the change
    requests: list[str] = []  # what the dialog sent, and the answers' status codes, for the failure report
    answers: list[int] = []

    def record_request(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/v2/backfills"):
            requests.append(f"{request.post_data}")

    def record_answer(response: Any) -> None:
        if response.request.method == "POST" and response.url.endswith("/api/v2/backfills"):
            answers.append(response.status)

    page.on("request", record_request)
    page.on("response", record_answer)
    dialog.get_by_role("button", name="Run Backfill").click()
    wait_for_backfill_created(page, dialog, airflow)
    page.remove_listener("request", record_request)
    page.remove_listener("response", record_answer)
    # A server error leaves the backfill without (all) its runs: no use waiting minutes for them.
    assert all(status < 500 for status in answers), (
        f"Airflow failed to create the backfill: answers {answers} to {requests}\n{backfill_report(airflow)}"
    )
    (backfill,) = airflow.api(f"backfills?dag_id={DAG_ID}")["backfills"]
    assert (backfill["from_date"][:16], backfill["to_date"][:16]) == ("2026-01-01T00:00", "2026-01-01T02:00"), (
        backfill,
        requests,
        answers,
    )

    runs = wait_for_runs(airflow, 3)
    assert sorted(run["logical_date"][:19] for run in runs) == [
        "2026-01-01T00:00:00",
        "2026-01-01T01:00:00",
        "2026-01-01T02:00:00",
    ]
    assert all(run["run_type"] == "backfill" for run in runs)

    wait_for_backfill_to_complete(airflow)
    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    page.get_by_text("export_audit_logs").first.wait_for()
    page.wait_for_timeout(1500)  # the grid's run bars animate in
    screenshot(page, "dag-grid-after-backfill")

    prefix = "orchestrator-audit/organization=acme/dt=2026-01-01"
    # Hours 00-02 only: the trigger test writes a window of hour 03 into the same bucket.
    objects = {
        key: lines
        for hour in range(3)
        for key, lines in read_objects(s3_server, export_bucket, f"{prefix}/hour={hour:02d}/").items()
    }
    assert sorted(objects) == [
        f"{prefix}/hour=00/20260101T000000Z_20260101T010000Z.jsonl.gz",
        f"{prefix}/hour=01/20260101T010000Z_20260101T020000Z.jsonl.gz",
        f"{prefix}/hour=02/20260101T020000Z_20260101T030000Z.jsonl.gz",
    ]
    for hour in range(3):
        key = f"{prefix}/hour={hour:02d}/20260101T{hour:02d}0000Z_20260101T{hour + 1:02d}0000Z.jsonl.gz"
        expected = expected_lines(orchestrator, f"2026-01-01T{hour:02d}:00:00Z", f"2026-01-01T{hour + 1:02d}:00:00Z")
        assert len(expected) > 3000
        assert canonical(json.loads(line) for line in objects[key]) == canonical(expected), key


def test_trigger_with_a_window_in_the_params_exports_exactly_that_window(
    page, airflow, orchestrator, s3_server, export_bucket
):
    """*Trigger* with the DAG's params ``window_start``/``window_end`` exports any window, to its own key."""
    if not any(row["connection_id"] == CONN_ID for row in airflow.api("connections")["connections"]):
        create_connection_in_form(page, airflow, orchestrator)
    before = {run["dag_run_id"] for run in airflow.api(f"dags/{DAG_ID}/dagRuns")["dag_runs"]}

    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = modal_dialog(page)
    if AIRFLOW_V_3_1_PLUS:  # (3.0's Trigger dialog has no backfill mode to switch from)
        dialog.get_by_text("Single Run", exact=True).click()
    dialog.locator("[name=element_window_start]").fill("2026-01-01T03:00:00Z")
    dialog.locator("[name=element_window_end]").fill("2026-01-01T03:30:00.5Z")
    screenshot(page, "trigger-with-a-window")
    dialog.get_by_role("button", name="Trigger").click()
    dialog.wait_for(state="hidden")

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = [run for run in airflow.api(f"dags/{DAG_ID}/dagRuns")["dag_runs"] if run["dag_run_id"] not in before]
        if runs and runs[0]["state"] in ("success", "failed"):
            break
        time.sleep(2)
    assert len(runs) == 1 and runs[0]["run_type"] == "manual", runs
    assert runs[0]["state"] == "success", airflow.failure_report()

    key = (
        "orchestrator-audit/organization=acme/dt=2026-01-01/hour=03/20260101T030000Z_20260101T033000.5000000Z.jsonl.gz"
    )
    objects = read_objects(s3_server, export_bucket, "orchestrator-audit/organization=acme/dt=2026-01-01/hour=03/")
    assert list(objects) == [key]
    expected = expected_lines(orchestrator, "2026-01-01T03:00:00Z", "2026-01-01T03:30:00.5Z")
    assert len(expected) > 1500
    assert canonical(json.loads(line) for line in objects[key]) == canonical(expected)


def test_a_deferred_sensor_waits_in_the_triggerer_and_resumes_the_task(airflow, orchestrator):
    """The sensor defers, its trigger polls in the triggerer, and new entries resume the task on a worker."""
    check_the_sensor_defers_and_resumes(airflow, orchestrator)
