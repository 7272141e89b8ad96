"""
Read one window of Orchestrator's audit log: disjoint time slices, each paged by ``Id``, fetched concurrently.

The I/O driver of :mod:`airflow_provider_orchestrator_audit.paging.odata_keyset`, on the loop of
:mod:`~airflow_provider_orchestrator_audit.export.sliced_reader`: it calls a page-fetching function (normally
the hook's ``get_orchestrator_audit_logs``, whose client is thread-safe and retries 429/5xx itself) and feeds
each answer to its slice's chain.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from airflow_provider_orchestrator_audit.export.sliced_reader import SLICES_PER_WORKER, SlicedWindowReader
from airflow_provider_orchestrator_audit.orchestrator_models import OrchestratorAuditEntry, OrchestratorAuditPage
from airflow_provider_orchestrator_audit.paging.event_slices import plan_slices
from airflow_provider_orchestrator_audit.paging.odata_keyset import KeysetChain, KeysetRequest

__all__ = ["SLICES_PER_WORKER", "OrchestratorFetcher", "OrchestratorReadStats", "OrchestratorWindowReader"]

#: ``fetch(request)`` returns the page a keyset request asks for.
OrchestratorFetcher = Callable[[KeysetRequest], OrchestratorAuditPage]


@dataclass
class OrchestratorReadStats:
    """What reading one window cost and saw."""

    slices: int = 0
    requests: int = 0
    #: Entries the server sent that lie outside their slice (the query's one-second margins).
    outside: int = 0
    records: int = 0
    seconds: float = 0.0
    #: Kept for the operator's result; the slices' counts overlap at their margins, so None here.
    total_count: int | None = None


class OrchestratorWindowReader(
    SlicedWindowReader[
        KeysetChain[OrchestratorAuditEntry], KeysetRequest, OrchestratorAuditPage, OrchestratorAuditEntry
    ]
):
    """
    Yields the entries of ``window`` in batches (one per page, ``Id`` order inside it), each exactly once.

    :param fetch: the page source, ``fetch(KeysetRequest) -> OrchestratorAuditPage``.
    :param window: the window ``[start, end)``.
    :param max_concurrency: slices (requests) in flight at once.
    :param slices: how many time slices to cut the window into; default ``SLICES_PER_WORKER x max_concurrency``.
    :param progress_interval: seconds between progress lines in the log.
    """

    thread_name_prefix = "orchestrator-audit"
    records_name = "entries"
    stats: OrchestratorReadStats

    def _new_stats(self) -> OrchestratorReadStats:
        return OrchestratorReadStats()

    def _chains(self) -> list[KeysetChain[OrchestratorAuditEntry]]:
        return [KeysetChain[OrchestratorAuditEntry](piece) for piece in plan_slices(self.window, self.slice_count)]

    def _answer(
        self, chain: KeysetChain[OrchestratorAuditEntry], answer: Future[OrchestratorAuditPage]
    ) -> tuple[list[OrchestratorAuditEntry], KeysetRequest | None]:
        page = answer.result()
        outside = chain.outside
        step = chain.accept(page.entries, page.count)
        self.stats.outside += chain.outside - outside
        return step.released, step.next_request
