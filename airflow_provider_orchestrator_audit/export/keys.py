"""Deterministic S3 keys for a window's objects: a rerun writes the same keys, so it overwrites."""

from __future__ import annotations

import re
from urllib.parse import quote

from airflow_provider_orchestrator_audit.paging.window import AuditWindow
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, Ticks, ticks_to_datetime

__all__ = ["DEFAULT_PREFIX", "default_key", "extension", "part_key", "part_pattern", "split_extension"]

DEFAULT_PREFIX = "orchestrator-audit"
_EXTENSIONS = (".jsonl.gz", ".jsonl")


def extension(compression: str | None) -> str:
    """The file extension of an object: ``.jsonl`` or ``.jsonl.gz``."""
    return ".jsonl.gz" if compression == "gzip" else ".jsonl"


def _stamp(ticks: Ticks) -> str:
    moment = ticks_to_datetime(ticks)
    fraction = ticks % TICKS_PER_SECOND
    return f"{moment:%Y%m%dT%H%M%S}" + (f".{fraction:07d}" if fraction else "") + "Z"


def default_key(
    organization: str,
    window: AuditWindow,
    compression: str | None,
    prefix: str = DEFAULT_PREFIX,
    *,
    source: str = "classic",
    tenant: str | None = None,
) -> str:
    """
    A Hive-style key derived from the organization, the source, the tenant and the window, e.g.
    ``orchestrator-audit/organization=acme/dt=2026-01-31/hour=13/20260131T130000Z_20260131T140000Z.jsonl``
    for the classic audit log, and for audit events
    ``.../organization=acme/source=tenant_events/tenant=DefaultTenant/dt=2026-01-31/hour=13/...jsonl``
    (``source=organization_events`` has no tenant part).

    Partitioned by the window's start, so hourly and daily windows land in ``dt=``/``hour=`` folders that
    Athena, Spark or Hive can prune; the file name carries both bounds, so windows never collide.
    """
    start = window.start_datetime
    parts = [f"organization={quote(organization, safe='')}"]
    if source != "classic":
        parts.append(f"source={quote(source, safe='')}")
        if tenant is not None:
            parts.append(f"tenant={quote(tenant, safe='')}")
    folder = "/".join(parts) + f"/dt={start:%Y-%m-%d}/hour={start:%H}"
    name = f"{_stamp(window.start)}_{_stamp(window.end)}{extension(compression)}"
    return "/".join(part.strip("/") for part in (prefix, folder, name) if part.strip("/"))


def split_extension(key: str) -> tuple[str, str]:
    """``("a/b", ".jsonl.gz")`` for ``"a/b.jsonl.gz"``; an unknown extension stays in the stem."""
    for ext in _EXTENSIONS:
        if key.endswith(ext) and len(key) > len(ext):
            return key[: -len(ext)], ext
    return key, ""


def part_key(key: str, index: int) -> str:
    """The key of part ``index`` when a window is split: ``name.part-00001.jsonl``."""
    stem, ext = split_extension(key)
    return f"{stem}.part-{index:05d}{ext}"


def part_pattern(key: str) -> re.Pattern[str]:
    """Matches ``key`` itself and every part key derived from it (to find a previous run's objects)."""
    stem, ext = split_extension(key)
    return re.compile(rf"^{re.escape(stem)}(?:\.part-\d{{5}})?{re.escape(ext)}$")
