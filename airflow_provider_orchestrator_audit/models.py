"""Typed views of what Orchestrator's audit API returns.

The models are deliberately lenient about what they do not know: an entry keeps every field the server
sent, unknown ones included, and its ``createdOn`` text exactly as received (7 fractional digits).
They are strict about what the export depends on: ``totalCount`` and a parseable ``createdOn``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

from airflow_provider_orchestrator_audit.timestamps import Ticks, TimestampError, parse_timestamp, ticks_to_datetime
from airflow_provider_orchestrator_audit.verbatim import one_line_json

__all__ = ["AuditLogEntry", "AuditLogPage", "TokenGrant"]


def one_line(source: str) -> str | None:
    """
    ``source``, the JSON text of an entry, fit to be one output line, or None if only re-encoding can do that.

    Raw U+2028 and U+2029 can only stand inside JSON strings, where ``\\u2028`` and ``\\u2029`` mean the same:
    they are escaped and the rest of the text kept. Raw line feeds and carriage returns stand between tokens
    (a pretty-printed response): such text is not kept.
    """
    if "\n" in source or "\r" in source:
        return None
    if "\u2028" in source or "\u2029" in source:
        return source.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return source


def _documented_field(name: str) -> property:
    def read(self: AuditLogEntry) -> Any:
        return self._fields().get(name)

    return property(read, doc=f"``{name}`` as sent, or None when absent.")


class AuditLogEntry:
    """
    One audit entry, exactly as the server sent it.

    It keeps the decoded JSON object itself (every field, unknown ones included, in the server's
    order, ``createdOn`` as its 7-digit text) and checks only what the export depends on: that
    ``createdOn`` is a timestamp. Typed accessors cover the documented fields. A plain slotted class
    rather than a pydantic model: entries are read by the hundred thousand, and this is several
    times cheaper while still validated as part of :class:`AuditLogPage`.

    :param raw: the entry's JSON object.
    :param source: the exact JSON text the object was decoded from, if known: :meth:`to_json` then
        writes it as it is instead of encoding the object again.
    :raises ValueError: when ``createdOn`` is missing or not a timestamp.
    """

    # The line is kept as UTF-8 bytes, as it came in and as it goes out: no text object per entry.
    __slots__ = ("_line", "_raw", "_ticks")

    def __init__(self, raw: dict[str, Any], source: str | None = None) -> None:
        created_on = raw.get("createdOn")
        if not isinstance(created_on, str):
            raise ValueError(f"createdOn must be a timestamp string, got {created_on!r}")
        try:
            self._ticks = parse_timestamp(created_on)
        except TimestampError as exc:
            raise ValueError(f"createdOn is not a timestamp: {exc}") from None
        # A pretty-printed response has line breaks between tokens: such text cannot be one line.
        line = one_line(source) if source is not None else None
        self._line = line.encode("utf-8") if line is not None else None
        # With its text at hand the entry drops the decoded object (three times the memory) and decodes
        # it again only if asked: pages in flight then cost little more than their bytes.
        self._raw: dict[str, Any] | None = raw if line is None else None

    @classmethod
    def from_line(cls, line: bytes, ticks: Ticks) -> AuditLogEntry:
        """
        An entry from its exact JSON text, already checked by the caller, without decoding it here.

        :param line: the UTF-8 JSON text of an object with a ``createdOn``, holding none of ``\\n``, ``\\r``,
            U+2028 and U+2029 (see :func:`one_line`): it is written out as it is.
        :param ticks: that ``createdOn``, parsed.
        """
        entry = cls.__new__(cls)
        entry._ticks = ticks
        entry._line = line
        entry._raw = None
        return entry

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        from_dict = core_schema.no_info_after_validator_function(cls, core_schema.dict_schema())
        return core_schema.json_or_python_schema(
            json_schema=from_dict,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_dict]),
        )

    def _fields(self) -> dict[str, Any]:
        if self._raw is None:
            self._raw = json.loads(self._line)  # type: ignore[arg-type]  # set whenever _raw is not
        return self._raw

    @property
    def raw(self) -> Mapping[str, Any]:
        """Every field as sent, read-only."""
        return MappingProxyType(self._fields())

    @property
    def created_on(self) -> str:
        """``createdOn`` exactly as sent, e.g. ``2021-10-14T13:10:15.1964174+00:00``."""
        return self._fields()["createdOn"]

    @property
    def created_on_ticks(self) -> Ticks:
        """``createdOn`` at full precision: 100 ns ticks since the Unix epoch, UTC."""
        return self._ticks

    @property
    def created_at(self) -> datetime:
        """``createdOn`` as an aware UTC datetime (the seventh fractional digit truncated)."""
        return ticks_to_datetime(self._ticks)

    category = _documented_field("category")
    action = _documented_field("action")
    audit_log_details = _documented_field("auditLogDetails")
    user_name = _documented_field("userName")
    email = _documented_field("email")
    message = _documented_field("message")
    details_version = _documented_field("detailsVersion")
    source = _documented_field("source")

    def to_json(self) -> str:
        """
        The entry as one line of JSON: the server's fields, order and values, UTF-8 text.

        U+2028 and U+2029 are escaped: JSON allows them raw, but many line readers (Python's
        ``str.splitlines`` among them) would split a record there.
        """
        if self._line is not None:
            return self._line.decode("utf-8")  # the server's own text: valid JSON, one line, nothing re-encoded
        return one_line_json(self._fields())

    def to_json_bytes(self) -> bytes:
        """:meth:`to_json` as UTF-8, the form the export writes (for the server's own text, without a copy)."""
        return self._line if self._line is not None else self.to_json().encode("utf-8")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuditLogEntry) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # entries are mutable mappings underneath

    def __repr__(self) -> str:
        return f"AuditLogEntry(createdOn={self.created_on!r}, category={self.category!r}, action={self.action!r})"


class AuditLogPage(BaseModel):
    """One response of ``GET /{org}/audit_/api/auditlogs``."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    total_count: int = Field(alias="totalCount", ge=0)
    results: list[AuditLogEntry]


class TokenGrant(BaseModel):
    """A successful answer of the identity server's token endpoint."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    access_token: str = Field(min_length=1, repr=False)
    expires_in: float = Field(default=3600, gt=0)
    token_type: str = "Bearer"
