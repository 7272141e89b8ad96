"""
Scripted faults for the local Orchestrator simulator.

A :class:`FaultSchedule` holds, per endpoint, a queue of :class:`Fault` s. Each request to that
endpoint takes the next one (if any) before being served normally, so a test can say exactly which
request fails and how. Periodic schedules (every Nth audit request throttled, failed or reset) model a
flaky deployment for long runs and benchmarks.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal, get_args

__all__ = ["Endpoint", "Fault", "FaultKind", "FaultSchedule", "ThrottleStyle"]

#: Which endpoint a fault targets: the audit-log list or the identity server's token endpoint.
Endpoint = Literal["audit", "token"]

#: How a 429 says how long to wait.
ThrottleStyle = Literal["header-seconds", "header-date", "body"]

FaultKind = Literal[
    "status",
    "throttle",
    "server_error",
    "reset",
    "stall",
    "malformed_json",
    "truncated",
    "wrong_shape",
    "missing_total_count",
    "bad_created_on",
    "non_utf8",
]

#: Kinds that alter a page the server would otherwise serve, so they only mean something for audit.
PAGE_ONLY_KINDS: frozenset[str] = frozenset({"missing_total_count", "bad_created_on"})
#: Kinds that take a successful answer and damage it; they wait for a request that succeeds.
MUTATING_KINDS: frozenset[str] = frozenset({"missing_total_count", "bad_created_on", "non_utf8"})

_ENDPOINTS: tuple[str, ...] = get_args(Endpoint)
_STYLES: tuple[str, ...] = get_args(ThrottleStyle)


def _gateway_page(code: int) -> bytes:
    # What a reverse proxy in front of the service answers: HTML, not JSON.
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    return (
        f"<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{code} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode("ascii")


@dataclass(frozen=True)
class Fault:
    """
    One scripted misbehaviour; build it with the class methods, e.g. ``Fault.throttle(2)``.

    :param kind: what goes wrong.
    :param status_code: the HTTP status answered (kinds that answer).
    :param body: the response body (kinds with a fixed answer).
    :param content_type: the ``Content-Type`` of that body.
    :param headers: extra response headers.
    :param retry_after_seconds: the wait a 429 asks for.
    :param style: where a 429 puts the wait.
    :param seconds: how long a stall lasts.
    """

    kind: FaultKind
    status_code: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    retry_after_seconds: float = 0.0
    style: ThrottleStyle = "header-seconds"
    seconds: float = 0.0

    @classmethod
    def status(
        cls,
        code: int,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> Fault:
        """
        Answer with any status, body and headers.

        :param code: the HTTP status.
        :param body: the body; text is sent as UTF-8.
        :param headers: extra response headers.
        :param content_type: the body's ``Content-Type``.
        """
        if not 100 <= code <= 599:
            raise ValueError(f"HTTP status must be in 100..599, got {code}")
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return cls("status", code, data, content_type, tuple((headers or {}).items()))

    @classmethod
    def throttle(cls, retry_after_seconds: float = 2, style: ThrottleStyle = "header-seconds") -> Fault:
        """
        Answer 429 Too Many Requests.

        :param retry_after_seconds: the wait asked for.
        :param style: ``"header-seconds"`` (``Retry-After: 2``), ``"header-date"`` (``Retry-After`` as an
            HTTP-date that many seconds ahead) or ``"body"`` (JSON ``{"retry_after": 2}``, no header).
        """
        if style not in _STYLES:
            raise ValueError(f"style must be one of {', '.join(_STYLES)}, got {style!r}")
        if retry_after_seconds < 0:
            raise ValueError(f"retry_after_seconds must be >= 0, got {retry_after_seconds}")
        return cls("throttle", 429, retry_after_seconds=retry_after_seconds, style=style)

    @classmethod
    def server_error(cls, code: int = 503) -> Fault:
        """
        Answer a 5xx with an HTML body, as a gateway in front of the service would.

        :param code: the status, 500 to 599.
        """
        if not 500 <= code <= 599:
            raise ValueError(f"a server error is 500..599, got {code}")
        return cls("server_error", code, _gateway_page(code), "text/html")

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection without answering, with a TCP reset rather than an orderly close."""
        return cls("reset")

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """
        Wait before answering normally, long enough for a client's read timeout to fire.

        :param seconds: how long to wait.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        return cls("stall", seconds=seconds)

    @classmethod
    def malformed_json(cls) -> Fault:
        """Answer 200 with a JSON content type and a body that is not JSON."""
        return cls("malformed_json")

    @classmethod
    def truncated(cls) -> Fault:
        """Announce a longer ``Content-Length`` than the body sent, then close the connection."""
        return cls("truncated")

    @classmethod
    def wrong_shape(cls) -> Fault:
        """Answer 200 with valid JSON of the wrong shape: ``{"items": []}``."""
        return cls("wrong_shape", body=b'{"items":[]}')

    @classmethod
    def missing_total_count(cls) -> Fault:
        """Serve the page normally but without ``totalCount`` (audit endpoint only)."""
        return cls("missing_total_count")

    @classmethod
    def bad_created_on(cls) -> Fault:
        """Serve the page normally but with ``createdOn`` of its first entry set to ``"yesterday"`` (audit only)."""
        return cls("bad_created_on")

    @classmethod
    def non_utf8(cls) -> Fault:
        """Answer 200 with bytes that are not UTF-8 inside a JSON string."""
        return cls("non_utf8")


class FaultSchedule:
    """
    The faults the server has yet to play, consumed one per request; thread-safe.

    Scripted faults come first. When none is queued for the audit endpoint, the periodic schedules
    apply to every Nth audit request (counted since the schedule was made or :meth:`clear` ed); when
    several fall on the same request, reset wins over server error over throttle.

    :param throttle_every: every Nth audit request gets 429 with ``Retry-After``.
    :param error_every: every Nth audit request gets a 503 with an HTML body.
    :param reset_every: every Nth audit request has its connection reset.
    :param periodic_retry_after_seconds: the ``Retry-After`` of periodic 429s.
    """

    def __init__(
        self,
        *,
        throttle_every: int | None = None,
        error_every: int | None = None,
        reset_every: int | None = None,
        periodic_retry_after_seconds: float = 1,
    ) -> None:
        for name, value in (
            ("throttle_every", throttle_every),
            ("error_every", error_every),
            ("reset_every", reset_every),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        self.throttle_every = throttle_every
        self.error_every = error_every
        self.reset_every = reset_every
        self.periodic_retry_after_seconds = periodic_retry_after_seconds
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {endpoint: deque() for endpoint in _ENDPOINTS}
        self._audit_requests = 0

    def push(self, fault: Fault, *, endpoint: Endpoint = "audit", times: int = 1) -> None:
        """
        Queue a fault for the next request(s) to an endpoint, after any already queued.

        :param fault: what goes wrong.
        :param endpoint: ``"audit"`` (the audit-log list) or ``"token"`` (the token endpoint).
        :param times: how many consecutive requests get it.
        """
        if endpoint not in _ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(_ENDPOINTS)}, got {endpoint!r}")
        if endpoint == "token" and fault.kind in PAGE_ONLY_KINDS:
            raise ValueError(f"a {fault.kind} fault alters an audit page; it cannot target the token endpoint")
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        with self._lock:
            self._queues[endpoint].extend([fault] * times)

    def clear(self) -> None:
        """Drop every queued fault and restart the periodic count (the periodic settings stay)."""
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self._audit_requests = 0

    def pending(self, endpoint: Endpoint | None = None) -> int:
        """
        How many scripted faults are still queued.

        :param endpoint: one endpoint, or both when None.
        """
        with self._lock:
            if endpoint is None:
                return sum(len(queue) for queue in self._queues.values())
            return len(self._queues[endpoint])

    def take(self, endpoint: Endpoint) -> Fault | None:
        """
        The fault for the request now arriving at ``endpoint``, or None to serve it normally.

        :param endpoint: the endpoint the request is for.
        """
        with self._lock:
            queue = self._queues[endpoint]
            if endpoint == "audit":
                self._audit_requests += 1
            if queue:
                return queue.popleft()
            if endpoint != "audit":
                return None
            n = self._audit_requests
            if self.reset_every and n % self.reset_every == 0:
                return Fault.reset()
            if self.error_every and n % self.error_every == 0:
                return Fault.server_error(503)
            if self.throttle_every and n % self.throttle_every == 0:
                return Fault.throttle(self.periodic_retry_after_seconds)
            return None

    def give_back(self, fault: Fault, endpoint: Endpoint) -> None:
        """
        Return a fault that found nothing to act on to the front of its queue.

        A fault that damages a successful answer waits for one: a request refused with 401, say,
        does not use it up.

        :param fault: the fault taken.
        :param endpoint: the endpoint it was taken for.
        """
        with self._lock:
            self._queues[endpoint].appendleft(fault)
