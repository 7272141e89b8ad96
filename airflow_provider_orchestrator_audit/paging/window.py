"""The half-open export window ``[start, end)``, at full 100 ns precision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from airflow_provider_orchestrator_audit.timestamps import (
    TICKS_PER_SECOND,
    Ticks,
    TimestampError,
    format_ticks,
    ticks_to_datetime,
    to_ticks,
)

__all__ = ["AuditWindow", "WindowError", "split_window"]


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


def split_window(window: AuditWindow, step: Ticks | timedelta, *, max_parts: int | None = None) -> list[AuditWindow]:
    """
    Cut a window into consecutive sub-windows of ``step`` each, oldest first.

    The sub-windows are contiguous and disjoint and cover ``window`` exactly: each one's end is the next
    one's start, the first starts at ``window.start`` and the last ends at ``window.end``. When the window
    is not a whole number of steps, the last sub-window is the shorter remainder. Bounds are ticks, so
    nothing is rounded to microseconds.

    :param window: the window to cut; it must not be empty.
    :param step: the length of every sub-window but the last, in ticks or as a timedelta (a timedelta
        holds whole microseconds, which convert to ticks exactly).
    :param max_parts: refuse to cut into more sub-windows than this (None: no limit), before building any.
    :raises WindowError: when the step is not positive, the window is empty, or there would be more than
        ``max_parts`` sub-windows.
    """
    step_ticks = _step_ticks(step)
    if step_ticks <= 0:
        raise WindowError(f"the sub-window length must be positive, got {_describe_step(step)}")
    if window.is_empty:
        raise WindowError(f"window {window} is empty (window_end == window_start): there is nothing to split")
    count = -(-(window.end - window.start) // step_ticks)  # ceiling division: a shorter last sub-window counts
    if max_parts is not None and count > max_parts:
        raise WindowError(
            f"splitting {window} into sub-windows of {_describe_step(step)} gives {count} sub-windows, "
            f"more than the limit of {max_parts}; use a longer sub-window or a shorter window"
        )
    starts = range(window.start, window.end, step_ticks)
    return [AuditWindow(start, min(start + step_ticks, window.end)) for start in starts]


def _step_ticks(step: Ticks | timedelta) -> Ticks:
    if isinstance(step, timedelta):
        # Integer division of timedeltas is exact: whole microseconds, ten ticks each.
        return step // timedelta(microseconds=1) * (TICKS_PER_SECOND // 1_000_000)
    # bool is an int, but True meaning "one tick" would surely be a mistake.
    if isinstance(step, int) and not isinstance(step, bool):
        return step
    raise WindowError(f"the sub-window length must be ticks (an int) or a timedelta, got {step!r}")


def _describe_step(step: Ticks | timedelta) -> str:
    if isinstance(step, timedelta):
        # str(timedelta(hours=-1)) is "-1 day, 23:00:00"; "-1:00:00" says what was passed.
        return f"-{-step}" if step < timedelta(0) else str(step)
    return f"{step} ticks"
