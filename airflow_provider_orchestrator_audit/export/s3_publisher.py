"""Upload a window's spooled parts to S3 under deterministic keys, and remove a previous run's extras."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow_provider_orchestrator_audit.exceptions import AuditExportError
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


def _reason(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        code, message = details.get("Code"), details.get("Message")
        if code:
            return f"{code}: {message}" if message else str(code)
    return f"{type(error).__name__}: {error}"


class S3Publisher:
    """
    Publishes one window's parts to ``s3://bucket/key`` through the amazon provider's :class:`S3Hook`.

    Every part is uploaded with boto3's managed transfer (multipart for large parts; an interrupted
    multipart upload is aborted, so no partial object becomes visible). Only after all parts are up
    are objects of an earlier run for the same key that this run did not write deleted.

    :param s3_hook: the hook of the destination's AWS connection.
    :param bucket: the bucket name.
    """

    def __init__(self, s3_hook: S3Hook, bucket: str) -> None:
        self.s3_hook = s3_hook
        self.bucket = bucket

    def _where(self) -> str:
        return f"S3 bucket {self.bucket!r} (aws_conn_id={self.s3_hook.aws_conn_id!r})"

    def check_bucket(self) -> None:
        """Fail early, before anything is read, when the bucket is missing or out of reach."""
        try:
            self.s3_hook.get_conn().head_bucket(Bucket=self.bucket)
        except Exception as error:
            raise AuditExportError(
                f"Cannot use {self._where()}: {_reason(error)}. Create the bucket, or check the connection's "
                "endpoint_url, region and credentials."
            ) from None

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
        previous = self._existing(key)
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
            created = [object_key for object_key in uploaded if object_key not in previous]
            self._delete(created, quiet=True)
            failed = next((object_key for object_key in keys if object_key not in uploaded), keys[-1])
            raise AuditExportError(
                f"Uploading s3://{self.bucket}/{failed} failed ({_reason(error)}); "
                f"{len(uploaded)} of {len(keys)} parts had been written and the new ones were removed again. "
                "Nothing was read twice: rerun the task once S3 is reachable."
            ) from None
        stale = sorted(previous - set(keys))
        if stale:
            log.info("Removing %d object(s) of an earlier run of this window: %s", len(stale), stale)
            self._delete(stale, quiet=False)
        return [f"s3://{self.bucket}/{object_key}" for object_key in keys]

    def _existing(self, key: str) -> set[str]:
        pattern = part_pattern(key)
        prefix = split_extension(key)[0]
        try:
            listed = self.s3_hook.list_keys(bucket_name=self.bucket, prefix=prefix)
        except Exception as error:
            raise AuditExportError(f"Cannot list {self._where()} under {prefix!r}: {_reason(error)}") from None
        return {object_key for object_key in listed or [] if pattern.match(object_key)}

    def _delete(self, keys: list[str], *, quiet: bool) -> None:
        if not keys:
            return
        try:
            self.s3_hook.delete_objects(bucket=self.bucket, keys=keys)
        except Exception as error:
            if not quiet:
                raise AuditExportError(
                    f"The window was written, but removing the earlier run's objects {keys} from {self._where()} "
                    f"failed ({_reason(error)}); delete them by hand or rerun the task"
                ) from None
            log.warning("Could not remove %s from %s: %s", keys, self._where(), _reason(error))
