"""
Read an audit-log page from its response body, keeping each entry's exact JSON text.

``json.loads`` would give the entries as dicts, and writing them out again costs as much as reading
them. Walking the top-level object with :meth:`json.JSONDecoder.raw_decode` (the same C scanner) gives
each entry's dict *and* the span of text it came from, so the export can write the server's own bytes:
faster, and verbatim by construction.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow_provider_orchestrator_audit.models import AuditLogEntry, AuditLogPage

__all__ = ["PageFormatError", "parse_page"]

_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class PageFormatError(ValueError):
    """
    The body is not the documented ``{"totalCount": n, "results": [...]}``.

    :param damaged: the body is not JSON text at all (not UTF-8, cut short, garbled, a proxy's page),
        the sign of an answer damaged on its way rather than of a well-formed but different document.
    """

    def __init__(self, message: str, *, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


def parse_page(body: bytes) -> AuditLogPage:
    """
    Parse ``{"totalCount": n, "results": [...]}``.

    :raises PageFormatError: saying what is wrong and where, e.g. ``totalCount: Field required``.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PageFormatError(f"not valid JSON: the body is not UTF-8 ({error})", damaged=True) from None
    try:
        total_count, results = _scan_envelope(text)
    except json.JSONDecodeError as error:
        raise PageFormatError(
            f"not valid JSON: {error.msg} at position {error.pos}", damaged=not _is_json(text)
        ) from None
    if total_count is None:
        raise PageFormatError("totalCount: Field required")
    if isinstance(total_count, bool) or not isinstance(total_count, int) or total_count < 0:
        raise PageFormatError(f"totalCount: must be a non-negative integer, got {total_count!r}")
    if results is None:
        raise PageFormatError("results: Field required")
    return AuditLogPage.model_construct(total_count=total_count, results=results)


def _is_json(text: str) -> bool:
    # The envelope scanner rejects valid JSON of another shape (``[]``) as it rejects broken text.
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _skip(text: str, index: int) -> int:
    return _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]  # the pattern always matches


def _expect(text: str, index: int, char: str) -> int:
    if text[index : index + 1] != char:
        raise json.JSONDecodeError(f"Expecting {char!r}", text, index)
    return index + 1


def _scan_envelope(text: str) -> tuple[Any, list[AuditLogEntry] | None]:
    index = _expect(text, _skip(text, 0), "{")
    total_count: Any = None
    results: list[AuditLogEntry] | None = None
    index = _skip(text, index)
    if text[index : index + 1] == "}":
        index += 1
    else:
        while True:
            key, index = _DECODER.raw_decode(text, index)
            if not isinstance(key, str):
                raise json.JSONDecodeError("Expecting property name", text, index)
            index = _skip(text, _expect(text, _skip(text, index), ":"))
            if key == "results":
                results, index = _scan_results(text, index)
            else:
                value, index = _DECODER.raw_decode(text, index)
                if key == "totalCount":
                    total_count = value
            index = _skip(text, index)
            if text[index : index + 1] == ",":
                index = _skip(text, index + 1)
                continue
            index = _expect(text, index, "}")
            break
    if _skip(text, index) != len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return total_count, results


def _scan_results(text: str, index: int) -> tuple[list[AuditLogEntry], int]:
    index = _skip(text, _expect(text, index, "["))
    entries: list[AuditLogEntry] = []
    if text[index : index + 1] == "]":
        return entries, index + 1
    while True:
        start = index
        value, index = _DECODER.raw_decode(text, index)
        if not isinstance(value, dict):
            raise PageFormatError(f"results.{len(entries)}: Input should be a valid dictionary")
        try:
            entries.append(AuditLogEntry(value, text[start:index]))
        except ValueError as error:
            raise PageFormatError(f"results.{len(entries)}: {error}") from None
        index = _skip(text, index)
        if text[index : index + 1] == ",":
            index = _skip(text, index + 1)
            continue
        return entries, _expect(text, index, "]")
