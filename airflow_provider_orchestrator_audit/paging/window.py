"""The half-open export window ``[start, end)``, at full 100 ns precision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from airflow_provider_orchestrator_audit.timestamps import (
    Ticks,
    TimestampError,
    format_ticks,
    ticks_to_datetime,
    to_ticks,
)

__all__ = ["AuditWindow", "WindowError"]


class WindowError(ValueError):
    """The window bounds are missing, unreadable or out of order."""


@dataclass(frozen=True)
class AuditWindow:
    """
    Entries with ``start <= createdOn < end``.

    :param start: inclusive lower bound, in ticks.
    :param end: exclusive upper bound, in ticks.
    """

    start: Ticks
    end: Ticks

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise WindowError(
                f"window_end {format_ticks(self.end)} is before window_start {format_ticks(self.start)}; "
                "swap them, or check the templates that render them"
            )

    @classmethod
    def parse(cls, start: str | datetime | date | None, end: str | datetime | date | None) -> AuditWindow:
        """
        Read the bounds from ISO-8601 strings (any offset or ``Z``), datetimes or dates.

        :raises WindowError: naming the bound at fault.
        """
        return cls(_bound("window_start", start), _bound("window_end", end))

    @property
    def is_empty(self) -> bool:
        """True when no instant satisfies ``start <= t < end``."""
        return self.end == self.start

    def contains(self, ticks: Ticks) -> bool:
        """``start <= ticks < end``."""
        return self.start <= ticks < self.end

    @property
    def start_datetime(self) -> datetime:
        """The start as an aware UTC datetime."""
        return ticks_to_datetime(self.start)

    @property
    def end_datetime(self) -> datetime:
        """The end as an aware UTC datetime."""
        return ticks_to_datetime(self.end)

    def __str__(self) -> str:
        return f"[{format_ticks(self.start)}, {format_ticks(self.end)})"


def _bound(name: str, value: str | datetime | date | None) -> Ticks:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise WindowError(
            f"{name} is not set: pass {name} as an ISO-8601 timestamp such as '2026-01-31T13:00:00Z', "
            "or run the task in a DAG run that has a data interval"
        )
    try:
        return to_ticks(value)
    except TimestampError as exc:
        raise WindowError(f"{name}: {exc}") from None
