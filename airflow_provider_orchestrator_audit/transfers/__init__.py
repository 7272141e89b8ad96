"""Transfer operators: :class:`~.audit_logs_to_s3.AuditLogsToS3Operator`."""
