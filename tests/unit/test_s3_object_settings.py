"""ObjectSettings: which arguments each S3 request of an export carries, and which values are refused."""

from __future__ import annotations

import botocore.session
import pytest

from airflow_provider_orchestrator_audit.export._s3_errors import refusal_advice
from airflow_provider_orchestrator_audit.export.s3_object_settings import (
    CANNED_ACLS,
    SSE_ALGORITHMS,
    STORAGE_CLASSES,
    SUPPORTED_ARGS,
    ObjectSettings,
    ObjectSettingsError,
)

CUSTOMER_KEY = bytes(range(32))
KMS = {
    "ServerSideEncryption": "aws:kms",
    "SSEKMSKeyId": "arn:aws:kms:eu-west-1:111122223333:key/k",
    "BucketKeyEnabled": True,
}


@pytest.fixture(scope="module")
def s3_model():
    return botocore.session.get_session().get_service_model("s3")


def test_every_supported_argument_is_taken_by_both_requests_that_begin_an_object(s3_model):
    for operation in ("PutObject", "CreateMultipartUpload"):
        assert SUPPORTED_ARGS <= set(s3_model.operation_model(operation).input_shape.members), operation


def test_the_allowed_values_are_s3s_own(s3_model):
    assert set(CANNED_ACLS) == set(s3_model.shape_for("ObjectCannedACL").enum)
    assert set(SSE_ALGORITHMS) <= set(s3_model.shape_for("ServerSideEncryption").enum)
    assert set(STORAGE_CLASSES) <= set(s3_model.shape_for("StorageClass").enum)


def test_each_request_gets_the_arguments_it_takes(s3_model):
    """UploadPart, CompleteMultipartUpload and HeadObject repeat only what S3 asks of them again (SSE-C, owner)."""
    settings = ObjectSettings.build(
        acl_policy="bucket-owner-full-control",
        s3_extra_args={
            "SSECustomerAlgorithm": "AES256",
            "SSECustomerKey": CUSTOMER_KEY,
            "StorageClass": "STANDARD_IA",
            "ExpectedBucketOwner": "111122223333",
            "Tagging": {"team": "security", "kind": "audit log"},
            "Metadata": {"source": "orchestrator"},
        },
    )
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": CUSTOMER_KEY, "ExpectedBucketOwner": "111122223333"}
    assert (
        settings.put_args
        == settings.create_args
        == {
            "ContentType": "application/x-ndjson",
            "ACL": "bucket-owner-full-control",
            "StorageClass": "STANDARD_IA",
            "Tagging": "team=security&kind=audit+log",
            "Metadata": {"source": "orchestrator"},
            **sse_c,
        }
    )
    assert settings.part_args == settings.complete_args == settings.head_args == sse_c
    assert settings.request_args == {"ExpectedBucketOwner": "111122223333"}
    for operation, args in (
        ("UploadPart", settings.part_args),
        ("CompleteMultipartUpload", settings.complete_args),
        ("HeadObject", settings.head_args),
        ("AbortMultipartUpload", settings.request_args),
        ("DeleteObject", settings.request_args),
        ("ListMultipartUploads", settings.request_args),
    ):
        assert set(args) <= set(s3_model.operation_model(operation).input_shape.members), operation
    assert settings.encryption == "SSE-C" and not settings.etag_is_md5


@pytest.mark.parametrize(
    ("kwargs", "encryption", "etag_is_md5", "described"),
    [
        ({}, None, True, "no x-amz-server-side-encryption header (the bucket's default encryption applies)"),
        ({"encrypt": True}, "AES256", True, "x-amz-server-side-encryption: AES256"),
        (
            {"s3_extra_args": {"ServerSideEncryption": "AES256"}, "encrypt": True},
            "AES256",
            True,
            "x-amz-server-side-encryption: AES256",
        ),
        (
            {"s3_extra_args": KMS, "acl_policy": "bucket-owner-full-control"},
            "aws:kms",
            False,
            (
                "x-amz-server-side-encryption: aws:kms with KMS key arn:aws:kms:eu-west-1:111122223333:key/k, "
                "x-amz-acl: bucket-owner-full-control"
            ),
        ),
        ({"s3_extra_args": {"ServerSideEncryption": "aws:kms:dsse"}}, "aws:kms:dsse", False, None),
    ],
    ids=["none", "sse-s3", "sse-s3-twice", "sse-kms", "dsse-kms"],
)
def test_encryption_and_whether_etags_can_be_computed(kwargs, encryption, etag_is_md5, described):
    settings = ObjectSettings.build(**kwargs)
    assert (settings.encryption, settings.etag_is_md5) == (encryption, etag_is_md5)
    if described is not None:
        assert settings.describe() == described


def test_content_type_follows_the_compression_and_can_be_overridden():
    assert ObjectSettings.build().args["ContentType"] == "application/x-ndjson"
    gzip = ObjectSettings.build(compression="gzip").args
    assert gzip["ContentType"] == "application/gzip" and "ContentEncoding" not in gzip
    served = ObjectSettings.build(
        compression="gzip", s3_extra_args={"ContentType": "application/x-ndjson", "ContentEncoding": "gzip"}
    ).args
    assert (served["ContentType"], served["ContentEncoding"]) == ("application/x-ndjson", "gzip")


def test_the_hooks_extra_args_apply_under_the_operators():
    settings = ObjectSettings.build(
        s3_extra_args={"StorageClass": "GLACIER_IR"},
        hook_extra_args={"StorageClass": "STANDARD_IA", "ServerSideEncryption": "AES256"},
    )
    assert settings.args["StorageClass"] == "GLACIER_IR"
    assert settings.args["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"s3_extra_args": {"ServerSideEncryption": "AES-256"}},
            (
                "s3_extra_args ServerSideEncryption must be one of AES256, aws:kms, aws:kms:dsse; got 'AES-256' "
                "(did you mean 'AES256'?)"
            ),
        ),
        (
            {"s3_extra_args": {"SSEKMSKeyId": "alias/audit"}},
            (
                "s3_extra_args SSEKMSKeyId needs ServerSideEncryption='aws:kms' (or 'aws:kms:dsse'), but the export has "
                "no ServerSideEncryption: add ServerSideEncryption='aws:kms' to s3_extra_args"
            ),
        ),
        (
            {"encrypt": True, "s3_extra_args": {"SSEKMSKeyId": "alias/audit"}},
            (
                "s3_extra_args SSEKMSKeyId needs ServerSideEncryption='aws:kms' (or 'aws:kms:dsse'), but the export has "
                "encrypt=True (SSE-S3)"
            ),
        ),
        (
            {"encrypt": True, "s3_extra_args": {"ServerSideEncryption": "aws:kms"}},
            "encrypt=True asks for SSE-S3 (AES256), but s3_extra_args asks for ServerSideEncryption='aws:kms'",
        ),
        ({"encrypt": "yes"}, "encrypt must be True or False, got 'yes'"),
        (
            {"acl_policy": "owner-full-control"},
            (
                "acl_policy must be one of private, public-read, public-read-write, authenticated-read, aws-exec-read, "
                "bucket-owner-read, bucket-owner-full-control; got 'owner-full-control' (did you mean "
                "'bucket-owner-full-control'?)"
            ),
        ),
        (
            {"acl_policy": "private", "s3_extra_args": {"ACL": "bucket-owner-full-control"}},
            "acl_policy='private' and s3_extra_args ACL='bucket-owner-full-control' disagree: give the ACL once",
        ),
        (
            {"acl_policy": "private", "s3_extra_args": {"GrantRead": "id=abc"}},
            "a canned ACL and Grant* headers exclude each other",
        ),
        (
            {"s3_extra_args": {"SSEKmsKeyId": "k"}},
            (
                "'SSEKmsKeyId' is not an object setting the export can apply; did "
                "you mean 'SSEKMSKeyId'? supported: ACL, BucketKeyEnabled"
            ),
        ),
        ({"s3_extra_args": {"storage_class": "STANDARD"}}, "'storage_class' is not an object setting"),
        ({"s3_extra_args": {"IfNoneMatch": "*"}}, "IfNoneMatch is not taken: a rerun must overwrite"),
        ({"s3_extra_args": {"ChecksumAlgorithm": "SHA256"}}, "ChecksumAlgorithm is not taken: botocore already"),
        ({"s3_extra_args": {"StorageClass": "COLD"}}, "s3_extra_args StorageClass must be one of STANDARD,"),
        (
            {
                "s3_extra_args": {
                    "BucketKeyEnabled": "true",
                    **{k: v for k, v in KMS.items() if k != "BucketKeyEnabled"},
                }
            },
            "s3_extra_args BucketKeyEnabled must be True or False, got 'true'",
        ),
        ({"s3_extra_args": {"Metadata": {"n": 1}}}, "s3_extra_args Metadata must be a dict of strings to strings"),
        ({"s3_extra_args": {"Tagging": ["a"]}}, "s3_extra_args Tagging must be 'key1=value1&key2=value2' or a dict"),
        ({"s3_extra_args": {"CacheControl": ""}}, "s3_extra_args CacheControl must be a non-empty string, got ''"),
        ({"s3_extra_args": "AES256"}, "s3_extra_args must be a dict of PutObject arguments"),
        (
            {
                "s3_extra_args": {
                    "SSECustomerAlgorithm": "AES256",
                    "SSECustomerKey": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                }
            },
            (
                "s3_extra_args SSECustomerKey must be the raw 256-bit key, 32 bytes (botocore base64-encodes it and adds "
                "its MD5), got 44 bytes; decode a base64 key with base64.b64decode() first"
            ),
        ),
        (
            {"s3_extra_args": {"SSECustomerKey": CUSTOMER_KEY}},
            (
                "SSE-C needs both SSECustomerAlgorithm='AES256' and "
                "SSECustomerKey; s3_extra_args lacks SSECustomerAlgorithm"
            ),
        ),
        (
            {"encrypt": True, "s3_extra_args": {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": CUSTOMER_KEY}},
            "SSE-C (SSECustomerAlgorithm, SSECustomerKey) and ServerSideEncryption='AES256' exclude each other",
        ),
        ({"s3_extra_args": {"ContentEncoding": "gzip"}}, "ContentEncoding='gzip' would tell readers to decode"),
    ],
)
def test_bad_values_are_refused_saying_what_to_give(kwargs, message):
    with pytest.raises(ObjectSettingsError) as refused:
        ObjectSettings.build(**kwargs)
    assert message in str(refused.value)
    assert CUSTOMER_KEY.hex() not in str(refused.value)


def test_a_refused_write_names_the_bucket_the_header_and_the_parameter():
    plain = refusal_advice("audit-logs", ObjectSettings.build())
    assert plain == (
        "S3 refused the write: bucket 'audit-logs' may require server-side encryption (a bucket policy that denies "
        "s3:PutObject without the x-amz-server-side-encryption header, which this export did not send). Set "
        "encrypt=True on the operator (SSE-S3), or s3_extra_args={'ServerSideEncryption': 'aws:kms', 'SSEKMSKeyId': "
        "'<key id or ARN>'} (SSE-KMS), as the bucket policy asks; if it requires an ACL (x-amz-acl), set acl_policy, "
        "e.g. 'bucket-owner-full-control'. Otherwise check that the connection may s3:PutObject into the bucket. "
        "Then rerun the task."
    )
    kms = refusal_advice("audit-logs", ObjectSettings.build(s3_extra_args=KMS, acl_policy="bucket-owner-full-control"))
    assert kms.startswith(
        "S3 refused the write with x-amz-server-side-encryption: aws:kms with KMS key "
        "arn:aws:kms:eu-west-1:111122223333:key/k, x-amz-acl: bucket-owner-full-control: bucket 'audit-logs' may "
        "require another encryption or KMS key"
    )
    assert "kms:GenerateDataKey, kms:Decrypt" in kms and "set acl_policy" not in kms
