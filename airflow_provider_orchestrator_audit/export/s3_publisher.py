"""Upload a window's spooled parts to S3 under deterministic keys, and remove a previous run's extras."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_orchestrator_audit.exceptions import AuditExportError
from airflow_provider_orchestrator_audit.export._s3_errors import (
    destination,
    is_unreachable,
    reason,
    rerun_advice,
    status,
    write_advice,
)
from airflow_provider_orchestrator_audit.export.keys import part_key, part_pattern, split_extension
from airflow_provider_orchestrator_audit.export.s3_object_settings import ObjectSettings
from airflow_provider_orchestrator_audit.export.spool import SpooledPart

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_orchestrator_audit.export.s3_stream import StreamingUploads

__all__ = ["MAX_CLOCK_SKEW", "S3Publisher"]

log = logging.getLogger(__name__)

#: How far a worker's clock can be from S3's: AWS refuses SigV4-signed requests from a clock further off.
MAX_CLOCK_SKEW = timedelta(minutes=15)


def _report_output(s3_hook: S3Hook, bucket: str, key: str) -> None:
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    get_hook_lineage_collector().add_output_asset(
        context=s3_hook, scheme="s3", asset_kwargs={"bucket": bucket, "key": key}
    )


def _mask_secret(secret: str) -> None:
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


def _file_etag(path: str) -> str:
    """The ETag S3 gives an object PUT in one request with the contents of ``path`` (unencrypted or SSE-S3)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return f'"{digest.hexdigest()}"'


def _same_etag(first: str | None, second: str | None) -> bool:
    return first is not None and second is not None and first.strip('"') == second.strip('"')


def _answer_time(answer: Any) -> datetime | None:
    """The time in the ``Date`` header of an S3 answer: S3's own clock, to the second."""
    try:
        when = parsedate_to_datetime(answer["ResponseMetadata"]["HTTPHeaders"]["date"])
    except (KeyError, TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass
class _Cleanup:
    """What removing a failed run's objects left: each list holds keys."""

    kept: list[str] = field(default_factory=list)  # may be visible: could not be checked or deleted
    foreign: list[str] = field(default_factory=list)  # overwritten by another writer since: left alone
    replaced: list[str] = field(default_factory=list)  # an earlier run's object this run may have overwritten
    undecided: list[str] = field(default_factory=list)  # encrypted, unconfirmed: whose it is cannot be told


class S3Publisher:
    """
    Publishes one window's parts to ``s3://bucket/key`` through the amazon provider's :class:`S3Hook`.

    The larger parts arrive as multipart uploads begun while reading (:class:`StreamingUploads`), which
    are completed here; the smaller ones are PUT in one request. Only after all parts are up are objects
    of an earlier run for the same key that this run did not write deleted, and multipart uploads that
    an earlier failed run left (begun before this run started) are aborted. If writing fails or is
    interrupted, the objects this run made visible are removed again, each only if it still has the
    ETag this run's write gave it: another run that wrote the same key meanwhile keeps its object.

    :param s3_hook: the hook of the destination's AWS connection.
    :param bucket: the bucket name.
    :param settings: what every object is written with (encryption, ACL, storage class, ...); by default
        the hook's ``extra_args``.
    """

    def __init__(self, s3_hook: S3Hook, bucket: str, settings: ObjectSettings | None = None) -> None:
        self.s3_hook = s3_hook
        self.bucket = bucket
        self.settings = settings or ObjectSettings.build(hook_extra_args=getattr(s3_hook, "extra_args", None))
        for secret in self.settings.secrets:  # botocore logs request headers at DEBUG: the SSE-C key among them
            _mask_secret(secret)
        # Keys whose ETag in a failed run's clean-up is computed here, not S3's answer to the write.
        self._predicted: set[str] = set()
        self._created = datetime.now(UTC)
        #: When this run started, by S3's clock: set by :meth:`check_bucket`, this run's first S3 call.
        self.started: datetime | None = None

    @property
    def run_start(self) -> datetime:
        """
        When this run started, by S3's clock (multipart uploads begun before it are another run's).

        ``Initiated`` of an upload is stamped by S3's clock; compared with the worker's, a worker clock that
        runs ahead would make another run's fresh upload look older than this run. So this is the ``Date``
        of S3's answer to the bucket check, which came before any upload of this run began (truncated to
        the second, so it errs towards "later"). Without it, the worker's clock when the publisher was made,
        less :data:`MAX_CLOCK_SKEW`.
        """
        return self.started if self.started is not None else self._created - MAX_CLOCK_SKEW

    def _client(self) -> Any:
        try:
            return self.s3_hook.get_conn()
        except Exception:  # a connection that cannot even make a client: its own error is reported
            return None

    def _where(self) -> str:
        return f"S3 bucket {self.bucket!r} ({destination(self.s3_hook.aws_conn_id, self._client())})"

    def check_bucket(self) -> None:
        """
        Fail early, before anything is read, when the bucket is missing or out of reach; note S3's time.

        :raises AuditExportError: naming the bucket, the connection and its endpoint, and what to do.
        """
        before = datetime.now(UTC)
        try:
            answer = self.s3_hook.get_conn().head_bucket(Bucket=self.bucket)
        except Exception as error:
            if is_unreachable(error):
                advice = (
                    "S3 did not answer: check that it is up and that the connection's endpoint_url points at it, "
                    "then rerun the task (nothing was read or written)."
                )
            elif status(error) == 404:
                advice = "The bucket does not exist: create it, or correct s3_bucket."
            elif status(error) in (401, 403):
                advice = (
                    "S3 refused the connection's credentials or their permissions: check its login (access key id) "
                    "and password (secret key), and that they may list, read and write the bucket."
                )
            else:
                advice = "Create the bucket, or check the connection's endpoint_url, region and credentials."
            raise AuditExportError(f"Cannot use {self._where()}: {reason(error)}. {advice}") from None
        self.started = _answer_time(answer) or before - MAX_CLOCK_SKEW

    @staticmethod
    def object_key(key: str, index: int, *, split: bool) -> str:
        """The key of part ``index``: ``key`` itself, or ``<key stem>.part-NNNNN<ext>`` when ``split``."""
        if not split and index != 0:
            raise ValueError("one object per window needs exactly one part")
        return part_key(key, index) if split else key

    def publish(
        self, key: str, parts: list[SpooledPart], *, split: bool, streamed: StreamingUploads | None = None
    ) -> list[str]:
        """
        Upload ``parts`` (completing the multipart uploads that ``streamed`` began while reading);
        return their ``s3://`` URIs.

        If writing fails, or is interrupted (a task timeout or kill raises a ``BaseException``), the
        objects this run made visible are removed again, each only if it is still the one this run wrote.

        :param key: the object key, or the base of the part keys when ``split``.
        :param parts: the window's spooled parts, in order.
        :param split: name the objects ``<key stem>.part-NNNNN<ext>`` even when there is one part.
        :param streamed: uploads already under way for the larger parts.
        :return: the ``s3://`` URIs of the objects written, in part order.
        :raises AuditExportError: when writing failed: what failed, what is visible now, what to do. An
            exception that is not an :class:`Exception` (``AirflowTaskTimeout``, ``KeyboardInterrupt``) is
            re-raised unchanged after the clean-up.
        """
        keys = [self.object_key(key, index, split=split) for index in range(len(parts))]
        advice = rerun_advice(self.s3_hook.aws_conn_id, self._client())
        self._predicted = set()
        try:
            # The parts sent while reading are confirmed first, so that a part that failed is reported as such
            # whatever else S3 refuses afterwards; nothing is visible before the completions below.
            if streamed is not None:
                streamed.confirm(parts)
            previous = self._existing(key)
        except AuditExportError as error:
            raise AuditExportError(f"{error} Nothing of this run is visible in the bucket. {advice}") from None
        uploaded: list[str] = []  # answered by S3: visible
        putting: dict[str, str | None] = {}  # key -> ETag of the object each PUT made, or would make
        try:
            completed = streamed.complete(parts) if streamed is not None else set()
            uploaded.extend(keys[index] for index in sorted(completed))
            for index, (object_key, part) in enumerate(zip(keys, parts, strict=True)):
                if index not in completed:
                    self._put(object_key, part, putting)
                    uploaded.append(object_key)
        except BaseException as error:  # a timeout or a kill too: the window must not stay half visible
            # Completions and PUTs whose answer was lost, or that were interrupted, may have made an object.
            written = {**(streamed.completing if streamed is not None else {}), **putting}
            if streamed is not None:
                self._predicted |= streamed.predicted
            try:
                cleanup = self._remove_written(written, previous, streamed)
            except Exception as cleanup_error:  # never in place of the write's own error
                log.warning("Removing this run's objects from %s failed: %s", self._where(), reason(cleanup_error))
                cleanup = _Cleanup(
                    kept=[object_key for object_key in written if object_key not in previous],
                    replaced=[object_key for object_key in written if object_key in previous],
                )
            if not isinstance(error, Exception):
                log.warning(
                    "Writing to %s was interrupted (%s). %s",
                    self._where(),
                    type(error).__name__,
                    self._outcome(cleanup),
                )
                raise
            if not isinstance(error, AuditExportError):
                advice = write_advice(error, self.bucket, self.settings, self.s3_hook.aws_conn_id, self._client())
            raise AuditExportError(self._failure_message(error, keys, uploaded, cleanup, advice)) from None
        self._report_outputs(keys)
        stale = sorted(previous - set(keys))
        if stale:
            log.info("Removing %d object(s) of an earlier run of this window: %s", len(stale), stale)
            self._delete(stale)
        self._abort_unfinished(key)
        return [f"s3://{self.bucket}/{object_key}" for object_key in keys]

    def _put(self, object_key: str, part: SpooledPart, putting: dict[str, str | None]) -> None:
        """PUT a part smaller than a multipart part, recording the ETag of the object it makes."""
        # Entered before the call: an interrupted PUT, or one whose answer was lost, may still make the object.
        # Under SSE-KMS and SSE-C the ETag is no MD5 of the body, so it cannot be known before S3 answers.
        putting[object_key] = _file_etag(part.path) if self.settings.etag_is_md5 else None
        self._predicted.add(object_key)
        with open(part.path, "rb") as body:
            answer = self.s3_hook.get_conn().put_object(
                Bucket=self.bucket, Key=object_key, Body=body, **self.settings.put_args
            )
        if answer.get("ETag"):
            putting[object_key] = answer["ETag"]
            self._predicted.discard(object_key)

    def _report_outputs(self, keys: list[str]) -> None:
        """Report the written objects as lineage outputs; a failure here leaves the written window alone."""
        try:
            for object_key in keys:
                _report_output(self.s3_hook, self.bucket, object_key)
        except Exception as error:  # the export is written: lineage is about it, not part of it
            log.warning(
                "The window was written to %s, but reporting its lineage failed: %s", self._uris(keys), reason(error)
            )

    def _remove_written(
        self, written: dict[str, str | None], previous: set[str], streamed: StreamingUploads | None
    ) -> _Cleanup:
        """
        Remove the objects a failed run made, leaving an earlier run's objects and other writers' alone.

        :param written: key -> ETag of the object this run made (or may have made) under it.
        :param previous: this window's keys listed before anything was written.
        :param streamed: its uploads not completed are aborted first.
        """
        if streamed is not None:
            # First: a completion whose answer was lost and that S3 has not carried out yet then never will,
            # so no object appears after the check below.
            streamed.abort()
        cleanup = _Cleanup()
        for object_key, etag in written.items():
            if object_key in previous:
                # An earlier run's object under the same key is left as it is, or as this run replaced it.
                cleanup.replaced.append(object_key)
                continue
            outcome = self._delete_if_written(object_key, etag, predicted=object_key in self._predicted)
            if outcome == "kept":
                cleanup.kept.append(object_key)
            elif outcome == "foreign":
                cleanup.foreign.append(object_key)
            elif outcome == "undecided":
                cleanup.undecided.append(object_key)
        return cleanup

    def _delete_if_written(
        self, object_key: str, etag: str | None, *, predicted: bool = False
    ) -> Literal["removed", "absent", "foreign", "kept", "undecided"]:
        """
        Delete ``object_key`` if it is still the object this run wrote, with ETag ``etag``.

        Another run of the same window (the hourly DAG and a backfill of one-hour sub-windows write the same
        keys) may have written the key since: its object is not this run's to remove.

        :param etag: the ETag S3 gave this run's object, or the one it would give (``predicted``), or None
            when that cannot be known.
        :param predicted: S3 did not answer the write, so ``etag`` is computed from the content; an object
            encrypted with SSE-KMS or SSE-C (by this run's settings or the bucket's default) has another.
        """
        client = self.s3_hook.get_conn()
        try:
            head = client.head_object(Bucket=self.bucket, Key=object_key, **self.settings.head_args)
        except Exception as error:
            if status(error) == 404:
                return "absent"
            log.warning("Could not check s3://%s/%s in %s: %s", self.bucket, object_key, self._where(), reason(error))
            return "kept"
        current = head.get("ETag")
        if etag is None:  # an encrypted object whose write went unanswered: it cannot be told apart
            return "undecided"
        if not _same_etag(current, etag):
            encrypted = (
                str(head.get("ServerSideEncryption", "")).startswith("aws:kms") or "SSECustomerAlgorithm" in head
            )
            return "undecided" if predicted and encrypted else "foreign"
        try:
            # If-Match closes the gap after the HEAD where S3 supports conditional deletes; where it does not,
            # the HEAD just before is the check.
            client.delete_object(Bucket=self.bucket, Key=object_key, IfMatch=current, **self.settings.request_args)
        except Exception as error:
            if status(error) == 412:
                return "foreign"
            if status(error) == 404:
                return "absent"
            log.warning(
                "Could not remove s3://%s/%s from %s: %s", self.bucket, object_key, self._where(), reason(error)
            )
            return "kept"
        return "removed"

    def _outcome(self, cleanup: _Cleanup) -> str:
        """What a failed run leaves visible, in sentences."""
        outcome = []
        if cleanup.kept:
            outcome.append(
                f"Removing what this run had made visible failed too: {self._uris(cleanup.kept)} may be visible "
                "without the rest of the window."
            )
        if cleanup.replaced:
            outcome.append(
                f"The earlier run's objects stay, but this run may have replaced {self._uris(cleanup.replaced)} "
                "before failing; until the rerun they may mix both runs."
            )
        if cleanup.undecided:
            outcome.append(
                f"{self._uris(cleanup.undecided)} may be visible without the rest of the window: S3 did not confirm "
                "this run's write, and an object encrypted with SSE-KMS or SSE-C has an ETag that is not the MD5 of its "
                "content, so whether it is this run's object or another run's cannot be told; it was left in place "
                "(delete it unless another run wrote this window since, or let the rerun overwrite it)."
            )
        if not cleanup.kept and not cleanup.replaced and not cleanup.undecided:
            outcome.append("Nothing of this run is visible in the bucket.")
        if cleanup.foreign:
            outcome.append(
                f"{self._uris(cleanup.foreign)} changed after this run wrote it: another run writing the same keys "
                "at the same time (the hourly DAG and a backfill of the same hours, say) replaced it, so it is left "
                "as it is; let only one run write a window at a time."
            )
        return " ".join(outcome)

    def _failure_message(
        self, error: Exception, keys: list[str], uploaded: list[str], cleanup: _Cleanup, advice: str
    ) -> str:
        """What failed, what the failure left visible, and what to do."""
        if isinstance(error, AuditExportError):  # a streamed upload failed; its message says which
            problem = str(error)
        else:
            failed = next((object_key for object_key in keys if object_key not in uploaded), keys[-1])
            problem = f"Writing s3://{self.bucket}/{failed} failed: {reason(error)}."
        return f"{problem} {self._outcome(cleanup)} {advice}"

    def _uris(self, keys: list[str]) -> str:
        return ", ".join(f"s3://{self.bucket}/{object_key}" for object_key in keys)

    def _abort_unfinished(self, key: str) -> None:
        """
        Abort the multipart uploads of this window's keys that an earlier, failed run left behind.

        Only uploads begun before this run started are aborted: a later one belongs to another run of the
        same window that is still writing.
        """
        pattern = part_pattern(key)
        client = self.s3_hook.get_conn()
        started = self.run_start
        try:
            pages = client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=split_extension(key)[0], **self.settings.request_args
            )
            # Every upload of this run is completed by now: whatever is listed was begun by another run.
            listed = [upload for page in pages for upload in page.get("Uploads", []) if pattern.match(upload["Key"])]
            unfinished = [
                (upload["Key"], upload["UploadId"]) for upload in listed if self._begun_before(upload, started)
            ]
            for object_key, upload_id in unfinished:
                client.abort_multipart_upload(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id, **self.settings.request_args
                )
        except Exception as error:  # the window is written; this is housekeeping
            log.warning(
                "The window was written, but unfinished multipart uploads of an earlier failed run under %s in %s "
                "could not be listed or aborted (%s); they are invisible, and the next run removes them",
                split_extension(key)[0],
                self._where(),
                reason(error),
            )
            return
        if unfinished:
            log.info(
                "Aborted %d unfinished multipart upload(s) that an earlier failed run left: %s",
                len(unfinished),
                sorted(object_key for object_key, _ in unfinished),
            )
        if len(listed) > len(unfinished):
            log.info(
                "Left %d multipart upload(s) under %s begun since this run started: another run is writing them",
                len(listed) - len(unfinished),
                split_extension(key)[0],
            )

    @staticmethod
    def _begun_before(upload: dict[str, Any], started: datetime) -> bool:
        initiated = upload.get("Initiated")
        if not isinstance(initiated, datetime):
            return False  # cannot tell: leave it to a lifecycle rule rather than abort another run's upload
        if initiated.tzinfo is None:
            initiated = initiated.replace(tzinfo=UTC)
        return initiated < started

    def _existing(self, key: str) -> set[str]:
        pattern = part_pattern(key)
        prefix = split_extension(key)[0]
        try:
            listed = self.s3_hook.list_keys(bucket_name=self.bucket, prefix=prefix)
        except Exception as error:
            raise AuditExportError(f"Cannot list {self._where()} under {prefix!r}: {reason(error)}.") from None
        return {object_key for object_key in listed or [] if pattern.match(object_key)}

    def _delete(self, keys: list[str]) -> None:
        """Delete an earlier run's ``keys`` after this run's window is written."""
        try:
            self.s3_hook.delete_objects(bucket=self.bucket, keys=keys)
        except Exception as error:
            raise AuditExportError(
                f"The window was written, but removing the earlier run's objects {keys} from {self._where()} "
                f"failed ({reason(error)}); delete them by hand or rerun the task"
            ) from None
