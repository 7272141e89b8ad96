"""Spool a window's entries as JSON lines to local temporary files, one file per output part."""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import IO, Protocol, Self

from airflow_provider_orchestrator_audit.event_models import EventLine
from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = ["COMPRESSIONS", "GZIP_LEVEL", "JsonLinesSpool", "JsonRecord", "SpooledPart", "checked_gzip_level"]


class JsonRecord(Protocol):
    """What the spool writes: an audit entry or event that gives its one line of JSON."""

    def to_json(self) -> str: ...


COMPRESSIONS = (None, "gzip")
#: zlib's level for ``compression="gzip"`` unless told: the smallest objects of zlib's fast levels (1-3, which
#: look for matches without lazy evaluation). On audit lines it compresses at about 2.2x the speed of level 6
#: (gzip's own default) for objects ~17% larger (8.8% of the lines' size against 7.6%; level 9: 7.0% at about
#: a fifth of the speed); compressing is the largest step of a gzip export's own CPU (README: Performance).
GZIP_LEVEL = 3


def checked_gzip_level(compression: str | None, level: int | None, *, name: str = "compression_level") -> int | None:
    """
    ``level`` if it suits ``compression``: 1 (fastest) to 9 (smallest) with ``"gzip"``, None without compression.

    :raises ValueError: naming ``name`` and what to give.
    """
    if level is None:
        return None
    if compression != "gzip":
        raise ValueError(
            f"{name} applies to compression='gzip' only (got {level!r} with compression={compression!r}): "
            "set compression='gzip' or leave the level out"
        )
    return checked_int(name, level, maximum=9)


@dataclass
class SpooledPart:
    """One finished part: a rewound, named temporary file and what it holds."""

    file: IO[bytes] = field(repr=False)
    records: int
    size: int

    @property
    def path(self) -> str:
        """The file's path, for uploads that read it part by part."""
        return str(self.file.name)


def _utf8_lines(records: list[JsonRecord]) -> bytes:
    """The records' lines, each ending in a newline, as UTF-8."""
    kinds = {type(record) for record in records}
    if kinds == {EventLine}:  # an export's events: their lines read straight off a slot each, in C
        return b"\n".join(map(_LINE, records)) + b"\n"
    if len(kinds) == 1 and hasattr(kinds.pop(), "to_json_bytes"):
        # Audit entries keep the server's UTF-8 text: joined as it is, with no text object per line.
        return b"\n".join([record.to_json_bytes() for record in records]) + b"\n"  # type: ignore[attr-defined]
    return ("\n".join([record.to_json() for record in records]) + "\n").encode("utf-8")


_LINE = attrgetter("line")


class JsonLinesSpool:
    """
    Writes entries as UTF-8 JSON lines, optionally gzip-compressed on the fly, into temporary files on
    disk, starting a new part every ``max_records_per_file`` records. Memory stays bounded whatever the
    window's size: lines go to the file as they come, and the upload reads the file by name, chunk by
    chunk (an in-memory buffer or a file object would make boto3 hold up to 80 MiB of it at once).

    :param compression: None or ``"gzip"``.
    :param max_records_per_file: records per part; None keeps the whole window in one part.
    :param compression_level: zlib's level with ``"gzip"``, 1 (fastest) to 9 (smallest); default :data:`GZIP_LEVEL`.
    """

    def __init__(
        self,
        compression: str | None = None,
        max_records_per_file: int | None = None,
        *,
        compression_level: int | None = None,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be None or 'gzip', got {compression!r}")
        if max_records_per_file is not None:
            checked_int("max_records_per_file", max_records_per_file)
        self.compression = compression
        self.compression_level = checked_gzip_level(compression, compression_level) or GZIP_LEVEL
        self.max_records_per_file = max_records_per_file
        self.parts: list[SpooledPart] = []
        self.records = 0
        self._raw: IO[bytes] | None = None
        self._writer: IO[bytes] | gzip.GzipFile | None = None
        self._part_records = 0

    def write(self, entries: Iterable[JsonRecord]) -> None:
        """Append entries, newest first as read; a batch is encoded and written in one go per part."""
        batch = list(entries)
        limit = self.max_records_per_file
        start = 0
        while start < len(batch):
            if self._writer is None or (limit is not None and self._part_records >= limit):
                self._finish_part()
                self._start_part()
            assert self._writer is not None
            room = len(batch) - start if limit is None else min(limit - self._part_records, len(batch) - start)
            self._writer.write(_utf8_lines(batch[start : start + room]))
            self._part_records += room
            self.records += room
            start += room

    def files(self) -> Iterator[tuple[int, str, int]]:
        """``(index, path, bytes written)`` of every part so far, the open one flushed to disk."""
        for index, part in enumerate(self.parts):
            yield index, part.path, part.size
        if self._raw is not None:
            self._raw.flush()
            yield len(self.parts), str(self._raw.name), self._raw.tell()

    def finish(self) -> list[SpooledPart]:
        """Close the last part and return all parts, rewound. A window with no entries has one empty part."""
        if self._writer is None and not self.parts:
            self._start_part()
        self._finish_part()
        return self.parts

    def close(self) -> None:
        """Release every temporary file."""
        for part in self.parts:
            part.file.close()
        if self._raw is not None:
            self._raw.close()
        self.parts, self._raw, self._writer = [], None, None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_part(self) -> None:
        raw: IO[bytes] = tempfile.NamedTemporaryFile(mode="w+b", prefix="audit-logs-", suffix=".part")
        self._raw = raw
        # mtime=0 and no file name: the same entries always give the same bytes (and ETag).
        self._writer = raw
        if self.compression:
            self._writer = gzip.GzipFile(
                fileobj=raw, mode="wb", compresslevel=self.compression_level, mtime=0, filename=""
            )
        self._part_records = 0

    def _finish_part(self) -> None:
        if self._writer is None or self._raw is None:
            return
        if self._writer is not self._raw:
            self._writer.close()  # writes the gzip trailer; the underlying file stays open
        self._raw.flush()
        size = self._raw.tell()
        self._raw.seek(0)
        self.parts.append(SpooledPart(self._raw, self._part_records, size))
        self._raw, self._writer = None, None
