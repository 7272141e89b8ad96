from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from airflow_provider_orchestrator_audit.client.retry import RetryPolicy, parse_retry_after


def test_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    now = 1_800_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 30, tz=UTC), usegmt=True)
    assert parse_retry_after(date, now=lambda: now) == pytest.approx(30, abs=1)
    assert parse_retry_after(None, b'{"retry_after": 3}') == 3.0
    assert parse_retry_after(None, b'{"retryAfter": 1.5}') == 1.5
    assert parse_retry_after("soon", b"<html>") is None
    assert parse_retry_after("-4") == 0.0


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(backoff_base=1, backoff_max=8)
    assert [policy.backoff(n, rng=lambda: 1.0) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert policy.backoff(3, rng=lambda: 0.0) == 0
    assert policy.backoff(5000, rng=lambda: 1.0) == 8  # no overflow however many attempts a policy allows


def test_attempts_and_time_are_bounded():
    clock = iter([0.0, 0.0, 0.0, 0.0]).__next__
    state = RetryPolicy(max_attempts=3).start(clock)
    assert state.next_wait(1.0)[0] == 1.0
    assert state.next_wait(1.0)[0] == 1.0
    wait, reason = state.next_wait(1.0)
    assert wait is None and "3 attempts" in reason

    now = [0.0]
    state = RetryPolicy(max_elapsed=10).start(lambda: now[0])
    now[0] = 9.0
    wait, reason = state.next_wait(2.0)
    assert wait is None and "max_elapsed" in reason

    state = RetryPolicy(max_retry_after=60).start(lambda: 0.0)
    wait, reason = state.next_wait(3600)
    assert wait is None and "max_retry_after" in reason


def test_invalid_policy():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_damaged_body_attempts"):
        RetryPolicy(max_damaged_body_attempts=0)
