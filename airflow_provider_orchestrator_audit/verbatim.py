"""
Records kept as the server's own JSON text: what the event sources and Orchestrator's OData audit share.

A record holds the exact text of its JSON object when that text is one line, and decodes its fields only
when asked for them; without such text it holds the decoded fields and re-encodes them for its line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from airflow_provider_orchestrator_audit.timestamps import Ticks, ticks_to_datetime

__all__ = ["VerbatimRecord", "escape_line_separators", "one_line_json", "utf8_line"]

# Raw line breaks in JSON text can only sit between tokens (pretty printing): such text is re-encoded.
_BREAKS = re.compile("[\n\r]")
# Code points a JSON string may hold (escaped) but UTF-8 cannot encode.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# One encoder, built once: json.dumps() with options builds a new one on every call, 3x slower.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def escape_line_separators(text: str) -> str:
    """
    ``text`` with U+2028 and U+2029 escaped. JSON allows them raw inside strings (the only place it allows
    them), but many line readers split there; escaping them changes nothing else of the text.
    """
    if "\u2028" in text or "\u2029" in text:
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text


def one_line_json(raw: Mapping[str, Any]) -> str:
    """
    ``raw`` encoded on one line: U+2028 and U+2029 escaped, and so is any lone surrogate (JSON lets a server send
    ``"\\ud800"``; decoded, it is a code point UTF-8 cannot encode, so the line could not be written).
    """
    text = escape_line_separators(_LINE_ENCODER.encode(raw))
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


# U+2028 and U+2029 in UTF-8; in valid UTF-8 these bytes stand for nothing else.
_LINE_SEPARATOR, _PARAGRAPH_SEPARATOR = "\u2028".encode(), "\u2029".encode()


def utf8_line(line: bytes) -> bytes:
    """
    A record's one-line JSON text as UTF-8 bytes, checked to be UTF-8, with raw U+2028/U+2029 escaped as
    :func:`escape_line_separators` does, the rest kept as sent (no re-encoding).

    :raises UnicodeDecodeError: when ``line`` is not UTF-8.
    """
    # Looked for in the decoded text: searching the bytes for the three-byte sequences costs ten times more.
    text = str(line, "utf-8")
    if "\u2028" in text or "\u2029" in text:
        return line.replace(_LINE_SEPARATOR, b"\\u2028").replace(_PARAGRAPH_SEPARATOR, b"\\u2029")
    return line


class VerbatimRecord:
    """
    The part of a record that keeps the server's text: :attr:`raw`, :meth:`to_json`, :attr:`created_at`.

    Subclasses set ``_ticks`` (the record's time) and call :meth:`_keep` with the decoded object and its text.
    """

    __slots__ = ("_raw", "_source", "_ticks")

    _raw: dict[str, Any] | None
    #: The record's one-line JSON text, or its UTF-8 bytes where a parser keeps those as they came.
    _source: str | bytes | None
    _ticks: Ticks

    def _keep(self, raw: dict[str, Any], source: str | None) -> None:
        if source is not None:
            source = escape_line_separators(source)
        self._source = source if source is not None and not _BREAKS.search(source) else None
        # Only the text is kept when there is one: pages in flight then cost little more than their bytes.
        self._raw = raw if self._source is None else None

    @property
    def created_at(self) -> datetime:
        """The record's time as an aware UTC datetime (a seventh fractional digit truncated)."""
        return ticks_to_datetime(self._ticks)

    @property
    def raw(self) -> Mapping[str, Any]:
        """Every field as sent, read-only."""
        if self._raw is None:
            self._raw = json.loads(self._source)  # type: ignore[arg-type]  # set whenever _raw is not
        return MappingProxyType(self._raw)

    def to_json(self) -> str:
        """The record as one line of JSON: the server's own text when known, else its fields re-encoded."""
        source = self._source
        if source is not None:
            return source if isinstance(source, str) else source.decode("utf-8")
        return one_line_json(self._raw)  # type: ignore[arg-type]  # set whenever _source is not

    def to_json_bytes(self) -> bytes:
        """:meth:`to_json` as UTF-8, the form the export writes (the server's own bytes, when kept, as they are)."""
        source = self._source
        return source if type(source) is bytes else self.to_json().encode("utf-8")
