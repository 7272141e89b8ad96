"""
Typed views of Orchestrator's own audit log (``GET .../odata/AuditLogs``, an OData feed of ``AuditLogDto``).

An entry keeps the server's own JSON text and every field in it (``Entities`` included when expanded);
it checks only what the export depends on: an integer ``Id`` (int64, growing with insertion) and an
``ExecutionTime`` that is a timestamp (any fraction length, any UTC offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_orchestrator_audit.event_models import created_on_ticks
from airflow_provider_orchestrator_audit.timestamps import Ticks, TimestampError
from airflow_provider_orchestrator_audit.verbatim import VerbatimRecord

__all__ = ["ORCHESTRATOR_SOURCE", "OrchestratorAuditEntry", "OrchestratorAuditPage", "entry_id_of"]

#: ``source=`` of Orchestrator's own (tenant-level, OData) audit log, one of ``event_models.SOURCES``.
ORCHESTRATOR_SOURCE = "orchestrator"

_INT64_MAX = 2**63 - 1


def entry_id_of(value: Any) -> int | None:
    """
    An ``Id`` as an integer, or None when it is not one.

    OData writes int64 as a JSON number, or as a string when the client asked for IEEE754 compatibility.
    """
    if type(value) is str and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is int and 0 <= value <= _INT64_MAX:
        return value
    return None


class OrchestratorAuditEntry(VerbatimRecord):
    """
    One entry of Orchestrator's audit log, exactly as the server sent it.

    :param raw: the entry's JSON object.
    :param source: the exact JSON text it was decoded from, if known: :meth:`to_json` writes it as it is.
    :raises ValueError: when ``Id`` or ``ExecutionTime`` is missing or unusable.

    ``entry.raw["Action"]``, ``entry.raw.get("Entities")`` and every other field are in :attr:`raw`.
    ``created_on`` and ``created_on_ticks`` name ``ExecutionTime`` as every source's entries do, so that the
    sensors compare the newest entry of any source the same way.
    """

    # Plain slots rather than properties: the keyset chain reads Id and the ticks of every entry it is given,
    # and a slot is read at a fraction of a property's cost.
    __slots__ = ("entry_id", "execution_time", "execution_time_ticks")

    #: ``Id``: an int64 that grows with insertion (not with ``ExecutionTime``).
    entry_id: int
    #: ``ExecutionTime`` exactly as sent, e.g. ``2026-01-31T13:05:12.3456789Z``.
    execution_time: str
    #: ``ExecutionTime`` at full precision: 100 ns ticks since the Unix epoch, UTC.
    execution_time_ticks: Ticks

    def __init__(self, raw: dict[str, Any], source: str | None = None) -> None:
        entry_id, execution_time = entry_id_of(raw.get("Id")), raw.get("ExecutionTime")
        if entry_id is None:
            raise ValueError(f"Id must be a non-negative int64, got {raw.get('Id')!r}")
        if not isinstance(execution_time, str):
            raise ValueError(f"ExecutionTime must be a timestamp string, got {execution_time!r}")
        try:
            self._ticks = self.execution_time_ticks = created_on_ticks(execution_time)
        except TimestampError as exc:
            raise ValueError(f"ExecutionTime is not a timestamp: {exc}") from None
        self.entry_id, self.execution_time = entry_id, execution_time
        self._keep(raw, source)

    @classmethod
    def from_line(cls, line: bytes, entry_id: int, execution_time: str, ticks: Ticks) -> OrchestratorAuditEntry:
        """
        An entry from its own JSON text, checked by the caller, without decoding it here.

        :param line: the entry's UTF-8 JSON text, holding none of ``\\n``, ``\\r``, U+2028 and U+2029: it is
            written out as it is.
        :param entry_id: its ``Id``.
        :param execution_time: its ``ExecutionTime`` text.
        :param ticks: that ``ExecutionTime``, parsed.
        """
        entry = cls.__new__(cls)
        entry._ticks = entry.execution_time_ticks = ticks
        entry.entry_id, entry.execution_time, entry._source, entry._raw = entry_id, execution_time, line, None
        return entry

    @classmethod
    def from_lines(
        cls, lines: list[bytes], entry_ids: list[int], execution_times: list[str], ticks: list[Ticks]
    ) -> list[OrchestratorAuditEntry]:
        """
        :meth:`from_line` of a page's entries at once (one loop rather than a call per entry).

        :param lines: the entries' texts, each as :meth:`from_line` takes it.
        :param entry_ids: their ``Id``s, in the same order.
        :param execution_times: their ``ExecutionTime`` texts.
        :param ticks: those ``ExecutionTime``s, parsed.
        """
        new = cls.__new__
        entries: list[OrchestratorAuditEntry] = []
        append = entries.append
        for line, entry_id, execution_time, entry_ticks in zip(lines, entry_ids, execution_times, ticks, strict=True):
            entry = new(cls)
            entry._ticks = entry.execution_time_ticks = entry_ticks
            entry.entry_id, entry.execution_time, entry._source, entry._raw = entry_id, execution_time, line, None
            append(entry)
        return entries

    @property
    def created_on(self) -> str:
        """:attr:`execution_time`, under the name every source's entries share (the sensors compare by it)."""
        return self.execution_time

    @property
    def created_on_ticks(self) -> Ticks:
        """:attr:`execution_time_ticks`, under the name every source's entries share."""
        return self.execution_time_ticks

    def __repr__(self) -> str:
        return f"OrchestratorAuditEntry(Id={self.entry_id}, ExecutionTime={self.execution_time!r})"


@dataclass(frozen=True)
class OrchestratorAuditPage:
    """
    One answer of ``odata/AuditLogs``.

    :param entries: the entries, in the order the server listed them.
    :param count: ``@odata.count`` (entries matching the filter, this page's included) when asked for and sent.
    :param next_link: ``@odata.nextLink``, if the server gave one (the export pages by ``Id`` instead).
    """

    entries: list[OrchestratorAuditEntry]
    count: int | None = None
    next_link: str | None = None
