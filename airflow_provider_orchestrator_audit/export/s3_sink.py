"""
Write one window to S3 as JSON lines: nothing is visible before the whole window is written, and nothing
this run made visible stays when anything fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, Self

from airflow_provider_orchestrator_audit.exceptions import AuditExportError
from airflow_provider_orchestrator_audit.export._s3_errors import (
    S3StepError,
    reason,
    rerun_advice,
    unaborted_note,
    write_advice,
)
from airflow_provider_orchestrator_audit.export.s3_publisher import Cleanup, S3Publisher, WrittenObjects
from airflow_provider_orchestrator_audit.export.s3_stream import StreamingUploads
from airflow_provider_orchestrator_audit.export.spool import JsonLinesSpool

if TYPE_CHECKING:
    from types import TracebackType

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_orchestrator_audit.export.s3_object_settings import ObjectSettings
    from airflow_provider_orchestrator_audit.export.spool import JsonRecord

__all__ = ["S3JsonLinesSink"]

log = logging.getLogger(__name__)

# Where the upload is: what a failure there has made visible, and so what undoing it takes.
_Stage = Literal["reading", "confirming", "writing", "written"]


class S3JsonLinesSink:
    """
    The S3 destination of one window's JSON lines: owns the upload from its beginning to its end.

    Entering checks the bucket (before anything is read). :meth:`write` spools each batch and sends the
    finished 5 MiB stretches as multipart parts while the window is still being read; :meth:`finish`
    completes the uploads and PUTs the small parts, so the window becomes visible only once it is whole,
    then removes an earlier run's extra objects. If anything fails before that, a task timeout or kill
    included, leaving the ``with`` block undoes what this run made: its unfinished uploads are aborted and
    the objects it made visible are removed, each only if it is still this run's. An
    :class:`~airflow_provider_orchestrator_audit.exceptions.AuditExportError` then says what failed, what is
    visible now and what to do; any other error (the source's, a timeout) goes on unchanged.

    :param s3_hook: the hook of the destination's AWS connection.
    :param bucket: the bucket name.
    :param key: the object key, or the base of the part keys when ``max_records_per_file`` is set.
    :param settings: what every object is written with; by default the hook's ``extra_args``.
    :param compression: None or ``"gzip"``.
    :param max_records_per_file: split the window into objects ``<key stem>.part-NNNNN<ext>`` of at most this
        many records.
    :param compression_level: zlib's level with ``"gzip"``, 1 (fastest) to 9 (smallest); default 3.

    Example::

        with S3JsonLinesSink(S3Hook(aws_conn_id="aws_default"), "audit", "w.jsonl") as sink:
            for batch in reader:
                sink.write(batch)
            objects = sink.finish()  # ["s3://audit/w.jsonl"]
    """

    def __init__(
        self,
        s3_hook: S3Hook,
        bucket: str,
        key: str,
        *,
        settings: ObjectSettings | None = None,
        compression: str | None = None,
        max_records_per_file: int | None = None,
        compression_level: int | None = None,
    ) -> None:
        self.key = key
        self.split = max_records_per_file is not None
        self._s3_hook = s3_hook
        self._publisher = S3Publisher(s3_hook, bucket, settings)
        self._spool = JsonLinesSpool(compression, max_records_per_file, compression_level=compression_level)
        self._streamed: StreamingUploads | None = None
        self._written = WrittenObjects()
        self._previous: set[str] = set()  # this window's objects before anything of this run was visible
        self._keys: list[str] = []  # the objects of this window, in part order
        self._uploaded: list[str] = []  # keys S3 confirmed written, in order
        self._stage: _Stage = "reading"

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._publisher.bucket

    @property
    def records(self) -> int:
        """Entries written so far."""
        return self._spool.records

    def object_key(self, index: int) -> str:
        """The key of part ``index``: :attr:`key` itself, or ``<key stem>.part-NNNNN<ext>`` when split."""
        return S3Publisher.object_key(self.key, index, split=self.split)

    def __enter__(self) -> Self:
        self._publisher.check_bucket()  # before anything is read: a missing bucket fails the export at once
        self._streamed = StreamingUploads(self._s3_hook, self.bucket, self.object_key, self._publisher.settings)
        return self

    def __exit__(
        self, error_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if error is not None and self._stage != "written":
                self._undo(error)
        finally:
            self._uploads.close()
            self._spool.close()

    def write(self, entries: Iterable[JsonRecord]) -> None:
        """
        Spool ``entries`` and send every finished multipart part; nothing is visible yet.

        :raises S3StepError: when a part sent earlier failed; leaving the block turns it into the export's error.
        """
        self._spool.write(entries)
        self._uploads.advance(self._spool)

    def finish(self) -> list[str]:
        """
        Make the whole window visible, then remove an earlier run's extra objects of it.

        :return: the ``s3://`` URIs of the objects written, in part order.
        :raises AuditExportError: when the earlier run's objects cannot be removed (the window is written);
            any failure before that is undone when the ``with`` block is left.
        """
        parts = self._spool.finish()
        log.info("Uploading %d part(s), %d bytes, to s3://%s", len(parts), sum(p.size for p in parts), self.bucket)
        self._keys = keys = [self.object_key(index) for index in range(len(parts))]
        self._stage = "confirming"
        # The parts sent while reading are confirmed first, so that a part that failed is reported as such
        # whatever else S3 refuses afterwards; nothing is visible before the completions below.
        self._uploads.confirm(parts)
        self._previous = self._publisher.existing(self.key)
        self._stage = "writing"
        completed = self._uploads.complete(self._written)
        self._uploaded.extend(keys[index] for index in sorted(completed))
        for index, (object_key, part) in enumerate(zip(keys, parts, strict=True)):
            if index not in completed:
                self._publisher.put(object_key, part, self._written)
                self._uploaded.append(object_key)
        self._stage = "written"
        self._publisher.report_outputs(keys)
        self._publisher.delete_stale(self.key, keys, self._previous)
        self._publisher.abort_unfinished(self.key)
        return [f"s3://{self.bucket}/{object_key}" for object_key in keys]

    @property
    def _uploads(self) -> StreamingUploads:
        if self._streamed is None:
            raise RuntimeError("enter the S3JsonLinesSink (a with block) before writing to it")
        return self._streamed

    def _undo(self, error: BaseException) -> None:
        """
        Undo what this run made: abort its uploads, remove the objects it made visible. Then raise the
        export's error saying so, or return to let ``error`` (not the sink's, or not an ``Exception``) go on.
        """
        unaborted = self._abort_uploads()  # first: a completion not carried out yet then never will be
        cleanup = self._remove_written() if self._stage == "writing" else None
        if not isinstance(error, Exception):
            if cleanup is not None:
                log.warning(
                    "Writing to %s was interrupted (%s). %s",
                    self._publisher.where(),
                    type(error).__name__,
                    self._outcome(cleanup),
                )
            return
        message = self._failure_message(error, cleanup)
        if message is None:
            return
        if unaborted:
            message = f"{message} {unaborted_note(self.bucket, unaborted)}"
        raise AuditExportError(message) from None

    def _abort_uploads(self) -> list[tuple[str, str]]:
        """Abort the unfinished uploads; ``(key, reason)`` of each that S3 did not let go."""
        try:
            return self._uploads.abort()
        except Exception as abort_error:  # noqa: BLE001 - never in place of the export's own error
            log.warning(
                "Could not abort the unfinished multipart uploads of this run in s3://%s (%s); they are invisible, "
                "and the next successful export of this window aborts them",
                self.bucket,
                abort_error,
            )
            return []

    def _remove_written(self) -> Cleanup:
        """Remove the objects this run made visible, each only if it is still this run's."""
        try:
            return self._publisher.remove_written(self._written, self._previous)
        except Exception as cleanup_error:  # noqa: BLE001 - never in place of the write's own error
            log.warning(
                "Removing this run's objects from %s failed: %s", self._publisher.where(), reason(cleanup_error)
            )
            written = list(self._written.etags)
            return Cleanup(
                kept=[key for key in written if key not in self._previous],
                replaced=[key for key in written if key in self._previous],
            )

    def _failure_message(self, error: Exception, cleanup: Cleanup | None) -> str | None:
        """What failed, what the failure left visible, and what to do; None for an error that is not the sink's."""
        if isinstance(error, S3StepError):
            problem = f"Writing s3://{self.bucket}/{error.key} failed"
            if self._stage == "reading":
                return (
                    f"{problem} while the window was still being read, {error.step}: {reason(error.cause)}. "
                    f"Nothing of this run is visible in the bucket. {self._write_advice(error.cause)}"
                )
            problem = f"{problem}, {error.step}: {reason(error.cause)}."
            advice = self._rerun_advice()
        elif isinstance(error, AuditExportError):
            if self._stage == "reading":
                return str(error)
            problem, advice = str(error), self._rerun_advice()
        elif self._stage == "writing":
            failed = next((key for key in self._keys if key not in self._uploaded), self._keys[-1])
            problem = f"Writing s3://{self.bucket}/{failed} failed: {reason(error)}."
            advice = self._write_advice(error)
        else:
            return None
        outcome = "Nothing of this run is visible in the bucket." if cleanup is None else self._outcome(cleanup)
        return f"{problem} {outcome} {advice}"

    def _outcome(self, cleanup: Cleanup) -> str:
        """What a failed run leaves visible, in sentences."""
        uris = self._publisher.uris
        outcome = []
        if cleanup.kept:
            outcome.append(
                f"Removing what this run had made visible failed too: {uris(cleanup.kept)} may be visible "
                "without the rest of the window."
            )
        if cleanup.replaced:
            outcome.append(
                f"The earlier run's objects stay, but this run may have replaced {uris(cleanup.replaced)} "
                "before failing; until the rerun they may mix both runs."
            )
        if cleanup.undecided:
            outcome.append(
                f"{uris(cleanup.undecided)} may be visible without the rest of the window: S3 did not confirm "
                "this run's write, and an object encrypted with SSE-KMS or SSE-C has an ETag that is not the MD5 of its "
                "content, so whether it is this run's object or another run's cannot be told; it was left in place "
                "(delete it unless another run wrote this window since, or let the rerun overwrite it)."
            )
        if not cleanup.kept and not cleanup.replaced and not cleanup.undecided:
            outcome.append("Nothing of this run is visible in the bucket.")
        if cleanup.foreign:
            outcome.append(
                f"{uris(cleanup.foreign)} changed after this run wrote it: another run writing the same keys "
                "at the same time (the hourly DAG and a backfill of the same hours, say) replaced it, so it is left "
                "as it is; let only one run write a window at a time."
            )
        return " ".join(outcome)

    def _rerun_advice(self) -> str:
        return rerun_advice(self._s3_hook.aws_conn_id, self._publisher.client())

    def _write_advice(self, error: BaseException) -> str:
        publisher = self._publisher
        return write_advice(error, self.bucket, publisher.settings, self._s3_hook.aws_conn_id, publisher.client())
