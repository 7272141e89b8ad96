"""What an S3 failure says: the reason in one line, where the destination is, and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

if TYPE_CHECKING:
    from airflow_provider_orchestrator_audit.export.s3_object_settings import ObjectSettings

__all__ = [
    "S3_REQUEST_ERRORS",
    "S3StepError",
    "destination",
    "endpoint_of",
    "is_unreachable",
    "reason",
    "refusal_advice",
    "rerun_advice",
    "status",
    "unaborted_note",
    "write_advice",
]

#: What a request of the S3 client raises when it fails: S3's refusal (``ClientError``), botocore's transport,
#: retry and parameter errors (``BotoCoreError``), and the socket or spool file underneath (``OSError``).
S3_REQUEST_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError, OSError)


class S3StepError(Exception):
    """
    One S3 request of an upload failed after botocore's own retries.

    :param key: the object key the request was for.
    :param step: what it was doing, e.g. ``"sending part 2"``.
    :param cause: the client's error.
    """

    def __init__(self, key: str, step: str, cause: BaseException) -> None:
        super().__init__(f"{key}, {step}: {reason(cause)}")
        self.key = key
        self.step = step
        self.cause = cause


def _cause(error: BaseException) -> BaseException:
    # boto3's managed transfer re-raises a client error as S3UploadFailedError("Failed to upload <temporary
    # file> to ...: <error>"): the local file name means nothing to the reader, the original error does.
    if type(error).__name__ == "S3UploadFailedError" and error.__context__ is not None:
        return error.__context__
    return error


def _response(error: BaseException) -> dict[str, Any] | None:
    """The parsed S3 answer a botocore ``ClientError`` carries, or None when S3 did not answer."""
    response = getattr(_cause(error), "response", None)
    return response if isinstance(response, dict) else None


def reason(error: BaseException) -> str:
    """
    The error in one line, without a closing period: ``Code: message`` for an S3 answer, ``Type: message``
    for anything else.
    """
    error = _cause(error)
    response = _response(error)
    text = f"{type(error).__name__}: {error}"
    if response is not None:
        details = response.get("Error", {})
        code, message = details.get("Code"), details.get("Message")
        if code:
            text = f"{code}: {message}" if message else str(code)
    return " ".join(text.split()).rstrip(".")


def status(error: BaseException) -> int | None:
    """The HTTP status of S3's answer (404, 403, ...), or None when S3 did not answer."""
    response = _response(error)
    code = None if response is None else response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code if isinstance(code, int) else None


def is_unreachable(error: BaseException) -> bool:
    """Whether S3 never answered: refused, reset or timed-out connections (after botocore's own retries)."""
    return isinstance(_cause(error), BotocoreConnectionError | HTTPClientError)


def endpoint_of(client: Any) -> str:
    """The S3 endpoint a boto3 client talks to, without any user info a URL might carry."""
    url = str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "")
    if not url:
        return "the default AWS endpoint"
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def destination(aws_conn_id: str | None, client: Any) -> str:
    """``aws_conn_id='aws_default', endpoint http://...``: which connection, and where it points."""
    if client is None:
        return f"aws_conn_id={aws_conn_id!r}"
    return f"aws_conn_id={aws_conn_id!r}, endpoint {endpoint_of(client)}"


def rerun_advice(aws_conn_id: str | None, client: Any) -> str:
    """What to do after a failed write."""
    where = "" if client is None else f" at {endpoint_of(client)}"
    return (
        f"Check that S3 is reachable{where} with the connection {aws_conn_id!r}, then rerun the task: it reads "
        "the window again and writes it whole."
    )


def unaborted_note(bucket: str, failures: list[tuple[str, str]]) -> str:
    """What an upload that could not be aborted leaves, and what removes it."""
    uris = ", ".join(f"s3://{bucket}/{key}" for key, _ in failures)
    return (
        f"The unfinished multipart upload of {uris} could not be aborted ({failures[0][1]}): it is invisible, but "
        "keeps its storage until the next successful export of this window aborts it (as would a lifecycle rule "
        "with AbortIncompleteMultipartUpload)."
    )


def refusal_advice(bucket: str, settings: ObjectSettings) -> str:
    """
    What to do when S3 refused to write an object with 403: protected buckets deny writes that lack the
    encryption (or ACL) header their policy asks for, so say what this export sent and which parameter
    sets it.
    """
    encryption = settings.encryption
    if encryption is None:
        advice = (
            f"S3 refused the write: bucket {bucket!r} may require server-side encryption (a bucket policy that denies "
            "s3:PutObject without the x-amz-server-side-encryption header, which this export did not send). Set "
            "encrypt=True on the operator (SSE-S3), or s3_extra_args={'ServerSideEncryption': 'aws:kms', "
            "'SSEKMSKeyId': '<key id or ARN>'} (SSE-KMS), as the bucket policy asks"
        )
    else:
        advice = (
            f"S3 refused the write with {settings.describe()}: bucket {bucket!r} may require another encryption or "
            "KMS key (a policy on s3:x-amz-server-side-encryption or s3:x-amz-server-side-encryption-aws-kms-key-id): "
            "set encrypt or s3_extra_args on the operator as the bucket policy asks"
        )
        if encryption.startswith("aws:kms"):
            advice += ", and let the connection use the key (kms:GenerateDataKey, kms:Decrypt)"
    if "ACL" not in settings.args:
        advice += "; if it requires an ACL (x-amz-acl), set acl_policy, e.g. 'bucket-owner-full-control'"
    return f"{advice}. Otherwise check that the connection may s3:PutObject into the bucket. Then rerun the task."


def write_advice(
    error: BaseException, bucket: str, settings: ObjectSettings, aws_conn_id: str | None, client: Any
) -> str:
    """What to do after a failed write: the settings to give a bucket that refused it, else rerun."""
    if status(error) == 403:
        return refusal_advice(bucket, settings)
    return rerun_advice(aws_conn_id, client)
