"""Upload a window's spooled parts to S3 under deterministic keys, and remove a previous run's extras."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_orchestrator_audit.exceptions import AuditExportError
from airflow_provider_orchestrator_audit.export._s3_errors import destination, is_unreachable, reason, rerun_advice
from airflow_provider_orchestrator_audit.export.keys import part_key, part_pattern, split_extension
from airflow_provider_orchestrator_audit.export.spool import SpooledPart

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_orchestrator_audit.export.s3_stream import StreamingUploads

__all__ = ["S3Publisher"]

log = logging.getLogger(__name__)


def _report_output(s3_hook: S3Hook, bucket: str, key: str) -> None:
    # S3Hook reports the objects it uploads itself; a completed multipart upload is reported here.
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    get_hook_lineage_collector().add_output_asset(
        context=s3_hook, scheme="s3", asset_kwargs={"bucket": bucket, "key": key}
    )


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    return None


class S3Publisher:
    """
    Publishes one window's parts to ``s3://bucket/key`` through the amazon provider's :class:`S3Hook`.

    Every part is uploaded with boto3's managed transfer (multipart for large parts; an interrupted
    multipart upload is aborted, so no partial object becomes visible). Only after all parts are up
    are objects of an earlier run for the same key that this run did not write deleted, and multipart
    uploads that an earlier failed run could not abort (S3 was down) are aborted. If writing fails, the
    objects this run already made visible are removed again.

    :param s3_hook: the hook of the destination's AWS connection.
    :param bucket: the bucket name.
    """

    def __init__(self, s3_hook: S3Hook, bucket: str) -> None:
        self.s3_hook = s3_hook
        self.bucket = bucket

    def _client(self) -> Any:
        try:
            return self.s3_hook.get_conn()
        except Exception:  # a connection that cannot even make a client: its own error is reported
            return None

    def _where(self) -> str:
        return f"S3 bucket {self.bucket!r} ({destination(self.s3_hook.aws_conn_id, self._client())})"

    def check_bucket(self) -> None:
        """Fail early, before anything is read, when the bucket is missing or out of reach."""
        try:
            self.s3_hook.get_conn().head_bucket(Bucket=self.bucket)
        except Exception as error:
            if is_unreachable(error):
                advice = (
                    "S3 did not answer: check that it is up and that the connection's endpoint_url points at it, "
                    "then rerun the task (nothing was read or written)."
                )
            elif _status(error) == 404:
                advice = "The bucket does not exist: create it, or correct s3_bucket."
            elif _status(error) in (401, 403):
                advice = (
                    "S3 refused the connection's credentials or their permissions: check its login (access key id) "
                    "and password (secret key), and that they may list, read and write the bucket."
                )
            else:
                advice = "Create the bucket, or check the connection's endpoint_url, region and credentials."
            raise AuditExportError(f"Cannot use {self._where()}: {reason(error)}. {advice}") from None

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

        :param key: the object key, or the base of the part keys when ``split``.
        :param split: name the objects ``<key stem>.part-NNNNN<ext>`` even when there is one part.
        :param streamed: uploads already under way for the larger parts.
        """
        keys = [self.object_key(key, index, split=split) for index in range(len(parts))]
        advice = rerun_advice(self.s3_hook.aws_conn_id, self._client())
        try:
            # The parts sent while reading are confirmed first, so that a part that failed is reported as such
            # whatever else S3 refuses afterwards; nothing is visible before the completions below.
            if streamed is not None:
                streamed.confirm(parts)
            previous = self._existing(key)
        except AuditExportError as error:
            raise AuditExportError(f"{error} Nothing of this run is visible in the bucket. {advice}") from None
        uploaded: list[str] = []
        try:
            completed = streamed.complete(parts) if streamed is not None else set()
            uploaded.extend(keys[index] for index in sorted(completed))
            for index, (object_key, part) in enumerate(zip(keys, parts, strict=True)):
                if index in completed:
                    _report_output(self.s3_hook, self.bucket, object_key)
                    continue
                self.s3_hook.load_file(part.path, object_key, bucket_name=self.bucket, replace=True)
                uploaded.append(object_key)
        except Exception as error:
            # Completions whose answer was lost may have made an object visible: those count as written.
            written = list(dict.fromkeys([*(streamed.completing if streamed is not None else []), *uploaded]))
            created = [object_key for object_key in written if object_key not in previous]
            kept = self._delete(created, quiet=True)
            # An earlier run's object under the same key is left as it is, or as this run replaced it.
            replaced = [object_key for object_key in written if object_key in previous]
            if isinstance(error, AuditExportError):  # a streamed upload failed; its message says which
                problem = str(error)
            else:
                failed = next((object_key for object_key in keys if object_key not in uploaded), keys[-1])
                problem = f"Writing s3://{self.bucket}/{failed} failed: {reason(error)}."
            outcome = []
            if kept:
                outcome.append(
                    f"Removing what this run had made visible failed too: {self._uris(kept)} may be visible "
                    "without the rest of the window."
                )
            if replaced:
                outcome.append(
                    f"The earlier run's objects stay, but this run may have replaced {self._uris(replaced)} before "
                    "failing; until the rerun they may mix both runs."
                )
            if not outcome:
                outcome.append("Nothing of this run is visible in the bucket.")
            raise AuditExportError(" ".join([problem, *outcome, advice])) from None
        stale = sorted(previous - set(keys))
        if stale:
            log.info("Removing %d object(s) of an earlier run of this window: %s", len(stale), stale)
            self._delete(stale, quiet=False)
        self._abort_unfinished(key)
        return [f"s3://{self.bucket}/{object_key}" for object_key in keys]

    def _uris(self, keys: list[str]) -> str:
        return ", ".join(f"s3://{self.bucket}/{object_key}" for object_key in keys)

    def _abort_unfinished(self, key: str) -> None:
        """Abort the multipart uploads of this window's keys that an earlier, failed run left behind."""
        pattern = part_pattern(key)
        client = self.s3_hook.get_conn()
        try:
            pages = client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=split_extension(key)[0]
            )
            # Every upload of this run is completed by now: whatever is listed was left by another run.
            unfinished = [
                (upload["Key"], upload["UploadId"])
                for page in pages
                for upload in page.get("Uploads", [])
                if pattern.match(upload["Key"])
            ]
            for object_key, upload_id in unfinished:
                client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
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

    def _existing(self, key: str) -> set[str]:
        pattern = part_pattern(key)
        prefix = split_extension(key)[0]
        try:
            listed = self.s3_hook.list_keys(bucket_name=self.bucket, prefix=prefix)
        except Exception as error:
            raise AuditExportError(f"Cannot list {self._where()} under {prefix!r}: {reason(error)}.") from None
        return {object_key for object_key in listed or [] if pattern.match(object_key)}

    def _delete(self, keys: list[str], *, quiet: bool) -> list[str]:
        """Delete ``keys``; return those that may still exist (quiet) or raise (not quiet)."""
        if not keys:
            return []
        try:
            self.s3_hook.delete_objects(bucket=self.bucket, keys=keys)
        except Exception as error:
            if not quiet:
                raise AuditExportError(
                    f"The window was written, but removing the earlier run's objects {keys} from {self._where()} "
                    f"failed ({reason(error)}); delete them by hand or rerun the task"
                ) from None
            log.warning("Could not remove %s from %s: %s", keys, self._where(), reason(error))
            return keys
        return []
