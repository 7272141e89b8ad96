"""
The pure core of the export: locating a window and paging it exactly once. No I/O happens here.

- :mod:`.window`: the half-open window ``[start, end)`` at 100 ns precision;
- :mod:`.edge_search`: find a window edge in O(log N) one-entry probes;
- :mod:`.plan`: the offsets of overlapping pages, so they can be fetched concurrently;
- :mod:`.stitcher`: accept pages in any order and shift, release each window entry exactly once.
"""

from airflow_provider_orchestrator_audit.paging.edge_search import EdgeSearch, Probe
from airflow_provider_orchestrator_audit.paging.plan import default_overlap, plan_offsets
from airflow_provider_orchestrator_audit.paging.stitcher import (
    FetchedPage,
    PagingError,
    StitchResult,
    Verdict,
    WindowStitcher,
)
from airflow_provider_orchestrator_audit.paging.window import AuditWindow, WindowError

__all__ = [
    "AuditWindow",
    "EdgeSearch",
    "FetchedPage",
    "PagingError",
    "Probe",
    "StitchResult",
    "Verdict",
    "WindowError",
    "WindowStitcher",
    "default_overlap",
    "plan_offsets",
]
