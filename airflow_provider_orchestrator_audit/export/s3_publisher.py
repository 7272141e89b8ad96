"""The S3 requests of one window's export: check the bucket, PUT a part, remove what a failed run wrote, tidy up."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from airflow_provider_orchestrator_audit.exceptions import AuditExportError
from airflow_provider_orchestrator_audit.export._s3_errors import (
    S3_REQUEST_ERRORS,
    destination,
    is_unreachable,
    reason,
    status,
)
from airflow_provider_orchestrator_audit.export.keys import part_key, part_pattern, split_extension
from airflow_provider_orchestrator_audit.export.s3_object_settings import ObjectSettings
from airflow_provider_orchestrator_audit.export.spool import SpooledPart

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from mypy_boto3_s3 import S3Client

__all__ = ["MAX_CLOCK_SKEW", "Cleanup", "S3Publisher", "WrittenObjects"]

log = logging.getLogger(__name__)

#: How far a worker's clock can be from S3's: AWS refuses SigV4-signed requests from a clock further off.
MAX_CLOCK_SKEW = timedelta(minutes=15)


def _report_output(s3_hook: S3Hook, bucket: str, key: str) -> None:
    from airflow_provider_orchestrator_audit.compat import get_hook_lineage_collector

    get_hook_lineage_collector().add_output_asset(
        context=s3_hook, scheme="s3", asset_kwargs={"bucket": bucket, "key": key}
    )


def _mask_secret(secret: str) -> None:
    from airflow_provider_orchestrator_audit.compat import mask_secret

    mask_secret(secret)


def s3_client(s3_hook: S3Hook) -> S3Client:
    """The hook's boto3 S3 client, typed (the hook declares no type for it)."""
    return cast("S3Client", s3_hook.get_conn())


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
class WrittenObjects:
    """
    The objects this run made, or may have made, visible: key -> the ETag of this run's object.

    A key is entered before the request that makes its object (a PUT, a completion), with the ETag the
    object will have when it can be computed from the content (None under SSE-KMS and SSE-C): a request
    that is interrupted, or whose answer is lost, may still have made it. S3's answer replaces the guess.
    """

    etags: dict[str, str | None] = field(default_factory=dict)
    #: Keys whose ETag is computed here, not S3's answer.
    predicted: set[str] = field(default_factory=set)

    def expect(self, key: str, etag: str | None) -> None:
        """Enter ``key`` before the request that may make its object."""
        self.etags[key] = etag
        self.predicted.add(key)

    def answered(self, key: str, etag: str | None) -> None:
        """Record S3's ETag for ``key`` from its answer (kept as guessed when the answer has none)."""
        if etag:
            self.etags[key] = etag
            self.predicted.discard(key)


@dataclass
class Cleanup:
    """What removing a failed run's objects left: each list holds keys."""

    kept: list[str] = field(default_factory=list)  # may be visible: could not be checked or deleted
    foreign: list[str] = field(default_factory=list)  # overwritten by another writer since: left alone
    replaced: list[str] = field(default_factory=list)  # an earlier run's object this run may have overwritten
    undecided: list[str] = field(default_factory=list)  # encrypted, unconfirmed: whose it is cannot be told


class S3Publisher:
    """
    The S3 requests of one window's export, through the amazon provider's :class:`S3Hook`.

    It checks the bucket, PUTs the parts too small for a multipart upload, lists and deletes an earlier
    run's objects of the same window, aborts the uploads an earlier failed run left, and removes the
    objects of a failed run, each only if it still has the ETag this run's write gave it: another run that
    wrote the same key meanwhile keeps its object. When to call which, and what a failure says, is the
    sink's (:class:`~.s3_sink.S3JsonLinesSink`).

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

    def client(self) -> Any:
        """The hook's S3 client, or None when the connection cannot make one (its own error is reported)."""
        try:
            return s3_client(self.s3_hook)
        except Exception:  # noqa: BLE001 - only for naming the endpoint in a message; any failure means "unknown"
            return None

    def where(self) -> str:
        """``S3 bucket 'b' (aws_conn_id='aws_default', endpoint http://...)``."""
        return f"S3 bucket {self.bucket!r} ({destination(self.s3_hook.aws_conn_id, self.client())})"

    def check_bucket(self) -> None:
        """
        Fail early, before anything is read, when the bucket is missing or out of reach; note S3's time.

        :raises AuditExportError: naming the bucket, the connection and its endpoint, and what to do.
        """
        before = datetime.now(UTC)
        try:
            answer = s3_client(self.s3_hook).head_bucket(Bucket=self.bucket)
        # Any exception: the first S3 call also builds the client from the connection, whose errors are the
        # hook's own (AirflowException, ValueError, ...); every one of them gets the same clear message.
        except Exception as error:  # noqa: BLE001
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
            raise AuditExportError(f"Cannot use {self.where()}: {reason(error)}. {advice}") from None
        self.started = _answer_time(answer) or before - MAX_CLOCK_SKEW

    @staticmethod
    def object_key(key: str, index: int, *, split: bool) -> str:
        """The key of part ``index``: ``key`` itself, or ``<key stem>.part-NNNNN<ext>`` when ``split``."""
        if not split and index != 0:
            raise ValueError("one object per window needs exactly one part")
        return part_key(key, index) if split else key

    def put(self, object_key: str, part: SpooledPart, written: WrittenObjects) -> None:
        """PUT a part smaller than a multipart part, recording in ``written`` the object it makes."""
        # Entered before the call: an interrupted PUT, or one whose answer was lost, may still make the object.
        # Under SSE-KMS and SSE-C the ETag is no MD5 of the body, so it cannot be known before S3 answers.
        written.expect(object_key, _file_etag(part.path) if self.settings.etag_is_md5 else None)
        with open(part.path, "rb") as body:
            answer = s3_client(self.s3_hook).put_object(
                Bucket=self.bucket, Key=object_key, Body=body, **self.settings.put_args
            )
        written.answered(object_key, answer.get("ETag"))

    def report_outputs(self, keys: list[str]) -> None:
        """Report the written objects as lineage outputs; a failure here leaves the written window alone."""
        try:
            for object_key in keys:
                _report_output(self.s3_hook, self.bucket, object_key)
        # Any exception: the export is written; lineage is about it, not part of it, whatever a backend raises.
        except Exception as error:  # noqa: BLE001
            log.warning(
                "The window was written to %s, but reporting its lineage failed: %s", self.uris(keys), reason(error)
            )

    def remove_written(self, written: WrittenObjects, previous: set[str]) -> Cleanup:
        """
        Remove the objects a failed run made, leaving an earlier run's objects and other writers' alone.

        Abort the run's unfinished uploads first: a completion whose answer was lost and that S3 has not
        carried out yet then never will, so no object appears after the checks here.

        :param written: what this run made (or may have made) visible.
        :param previous: this window's keys listed before anything was written.
        """
        cleanup = Cleanup()
        for object_key, etag in written.etags.items():
            if object_key in previous:
                # An earlier run's object under the same key is left as it is, or as this run replaced it.
                cleanup.replaced.append(object_key)
                continue
            outcome = self._delete_if_written(object_key, etag, predicted=object_key in written.predicted)
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
        client = s3_client(self.s3_hook)
        try:
            head = client.head_object(Bucket=self.bucket, Key=object_key, **self.settings.head_args)
        except S3_REQUEST_ERRORS as error:
            if status(error) == 404:
                return "absent"
            log.warning("Could not check s3://%s/%s in %s: %s", self.bucket, object_key, self.where(), reason(error))
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
        except S3_REQUEST_ERRORS as error:
            if status(error) == 412:
                return "foreign"
            if status(error) == 404:
                return "absent"
            log.warning("Could not remove s3://%s/%s from %s: %s", self.bucket, object_key, self.where(), reason(error))
            return "kept"
        return "removed"

    def uris(self, keys: list[str]) -> str:
        """The ``s3://`` URIs of ``keys``, comma-separated."""
        return ", ".join(f"s3://{self.bucket}/{object_key}" for object_key in keys)

    def abort_unfinished(self, key: str) -> None:
        """
        Abort the multipart uploads of this window's keys that an earlier, failed run left behind.

        Only uploads begun before this run started are aborted: a later one belongs to another run of the
        same window that is still writing.
        """
        pattern = part_pattern(key)
        client = s3_client(self.s3_hook)
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
        except S3_REQUEST_ERRORS as error:  # the window is written; this is housekeeping
            log.warning(
                "The window was written, but unfinished multipart uploads of an earlier failed run under %s in %s "
                "could not be listed or aborted (%s); they are invisible, and the next run removes them",
                split_extension(key)[0],
                self.where(),
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
    def _begun_before(upload: Mapping[str, Any], started: datetime) -> bool:
        initiated = upload.get("Initiated")
        if not isinstance(initiated, datetime):
            return False  # cannot tell: leave it to a lifecycle rule rather than abort another run's upload
        if initiated.tzinfo is None:
            initiated = initiated.replace(tzinfo=UTC)
        return initiated < started

    def existing(self, key: str) -> set[str]:
        """
        This window's objects in the bucket now: ``key`` and its split parts.

        :raises AuditExportError: when they cannot be listed.
        """
        pattern = part_pattern(key)
        prefix = split_extension(key)[0]
        try:
            listed = self.s3_hook.list_keys(bucket_name=self.bucket, prefix=prefix)
        # Any exception: S3Hook wraps S3's errors in its own (AirflowException among them); each means the same.
        except Exception as error:  # noqa: BLE001
            raise AuditExportError(f"Cannot list {self.where()} under {prefix!r}: {reason(error)}.") from None
        return {object_key for object_key in listed or [] if pattern.match(object_key)}

    def delete_stale(self, key: str, keys: list[str], previous: set[str]) -> None:
        """
        Delete the objects of an earlier run of the window under ``key`` that this run (``keys``) did not write.

        :raises AuditExportError: when they cannot be deleted; this run's window is written.
        """
        stale = sorted(previous - set(keys))
        if not stale:
            return
        log.info("Removing %d object(s) of an earlier run of this window: %s", len(stale), stale)
        try:
            self.s3_hook.delete_objects(bucket=self.bucket, keys=stale)
        # Any exception: S3Hook raises AirflowException for the keys S3 refused, botocore's errors for the rest.
        except Exception as error:  # noqa: BLE001
            raise AuditExportError(
                f"The window was written, but removing the earlier run's objects {stale} from {self.where()} "
                f"failed ({reason(error)}); delete them by hand or rerun the task"
            ) from None
