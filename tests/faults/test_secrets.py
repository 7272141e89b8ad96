"""
No client secret, access token or personal access token reaches a log line or an error, whatever happens.

Each scenario is a real ``dag.test()`` export with every logger at DEBUG: the provider's, httpx's,
httpcore's, Airflow's task logger and the root logger. Two captures are searched: the log records
themselves (``caplog``, before any masking, so a secret the code logs is found even if Airflow's
masker would hide it later) and the task log exactly as Airflow renders it to the console. The
exception the task failed with is searched too: its message, its ``repr``, its formatted traceback
and every exception chained to it (``__cause__`` and ``__context__``, suppressed or not). Each
scenario also checks that the capture saw what it should (DEBUG lines of httpcore, the task's own
lines, the error itself), so an empty capture cannot pass for a clean one, and that Airflow's secrets
masker knows every secret the export handled.
"""

from __future__ import annotations

import io
import json
import logging
import re
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuthError,
    OrchestratorRequestError,
    OrchestratorResponseError,
)
from airflow_provider_orchestrator_audit.testing import Fault
from tests.conftest import set_connection
from tests.faults.scenario_helpers import (
    PROBES,
    ExportRun,
    assert_exact_export,
    assert_failed_cleanly,
    connection_with,
    export_kwargs,
    let_through,
    run_export,
)

pytestmark = pytest.mark.usefixtures("airflow_db")

# dag.test()'s in-process supervisor logs, at DEBUG, every message the task sends it, including the value
# of each MaskSecret (a worker's real supervisor leaves that body out: "Received message from task runner
# (body omitted)"). That line is Airflow's, exists only under dag.test(), and is left out of the search.
IN_PROCESS_MASK_ECHO = re.compile(r"^.*\bSending request\b.*\bmsg=MaskSecret\(value=.*$", re.MULTILINE)


@dataclass
class TaskLogs:
    """
    What a scenario logged: the records as logged, and the task log Airflow rendered. Airflow renders
    its structlog loggers (the task's own among them) to the standard output of the moment, and the
    records of standard ``logging`` loggers through its console handler on the root logger.
    """

    caplog: pytest.LogCaptureFixture
    capfd: pytest.CaptureFixture[str]
    console: io.StringIO = field(default_factory=io.StringIO)
    rendered: str = ""

    def read(self) -> None:
        """Take everything rendered so far."""
        out, err = self.capfd.readouterr()
        self.rendered += out + err + self.console.getvalue()
        self.console.seek(0)
        self.console.truncate()

    @property
    def rendered_searched(self) -> str:
        """The rendered task log without dag.test()'s echo of the masker registrations."""
        return IN_PROCESS_MASK_ECHO.sub("", self.rendered)

    @property
    def records(self) -> str:
        """Every record as logged (message, arguments, exception), not masked."""
        lines = []
        for record in self.caplog.records:
            lines.append(f"{record.name} {record.levelname} {record.getMessage()} {record.args!r}")
            if record.exc_info and record.exc_info[1] is not None:
                lines.extend(traceback.format_exception(record.exc_info[1]))
        return "\n".join(lines)


@pytest.fixture
def task_logs(caplog, capfd, monkeypatch) -> Iterator[TaskLogs]:
    """Every logger at DEBUG, for the records and for the console output Airflow renders."""
    from airflow._shared.logging import structlog as core_structlog
    from airflow.sdk._shared.logging import structlog as sdk_structlog

    for name in (None, "httpx", "httpcore", "airflow_provider_orchestrator_audit", "airflow.task"):
        caplog.set_level(logging.DEBUG, logger=name)
    logs = TaskLogs(caplog, capfd)
    consoles = [handler for handler in logging.getLogger().handlers if type(handler) is logging.StreamHandler]
    assert consoles, "Airflow's console handler is not on the root logger"
    for handler in consoles:
        monkeypatch.setattr(handler, "level", logging.DEBUG)
        monkeypatch.setattr(handler, "stream", logs.console)
    for module in (core_structlog, sdk_structlog):  # Airflow's own structlog loggers, the task's among them
        monkeypatch.setitem(module.PER_LOGGER_LEVELS, "", logging.DEBUG)
    capfd.readouterr()  # only what the scenario logs
    yield logs


@pytest.fixture
def client_secret(orchestrator, monkeypatch) -> str:
    """A client secret of this test alone, so that no earlier test can have taught the masker it."""
    secret = f"client-secret-{uuid.uuid4().hex}"
    monkeypatch.setattr(orchestrator, "client_secret", secret)
    return secret


def exception_texts(error: BaseException) -> list[str]:
    """The message, ``repr``, arguments and formatted traceback of ``error`` and of every exception chained to it."""
    texts, seen, pending = [], set(), [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), "".join(traceback.format_exception(current))]
        pending += [chained for chained in (current.__cause__, current.__context__) if chained is not None]
    return texts


def masked_by_airflow(value: str) -> bool:
    """Airflow's secrets masker (the one task logs go through) replaces ``value`` with ``***``."""
    from airflow.sdk._shared.secrets_masker import redact

    return redact(f"before {value} after") == "before *** after"


def assert_never_shown(secrets: list[str], logs: TaskLogs, run: ExportRun) -> None:
    """None of ``secrets`` is in a log record, the rendered task log or the task's exception."""
    logs.read()
    places = {"log records": logs.records, "rendered task log": logs.rendered_searched}
    if run.error is not None:
        places["exception"] = "\n".join(exception_texts(run.error))
    for secret in secrets:
        assert len(secret) >= 20
        for place, text in places.items():
            assert secret not in text, f"a secret ({secret[:6]}...) is in the {place}"
    # The captures saw the scenario's requests to the audit API (the transport's DEBUG line for each) and
    # botocore's DEBUG records, so a missing secret means something.
    for seen in (r"(GET|POST) https?://\S+: HTTP \d{3}, \d+ bytes", r"Response headers: "):
        assert re.search(seen, logs.records) and re.search(seen, logs.rendered), f"{seen!r} was not captured"
    assert "[DAG TEST] starting task_id=export" in logs.rendered
    assert masked_by_airflow(f"unregistered-{uuid.uuid4().hex}") is False


def run_and_check(dag_id: str, conn_id: str, bucket: str, logs: TaskLogs) -> ExportRun:
    run = run_export(dag_id, export_kwargs(conn_id, bucket))
    logs.read()
    return run


# --- successful exports --------------------------------------------------------------------------------


def test_client_credentials_and_every_token_issued_stay_out_of_the_logs(
    orchestrator, bucket, s3_server, monkeypatch, task_logs, client_secret
):
    """
    A successful export whose token is refused mid-way (401 with ``invalid_token``): exactly one new
    token is fetched and the request tried once more, the object is exact, the client secret and both
    tokens are in no log line, and the masker knows all three.
    """
    conn_id = set_connection(monkeypatch, "secrets_client", orchestrator.airflow_connection())
    let_through(orchestrator, PROBES + 2)
    orchestrator.faults.push(Fault.status(401, '{"error": "invalid_token"}'))
    run = run_and_check("secrets_success", conn_id, bucket, task_logs)
    assert_exact_export(run, orchestrator, s3_server, bucket)
    tokens = list(orchestrator.issued_tokens)
    assert len(tokens) == 2 and orchestrator.stats.responses_by_status[401] == 1
    assert_never_shown([client_secret, *tokens], task_logs, run)
    assert "answered 401; requesting a new access token" in task_logs.records  # the provider's own lines are seen
    assert f"Wrote {run.result['records']} records" in task_logs.rendered
    assert all(masked_by_airflow(secret) for secret in (client_secret, *tokens))


def test_a_personal_access_token_stays_out_of_the_logs(orchestrator, bucket, s3_server, monkeypatch, task_logs):
    """A successful export authenticated with a personal access token: the token is in no log line and is masked."""
    pat = f"personal-access-token-{uuid.uuid4().hex}"
    monkeypatch.setattr(orchestrator, "personal_access_tokens", frozenset({pat}))
    conn_id = set_connection(monkeypatch, "secrets_pat", orchestrator.airflow_connection(personal_access_token=True))
    run = run_and_check("secrets_pat", conn_id, bucket, task_logs)
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert orchestrator.stats.token_requests == 0 and orchestrator.issued_tokens == ()
    assert_never_shown([pat], task_logs, run)
    assert masked_by_airflow(pat)


# --- failed exports ------------------------------------------------------------------------------------


def test_a_wrong_client_secret_is_not_repeated_anywhere(
    orchestrator, bucket, s3_server, monkeypatch, task_logs, client_secret
):
    """The identity server refuses a wrong secret: the error says so without quoting it, and it is masked."""
    wrong = f"wrong-secret-{uuid.uuid4().hex}"
    conn_id = set_connection(monkeypatch, "secrets_wrong", connection_with(orchestrator, password=wrong))
    run = run_and_check("secrets_wrong_secret", conn_id, bucket, task_logs)
    message = assert_failed_cleanly(run, s3_server, bucket, OrchestratorAuthError, "error invalid_client")
    assert_never_shown([wrong, client_secret], task_logs, run)
    assert message in task_logs.rendered  # the error itself was captured and searched
    assert masked_by_airflow(wrong)


def test_a_403_does_not_show_the_token(orchestrator, bucket, s3_server, monkeypatch, task_logs, client_secret):
    """
    The permission is withdrawn in the middle of the export (403 after pages were read): the task fails
    at once saying which permission is missing, publishes nothing, and shows neither token nor secret.
    """
    conn_id = set_connection(monkeypatch, "secrets_forbidden", orchestrator.airflow_connection())
    let_through(orchestrator, PROBES + 2)
    orchestrator.faults.push(Fault.status(403, '{"error": "forbidden"}'))
    run = run_and_check("secrets_403", conn_id, bucket, task_logs)
    message = assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorAuthError,
        f"GET {orchestrator.audit_url}?",
        "answered HTTP 403 (error code: forbidden): the credentials lack permission to read audit logs",
        "Audit View permission",
    )
    assert orchestrator.stats.audit_requests > PROBES + 2
    (token,) = orchestrator.issued_tokens
    assert_never_shown([client_secret, token], task_logs, run)
    assert message in task_logs.rendered
    assert masked_by_airflow(token)


def test_a_server_that_echoes_the_bearer_token_in_its_5xx_pages(
    orchestrator, bucket, s3_server, monkeypatch, task_logs, client_secret
):
    """
    A gateway whose 503 page quotes the request's ``Authorization`` header, to every request until the
    retries run out: the error quotes the page with the token replaced by ``***``.
    """
    token = orchestrator.issue_token()
    grant = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
    orchestrator.faults.push(Fault.status(200, json.dumps(grant)), endpoint="token")
    echo = Fault.status(
        503,
        f"<html><body><h1>503 Service Unavailable</h1><pre>Authorization: Bearer {token}</pre></body></html>",
        headers={"Retry-After": "0"},
        content_type="text/html",
    )
    orchestrator.faults.push(echo, times=100)
    conn_id = set_connection(monkeypatch, "secrets_echo", orchestrator.airflow_connection())
    run = run_and_check("secrets_5xx_echo", conn_id, bucket, task_logs)
    message = assert_failed_cleanly(
        run, s3_server, bucket, OrchestratorRequestError, "gave up after 8 attempts", "Authorization: Bearer ***"
    )
    assert_never_shown([client_secret, token], task_logs, run)
    assert message in task_logs.rendered


def test_a_token_answer_that_cannot_be_used_is_quoted_without_its_token(
    orchestrator, bucket, s3_server, monkeypatch, task_logs, client_secret
):
    """
    The identity server grants a working token in an answer the client cannot use (``expires_in`` is
    not a number): the error quotes the answer with the token replaced by ``***``.
    """
    token = orchestrator.issue_token()
    grant = {"access_token": token, "token_type": "Bearer", "expires_in": "one hour"}
    orchestrator.faults.push(Fault.status(200, json.dumps(grant)), endpoint="token")
    conn_id = set_connection(monkeypatch, "secrets_bad_grant", orchestrator.airflow_connection())
    run = run_and_check("secrets_bad_token_body", conn_id, bucket, task_logs)
    message = assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorResponseError,
        "expires_in: Input should be a valid number",
        '"access_token": "***"',
    )
    assert_never_shown([client_secret, token], task_logs, run)
    assert message in task_logs.rendered
