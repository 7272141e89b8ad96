"""A local Orchestrator, a local S3 and the Airflow connections to both, for demos, tests and benchmarks."""

from __future__ import annotations

import json
import os
from types import TracebackType
from typing import Any, Self

from airflow_provider_orchestrator_audit.testing.dataset import AuditDataset
from airflow_provider_orchestrator_audit.testing.server import LocalOrchestratorServer
from tests.support.s3 import LocalS3Server

__all__ = ["LocalStack"]


class LocalStack:
    """
    Starts :class:`LocalOrchestratorServer` and :class:`LocalS3Server`, creates the bucket, and defines
    the connections ``orchestrator_audit_default`` and ``aws_default`` and the variable
    ``orchestrator_audit_bucket`` as ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` environment variables, the
    way containers usually receive them. :meth:`stop` restores the environment.

    :param dataset: the audit entries to serve.
    :param bucket: the bucket to create.
    :param orchestrator_options: keyword arguments of :class:`LocalOrchestratorServer`.
    """

    def __init__(
        self, dataset: AuditDataset | None = None, *, bucket: str = "audit-logs", **orchestrator_options: Any
    ) -> None:
        self.orchestrator = LocalOrchestratorServer(dataset, **orchestrator_options)
        self.s3 = LocalS3Server()
        self.bucket = bucket
        self._saved_env: dict[str, str | None] = {}

    def start(self) -> Self:
        """Start both servers and publish the connections."""
        self.orchestrator.start()
        try:
            self.s3.start()
            self.s3.create_bucket(self.bucket)
        except BaseException:
            self.orchestrator.stop()
            raise
        self._set_env(
            {
                "AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT": json.dumps(self.orchestrator.airflow_connection()),
                "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(self.s3.airflow_connection()),
                "AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET": self.bucket,
            }
        )
        return self

    def stop(self) -> None:
        """Stop both servers and restore the environment."""
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        try:
            self.s3.stop()
        finally:
            self.orchestrator.stop()

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
