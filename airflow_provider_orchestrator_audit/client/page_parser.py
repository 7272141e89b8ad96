"""
Read an audit-log page from its response body, keeping each entry's exact JSON text.

Writing an entry out again costs as much as reading it, and re-encoding is where verbatim output gets
lost (``1.10`` becomes ``1.1``, escapes change). So each entry keeps the server's own text:

- the usual path decodes with msgspec: the envelope's values as raw JSON spans, ``results`` as a list of
  spans (each entry's exact bytes), and of each entry only ``createdOn``. Every byte is still checked:
  the JSON syntax by msgspec, the UTF-8 by decoding each span;
- anything that path does not take as an ordinary page (a damaged body, a wrong shape, a bad
  ``createdOn``, and the few valid forms msgspec refuses, such as ``NaN`` or a lone surrogate escape) is
  read again by a scanner on Python's :mod:`json` (:meth:`json.JSONDecoder.raw_decode` gives each entry's
  dict and the span of text it came from), which accepts or rejects it and says what is wrong and where.
  Both read every valid page the same (property-tested), so the scanner decides what counts as an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from airflow_provider_orchestrator_audit.models import AuditLogEntry, AuditLogPage
from airflow_provider_orchestrator_audit.timestamps import parse_seven_digit_timestamp
from airflow_provider_orchestrator_audit.verbatim import utf8_line

__all__ = [
    "JSON_DECODER",
    "PageFormatError",
    "expect_char",
    "is_json",
    "parse_page",
    "read_json_text",
    "scan_records",
    "skip_whitespace",
]

JSON_DECODER = json.JSONDecoder()
_Record = TypeVar("_Record")
_Read = TypeVar("_Read")
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class _Head(msgspec.Struct, gc=False):
    """
    Of an entry, only ``createdOn`` is decoded; msgspec checks the rest of the entry while skipping it.
    (Not tracked by the garbage collector: a page makes a thousand of them, and nothing in them can
    form a cycle.)
    """

    createdOn: Any = None  # the API's name


_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_SPANS = msgspec.json.Decoder(list[msgspec.Raw])
_VALUE = msgspec.json.Decoder()
_HEADS = msgspec.json.Decoder(list[_Head])


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
    page = _read_page(body)
    return page if page is not None else _scan_page(body)


def _read_page(body: bytes) -> AuditLogPage | None:
    """The page as :func:`_scan_page` reads it, or None for anything but an ordinary, valid page."""
    try:
        fields = _FIELDS.decode(body)
        total_span, results_span = fields.get("totalCount"), fields.get("results")
        if total_span is None or results_span is None:
            return None
        for name, span in fields.items():
            if name != "results":
                str(span, "utf-8")  # msgspec skips other values without checking their UTF-8
        total_count = _VALUE.decode(total_span)
        if type(total_count) is not int or total_count < 0:
            return None
        # Two passes in C over the entries, one for their spans and one for their createdOn (an entry that
        # is not an object fails here), cost less than a decoder call per entry.
        spans = _SPANS.decode(results_span)
        heads = _HEADS.decode(results_span)
        # Raw line breaks (only possible between tokens) are first looked for in the whole array, once:
        # compact bodies hold none.
        whole = bytes(results_span)
        breaks = b"\n" in whole or b"\r" in whole
        # An all-ASCII body is valid UTF-8; otherwise each entry that is not ASCII is checked on its own
        # (decoding the whole body at once builds a wide string: more work than the entries' few checks).
        ascii_only = whole.isascii()
        entries: list[AuditLogEntry] = []
        append, from_line = entries.append, AuditLogEntry.from_line
        for head, span in zip(heads, spans, strict=True):
            created_on = head.createdOn
            if type(created_on) is not str:
                return None
            line = bytes(span)
            if breaks and (b"\n" in line or b"\r" in line):
                # Pretty-printed: decoded and written again, as the scanner keeps it.
                text = str(line, "utf-8")
                append(AuditLogEntry(json.loads(text), text))
                continue
            if not ascii_only and not line.isascii():
                line = utf8_line(line)  # raises on a byte sequence that is not UTF-8
            append(from_line(line, parse_seven_digit_timestamp(created_on)))
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    return AuditLogPage.model_construct(total_count=total_count, results=entries)


def read_json_text(body: bytes, read: Callable[[str], _Read]) -> _Read:
    """
    ``read(text)`` of the body as UTF-8 text; a body that is not UTF-8, or text ``read`` finds is not JSON,
    becomes a :class:`PageFormatError` saying where (``damaged`` when the text is not JSON at all).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PageFormatError(f"not valid JSON: the body is not UTF-8 ({error})", damaged=True) from None
    try:
        return read(text)
    except json.JSONDecodeError as error:
        raise PageFormatError(
            f"not valid JSON: {error.msg} at position {error.pos}", damaged=not is_json(text)
        ) from None


def _scan_page(body: bytes) -> AuditLogPage:
    """The reference reading of a page, on Python's json; raises :class:`PageFormatError` saying what is wrong."""
    total_count, results = read_json_text(body, _scan_envelope)
    if total_count is None:
        raise PageFormatError("totalCount: Field required")
    if isinstance(total_count, bool) or not isinstance(total_count, int) or total_count < 0:
        raise PageFormatError(f"totalCount: must be a non-negative integer, got {total_count!r}")
    if results is None:
        raise PageFormatError("results: Field required")
    return AuditLogPage.model_construct(total_count=total_count, results=results)


def is_json(text: str) -> bool:
    # The envelope scanner rejects valid JSON of another shape (``[]``) as it rejects broken text.
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def skip_whitespace(text: str, index: int) -> int:
    return _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]  # the pattern always matches


def expect_char(text: str, index: int, char: str) -> int:
    if text[index : index + 1] != char:
        raise json.JSONDecodeError(f"Expecting {char!r}", text, index)
    return index + 1


def _scan_envelope(text: str) -> tuple[Any, list[AuditLogEntry] | None]:
    index = expect_char(text, skip_whitespace(text, 0), "{")
    total_count: Any = None
    results: list[AuditLogEntry] | None = None
    index = skip_whitespace(text, index)
    if text[index : index + 1] == "}":
        index += 1
    else:
        while True:
            key, index = JSON_DECODER.raw_decode(text, index)
            if not isinstance(key, str):
                raise json.JSONDecodeError("Expecting property name", text, index)
            index = skip_whitespace(text, expect_char(text, skip_whitespace(text, index), ":"))
            if key == "results":
                results, index = scan_records(text, index, "results", AuditLogEntry)
            else:
                value, index = JSON_DECODER.raw_decode(text, index)
                if key == "totalCount":
                    total_count = value
            index = skip_whitespace(text, index)
            if text[index : index + 1] == ",":
                index = skip_whitespace(text, index + 1)
                continue
            index = expect_char(text, index, "}")
            break
    if skip_whitespace(text, index) != len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return total_count, results


def scan_records(
    text: str, index: int, field: str, make: Callable[[dict[str, Any], str], _Record]
) -> tuple[list[_Record], int]:
    """
    The JSON array of objects at ``index`` of ``text``, each made a record of its own exact text.

    :param field: the array's name in the page, for error messages (``results.3: ...``).
    :param make: builds a record from an object and its text (``AuditLogEntry``, ``AuditEvent``); its
        ``ValueError`` becomes a :class:`PageFormatError` naming the element.
    :return: the records and the index after the array.
    """
    index = skip_whitespace(text, expect_char(text, index, "["))
    records: list[_Record] = []
    if text[index : index + 1] == "]":
        return records, index + 1
    while True:
        start = index
        value, index = JSON_DECODER.raw_decode(text, index)
        if not isinstance(value, dict):
            raise PageFormatError(f"{field}.{len(records)}: Input should be a valid dictionary")
        try:
            records.append(make(value, text[start:index]))
        except ValueError as error:
            raise PageFormatError(f"{field}.{len(records)}: {error}") from None
        index = skip_whitespace(text, index)
        if text[index : index + 1] == ",":
            index = skip_whitespace(text, index + 1)
            continue
        return records, expect_char(text, index, "]")
