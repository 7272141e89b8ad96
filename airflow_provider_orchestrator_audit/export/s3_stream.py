"""
Upload a window's spool files to S3 while the window is still being read, visible only at the end.

An S3 multipart upload shows nothing until it is completed, so the finished 5 MiB stretches of each
spool file can be sent as parts while later pages are still being fetched; the uploads are completed
only after the whole window has been read, and aborted if anything fails before. The upload then
mostly overlaps the reading instead of following it, and memory stays at one part in flight.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_orchestrator_audit.export.spool import JsonLinesSpool, SpooledPart

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

__all__ = ["PART_SIZE", "StreamingUploads"]

log = logging.getLogger(__name__)

#: Bytes per uploaded part: S3's minimum part size, and the most held in memory at a time.
PART_SIZE = 5 * 1024 * 1024


@dataclass
class _Upload:
    key: str
    upload_id: str
    sent: int = 0  # bytes of the spool file handed to part uploads so far
    parts: list[Future[dict[str, Any]]] = field(default_factory=list)


class StreamingUploads:
    """
    Multipart uploads that follow a :class:`JsonLinesSpool` as it grows.

    :param s3_hook: the destination's hook (its client does the uploads).
    :param bucket: the bucket.
    :param keys: the object key of spool part ``i`` is ``keys(i)``.
    """

    def __init__(self, s3_hook: S3Hook, bucket: str, keys: Any) -> None:
        self.client = s3_hook.get_conn()
        self.bucket = bucket
        self.keys = keys
        self._uploads: dict[int, _Upload] = {}
        # One part in flight: the upload keeps pace with the reading, and memory stays at one part.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-upload")

    def advance(self, spool: JsonLinesSpool) -> None:
        """Send every complete stretch of :data:`PART_SIZE` bytes that the spool has written."""
        for index, path, size in spool.files():
            upload = self._uploads.get(index)
            if upload is None and size < PART_SIZE:
                continue
            while size - (upload.sent if upload else 0) >= PART_SIZE:
                upload = upload or self._start(index)
                self._send(upload, path, PART_SIZE)

    def complete(self, parts: list[SpooledPart]) -> set[int]:
        """
        Send what is left and complete every upload; return the indexes of the parts completed here
        (the others are small enough for a single PUT).
        """
        # Every part of every upload is sent and confirmed first; only then is anything completed, so a
        # failed part (the likely failure) leaves no object visible at all.
        confirmed: dict[int, list[dict[str, Any]]] = {}
        for index, part in enumerate(parts):
            upload = self._uploads.get(index)
            if upload is None:
                continue
            if part.size > upload.sent:
                self._send(upload, part.path, part.size - upload.sent)
        for index, upload in self._uploads.items():
            confirmed[index] = [future.result() for future in upload.parts]
        for index, part_list in confirmed.items():
            upload = self._uploads.pop(index)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id, MultipartUpload={"Parts": part_list}
            )
        return set(confirmed)

    def abort(self) -> None:
        """Abandon every upload not completed yet: S3 then keeps nothing of them."""
        for upload in self._uploads.values():
            for future in upload.parts:
                future.cancel()
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id)
            except Exception as error:  # the export already failed; say so, but keep its error
                log.warning("Could not abort the upload of s3://%s/%s: %s", self.bucket, upload.key, error)
        self._uploads.clear()

    def close(self) -> None:
        """Stop the upload thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _start(self, index: int) -> _Upload:
        key = self.keys(index)
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
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
            Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id, PartNumber=number, Body=body
        )
        return {"ETag": answer["ETag"], "PartNumber": number}
