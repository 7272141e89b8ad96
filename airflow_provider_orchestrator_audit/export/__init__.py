"""
The I/O side of an export: :mod:`.reader` drives the paging core over HTTP, :mod:`.spool` writes the
JSON lines to temporary files, :mod:`.s3_stream` and :mod:`.s3_publisher` put them in S3 under the
keys of :mod:`.keys`.
"""
