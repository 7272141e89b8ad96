"""
A deterministic, lazily generated organisation audit log.

Entry ``i`` (``i >= 0``) is computed on demand from ``(seed, i)`` with a counter-based hash, so an
organisation of millions of entries costs nothing up front and every entry is identical each time it
is generated. Entries are indexed oldest first and their ``createdOn`` never decreases with the index.

The data set reproduces the hazards of Orchestrator's audit API that an exporter must survive:

* runs of entries share the exact same ``createdOn`` (tie groups, occasionally 20-60 long) and the
  order inside a tie group changes from one request to the next;
* the visible part of the log drifts: :meth:`AuditDataset.append` adds the newest entries,
  :meth:`AuditDataset.expire` removes the oldest (retention), and :meth:`AuditDataset.record_late`
  inserts entries whose ``createdOn`` lies below the newest ones (an audit pipeline catching up
  after a delay), anywhere in the listing;
* ``createdOn`` uses all seven fractional digits, names and messages carry non-ASCII text, quotes,
  backslashes, newlines and U+2028, and some entries carry fields the documentation does not list.
"""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, Ticks, parse_timestamp

__all__ = ["DEFAULT_START", "DOCUMENTED_FIELDS", "LATE_INDEX_BASE", "AuditDataset", "LogView", "SortTooLargeError"]

#: Ticks of entry 0 unless told otherwise: 2026-01-01T00:00:00Z.
DEFAULT_START: Ticks = parse_timestamp("2026-01-01T00:00:00Z")

#: The entry fields Orchestrator documents, in the order it writes them.
DOCUMENTED_FIELDS: tuple[str, ...] = (
    "createdOn",
    "category",
    "action",
    "auditLogDetails",
    "userName",
    "email",
    "message",
    "detailsVersion",
    "source",
)

#: Indices of entries recorded late start here, far above any regular index.
LATE_INDEX_BASE = 1 << 48

_EPOCH_DATE = date(1970, 1, 1)
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
# Burst tie groups are placed inside fixed blocks of indices so that whether an index belongs to a
# burst is decided by one hash of its block, without scanning neighbours.
_BURST_BLOCK = 64
_BURST_MIN, _BURST_MAX = 20, 60
_SPECIAL_MESSAGE_EVERY = 50
_EXTRA_FIELD_EVERY = 20
# Distinct salts keep the tick, content and burst streams of one seed independent of each other.
_SALT_TICKS = 0x5EED_71C5
_SALT_BODY = 0xB0D1_E5
_SALT_BURST = 0xB0B5_7


class SortTooLargeError(ValueError):
    """Sorting on a field other than ``createdOn`` would have to materialise too many entries."""


def _finalise64(z: int) -> int:
    # The splitmix64 output function: a cheap, well-mixed 64-bit hash of a 64-bit counter.
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _stream_key(seed: int, salt: int) -> int:
    return _finalise64(((seed & _MASK64) ^ salt) * _GOLDEN & _MASK64)


# --- realistic content -------------------------------------------------------------------------

# (display name, email, login). Emails are empty for the built-in administrator and robot accounts,
# as Orchestrator writes them; names cover accents, CJK, Greek, Cyrillic, RTL Arabic, an apostrophe
# and an emoji so that an exporter's encoding is exercised.
_USERS: tuple[tuple[str, str, str], ...] = (
    ("System Administrator", "", "admin"),
    ("Zoë Ångström", "zoe.angstrom@acme.example", "zoe.angstrom"),
    ("山田 太郎", "taro.yamada@acme.example", "t.yamada"),
    ("Μαρία Παπαδοπούλου", "maria.papadopoulou@acme.example", "m.papadopoulou"),
    ("José Núñez", "jose.nunez@acme.example", "jnunez"),
    ("🦊 Fox Automation", "", "fox-robot"),
    ("Ольга Коваленко", "olga.kovalenko@acme.example", "o.kovalenko"),
    ("Seán O'Brien", "sean.obrien@acme.example", "sobrien"),
    ("محمد الأحمد", "m.alahmad@acme.example", "m.alahmad"),
    ("Priya Sharma", "priya.sharma@acme.example", "psharma"),
    ("Chloé Dubois-Lefèvre", "", "cdubois"),
    ("김민준", "minjun.kim@acme.example", "mj.kim"),
)

_User = tuple[str, str, str]
_Details = tuple[tuple[str, str | int | bool], ...]


@dataclass(frozen=True)
class _Kind:
    """One kind of audit event: its fixed fields and how to word the rest."""

    category: str
    action: str
    source: str
    describe: Callable[[_User, _User, int], tuple[str, _Details]]
    # The constant parts of the serialised entry, encoded once rather than per entry.
    category_json: str = field(init=False)
    source_json: str = field(init=False)

    def __post_init__(self) -> None:
        category_json = f',"category":{encode_basestring(self.category)},"action":{encode_basestring(self.action)}'
        object.__setattr__(self, "category_json", category_json)
        object.__setattr__(self, "source_json", f',"detailsVersion":"1.0","source":{encode_basestring(self.source)}')


def _login(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    name = f"{user[0]} {user[2]}"
    return f"User '{name}' logged in", (("userName", name), ("email", user[1]))


def _logout(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    name = f"{user[0]} {user[2]}"
    return f"User '{name}' logged out", (("userName", name), ("email", user[1]))


def _user_create(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    return (
        f"User '{other[0]}' was created by '{user[0]}'",
        (("userName", other[2]), ("name", other[0]), ("email", other[1]), ("type", "DirectoryUser")),
    )


def _robot_create(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    robot = f"ROBOT-{n % 10_000:04d}"
    return (
        f"Robot '{robot}' was created by '{user[0]}'",
        (("robotName", robot), ("machineName", f"VM-{n % 97:02d}"), ("type", "Unattended"), ("id", n)),
    )


def _robot_update(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    robot = f"ROBOT-{n % 10_000:04d}"
    return (
        f"Robot '{robot}' was updated",
        (("robotName", robot), ("changedProperties", "CredentialType, Description"), ("id", n)),
    )


def _process_update(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    process = f"Invoice_Processing_{n % 40}"
    version = f"1.0.{n % 300}"
    return (
        f"Process '{process}' was updated to version {version}",
        (("processName", process), ("version", version), ("folder", "Shared/Finance")),
    )


def _queue_delete(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    queue = f"Q-Invoices-{n % 500}"
    return f"Queue '{queue}' was deleted", (("queueName", queue), ("folder", "Shared"), ("itemsDeleted", n % 1000))


def _asset_update(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    asset = f"Config_{n % 250}"
    return f"Asset '{asset}' was updated", (("assetName", asset), ("valueType", "Text"), ("isEncrypted", n % 3 == 0))


def _tenant_update(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    return (
        "Tenant 'DefaultTenant' settings were updated",
        (("tenantName", "DefaultTenant"), ("setting", "Auth.Password.Expiration"), ("value", n % 90)),
    )


def _group_add_members(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    group = ("Administrators", "Automation Developers", "Automation Users", "Everyone")[n % 4]
    return (
        f"User '{other[0]}' was added to group '{group}'",
        (("groupName", group), ("userName", other[2]), ("email", other[1])),
    )


def _external_application_create(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    app = f"AuditExporter-{n % 100}"
    return (
        f"External application '{app}' was created",
        (("name", app), ("isConfidential", True), ("scopes", "PM.Audit.Read PM.User.Read")),
    )


def _license_allocate(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    kind = ("Attended", "Unattended", "Studio", "StudioPro")[n % 4]
    return (
        f"{kind} license was allocated to '{other[0]}'",
        (("licenseType", kind), ("userName", other[2]), ("quantity", 1 + n % 5)),
    )


def _idea_submit(user: _User, other: _User, n: int) -> tuple[str, _Details]:
    return (
        f"Idea #{n % 5000} was submitted by '{user[0]}'",
        (("ideaId", n % 5000), ("title", "Automate vendor onboarding")),
    )


_LOGIN = _Kind("User", "Login", "Cis", _login)
_LOGOUT = _Kind("User", "Logout", "IdentityServer", _logout)
_PROCESS_UPDATE = _Kind("Process", "Update", "Orchestrator", _process_update)
_ASSET_UPDATE = _Kind("Asset", "Update", "Orchestrator", _asset_update)
# Logins and logouts dominate a real audit log, so they appear several times in the table.
_KINDS: tuple[_Kind, ...] = (
    _LOGIN,
    _LOGIN,
    _LOGIN,
    _LOGIN,
    _LOGOUT,
    _LOGOUT,
    _Kind("User", "Create", "Cis", _user_create),
    _Kind("Robot", "Create", "Orchestrator", _robot_create),
    _Kind("Robot", "Update", "Orchestrator", _robot_update),
    _PROCESS_UPDATE,
    _PROCESS_UPDATE,
    _Kind("Queue", "Delete", "Orchestrator", _queue_delete),
    _ASSET_UPDATE,
    _ASSET_UPDATE,
    _Kind("Tenant", "Update", "Cis", _tenant_update),
    _Kind("Group", "AddMembers", "Cis", _group_add_members),
    _Kind("ExternalApplication", "Create", "IdentityServer", _external_application_create),
    _Kind("License", "Allocate", "Cis", _license_allocate),
    _Kind("Idea", "Submit", "AutomationHub", _idea_submit),
)
_USER_JSON: tuple[str, ...] = tuple(
    f',"userName":{encode_basestring(name)},"email":{encode_basestring(email)}' for name, email, _ in _USERS
)

# Newline, double quotes, a backslash and U+2028 (a line separator JSON allows unescaped) in one tail.
_SPECIAL_TAIL = '\nPrevious value: "C:\\Robots\\Config.json"\u2028(edited in the web UI)'


@lru_cache(maxsize=16_384)
def _details_text(details: _Details) -> str:
    # Orchestrator serialises auditLogDetails itself, with CRLF line ends and a one-space indent.
    # Cached: most kinds of event have only a few hundred distinct details. (True == 1 as a cache
    # key, but no field name here ever holds both a bool and an int.)
    lines = []
    for key, value in details:
        if type(value) is str:
            text = encode_basestring(value)
        elif value is True or value is False:
            text = "true" if value else "false"
        else:
            text = str(value)
        lines.append(f' "{key}": {text}')
    return "{\r\n" + ",\r\n".join(lines) + "\r\n}"


@lru_cache(maxsize=16_384)
def _details_json(details: _Details) -> str:
    # The details text as a JSON string value: it is encoded twice, once as a document, once as text.
    return encode_basestring(_details_text(details))


def _format_created_on(ticks: Ticks) -> str:
    """
    The same text as :func:`~airflow_provider_orchestrator_audit.timestamps.format_ticks`, faster.

    Pages of a thousand entries are formatted per request, and ``strftime`` dominated that cost.
    """
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    minutes, second = divmod(seconds, 60)
    return f"{_minute_text(minutes)}{second:02d}.{fraction:07d}+00:00"


@lru_cache(maxsize=8192)
def _minute_text(minutes: int) -> str:
    day, minute_of_day = divmod(minutes, 1440)
    hour, minute = divmod(minute_of_day, 60)
    return f"{(_EPOCH_DATE + timedelta(days=day)).isoformat()}T{hour:02d}:{minute:02d}:"


@dataclass(frozen=True)
class LogView:
    """
    One consistent state of the visible log: regular indices ``[low, high)`` plus the entries recorded late.

    :param low: the oldest visible regular index.
    :param high: one past the newest visible regular index.
    :param late: the visible entries recorded late as ``(ticks, index, boundary)``, oldest first, where
        ``boundary`` is the first regular index with a strictly newer ``createdOn``.
    """

    low: int
    high: int
    late: tuple[tuple[Ticks, int, int], ...] = ()

    @property
    def total(self) -> int:
        """How many entries are visible."""
        return self.high - self.low + len(self.late)


class AuditDataset:
    """
    An effectively unbounded, deterministic audit log of which a window ``[low, high)`` is visible.

    Index ``i`` is the ``i``-th oldest entry ever written. Position ``p`` in ``createdOn``-descending
    order (0 = newest) is index ``high - 1 - p``; in ascending order it is ``low + p``.

    :param size: how many entries are visible at first (indices ``[0, size)``).
    :param seed: selects one of many different, equally deterministic logs.
    :param start: ticks of entry 0 (default 2026-01-01T00:00:00Z).
    :param entries_per_hour: mean rate; entry ``i`` is written near ``start + i * 3600 s / rate``.
    :param tie_probability: chance that an entry shares the exact ``createdOn`` of the one before it.
    :param burst_probability: chance that a block of 64 indices holds a burst, a tie group of 20 to
        60 entries (a bulk operation writing many entries in one instant).
    :param shuffle_ties: list each tie group in a random order per request, as the real API may.
    :param max_sort_entries: the most visible entries :meth:`sorted_indices` will materialise to sort
        on a field other than ``createdOn``.
    :param cache_size: entries whose serialised form is kept, so pages fetched repeatedly are cheap.
    """

    def __init__(
        self,
        *,
        size: int = 10_000,
        seed: int = 0,
        start: Ticks = DEFAULT_START,
        entries_per_hour: float = 3600,
        tie_probability: float = 0.15,
        burst_probability: float = 0.02,
        shuffle_ties: bool = True,
        max_sort_entries: int = 50_000,
        cache_size: int = 65_536,
    ) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if not entries_per_hour > 0:
            raise ValueError(f"entries_per_hour must be > 0, got {entries_per_hour}")
        if not 0.0 <= tie_probability < 1.0:
            raise ValueError(f"tie_probability must be in [0, 1), got {tie_probability}")
        if not 0.0 <= burst_probability <= 1.0:
            raise ValueError(f"burst_probability must be in [0, 1], got {burst_probability}")
        self.seed = seed
        self.start = start
        self.entries_per_hour = entries_per_hour
        self.tie_probability = tie_probability
        self.burst_probability = burst_probability
        self.shuffle_ties = shuffle_ties
        self.max_sort_entries = max_sort_entries
        #: The mean gap between distinct entries, in ticks; never 0 so distinct anchors never collide.
        self.gap: int = max(1, round(3600 * TICKS_PER_SECOND / entries_per_hour))
        self._tie_threshold = int(tie_probability * (1 << 24))
        self._burst_threshold = int(burst_probability * (1 << 24))
        self._key_ticks = _stream_key(seed, _SALT_TICKS)
        self._key_body = _stream_key(seed, _SALT_BODY)
        self._key_burst = _stream_key(seed, _SALT_BURST)
        self._lock = threading.Lock()
        self._low = 0
        self._high = size
        # Entries recorded late, ``(ticks, index, boundary)`` sorted by (ticks, index); see record_late().
        self._late: list[tuple[Ticks, int, int]] = []
        self._late_ticks: dict[int, Ticks] = {}
        self._sorted_cache: tuple[tuple[str, bool, int, int, int], list[int]] | None = None
        # Per-instance caches: a module-level cache would mix entries of data sets with other seeds.
        self._render_cached: Callable[[int, Ticks], bytes] = lru_cache(maxsize=cache_size)(self._render)
        self._burst_of_block: Callable[[int], tuple[int, int]] = lru_cache(maxsize=4096)(self._compute_burst)

    def __repr__(self) -> str:
        low, high = self.visible_range()
        return (
            f"AuditDataset(visible=[{low}, {high}), seed={self.seed}, entries_per_hour={self.entries_per_hour}, "
            f"tie_probability={self.tie_probability}, burst_probability={self.burst_probability})"
        )

    # --- time stamps --------------------------------------------------------------------------

    def _compute_burst(self, block: int) -> tuple[int, int]:
        """The ``[first, end)`` indices of the burst in ``block``, or ``(-1, -1)`` when it has none."""
        h = _finalise64((self._key_burst + block * _GOLDEN) & _MASK64)
        if (h >> 40) >= self._burst_threshold:
            return -1, -1
        length = _BURST_MIN + (h & 0xFFFF) % (_BURST_MAX - _BURST_MIN + 1)
        offset = ((h >> 16) & 0xFFFF) % (_BURST_BLOCK - length + 1)
        first = block * _BURST_BLOCK + offset
        return first, first + length

    def _tie_hash(self, i: int) -> int:
        return _finalise64((self._key_ticks + i * _GOLDEN) & _MASK64)

    def _tie_target(self, i: int) -> int:
        """Where to continue looking for the anchor of ``i``: ``i`` itself when it starts a group."""
        if i <= 0:
            return 0
        if self._burst_threshold:
            first, end = self._burst_of_block(i // _BURST_BLOCK)
            if first < i < end:
                return first
        if (self._tie_hash(i) >> 40) < self._tie_threshold:
            return i - 1
        return i

    def is_tied(self, i: int) -> bool:
        """
        True when entry ``i`` has the same ``createdOn`` as entry ``i - 1``.

        :param i: an entry index.
        """
        return self._tie_target(i) != i

    def anchor(self, i: int) -> int:
        """
        The first (oldest) index of the tie group holding ``i``.

        :param i: an entry index.
        """
        while True:
            target = self._tie_target(i)
            if target == i:
                return i
            i = target

    def ticks(self, i: int) -> Ticks:
        """
        ``createdOn`` of entry ``i`` in ticks, exactly nondecreasing in ``i``.

        A group's first entry lies in ``[start + i * gap, start + (i + 1) * gap)``, so entries that
        are not tied to their predecessor are strictly newer than it.

        :param i: an entry index (``>= 0``).
        """
        if i < 0:
            raise IndexError(f"entry index must be >= 0, got {i}")
        # anchor() inlined: the hash that decides "not tied" also places the group, so it is computed once.
        key, threshold, bursts = self._key_ticks, self._tie_threshold, self._burst_threshold
        while True:
            if bursts and i:
                first, end = self._burst_of_block(i // _BURST_BLOCK)
                if first < i < end:
                    i = first
                    continue
            h = _finalise64((key + i * _GOLDEN) & _MASK64)
            if i and (h >> 40) < threshold:
                i -= 1
                continue
            return self.start + i * self.gap + h % self.gap

    # --- entries -------------------------------------------------------------------------------

    def _parts(self, i: int, ticks: Ticks) -> tuple[str, _Kind, int, str, _Details, tuple[str, str] | None]:
        """What varies per entry: ``(createdOn, kind, user number, message, details, extra field)``."""
        h = _finalise64((self._key_body + i * _GOLDEN) & _MASK64)
        kind = _KINDS[(h & 0xFF) % len(_KINDS)]
        user = ((h >> 8) & 0xFF) % len(_USERS)
        number = (h >> 24) & 0xFFFF
        message, details = kind.describe(_USERS[user], _USERS[((h >> 16) & 0xFF) % len(_USERS)], number)
        if ((h >> 40) & 0xFFFF) % _SPECIAL_MESSAGE_EVERY == 0:
            message += _SPECIAL_TAIL
        extra: tuple[str, str] | None = None
        if (h >> 56) % _EXTRA_FIELD_EVERY == 0:
            # Fields the documentation does not list: an exporter must keep them, not drop them.
            extra = ("tenantName", "DefaultTenant") if number % 2 else ("clientIp", f"203.0.113.{number % 254 + 1}")
        return _format_created_on(ticks), kind, user, message, details, extra

    def entry(self, i: int) -> dict[str, Any]:
        """
        Entry ``i`` as the API lists it: documented fields in documented order, then any extra one.

        A new dict each call, so a caller may change it without affecting later calls.

        :param i: an entry index (``>= 0``); visibility is not checked.
        """
        created_on, kind, user, message, details, extra = self._parts(i, self._ticks_of(i))
        item: dict[str, Any] = {
            "createdOn": created_on,
            "category": kind.category,
            "action": kind.action,
            "auditLogDetails": _details_text(details),
            "userName": _USERS[user][0],
            "email": _USERS[user][1],
            "message": message,
            "detailsVersion": "1.0",
            "source": kind.source,
        }
        if extra is not None:
            item[extra[0]] = extra[1]
        return item

    def entry_json(self, i: int) -> bytes:
        """
        Entry ``i`` serialised as compact UTF-8 JSON (non-ASCII kept as is).

        Equal to ``json.dumps(entry(i), ensure_ascii=False, separators=(",", ":"))`` encoded as UTF-8.

        :param i: an entry index (``>= 0``); visibility is not checked.
        """
        return self._render_cached(i, self._ticks_of(i))

    def _ticks_of(self, i: int) -> Ticks:
        """``createdOn`` of a regular or a late entry."""
        if i >= LATE_INDEX_BASE:
            return self._late_ticks[i]
        return self.ticks(i)

    def _render(self, i: int, ticks: Ticks) -> bytes:
        # Assembled from pre-encoded pieces rather than json.dumps: a page of a thousand entries is
        # serialised per request. ``ticks`` must be ticks(i); pages pass it because they compute a
        # whole span of time stamps in one pass.
        created_on, kind, user, message, details, extra = self._parts(i, ticks)
        text = (
            f'{{"createdOn":"{created_on}"{kind.category_json},"auditLogDetails":{_details_json(details)}'
            f'{_USER_JSON[user]},"message":{encode_basestring(message)}{kind.source_json}'
        )
        if extra is not None:
            text += f',"{extra[0]}":{encode_basestring(extra[1])}'
        return (text + "}").encode("utf-8")

    # --- visibility ----------------------------------------------------------------------------

    def visible_range(self) -> tuple[int, int]:
        """The visible indices ``[low, high)``, read atomically."""
        with self._lock:
            return self._low, self._high

    @property
    def total_count(self) -> int:
        """How many entries are visible now, entries recorded late included."""
        return self.view().total

    def view(self) -> LogView:
        """The visible log now, read atomically: pair a page with its ``totalCount`` through it."""
        with self._lock:
            low, high = self._low, self._high
            late = self._late
            if late:
                # Late entries older than every visible regular entry went with retention.
                first = next((k for k, item in enumerate(late) if item[2] > low), len(late))
                return LogView(low, high, tuple(late[first:]))
            return LogView(low, high)

    def record_late(
        self, n: int, *, max_lag_ticks: Ticks, min_lag_ticks: Ticks = 0, rng: random.Random | None = None
    ) -> list[int]:
        """
        Record ``n`` entries late: each ``createdOn`` lies between ``min_lag_ticks`` and ``max_lag_ticks``
        below the newest visible entry, so the entry lands inside the listing, not at its head.

        Everything older than a late entry moves one position down in the newest-first order; nothing
        newer moves. ``totalCount`` grows by ``n`` all the same.

        :param n: how many entries (``>= 0``).
        :param max_lag_ticks: the most a ``createdOn`` lies below the newest entry.
        :param min_lag_ticks: the least.
        :param rng: the random source of the lags; a fresh unseeded one when None.
        :returns: the indices of the new entries.
        """
        if n < 0 or min_lag_ticks < 0 or max_lag_ticks < min_lag_ticks:
            raise ValueError(
                f"record_late needs n >= 0 and 0 <= min_lag <= max_lag, got {n}, {min_lag_ticks}, {max_lag_ticks}"
            )
        rng = rng if rng is not None else random.Random()
        added: list[int] = []
        with self._lock:
            if self._high <= self._low:
                return added
            newest = self.ticks(self._high - 1)
            if self._late:
                newest = max(newest, self._late[-1][0])
            oldest = self.ticks(self._low)
            for _ in range(n):
                ticks = max(oldest, newest - rng.randint(min_lag_ticks, max_lag_ticks))
                index = LATE_INDEX_BASE + len(self._late_ticks)
                boundary = self._first_at_or_after(ticks + 1)
                self._late_ticks[index] = ticks
                bisect.insort(self._late, (ticks, index, boundary))
                added.append(index)
        return added

    def append(self, n: int) -> None:
        """
        Make ``n`` more entries visible at the newest end, as new activity would.

        :param n: how many entries arrive (``>= 0``).
        """
        if n < 0:
            raise ValueError(f"append needs n >= 0, got {n}")
        with self._lock:
            self._high += n

    def expire(self, n: int) -> None:
        """
        Remove the ``n`` oldest visible entries, as retention would (never more than are visible).

        :param n: how many entries expire (``>= 0``).
        """
        if n < 0:
            raise ValueError(f"expire needs n >= 0, got {n}")
        with self._lock:
            self._low = min(self._high, self._low + n)

    def set_visible_range(self, low: int, high: int) -> None:
        """
        Make exactly the indices ``[low, high)`` visible, e.g. to undo drift between tests; entries
        recorded late are dropped.

        :param low: the oldest visible index.
        :param high: one past the newest visible index.
        """
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
        with self._lock:
            self._low, self._high = low, high
            self._late.clear()

    # --- searching -----------------------------------------------------------------------------

    def _first_at_or_after(self, t: Ticks) -> int:
        # Gallop from an estimate, then binary search: ticks(i) >= start + anchor(i) * gap.
        if t <= self.ticks(0):
            return 0
        lo = 0
        hi = max(1, (t - self.start) // self.gap + 1)
        while self.ticks(hi) < t:
            lo, hi = hi, hi * 2
        while lo < hi:
            mid = (lo + hi) // 2
            if self.ticks(mid) < t:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def index_range(self, start_ticks: Ticks, end_ticks: Ticks) -> tuple[int, int]:
        """
        The indices ``[a, b)`` whose ``start_ticks <= ticks(i) < end_ticks``, visible or not.

        :param start_ticks: inclusive lower bound.
        :param end_ticks: exclusive upper bound; an empty range when not above ``start_ticks``.
        """
        a = self._first_at_or_after(start_ticks)
        if end_ticks <= start_ticks:
            return a, a
        return a, self._first_at_or_after(end_ticks)

    def entries_between(self, start_ticks: Ticks, end_ticks: Ticks) -> list[dict[str, Any]]:
        """
        The visible entries with ``start_ticks <= createdOn < end_ticks``, oldest first, late ones included.

        :param start_ticks: inclusive lower bound.
        :param end_ticks: exclusive upper bound.
        """
        a, b = self.index_range(start_ticks, end_ticks)
        view = self.view()
        items = [(self.ticks(i), i) for i in range(max(a, view.low), min(b, view.high))]
        late = [(t, i) for t, i, _ in view.late if start_ticks <= t < end_ticks]
        if late:
            items = sorted(items + late)
        return [self.entry(i) for _, i in items]

    # --- pages ---------------------------------------------------------------------------------

    def _span_ticks(self, a: int, b: int) -> tuple[list[Ticks], list[bool]]:
        """
        ``ticks(i)`` and ``is_tied(i)`` for every ``i`` in ``[a, b)``, in one pass.

        One hash per index instead of a walk back per index: this is the hot path of every page.
        """
        if a >= b:
            return [], []
        key, threshold, bursts = self._key_ticks, self._tie_threshold, self._burst_threshold
        start, gap = self.start, self.gap
        current = self.ticks(a)
        ticks_out = [current]
        tied_out = [self.is_tied(a)]
        block, first, end = -1, -1, -1
        for i in range(a + 1, b):
            if bursts:
                if i // _BURST_BLOCK != block:
                    block = i // _BURST_BLOCK
                    first, end = self._burst_of_block(block)
                if first < i < end:
                    ticks_out.append(current)
                    tied_out.append(True)
                    continue
            h = _finalise64((key + i * _GOLDEN) & _MASK64)
            if (h >> 40) < threshold:
                ticks_out.append(current)
                tied_out.append(True)
            else:
                current = start + i * gap + h % gap
                ticks_out.append(current)
                tied_out.append(False)
        return ticks_out, tied_out

    def page_items(
        self,
        skip: int,
        top: int,
        descending: bool = True,
        rng: random.Random | None = None,
        *,
        bounds: tuple[int, int] | None = None,
        view: LogView | None = None,
    ) -> list[tuple[int, Ticks]]:
        """
        ``(index, ticks)`` of the entries at positions ``[skip, skip + top)`` of the ``createdOn`` order.

        With :attr:`shuffle_ties`, every tie group that overlaps the page is permuted as a whole
        before the page is cut out of it, so a group split by a page boundary may show different
        members on either side in two requests. Entries recorded late take their place by
        ``createdOn`` (before regular entries of the same ``createdOn``).

        :param skip: the first position (0 = newest when descending).
        :param top: how many positions at most.
        :param descending: newest first (the usual export order) or oldest first.
        :param rng: the request's random source for the tie order; a fresh unseeded one when None.
        :param bounds: the visible regular ``(low, high)`` to use (no late entries), so a caller can
            pair it with a count.
        :param view: the visible log to use (see :meth:`view`); takes precedence over ``bounds``.
        """
        if skip < 0 or top < 0:
            raise ValueError(f"skip and top must be >= 0, got skip={skip}, top={top}")
        if view is None:
            view = LogView(*bounds) if bounds is not None else self.view()
        if not view.late:
            return self._regular_items(skip, top, descending, rng, view.low, view.high)
        total = view.total
        if not descending:
            # Oldest first is the newest-first listing read backwards.
            end = min(total, skip + top)
            if skip >= end:
                return []
            items = self._merged_newest_first(total - end, end - skip, rng, view)
            items.reverse()
            return items
        return self._merged_newest_first(skip, top, rng, view)

    def _merged_newest_first(
        self, skip: int, top: int, rng: random.Random | None, view: LogView
    ) -> list[tuple[int, Ticks]]:
        """Positions ``[skip, skip + top)`` newest first, regular entries and late ones merged."""
        low, high = view.low, view.high
        end = min(view.total, skip + top)
        if skip >= end:
            return []
        # Late entry j (0 = newest) sits after every regular entry newer than it and after the j newer
        # late ones: its position is fixed by the view, so a page is cut without a full merge.
        positions: list[int] = []
        for j, (_ticks, _index, boundary) in enumerate(reversed(view.late)):
            positions.append(high - min(max(boundary, low), high) + j)
        before = bisect.bisect_left(positions, skip)
        inside = bisect.bisect_left(positions, end) - before
        regular = self._regular_items(skip - before, end - skip - inside, True, rng, low, high)
        late_desc = view.late[::-1]
        merged: list[tuple[int, Ticks]] = []
        next_late = before
        regular_iter = iter(regular)
        for position in range(skip, end):
            if next_late < len(positions) and positions[next_late] == position:
                ticks, index, _boundary = late_desc[next_late]
                merged.append((index, ticks))
                next_late += 1
            else:
                item = next(regular_iter, None)
                if item is None:
                    break
                merged.append(item)
        return merged

    def _regular_items(
        self, skip: int, top: int, descending: bool, rng: random.Random | None, low: int, high: int
    ) -> list[tuple[int, Ticks]]:
        """Like :meth:`page_items` over the regular entries ``[low, high)`` alone."""
        end = min(high - low, skip + top)
        if skip >= end:
            return []
        a, b = (high - end, high - skip) if descending else (low + skip, low + end)
        span_low, span_high = a, b
        if self.shuffle_ties:
            # Widen to whole (visible) tie groups: a group must be permuted as a whole, or its
            # members could not move across the page boundary.
            while span_low > low and self.is_tied(span_low):
                span_low -= 1
            while span_high < high and self.is_tied(span_high):
                span_high += 1
        ticks, tied = self._span_ticks(span_low, span_high)
        items = list(zip(range(span_low, span_high), ticks, strict=True))
        if self.shuffle_ties:
            rng = rng if rng is not None else random.Random()
            ordered: list[tuple[int, Ticks]] = []
            group_start = 0
            for position in range(1, len(items) + 1):
                if position == len(items) or not tied[position]:
                    group = items[group_start:position]
                    if len(group) > 1:
                        rng.shuffle(group)
                    ordered.extend(group)
                    group_start = position
            items = ordered
        if descending:
            items.reverse()
            offset = high - span_high  # the position of items[0]
        else:
            offset = span_low - low
        return items[skip - offset : end - offset]

    def page_indices(
        self,
        skip: int,
        top: int,
        descending: bool = True,
        rng: random.Random | None = None,
        *,
        bounds: tuple[int, int] | None = None,
        view: LogView | None = None,
    ) -> list[int]:
        """
        The indices at positions ``[skip, skip + top)`` of the ``createdOn`` order (see :meth:`page_items`).

        :param skip: the first position (0 = newest when descending).
        :param top: how many positions at most.
        :param descending: newest first or oldest first.
        :param rng: the request's random source for the order inside tie groups.
        :param bounds: the visible ``(low, high)`` to use.
        :param view: the visible log to use, entries recorded late included.
        """
        return [i for i, _ in self.page_items(skip, top, descending, rng, bounds=bounds, view=view)]

    def page(
        self, skip: int, top: int, descending: bool = True, rng: random.Random | None = None
    ) -> list[dict[str, Any]]:
        """
        The visible entries at positions ``[skip, skip + top)`` of the ``createdOn`` order.

        :param skip: the first position (0 = newest when descending).
        :param top: how many positions at most.
        :param descending: newest first or oldest first.
        :param rng: the request's random source for the order inside tie groups.
        """
        return [self.entry(i) for i in self.page_indices(skip, top, descending, rng)]

    def page_json(
        self,
        skip: int,
        top: int,
        descending: bool = True,
        rng: random.Random | None = None,
        *,
        bounds: tuple[int, int] | None = None,
        view: LogView | None = None,
    ) -> list[bytes]:
        """
        Like :meth:`page`, each entry already serialised as by :meth:`entry_json`.

        :param skip: the first position (0 = newest when descending).
        :param top: how many positions at most.
        :param descending: newest first or oldest first.
        :param rng: the request's random source for the order inside tie groups.
        :param bounds: the visible ``(low, high)`` to use.
        :param view: the visible log to use, entries recorded late included.
        """
        render = self._render_cached
        return [render(i, t) for i, t in self.page_items(skip, top, descending, rng, bounds=bounds, view=view)]

    def sorted_indices(
        self, field: str, descending: bool, *, bounds: tuple[int, int] | None = None, view: LogView | None = None
    ) -> list[int]:
        """
        All visible indices ordered by ``field`` (a missing value sorts as ``""``), ties by index.

        Sorting on anything but ``createdOn`` needs every visible entry, so it is refused above
        :attr:`max_sort_entries`; the last order computed is kept for the pages that follow.

        :param field: an entry field name, e.g. ``category`` or ``email``.
        :param descending: largest value first.
        :param bounds: the visible ``(low, high)`` to use.
        :param view: the visible log to use, entries recorded late included.
        :raises SortTooLargeError: when more than :attr:`max_sort_entries` entries are visible.
        """
        if view is None:
            view = LogView(*bounds) if bounds is not None else self.view()
        low, high = view.low, view.high
        if view.total > self.max_sort_entries:
            raise SortTooLargeError(
                f"sorting by {field!r} needs all {high - low} visible entries in memory; "
                f"this simulator does that for at most {self.max_sort_entries}: sort by createdOn instead"
            )
        key = (field, descending, low, high, len(view.late))
        cached = self._sorted_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        late = [i for _, i, _ in view.late]
        values = [(self.entry(i).get(field) or "", i) for i in [*range(low, high), *late]]
        values.sort(key=lambda pair: str(pair[0]), reverse=descending)
        order = [i for _, i in values]
        self._sorted_cache = (key, order)
        return order

    def tie_groups(self, indices: Iterable[int]) -> list[list[int]]:
        """
        Split consecutive ascending ``indices`` into their tie groups (a test helper).

        :param indices: indices in ascending order.
        """
        groups: list[list[int]] = []
        previous: int | None = None
        for i in indices:
            if groups and previous == i - 1 and self.is_tied(i):
                groups[-1].append(i)
            else:
                groups.append([i])
            previous = i
        return groups
