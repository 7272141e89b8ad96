"""
A deterministic audit log of Orchestrator's own actions per tenant, and the OData listing that serves it.

Each tenant's log is what ``GET .../odata/AuditLogs`` lists: entry ``i`` of the initial log is computed on
demand from ``(seed, tenant, i)`` (``Id`` ``FIRST_ID + i``, ``ExecutionTime`` never decreasing with ``i``),
so half a million entries cost nothing up front. Entries recorded later get the next ``Id``s, as a
database identity column hands them out: new ones at the newest ``ExecutionTime``, and late ones
(a robot's action written minutes after it ran) with an ``ExecutionTime`` in the past, the case that makes
offsets and time-ordered paging unsafe.

:class:`OdataListing` answers queries over it, free of I/O (the HTTP server in :mod:`.server` wraps it):
the subset of ``$filter`` an exporter sends (``ExecutionTime`` and ``Id`` compared with ``ge``, ``gt``,
``le``, ``lt``, ``eq``, joined by ``and``; anything else is a 400 OData error), ``$orderby`` on ``Id``
and ``ExecutionTime``, ``$top`` capped at 1000, ``$skip``, ``$count=true`` and ``$expand=Entities``. Its
:class:`OdataSwitches` cover what the documentation leaves open: the stored and written precision of
``ExecutionTime`` (7, 3 or 0 digits, trailing zeros trimmed or not), its offset (``Z``, ``+00:00`` or
another zone), pages shorter than asked while more entries match, and a missing ``Audit.View`` permission.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

from airflow_provider_orchestrator_audit.testing.events_dataset import DEFAULT_TENANTS
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, Ticks, TimestampError, parse_timestamp
from airflow_provider_orchestrator_audit.verbatim import escape_line_separators

__all__ = ["FIRST_ID", "MAX_TOP", "OdataAnswer", "OdataListing", "OdataSwitches", "OrchestratorDataset"]

#: The ``Id`` of entry 0 of every tenant's initial log.
FIRST_ID = 100_001
#: The most entries a page holds, whatever ``$top`` asks (the documented limit).
MAX_TOP = 1000
#: The most expressions a ``$filter`` may hold (the documented limit).
MAX_FILTER_EXPRESSIONS = 100

_DEFAULT_START: Ticks = parse_timestamp("2026-01-01T00:00:00Z")
_EPOCH_DATE = date(1970, 1, 1)
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TIE_BLOCK = 4
_ZONE = re.compile(r"^(Z|[+-]\d\d:\d\d)$")
_TERM = re.compile(r"^\s*(\w+)\s+(ge|gt|le|lt|eq)\s+(\S+)\s*$", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


def _mix(z: int) -> int:
    # splitmix64's output function: a cheap, well-mixed 64-bit hash of a 64-bit counter.
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _key(seed: int, name: str) -> int:
    return _mix((seed * _GOLDEN + int.from_bytes(name.encode("utf-8")[:16].ljust(8, b"\0"), "big")) & _MASK64)


# (ServiceName, MethodName, Action, Component, entity, OperationText template) of realistic Orchestrator actions.
_ACTIONS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("Jobs", "StartJobs", "StartJob", "Jobs", "Job", "User {user} started a job of process 'Invoice_Processing'"),
    ("Processes", "Put", "Update", "Processes", "Release", "User {user} updated process 'Invoice_Processing'"),
    ("Assets", "Post", "Create", "Assets", "Asset", "User {user} created asset 'SAP_Credentials'"),
    ("Assets", "Put", "Update", "Assets", "Asset", "User {user} updated asset 'Config_\"prod\"'"),
    ("Queues", "Delete", "Delete", "Queues", "QueueDefinition", "User {user} deleted queue 'Q-Invoices'"),
    ("Robots", "Put", "Update", "Robots", "Robot", "User {user} changed robot 'UNATTENDED-07'"),
    ("Folders", "Post", "Create", "Folders", "Folder", "User {user} created folder 'Shared/Finance'"),
    ("Users", "AssignRoles", "Update", "Users", "User", "User {user} assigned role 'Automation User'"),
    (
        "Triggers",
        "SetEnabled",
        "Update",
        "ProcessSchedules",
        "ProcessSchedule",
        "User {user} disabled trigger 'Nightly'",
    ),
)
_USERS: tuple[tuple[str, str], ...] = (
    ("zoe.angstrom@acme.example", "User"),
    ("taro.yamada@acme.example", "User"),
    ("ExternalApp-SIEM", "ExternalApp"),
    ("UNATTENDED-07", "Robot"),
    ("seán.o'brien@acme.example", "User"),
    ("ольга.коваленко@acme.example", "User"),
)
_SPECIAL_EVERY = 37  # parameters with a newline, quotes, a backslash and U+2028


@dataclass
class _TenantLog:
    """One tenant's log: the initial entries ``[0, size)`` and those recorded since, ``(Id, ticks)``."""

    size: int
    added: list[tuple[int, Ticks]] = field(default_factory=list)

    @property
    def next_id(self) -> int:
        return (self.added[-1][0] if self.added else FIRST_ID + self.size - 1) + 1


class OrchestratorDataset:
    """
    Deterministic Orchestrator audit logs of a few tenants.

    :param size: entries of each tenant's initial log; a mapping from tenant to size sets each one.
    :param tenants: the tenant names.
    :param seed: selects one of many equally deterministic logs.
    :param start: ``ExecutionTime`` of entry 0, in ticks.
    :param entries_per_hour: mean rate of each tenant's log.
    :param tie_probability: chance that a block of 4 entries shares one ``ExecutionTime``.
    :param cache_size: entries whose JSON text is kept, so pages served repeatedly are cheap.
    """

    def __init__(
        self,
        *,
        size: int | dict[str, int] = 10_000,
        tenants: tuple[str, ...] = DEFAULT_TENANTS,
        seed: int = 0,
        start: Ticks = _DEFAULT_START,
        entries_per_hour: float = 3600,
        tie_probability: float = 0.1,
        cache_size: int = 65_536,
    ) -> None:
        if not entries_per_hour > 0:
            raise ValueError(f"entries_per_hour must be > 0, got {entries_per_hour}")
        if not 0.0 <= tie_probability <= 1.0:
            raise ValueError(f"tie_probability must be in [0, 1], got {tie_probability}")
        self.tenants = tuple(tenants)
        self.seed = seed
        self.start = start
        self.gap: int = max(1, round(3600 * TICKS_PER_SECOND / entries_per_hour))
        self._tie_threshold = int(tie_probability * (1 << 24))
        self._tie_key, self._ticks_key = _key(seed, "tie"), _key(seed, "ticks")
        self._body_keys = {name: _key(seed, "body/" + name) for name in self.tenants}
        sizes = size if isinstance(size, dict) else dict.fromkeys(self.tenants, size)
        self._logs = {name: _TenantLog(sizes.get(name, 0)) for name in self.tenants}
        self._lock = threading.Lock()
        self._cached_json = lru_cache(maxsize=cache_size)(self._render)
        self._cached_ticks = lru_cache(maxsize=cache_size)(self._ticks)
        self._cached_bytes = lru_cache(maxsize=cache_size)(self._encoded)

    # --- changing the logs ----------------------------------------------------------------------

    def reset(self, tenant: str, size: int) -> None:
        """Make ``tenant``'s log its first ``size`` entries again, forgetting those recorded since."""
        with self._lock:
            self._logs[tenant] = _TenantLog(size)

    def append(self, tenant: str, count: int) -> None:
        """``count`` new entries at the newest end: the next Ids, ``ExecutionTime`` one gap apart after the newest."""
        with self._lock:
            log = self._logs[tenant]
            newest = self._newest_ticks(log)
            for step in range(1, count + 1):
                log.added.append((log.next_id, newest + step * self.gap))

    def record_late(self, tenant: str, count: int, lags: list[Ticks]) -> None:
        """``count`` entries written late: the next Ids, ``ExecutionTime`` ``lags[k]`` ticks below the newest."""
        with self._lock:
            log = self._logs[tenant]
            newest = self._newest_ticks(log)
            for lag in lags[:count]:
                log.added.append((log.next_id, max(self.start, newest - lag)))

    def _newest_ticks(self, log: _TenantLog) -> Ticks:
        times = [ticks for _, ticks in log.added]
        if log.size:
            times.append(self.ticks(log.size - 1))
        return max(times, default=self.start)

    # --- reading ----------------------------------------------------------------------------------

    def ticks(self, index: int) -> Ticks:
        """``ExecutionTime`` of entry ``index`` of the initial log (the same in every tenant), full precision."""
        return self._cached_ticks(index)

    def _ticks(self, index: int) -> Ticks:
        leader = index
        if self._tie_threshold and (_mix((self._tie_key + index // _TIE_BLOCK) & _MASK64) >> 40) < self._tie_threshold:
            leader = index - index % _TIE_BLOCK
        jitter = _mix((self._ticks_key + leader) & _MASK64) % self.gap
        return self.start + leader * self.gap + jitter

    def rows(self, tenant: str) -> tuple[int, list[tuple[int, Ticks]]]:
        """The size of ``tenant``'s initial log and a copy of the entries recorded since, ``(Id, ticks)``."""
        with self._lock:
            log = self._logs[tenant]
            return log.size, list(log.added)

    def entries(self, tenant: str) -> list[tuple[int, Ticks]]:
        """Every entry of ``tenant``'s log now, ``(Id, ticks at full precision)``, in Id order."""
        size, added = self.rows(tenant)
        return [(FIRST_ID + index, self.ticks(index)) for index in range(size)] + added

    def first_index(self, ticks: Ticks, size: int, resolution: int) -> int:
        """The first initial index whose ``ExecutionTime`` (stored at ``resolution``) is at or after ``ticks``."""
        low, high = 0, size
        while low < high:
            middle = (low + high) // 2
            if self.ticks(middle) // resolution * resolution < ticks:
                low = middle + 1
            else:
                high = middle
        return low

    def entry_json(self, tenant: str, entry_id: int, execution_time: str, expand_entities: bool) -> str:
        """Entry ``entry_id`` of a tenant as the server's JSON text, with its ``ExecutionTime`` text."""
        return self._cached_json(tenant, entry_id, execution_time, expand_entities)

    def entry_bytes(self, tenant: str, entry_id: int, execution_time: str, expand_entities: bool) -> bytes:
        """:meth:`entry_json` encoded as UTF-8 (the simulator's CPU is not the exporter's: encoded once)."""
        return self._cached_bytes(tenant, entry_id, execution_time, expand_entities)

    def _encoded(self, tenant: str, entry_id: int, execution_time: str, expand_entities: bool) -> bytes:
        return self._cached_json(tenant, entry_id, execution_time, expand_entities).encode("utf-8")

    def _render(self, tenant: str, entry_id: int, execution_time: str, expand_entities: bool) -> str:
        h = _mix((self._body_keys[tenant] + entry_id * _GOLDEN) & _MASK64)
        service, method, action, component, entity, operation = _ACTIONS[h % len(_ACTIONS)]
        user, user_type = _USERS[(h >> 8) % len(_USERS)]
        entity_id = (h >> 16) % 5000 + 1
        parameters: dict[str, Any] = {"key": entity_id, "folderId": (h >> 28) % 40 + 1}
        if (h >> 36) % _SPECIAL_EVERY == 0:
            parameters["note"] = 'edited in Studio\nPath: "C:\\Robots\\Config.json"\u2028end'
        parts = [
            f'{{"Id":{entry_id}',
            f'"ServiceName":"{service}"',
            f'"MethodName":"{method}"',
            f'"Parameters":{encode_basestring(json.dumps(parameters, ensure_ascii=False))}',
            f'"ExecutionTime":"{execution_time}"',
            f'"Action":"{action}"',
            f'"Component":"{component}"',
            f'"DisplayName":{encode_basestring(operation.split(" ", 3)[-1].format(user=user))}',
            f'"EntityId":{entity_id}',
            f'"OperationText":{encode_basestring(operation.format(user=user))}',
            f'"UserName":{encode_basestring(user)}',
            f'"UserType":"{user_type}"',
            f'"UserId":{(h >> 44) % 900 + 100}',
            f'"UserIsDeleted":{"true" if (h >> 54) % 50 == 0 else "false"}',
            '"ExternalClientId":' + ('"7c0c3e2e-siem"' if user_type == "ExternalApp" else "null"),
        ]
        if expand_entities:
            custom = encode_basestring(json.dumps({"Name": operation.split("'")[1] if "'" in operation else entity}))
            parts.append(
                f'"Entities":[{{"Id":{entry_id * 3},"EntityName":"{entity}","EntityId":{entity_id},'
                f'"CustomData":{custom},"ActionName":"{action}"}}]'
            )
        return ",".join(parts) + "}"


@dataclass
class OdataSwitches:
    """
    How the listing answers what the documentation leaves open.

    :param fraction_digits: digits of ``ExecutionTime`` the server stores and writes (7, 3 or 0, truncated).
    :param trim_fraction: drop trailing zeros of the fraction, as .NET's round-trip format does.
    :param offset: the offset written: ``"Z"``, ``"+00:00"``, or another zone such as ``"+02:00"`` (the
        same instant in local time).
    :param page_size_cap: the most entries a page holds, whatever ``$top`` asks.
    :param short_pages: answer at most about half of what ``$top`` asks while more entries match
        (a server dropping entries after it counted them).
    :param audit_view: the caller has the ``Audit.View`` permission; False answers 403.
    """

    fraction_digits: int = 7
    trim_fraction: bool = False
    offset: str = "Z"
    page_size_cap: int = MAX_TOP
    short_pages: bool = False
    audit_view: bool = True

    def __post_init__(self) -> None:
        if self.fraction_digits not in range(8):
            raise ValueError(f"fraction_digits must be 0..7, got {self.fraction_digits}")
        if not _ZONE.match(self.offset):
            raise ValueError(f"offset must be 'Z' or like '+02:00', got {self.offset!r}")

    @property
    def resolution(self) -> int:
        """``ExecutionTime`` is stored in whole units of this many ticks."""
        return 10 ** (7 - self.fraction_digits)

    def format(self, ticks: Ticks) -> str:
        """An ``ExecutionTime`` as the server writes it."""
        return _formatted(self.fraction_digits, self.trim_fraction, self.offset, ticks)

    def format_uncached(self, ticks: Ticks) -> str:
        """:meth:`format`, computed."""
        shift = 0 if self.offset in ("Z", "+00:00", "-00:00") else _offset_ticks(self.offset)
        seconds, fraction = divmod(ticks // self.resolution * self.resolution + shift, TICKS_PER_SECOND)
        days, second_of_day = divmod(seconds, 86_400)
        hour, rest = divmod(second_of_day, 3600)
        minute, second = divmod(rest, 60)
        text = f"{(_EPOCH_DATE + timedelta(days=days)).isoformat()}T{hour:02d}:{minute:02d}:{second:02d}"
        digits = f"{fraction:07d}"[: self.fraction_digits]
        if self.trim_fraction:
            digits = digits.rstrip("0")
        return text + ("." + digits if digits else "") + self.offset


# The simulator's CPU is not the exporter's: a page served again costs lookups, not formatting.
@lru_cache(maxsize=1 << 18)
def _formatted(fraction_digits: int, trim_fraction: bool, offset: str, ticks: Ticks) -> str:
    return OdataSwitches(fraction_digits, trim_fraction, offset).format_uncached(ticks)


def _offset_ticks(offset: str) -> Ticks:
    sign = -1 if offset[0] == "-" else 1
    return sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60) * TICKS_PER_SECOND


@dataclass(frozen=True)
class OdataAnswer:
    """An answer of the listing: the HTTP status and the JSON body."""

    status: int
    body: bytes


class _BadQuery(ValueError):
    """A query the listing does not support: a 400 OData error."""


@dataclass
class _Query:
    time_low: Ticks | None = None  # ExecutionTime >= time_low
    time_high: Ticks | None = None  # ExecutionTime < time_high
    id_low: int = 0  # Id >= id_low
    id_high: int | None = None  # Id < id_high
    orderby: list[tuple[str, bool]] = field(default_factory=lambda: [("Id", False)])
    top: int | None = None
    skip: int = 0
    count: bool = False
    expand: bool = False


class OdataListing:
    """
    Answers ``odata/AuditLogs`` queries over an :class:`OrchestratorDataset`, free of I/O.

    :param dataset: the logs.
    :param switches: the answers to the API's unknowns.
    """

    def __init__(self, dataset: OrchestratorDataset, switches: OdataSwitches | None = None) -> None:
        self.dataset = dataset
        self.switches = switches or OdataSwitches()

    def window_entries(self, tenant: str, start: Ticks, end: Ticks) -> list[tuple[int, Ticks]]:
        """``(Id, ticks as stored)`` of ``tenant``'s entries now with ``start <= ExecutionTime < end``, in Id order."""
        resolution = self.switches.resolution
        stored = ((entry_id, ticks // resolution * resolution) for entry_id, ticks in self.dataset.entries(tenant))
        return [(entry_id, ticks) for entry_id, ticks in stored if start <= ticks < end]

    def entry_lines(self, tenant: str, entries: list[tuple[int, Ticks]], expand_entities: bool = True) -> list[str]:
        """The lines an export writes of ``entries``: each entry's text as served, U+2028/U+2029 escaped."""
        return [
            escape_line_separators(
                self.dataset.entry_json(tenant, entry_id, self.switches.format(ticks), expand_entities)
            )
            for entry_id, ticks in entries
        ]

    def answer(self, tenant: str, params: dict[str, str], serial: int = 0, context: str = "") -> OdataAnswer:
        """
        The answer to one query of ``tenant``'s log.

        :param params: the query string, names as sent (``$filter``, ``$top``...).
        :param serial: the request's number, which picks how short a short page is.
        :param context: the ``@odata.context`` URL prefix.
        """
        switches = self.switches
        if not switches.audit_view:
            return _error(403, "You are not authorized to access this resource: permission Audit.View is required.", 0)
        try:
            query = self._parse(params)
        except _BadQuery as error:
            return _error(400, f"The query specified in the URI is not valid. {error}", 1001)
        count, rows = self._select(tenant, query)
        if switches.short_pages and len(rows) > 1 and query.skip + len(rows) < count:
            rows = rows[: max(1, len(rows) // 2 - serial % 3)]
        value = b",".join(
            self.dataset.entry_bytes(tenant, entry_id, switches.format(ticks), query.expand) for entry_id, ticks in rows
        )
        head = {"@odata.context": context + "/odata/$metadata#AuditLogs" + ("(Entities())" if query.expand else "")}
        if query.count:
            head["@odata.count"] = count  # type: ignore[assignment]
        start = json.dumps(head, separators=(",", ":"))[:-1] + ',"value":['
        return OdataAnswer(200, start.encode("utf-8") + value + b"]}")

    def _select(self, tenant: str, query: _Query) -> tuple[int, list[tuple[int, Ticks]]]:
        """How many entries match, and the page of them ``$orderby``, ``$skip`` and ``$top`` ask for."""
        dataset, resolution = self.dataset, self.switches.resolution
        size, added = dataset.rows(tenant)
        # The initial log is ordered by Id and by ExecutionTime alike: both bounds give an index range.
        low = max(0, query.id_low - FIRST_ID)
        high = size if query.id_high is None else max(0, min(size, query.id_high - FIRST_ID))
        if query.time_low is not None:
            low = max(low, dataset.first_index(query.time_low, size, resolution))
        if query.time_high is not None:
            high = min(high, dataset.first_index(query.time_high, size, resolution))
        high = max(low, high)
        extra = sorted(
            (entry_id, ticks)
            for entry_id, ticks in added
            if entry_id >= query.id_low
            and (query.id_high is None or entry_id < query.id_high)
            and (query.time_low is None or ticks // resolution * resolution >= query.time_low)
            and (query.time_high is None or ticks // resolution * resolution < query.time_high)
        )
        count = high - low + len(extra)
        cap = min(self.switches.page_size_cap, MAX_TOP)
        take = cap if query.top is None else min(query.top, cap)
        (name, descending), *_ = query.orderby
        if name == "Id":
            # Ordered by Id, $skip is a seek (as an index makes it in a database), not a walk.
            stop = min(count, query.skip + take)
            return count, [self._by_id(k, low, high, extra, descending) for k in range(query.skip, stop)]
        initial = ((FIRST_ID + index, dataset.ticks(index)) for index in range(low, high))
        if descending:
            initial = ((FIRST_ID + index, dataset.ticks(index)) for index in range(high - 1, low - 1, -1))
            extra.reverse()
        # Ties in ExecutionTime fall back to Id, in the same direction.
        extra.sort(key=lambda row: (row[1] // resolution, row[0]), reverse=descending)
        ordered: Iterator[tuple[int, Ticks]] = heapq.merge(
            initial, extra, key=lambda row: (row[1] // resolution, row[0]), reverse=descending
        )
        return count, list(itertools.islice(ordered, query.skip, query.skip + take))

    def _by_id(
        self, position: int, low: int, high: int, extra: list[tuple[int, Ticks]], descending: bool
    ) -> tuple[int, Ticks]:
        """The entry at ``position`` of the matches in Id order: the initial range, then those recorded since."""
        if descending:
            if position < len(extra):
                return extra[-1 - position]
            index = high - 1 - (position - len(extra))
        else:
            if position >= high - low:
                return extra[position - (high - low)]
            index = low + position
        return FIRST_ID + index, self.dataset.ticks(index)

    def _parse(self, params: dict[str, str]) -> _Query:
        query = _Query()
        for name, value in params.items():
            lowered = name.lower()
            if lowered == "$filter":
                self._filter(value, query)
            elif lowered == "$orderby":
                query.orderby = _orderby(value)
            elif lowered in ("$top", "$skip"):
                if not value.isascii() or not value.isdigit():
                    raise _BadQuery(f"Invalid value '{value}' for {name}: expected a non-negative integer.")
                setattr(query, lowered[1:], int(value))
            elif lowered == "$count":
                if value.lower() not in ("true", "false"):
                    raise _BadQuery(f"Invalid value '{value}' for $count: use true or false.")
                query.count = value.lower() == "true"
            elif lowered == "$expand":
                if value.strip().lower() != "entities":
                    raise _BadQuery(f"Could not find a property named '{value}' to expand on type AuditLogDto.")
                query.expand = True
            elif lowered.startswith("$"):
                raise _BadQuery(f"The query parameter '{name}' is not supported.")
        return query

    def _filter(self, text: str, query: _Query) -> None:
        terms = _AND.split(text.strip())
        if len(terms) > MAX_FILTER_EXPRESSIONS:
            raise _BadQuery(f"The $filter has {len(terms)} expressions; at most {MAX_FILTER_EXPRESSIONS} are allowed.")
        for term in terms:
            match = _TERM.match(term)
            if match is None:
                raise _BadQuery(f"The $filter term '{term}' is not supported.")
            prop, op, literal = match.group(1), match.group(2).lower(), match.group(3)
            if prop == "Id":
                if not literal.isascii() or not literal.isdigit():
                    raise _BadQuery(f"'{literal}' is not an Edm.Int64 literal.")
                number = int(literal)
                low, high = {"ge": (number, None), "gt": (number + 1, None), "le": (None, number + 1),
                             "lt": (None, number), "eq": (number, number + 1)}[op]  # fmt: skip
                if low is not None:
                    query.id_low = max(query.id_low, low)
                if high is not None:
                    query.id_high = high if query.id_high is None else min(query.id_high, high)
            elif prop == "ExecutionTime":
                try:
                    moment = parse_timestamp(literal, assume_utc=False)
                except TimestampError:
                    raise _BadQuery(f"'{literal}' is not an Edm.DateTimeOffset literal.") from None
                # Stored in whole units: ``gt``/``le`` of a moment inside a unit are ``ge``/``lt`` of the next one.
                unit = self.switches.resolution
                ceiling = -(-moment // unit) * unit
                after = (moment // unit + 1) * unit
                low_t, high_t = {"ge": (ceiling, None), "gt": (after, None), "le": (None, after),
                                 "lt": (None, ceiling), "eq": (moment, moment + 1)}[op]  # fmt: skip
                if low_t is not None:
                    query.time_low = low_t if query.time_low is None else max(query.time_low, low_t)
                if high_t is not None:
                    query.time_high = high_t if query.time_high is None else min(query.time_high, high_t)
            else:
                raise _BadQuery(f"Filtering on '{prop}' is not supported by this server.")


def _orderby(text: str) -> list[tuple[str, bool]]:
    keys = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or words[0] not in ("Id", "ExecutionTime"):
            raise _BadQuery(f"The $orderby '{part.strip()}' is not supported.")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise _BadQuery(f"The $orderby direction '{words[1]}' is not valid.")
        keys.append((words[0], direction == "desc"))
    if len(keys) > 5:
        raise _BadQuery("At most 5 $orderby expressions are allowed.")
    return keys


def _error(status: int, message: str, code: int) -> OdataAnswer:
    trace = f"00-{_mix(status * 7919 + code):016x}{_mix(code + 1):016x}-{_mix(status):016x}-01"
    body = {"message": message, "errorCode": code, "traceId": trace}
    return OdataAnswer(status, json.dumps(body).encode("utf-8"))
