"""Where to request the pages of a located window, so that they can be fetched all at once."""

from __future__ import annotations

from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = ["default_overlap", "plan_offsets"]


def default_overlap(page_size: int) -> int:
    """
    Entries each planned page repeats from the one before.

    A page's oldest tie group waits for the next page; that page is anchored by content only if it
    starts inside or before the group. Overlapping by a few percent makes that the common case, so
    a repair request is rare, at a cost of a few percent more entries transferred.
    """
    return max(1, min(page_size // 20, 100)) if page_size > 1 else 0


def plan_offsets(first: int, stop: int, page_size: int, overlap: int | None = None) -> list[int]:
    """
    Offsets of pages covering positions ``[first, stop)``, each overlapping the previous one.

    :param first: the first position to read.
    :param stop: the position after the last one expected to be needed.
    :param page_size: entries per page.
    :param overlap: entries repeated between neighbours; :func:`default_overlap` when None.
    """
    checked_int("page_size", page_size)
    step = page_size - (default_overlap(page_size) if overlap is None else overlap)
    if step < 1:
        raise ValueError(f"overlap must be smaller than page_size ({page_size})")
    return list(range(first, max(stop, first + 1), step))
