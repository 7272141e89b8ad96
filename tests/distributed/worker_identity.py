"""
``[core] hostname_callable`` of the test's Celery workers: the host name each worker was given.

Both workers run on one machine, where ``socket.getfqdn()`` would give them one name; each is started
with its own ``ORCHESTRATOR_AUDIT_WORKER_HOSTNAME``, so task instances say which worker ran them.
"""

from __future__ import annotations

import os
import socket

HOSTNAME_ENV = "ORCHESTRATOR_AUDIT_WORKER_HOSTNAME"


def hostname() -> str:
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()
