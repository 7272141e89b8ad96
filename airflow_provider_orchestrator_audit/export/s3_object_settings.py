"""
What every object of an export is written with: encryption, ACL, storage class, tags, metadata, Content-Type.

Protected buckets refuse uploads that lack a header (a bucket policy on ``s3:x-amz-server-side-encryption``,
a required KMS key, ``bucket-owner-full-control``), so every request that writes an object must carry the
same settings: the single ``PutObject``, ``CreateMultipartUpload``, and, where S3 needs them again, each
``UploadPart``, ``CompleteMultipartUpload`` and the ``HeadObject`` of the clean-up (the SSE-C key, the
requester-pays and expected-owner headers). :class:`ObjectSettings` checks the operator's arguments once,
when the DAG is parsed, and gives each S3 call the arguments it takes.
"""

from __future__ import annotations

import base64
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "CANNED_ACLS",
    "CONTENT_TYPES",
    "SSE_ALGORITHMS",
    "STORAGE_CLASSES",
    "SUPPORTED_ARGS",
    "ObjectSettings",
    "ObjectSettingsError",
]

#: S3's canned ACLs (``acl_policy``, or ``ACL`` in ``s3_extra_args``).
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)
#: ``ServerSideEncryption`` values for objects in a general-purpose bucket: SSE-S3, SSE-KMS, DSSE-KMS.
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
_KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
#: S3's storage classes.
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
    "EXPRESS_ONEZONE",
)
#: The Content-Type of an object by the export's compression. A gzip object is a ``.jsonl.gz`` *file*:
#: it is stored as ``application/gzip`` without ``Content-Encoding: gzip``, which would make browsers and
#: HTTP libraries decompress it on download while its name still ends in ``.gz``.
CONTENT_TYPES: Mapping[str | None, str] = MappingProxyType({None: "application/x-ndjson", "gzip": "application/gzip"})

_SSE_C_ARGS = ("SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5")
# Sent with every request about the bucket's objects, where S3 asks for them on that request too.
_EVERY_REQUEST_ARGS = ("ExpectedBucketOwner", "RequestPayer")
_STRING_ARGS = (
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ContentType",
    "ExpectedBucketOwner",
    "GrantFullControl",
    "GrantRead",
    "GrantReadACP",
    "GrantWriteACP",
    "SSEKMSEncryptionContext",
    "SSEKMSKeyId",
    "WebsiteRedirectLocation",
)
#: The keys ``s3_extra_args`` may hold: the settings of an object that ``PutObject`` and
#: ``CreateMultipartUpload`` both take (per-object checksums, conditions and bodies are the export's own).
SUPPORTED_ARGS = frozenset(
    (
        "ACL",
        "BucketKeyEnabled",
        "Expires",
        "Metadata",
        "ObjectLockLegalHoldStatus",
        "ObjectLockMode",
        "ObjectLockRetainUntilDate",
        "RequestPayer",
        "ServerSideEncryption",
        "StorageClass",
        "Tagging",
        *_SSE_C_ARGS,
        *_STRING_ARGS,
    )
)
_ADVICE_ON_UNSUPPORTED = {
    "ChecksumAlgorithm": "botocore already sends a CRC32 checksum with every upload (set its checksum mode in the "
    "AWS connection's extra, config_kwargs.request_checksum_calculation)",
    "ContentMD5": "the export computes what it sends itself",
    "IfNoneMatch": "a rerun must overwrite the window's earlier objects",
    "IfMatch": "a rerun must overwrite the window's earlier objects",
}


class ObjectSettingsError(ValueError):
    """An unusable ``encrypt``, ``acl_policy`` or ``s3_extra_args``; the message says which and why."""


@dataclass(frozen=True)
class ObjectSettings:
    """
    The arguments of every S3 request that writes one of the export's objects.

    Build it with :meth:`build`, which checks every value. ``args`` holds what ``PutObject`` and
    ``CreateMultipartUpload`` take; the other properties are the parts of it that later requests about
    the same object must repeat.

    :param args: ``PutObject`` keyword arguments other than ``Bucket``, ``Key`` and ``Body``.
    """

    args: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        encrypt: bool = False,
        acl_policy: str | None = None,
        s3_extra_args: Mapping[str, Any] | None = None,
        compression: str | None = None,
        hook_extra_args: Mapping[str, Any] | None = None,
    ) -> ObjectSettings:
        """
        Check the operator's arguments and combine them with the S3 hook's own ``extra_args``.

        :param encrypt: SSE-S3 (``ServerSideEncryption="AES256"``), as the amazon provider's ``encrypt``.
        :param acl_policy: a canned ACL, as the amazon provider's ``acl_policy``.
        :param s3_extra_args: any other object settings, as ``PutObject`` names them.
        :param compression: the export's compression; it decides the default ``ContentType``.
        :param hook_extra_args: ``S3Hook.extra_args``: applied first, the operator's arguments over them.
        :raises ObjectSettingsError: naming the argument, the value and what would be accepted.
        """
        if not isinstance(encrypt, bool):
            raise ObjectSettingsError(f"encrypt must be True or False, got {encrypt!r}")
        if s3_extra_args is not None and not isinstance(s3_extra_args, Mapping):
            raise ObjectSettingsError(
                f"s3_extra_args must be a dict of PutObject arguments, e.g. {{'StorageClass': 'STANDARD_IA'}}, "
                f"got {s3_extra_args!r}"
            )
        args: dict[str, Any] = {"ContentType": CONTENT_TYPES.get(compression, CONTENT_TYPES[None])}
        for origin, given in (("the S3 hook's extra_args", hook_extra_args), ("s3_extra_args", s3_extra_args)):
            for name, value in (given or {}).items():
                _check_name(origin, name)
                args[name] = _checked_value(origin, name, value)
        requested = (s3_extra_args or {}).get("ServerSideEncryption")
        if encrypt:
            if requested not in (None, "AES256"):
                raise ObjectSettingsError(
                    f"encrypt=True asks for SSE-S3 (AES256), but s3_extra_args asks for ServerSideEncryption="
                    f"{requested!r}: drop encrypt=True to use {requested!r}, or drop ServerSideEncryption"
                )
            args["ServerSideEncryption"] = "AES256"
        if acl_policy is not None:
            acl_policy = _choice("acl_policy", acl_policy, CANNED_ACLS)
            listed = (s3_extra_args or {}).get("ACL")
            if listed is not None and listed != acl_policy:
                raise ObjectSettingsError(
                    f"acl_policy={acl_policy!r} and s3_extra_args ACL={listed!r} disagree: give the ACL once"
                )
            args["ACL"] = acl_policy
        _check_combinations(args, encrypt=encrypt, compression=compression)
        return cls(MappingProxyType(args))

    # --- the arguments of each request --------------------------------------------------------------

    @property
    def put_args(self) -> dict[str, Any]:
        """``PutObject`` (the single upload of a part smaller than a multipart part, or an empty window)."""
        return dict(self.args)

    @property
    def create_args(self) -> dict[str, Any]:
        """``CreateMultipartUpload``: the object's settings are given once, when the upload begins."""
        return dict(self.args)

    @property
    def part_args(self) -> dict[str, Any]:
        """``UploadPart``: S3 needs the SSE-C key with every part."""
        return self._only(*_SSE_C_ARGS, *_EVERY_REQUEST_ARGS)

    @property
    def complete_args(self) -> dict[str, Any]:
        """``CompleteMultipartUpload``."""
        return self._only(*_SSE_C_ARGS, *_EVERY_REQUEST_ARGS)

    @property
    def head_args(self) -> dict[str, Any]:
        """``HeadObject`` of the clean-up: an SSE-C object answers 400 to a HEAD without its key."""
        return self._only(*_SSE_C_ARGS, *_EVERY_REQUEST_ARGS)

    @property
    def request_args(self) -> dict[str, Any]:
        """``AbortMultipartUpload``, ``DeleteObject``, ``ListMultipartUploads``: the headers every request needs."""
        return self._only(*_EVERY_REQUEST_ARGS)

    # --- what the settings mean -----------------------------------------------------------------------

    @property
    def encryption(self) -> str | None:
        """``AES256``, ``aws:kms``, ``aws:kms:dsse``, ``SSE-C``, or None when the bucket's default applies."""
        if "SSECustomerAlgorithm" in self.args:
            return "SSE-C"
        value = self.args.get("ServerSideEncryption")
        return None if value is None else str(value)

    @property
    def etag_is_md5(self) -> bool:
        """
        Whether S3 gives the objects an ETag that can be computed from their content: the MD5 of the body
        (one PUT), or of the parts' MD5s (multipart). Not so under SSE-KMS and SSE-C.
        """
        return self.encryption not in ("aws:kms", "aws:kms:dsse", "SSE-C")

    @property
    def secrets(self) -> list[str]:
        """The SSE-C key as it may appear in a log line: as given, and base64-encoded as sent in the header."""
        key = self.args.get("SSECustomerKey")
        if key is None:
            return []
        raw = key.encode("utf-8") if isinstance(key, str) else key
        return [base64.b64encode(raw).decode("ascii"), *([key] if isinstance(key, str) else [])]

    def describe(self) -> str:
        """The settings that protected buckets ask for, in words, without any key material."""
        parts = []
        encryption = self.encryption
        if encryption is None:
            parts.append("no x-amz-server-side-encryption header (the bucket's default encryption applies)")
        elif encryption == "SSE-C":
            parts.append("SSE-C (a customer-provided key)")
        else:
            described = f"x-amz-server-side-encryption: {encryption}"
            if "SSEKMSKeyId" in self.args:
                described += f" with KMS key {self.args['SSEKMSKeyId']}"
            parts.append(described)
        if "ACL" in self.args:
            parts.append(f"x-amz-acl: {self.args['ACL']}")
        if "StorageClass" in self.args:
            parts.append(f"x-amz-storage-class: {self.args['StorageClass']}")
        return ", ".join(parts)

    def _only(self, *names: str) -> dict[str, Any]:
        return {name: self.args[name] for name in names if name in self.args}


def _check_name(origin: str, name: object) -> None:
    if not isinstance(name, str):
        raise ObjectSettingsError(f"{origin}: keys must be PutObject argument names, got {name!r}")
    if name in SUPPORTED_ARGS:
        return
    if name in _ADVICE_ON_UNSUPPORTED:
        raise ObjectSettingsError(f"{origin}: {name} is not taken: {_ADVICE_ON_UNSUPPORTED[name]}")
    by_case = {supported.lower(): supported for supported in SUPPORTED_ARGS}
    close = (
        [by_case[name.lower()]]
        if name.lower() in by_case
        else difflib.get_close_matches(name, sorted(SUPPORTED_ARGS), n=1)
    )
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ObjectSettingsError(
        f"{origin}: {name!r} is not an object setting the export can apply; {hint}supported: "
        + ", ".join(sorted(SUPPORTED_ARGS))
    )


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in allowed:
        return value
    close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.6) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ObjectSettingsError(f"{name} must be one of {', '.join(allowed)}; got {value!r}{hint}")


def _checked_value(origin: str, name: str, value: Any) -> Any:
    """The value as S3 takes it, or an error saying what is wrong with it."""
    where = f"{origin} {name}"
    if name == "ServerSideEncryption":
        return _choice(where, value, SSE_ALGORITHMS)
    if name == "ACL":
        return _choice(where, value, CANNED_ACLS)
    if name == "StorageClass":
        return _choice(where, value, STORAGE_CLASSES)
    if name == "ObjectLockMode":
        return _choice(where, value, ("GOVERNANCE", "COMPLIANCE"))
    if name == "ObjectLockLegalHoldStatus":
        return _choice(where, value, ("ON", "OFF"))
    if name == "RequestPayer":
        return _choice(where, value, ("requester",))
    if name == "SSECustomerAlgorithm":
        return _choice(where, value, ("AES256",))
    if name == "BucketKeyEnabled":
        if not isinstance(value, bool):
            raise ObjectSettingsError(f"{where} must be True or False, got {value!r}")
        return value
    if name in ("Expires", "ObjectLockRetainUntilDate"):
        if not isinstance(value, datetime | date | str):
            raise ObjectSettingsError(f"{where} must be a datetime or an ISO-8601 string, got {value!r}")
        return value
    if name == "Metadata":
        if not isinstance(value, Mapping) or not all(
            isinstance(key, str) and isinstance(item, str) for key, item in value.items()
        ):
            raise ObjectSettingsError(f"{where} must be a dict of strings to strings, got {value!r}")
        return dict(value)
    if name == "Tagging":
        # S3 takes tags as a URL query string; a dict is the readable way to write them.
        if isinstance(value, Mapping):
            if not all(isinstance(key, str) and isinstance(item, str) for key, item in value.items()):
                raise ObjectSettingsError(f"{where} must map strings to strings, got {value!r}")
            return urlencode(value)
        if not isinstance(value, str):
            raise ObjectSettingsError(f"{where} must be 'key1=value1&key2=value2' or a dict, got {value!r}")
        return value
    if name == "SSECustomerKey":
        raw = value.encode("utf-8") if isinstance(value, str) else value
        if not isinstance(raw, bytes) or len(raw) != 32:
            size = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(value).__name__
            raise ObjectSettingsError(
                f"{where} must be the raw 256-bit key, 32 bytes (botocore base64-encodes it and adds its MD5), "
                f"got {size}; decode a base64 key with base64.b64decode() first"
            )
        return value
    if not isinstance(value, str) or not value:
        raise ObjectSettingsError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _check_combinations(args: Mapping[str, Any], *, encrypt: bool, compression: str | None) -> None:
    algorithm = args.get("ServerSideEncryption")
    kms_only = [name for name in ("SSEKMSKeyId", "SSEKMSEncryptionContext", "BucketKeyEnabled") if name in args]
    if kms_only and algorithm not in _KMS_ALGORITHMS:
        given = (
            "encrypt=True (SSE-S3)"
            if encrypt
            else f"ServerSideEncryption={algorithm!r}"
            if algorithm
            else "no ServerSideEncryption"
        )
        raise ObjectSettingsError(
            f"s3_extra_args {', '.join(kms_only)} needs ServerSideEncryption='aws:kms' (or 'aws:kms:dsse'), "
            f"but the export has {given}: add ServerSideEncryption='aws:kms' to s3_extra_args"
        )
    sse_c = [name for name in _SSE_C_ARGS if name in args]
    if sse_c:
        if algorithm is not None:
            raise ObjectSettingsError(
                f"SSE-C ({', '.join(sse_c)}) and ServerSideEncryption={algorithm!r} exclude each other: an object is "
                "encrypted with a customer-provided key or by S3, not both"
            )
        missing = [name for name in ("SSECustomerAlgorithm", "SSECustomerKey") if name not in args]
        if missing:
            raise ObjectSettingsError(
                f"SSE-C needs both SSECustomerAlgorithm='AES256' and SSECustomerKey; s3_extra_args lacks "
                f"{' and '.join(missing)}"
            )
    if "ACL" in args and any(name.startswith("Grant") for name in args):
        raise ObjectSettingsError("a canned ACL and Grant* headers exclude each other: S3 takes one or the other")
    encoding = args.get("ContentEncoding")
    if encoding is not None and not (compression == "gzip" and encoding == "gzip"):
        raise ObjectSettingsError(
            f"ContentEncoding={encoding!r} would tell readers to decode the objects; only 'gzip', with "
            "compression='gzip', describes what the export writes (for serving the objects to browsers)"
        )
