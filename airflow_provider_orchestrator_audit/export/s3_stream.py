"""
Upload a window's spool files to S3 while the window is still being read, visible only at the end.

An S3 multipart upload shows nothing until it is completed, so the finished 5 MiB stretches of each
spool file can be sent as parts while later pages are still being fetched; the uploads are completed
only after the whole window has been read, and aborted if anything fails before. The upload then
mostly overlaps the reading instead of following it, and memory stays at one part in flight. A part
that fails (after botocore's own retries) stops the export at the next batch instead of after the
whole window was read. What a failure says, and what is undone, is decided by the sink
(:mod:`.s3_sink`); this module raises :class:`~._s3_errors.S3StepError` naming the object and the step.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_orchestrator_audit.export._s3_errors import S3_REQUEST_ERRORS, S3StepError, reason
from airflow_provider_orchestrator_audit.export.s3_object_settings import ObjectSettings
from airflow_provider_orchestrator_audit.export.s3_publisher import s3_client
from airflow_provider_orchestrator_audit.export.spool import JsonLinesSpool, SpooledPart

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from airflow_provider_orchestrator_audit.export.s3_publisher import WrittenObjects

__all__ = ["PART_SIZE", "StreamingUploads", "multipart_etag"]

log = logging.getLogger(__name__)

#: Bytes per uploaded part: S3's minimum part size, and the most held in memory at a time.
PART_SIZE = 5 * 1024 * 1024


def multipart_etag(parts: list[dict[str, Any]]) -> str | None:
    """
    The ETag S3 gives the object that completing an upload of ``parts`` makes: the MD5 of the parts' MD5s,
    then ``-<number of parts>``.

    :param parts: ``{"ETag": ..., "PartNumber": ...}`` of every part, in order, as ``upload_part`` answered.
    :return: the quoted ETag, or None when a part's ETag is no MD5 (SSE-KMS or SSE-C objects, say): then
        nobody can tell from the ETag whether an object is this upload's.
    """
    try:
        digests = b"".join(bytes.fromhex(part["ETag"].strip('"')) for part in parts)
    except ValueError:
        return None
    if len(digests) != 16 * len(parts):
        return None
    return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"'


@dataclass
class _Upload:
    """
    One multipart upload under way, for one spool file.

    :param key: the object key it completes into.
    :param upload_id: S3's id of the upload.
    :param sent: bytes of the spool file handed to part uploads so far.
    :param parts: the part uploads, in part-number order; each gives ``{"ETag", "PartNumber"}``.
    """

    key: str
    upload_id: str
    sent: int = 0
    parts: list[Future[dict[str, Any]]] = field(default_factory=list)


class StreamingUploads:
    """
    Multipart uploads that follow a :class:`JsonLinesSpool` as it grows.

    :param s3_hook: the destination's hook (its client does the uploads).
    :param bucket: the bucket.
    :param keys: the object key of spool part ``i`` is ``keys(i)``.
    :param settings: what every object is written with (encryption, ACL, ...); by default the hook's
        ``extra_args``.
    """

    def __init__(
        self, s3_hook: S3Hook, bucket: str, keys: Callable[[int], str], settings: ObjectSettings | None = None
    ) -> None:
        self.client = s3_client(s3_hook)
        self.bucket = bucket
        self.keys = keys
        self.settings = settings or ObjectSettings.build(hook_extra_args=getattr(s3_hook, "extra_args", None))
        self._uploads: dict[int, _Upload] = {}
        # One part in flight: the upload keeps pace with the reading, and memory stays at one part.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-upload")

    def advance(self, spool: JsonLinesSpool) -> None:
        """
        Send every complete stretch of :data:`PART_SIZE` bytes that the spool has written.

        :raises S3StepError: when a part sent earlier failed, or an upload cannot be started.
        """
        self._check_sent()
        for index, path, size in spool.files():
            upload = self._uploads.get(index)
            if upload is None and size < PART_SIZE:
                continue
            while size - (upload.sent if upload else 0) >= PART_SIZE:
                upload = upload or self._start(index)
                self._send(upload, path, PART_SIZE)

    def confirm(self, parts: list[SpooledPart]) -> None:
        """
        Send what is left of every upload and wait until S3 has stored all its parts; nothing is visible yet.

        :param parts: the finished spool parts; part ``i`` is the whole of the file upload ``i`` follows.
        :raises S3StepError: when a part failed (after botocore's own retries), naming the object and the part.
        """
        for index, part in enumerate(parts):
            upload = self._uploads.get(index)
            if upload is not None and part.size > upload.sent:
                self._send(upload, part.path, part.size - upload.sent)
        for upload in self._uploads.values():
            for number, future in enumerate(upload.parts, start=1):
                try:
                    future.result()
                except S3_REQUEST_ERRORS as error:
                    raise S3StepError(upload.key, f"sending part {number}", error) from None

    def complete(self, written: WrittenObjects) -> set[int]:
        """
        Complete every upload, making its object visible; call :meth:`confirm` first.

        Each key is entered in ``written`` before its completion is asked for, so that a failure, even one
        that interrupts the call, knows which objects may have become visible.

        :param written: where each completion records the object it makes (or may have made).
        :return: the indexes of the parts completed here (the others are small enough for a single PUT).
        :raises S3StepError: when S3 refused or did not answer a completion; the uploads not completed stay
            open for :meth:`abort`.
        """
        completed: set[int] = set()
        for index, upload in list(self._uploads.items()):
            part_list = [future.result() for future in upload.parts]
            # Under SSE-KMS and SSE-C the parts' ETags are no MD5s, and neither is the object's.
            written.expect(upload.key, multipart_etag(part_list) if self.settings.etag_is_md5 else None)
            try:
                answer = self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": cast("list[CompletedPartTypeDef]", part_list)},
                    **self.settings.complete_args,
                )
            except S3_REQUEST_ERRORS as error:
                # Still listed in _uploads: abort() abandons it (a lost answer to a completion that S3 did
                # carry out leaves an object, which the sink removes).
                raise S3StepError(upload.key, "completing its multipart upload", error) from None
            written.answered(upload.key, answer.get("ETag"))
            del self._uploads[index]
            completed.add(index)
        return completed

    def abort(self) -> list[tuple[str, str]]:
        """
        Abandon every upload not completed yet: S3 then keeps nothing of them. Calling it again is harmless.

        Parts still being sent are waited for first: a part that lands after the abort would otherwise
        keep its storage. An upload whose completion was asked for but not answered is aborted too: if S3
        had not carried the completion out yet, it never will, and no object appears later.

        :return: ``(key, reason)`` of each upload that could not be aborted (S3 down, say); it stays
            invisible, and the next successful export of the same keys removes it.
        """
        for upload in self._uploads.values():
            for future in upload.parts:
                future.cancel()
        wait([future for upload in self._uploads.values() for future in upload.parts])
        unaborted: list[tuple[str, str]] = []
        for upload in self._uploads.values():
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id, **self.settings.request_args
                )
            except S3_REQUEST_ERRORS as error:  # the export already failed; say so, but keep its error
                unaborted.append((upload.key, reason(error)))
                log.warning(
                    "Could not abort the unfinished multipart upload of s3://%s/%s (%s); it is invisible and the next "
                    "successful export of this window removes it",
                    self.bucket,
                    upload.key,
                    reason(error),
                )
        self._uploads.clear()
        return unaborted

    def close(self) -> None:
        """Stop the upload thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _check_sent(self) -> None:
        """Raise the first failure of a part sent while reading: nothing is gained by reading on."""
        for upload in self._uploads.values():
            for number, future in enumerate(upload.parts, start=1):
                if future.done() and not future.cancelled() and (error := future.exception()) is not None:
                    raise S3StepError(upload.key, f"sending part {number}", error)

    def _start(self, index: int) -> _Upload:
        key = self.keys(index)
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **self.settings.create_args)[
                "UploadId"
            ]
        except S3_REQUEST_ERRORS as error:
            raise S3StepError(key, "starting its multipart upload", error) from None
        upload = _Upload(key, upload_id)
        self._uploads[index] = upload
        return upload

    def _send(self, upload: _Upload, path: str, length: int) -> None:
        offset, number = upload.sent, len(upload.parts) + 1
        upload.parts.append(self._pool.submit(self._upload_part, upload, path, offset, length, number))
        upload.sent += length

    def _upload_part(self, upload: _Upload, path: str, offset: int, length: int, number: int) -> dict[str, Any]:
        with open(path, "rb") as source:
            source.seek(offset)
            body = source.read(length)
        answer = self.client.upload_part(
            Bucket=self.bucket,
            Key=upload.key,
            UploadId=upload.upload_id,
            PartNumber=number,
            Body=body,
            **self.settings.part_args,
        )
        return {"ETag": answer["ETag"], "PartNumber": number}
