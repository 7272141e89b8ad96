"""Typed views of what Orchestrator's audit API returns.

The models are deliberately lenient about what they do not know: an entry keeps every field the server
sent, unknown ones included, and its ``createdOn`` text exactly as received (7 fractional digits).
They are strict about what the export depends on: ``totalCount`` and a parseable ``createdOn``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from airflow_provider_orchestrator_audit.timestamps import Ticks, TimestampError, parse_timestamp, ticks_to_datetime

__all__ = ["AuditLogEntry", "AuditLogPage", "TokenGrant"]


class AuditLogEntry(BaseModel):
    """
    One audit entry, as the server sent it.

    Declared fields follow the documented order so :meth:`to_json` reproduces the server's layout;
    fields the documentation does not list are kept (``extra="allow"``) and written after them.
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    created_on: str = Field(alias="createdOn")
    category: str | None = None
    action: str | None = None
    audit_log_details: str | None = Field(default=None, alias="auditLogDetails")
    user_name: str | None = Field(default=None, alias="userName")
    email: str | None = None
    message: str | None = None
    details_version: str | None = Field(default=None, alias="detailsVersion")
    source: str | None = None

    _ticks: Ticks = PrivateAttr()

    @field_validator("created_on")
    @classmethod
    def _created_on_is_a_timestamp(cls, value: str) -> str:
        try:
            parse_timestamp(value)
        except TimestampError as exc:
            raise ValueError(f"createdOn is not a timestamp: {exc}") from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        # Parsed once here: the pager compares ticks of every entry several times.
        self._ticks = parse_timestamp(self.created_on)

    @property
    def created_on_ticks(self) -> Ticks:
        """``createdOn`` at full precision: 100 ns ticks since the Unix epoch, UTC."""
        return self._ticks

    @property
    def created_at(self) -> datetime:
        """``createdOn`` as an aware UTC datetime (the seventh fractional digit truncated)."""
        return ticks_to_datetime(self._ticks)

    def to_json(self) -> str:
        """
        The entry as one line of JSON: every field the server sent, values unchanged.

        U+2028 and U+2029 are escaped: JSON allows them raw, but many line readers (Python's
        ``str.splitlines`` among them) would split a record there.
        """
        text = self.model_dump_json(by_alias=True, exclude_unset=True)
        if "\u2028" in text or "\u2029" in text:
            text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        return text


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
