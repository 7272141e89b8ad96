"""When to try a request again, and how long to wait first."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "RetryState", "parse_retry_after"]

#: 429 is throttling; the 5xx are gateway and server hiccups that usually pass.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """
    Bounded retries with exponential backoff and full jitter.

    :param max_attempts: attempts per request, the first included.
    :param max_elapsed: seconds a request may take over all its attempts and waits; a wait that
        would end past it is not started.
    :param backoff_base: the first backoff ceiling in seconds; it doubles with each retry.
    :param backoff_max: the largest backoff ceiling in seconds.
    :param max_retry_after: the longest ``Retry-After`` honoured; a longer one fails the request.
    :param max_damaged_body_attempts: attempts per request that may get an answer whose body is not
        JSON text at all (garbled, not UTF-8, a proxy's page) before the request fails; such answers
        are retried like a 5xx because a GET can safely be sent again, but a body that stays broken
        is not a hiccup.
    """

    max_attempts: int = 8
    max_elapsed: float = 600.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0
    max_damaged_body_attempts: int = 3

    def __post_init__(self) -> None:
        checked_int("max_attempts", self.max_attempts)
        checked_int("max_damaged_body_attempts", self.max_damaged_body_attempts)
        if self.max_elapsed <= 0 or self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("max_elapsed must be positive and backoff times non-negative")

    def backoff(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Full-jitter backoff before retry ``retry_number`` (1 for the first retry)."""
        # The exponent is capped: 2.0 ** 1024 overflows, and the ceiling stops growing long before.
        ceiling: float = min(self.backoff_max, self.backoff_base * 2.0 ** min(retry_number - 1, 64))
        return ceiling * rng()

    def start(self, clock: Callable[[], float] = time.monotonic) -> RetryState:
        """Begin counting attempts for one request."""
        return RetryState(self, clock, clock())


@dataclass
class RetryState:
    """
    The attempts made so far for one request.

    :param attempts: failed attempts, counted by :meth:`next_wait`.
    :param damaged_bodies: answers whose body was not JSON text at all, bounded by the policy's
        ``max_damaged_body_attempts`` (the exchanges count them).
    """

    policy: RetryPolicy
    clock: Callable[[], float] = field(repr=False)
    started: float
    attempts: int = 0
    damaged_bodies: int = 0

    def next_wait(self, retry_after: float | None) -> tuple[float | None, str]:
        """
        Count a failed attempt and return how long to wait before the next one.

        :param retry_after: the server's ``Retry-After`` in seconds, if it gave one.
        :return: ``(seconds, "")`` to retry, or ``(None, reason)`` when the request must fail.
        """
        self.attempts += 1
        policy = self.policy
        if self.attempts >= policy.max_attempts:
            return None, f"gave up after {self.attempts} attempts"
        if retry_after is not None and retry_after > policy.max_retry_after:
            return (
                None,
                f"the server asked to wait {retry_after:.0f}s, more than max_retry_after={policy.max_retry_after:.0f}s",
            )
        wait = retry_after if retry_after is not None else policy.backoff(self.attempts)
        elapsed = self.clock() - self.started
        if elapsed + wait > policy.max_elapsed:
            return (
                None,
                f"gave up after {self.attempts} attempts in {elapsed:.1f}s (max_elapsed={policy.max_elapsed:.0f}s)",
            )
        return wait, ""


def parse_retry_after(header: str | None, body: bytes = b"", now: Callable[[], float] = time.time) -> float | None:
    """
    Seconds the server asked us to wait: ``Retry-After`` as seconds or an HTTP-date, else a
    ``retry_after`` (or ``retryAfter``) number in a JSON body, as some UiPath edges send it.
    """
    if header:
        text = header.strip()
        try:
            return max(0.0, float(text))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - now())
    if body[:1] == b"{":
        try:
            document = json.loads(body)
        except ValueError:
            return None
        for key in ("retry_after", "retryAfter", "Retry-After"):
            value = document.get(key) if isinstance(document, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                return max(0.0, float(value))
    return None
