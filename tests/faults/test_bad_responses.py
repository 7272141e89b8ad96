"""
Answers that are not the documented response, during whole exports through ``dag.test()``.

What each kind gets, and why:

* **Not JSON text at all** (cut short, not UTF-8, garbled, a proxy's page): the body was damaged on its
  way, so the request is sent again (a GET, and a client-credentials POST, can be repeated safely). A
  truncated body is a transport error and is retried like one; a body that is complete but not JSON
  is retried up to ``RetryPolicy.max_damaged_body_attempts`` (3) times, then the task fails.
* **Well-formed JSON of the wrong shape** (no ``totalCount``, no ``results``, a ``createdOn`` that is
  not a date): that is what the server meant to send, and asking again gets the same document, so the
  task fails at once, naming the URL, the status, an excerpt of the body and what to check.

Either way nothing is written: an entry the export cannot place in time cannot be exported exactly once.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from airflow_provider_orchestrator_audit.exceptions import OrchestratorRequestError, OrchestratorResponseError
from airflow_provider_orchestrator_audit.testing import Fault
from tests.faults.scenario_helpers import (
    FAULT_FREE_REQUESTS,
    PROBES,
    SHARED_PROBES,
    assert_exact_export,
    assert_failed_cleanly,
    export_kwargs,
    let_through,
    run_export,
)

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_one_broken_answer_of_each_kind_is_retried_and_the_output_is_exact(
    orchestrator, orchestrator_conn, bucket, s3_server
):
    """
    A token answer that is not JSON, then a probe cut short, a page that is not JSON and a page with bytes
    that are not UTF-8: each broken answer costs one more request, and the object is exact.
    """
    orchestrator.faults.push(Fault.malformed_json(), endpoint="token")
    for fault in (Fault.truncated(), Fault.malformed_json(), Fault.non_utf8()):
        let_through(orchestrator, 4)
        orchestrator.faults.push(fault)
    run = run_export("bad_bodies_once", export_kwargs(orchestrator_conn, bucket))
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert orchestrator.faults.pending() == 0
    assert orchestrator.stats.token_requests == 2
    # Each broken answer is asked for once more, and nothing else is repeated but the probes both edge
    # searches begin with. (How many pages are read ahead of the lower edge depends on which search a slowed
    # probe belongs to, so the total is bounded rather than exact; no page is ever asked for twice.)
    asked = Counter(request.query for request in orchestrator.stats.audit_timeline)
    assert orchestrator.stats.audit_requests - len(asked) == SHARED_PROBES + 3
    assert FAULT_FREE_REQUESTS + 3 <= orchestrator.stats.audit_requests <= FAULT_FREE_REQUESTS + 3 + 4


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        (Fault.malformed_json(), "not valid JSON: Expecting value"),
        (Fault.non_utf8(), "not valid JSON: the body is not UTF-8"),
    ],
    ids=["malformed-json", "not-utf-8"],
)
def test_pages_that_stay_broken_fail_after_three_attempts(
    orchestrator, orchestrator_conn, bucket, s3_server, fault, problem
):
    """A page that is broken on every attempt fails the task after 3 attempts; what was read is not published."""
    let_through(orchestrator, PROBES + 1)
    orchestrator.faults.push(fault, times=100)
    run = run_export(f"bad_bodies_persistent_{fault.kind}", export_kwargs(orchestrator_conn, bucket))
    message = assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorResponseError,
        f"Connection {orchestrator_conn!r}",
        f"GET {orchestrator.audit_url}?top=100&skip=",
        "returned HTTP 200 on each of 3 attempts with a body that is not the documented response",
        problem,
        "Body starts: '{",
        f"Check that Host ({orchestrator.url}) reaches Orchestrator itself",
    )
    query = re.search(r"auditlogs\?(\S+) returned", message).group(1)
    attempts = [request for request in orchestrator.stats.audit_timeline if request.query == query]
    assert len(attempts) == 3


@pytest.mark.parametrize(
    ("fault", "problem", "body"),
    [
        (Fault.wrong_shape(), "totalCount: Field required", """Body starts: '{"items":[]}'"""),
        (Fault.missing_total_count(), "totalCount: Field required", """Body starts: '{"results":[{"createdOn":"""),
        (
            Fault.bad_created_on(),
            "results.0: createdOn is not a timestamp: 'yesterday' is not an ISO-8601 timestamp",
            """Body starts: '{"totalCount":5000,"results":[{"createdOn":"yesterday\"""",
        ),
    ],
    ids=["wrong-shape", "total-count-missing", "created-on-not-a-date"],
)
def test_a_well_formed_wrong_answer_fails_at_once(
    orchestrator, orchestrator_conn, bucket, s3_server, fault, problem, body
):
    """
    One well-formed answer of the wrong shape in the middle of the export fails the task without asking
    again, and nothing is written.
    """
    let_through(orchestrator, PROBES + 1)
    orchestrator.faults.push(fault)
    run = run_export(f"bad_bodies_{fault.kind}", export_kwargs(orchestrator_conn, bucket))
    message = assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorResponseError,
        f"GET {orchestrator.audit_url}?top=100&skip=",
        "returned HTTP 200 with a body that is not the documented response",
        problem,
        body,
        f"extra 'organization' ('{orchestrator.organization}') name an Orchestrator deployment",
    )
    query = re.search(r"auditlogs\?(\S+) returned", message).group(1)
    assert [request.query for request in orchestrator.stats.audit_timeline].count(query) == 1


@pytest.mark.parametrize("fault", [Fault.truncated(), Fault.reset()], ids=["truncated", "reset"])
def test_a_page_cut_short_every_time_fails_within_the_operators_request_retry_policy(
    orchestrator, orchestrator_conn, bucket, s3_server, fault
):
    """
    A page whose answer is cut short (or whose connection is reset) on every attempt fails the task after
    the attempts the operator's ``request_retry_policy`` allows, in seconds rather than the default's minutes,
    and nothing is published.
    """
    let_through(orchestrator, PROBES + 1)
    orchestrator.faults.push(fault, times=100)
    kwargs = export_kwargs(orchestrator_conn, bucket, request_retry_policy={"max_attempts": 3, "backoff_base": 0.05})
    run = run_export(f"bad_bodies_cut_{fault.kind}", kwargs)
    message = assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorRequestError,
        f"GET {orchestrator.audit_url}?top=100&skip=",
        "gave up after 3 attempts",
    )
    query = re.search(r"auditlogs\?(\S+)", message).group(1)
    attempts = [request for request in orchestrator.stats.audit_timeline if request.query == query]
    assert len(attempts) == 3  # the default policy would make 8
