"""
CPU time to turn response bodies into entries ready to be written: 20 pages of 1,000 entries of the
local Orchestrator's data set (unicode names, escaped auditLogDetails, 7-digit createdOn), three ways:

- ``parse_page`` (msgspec spans and createdOn, the server's own text of each entry kept);
- the json scanner it falls back to (``json.JSONDecoder.raw_decode`` per entry, the text kept too),
  which was the parser before;
- the naive way: ``json.loads`` of the page, ``parse_timestamp`` and ``json.dumps`` of each entry.

Each page's lines are also written out as the export writes them (UTF-8 bytes, one line per entry; the
naive way joins its ``json.dumps`` texts and encodes them). Medians of ``--repeat`` rounds.

    .venv/bin/python benchmarks/parse_pages.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import time

from harness import median

from airflow_provider_orchestrator_audit.client import page_parser
from airflow_provider_orchestrator_audit.models import AuditLogPage
from airflow_provider_orchestrator_audit.testing.dataset import AuditDataset
from airflow_provider_orchestrator_audit.timestamps import parse_timestamp

PAGES, PAGE_SIZE = 20, 1000


def naive(body: bytes) -> list[str]:
    lines = []
    for entry in json.loads(body)["results"]:
        parse_timestamp(entry["createdOn"])
        lines.append(json.dumps(entry, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def lines_of(page: AuditLogPage) -> bytes:
    """The page's lines as the export's spool writes them."""
    return b"\n".join([entry.to_json_bytes() for entry in page.results]) + b"\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    dataset = AuditDataset(size=PAGES * PAGE_SIZE * 2)
    bodies = [
        b'{"totalCount":%d,"results":[' % (PAGES * PAGE_SIZE * 2)
        + b",".join(dataset.entry_json(index) for index, _ in dataset.page_items(page * PAGE_SIZE, PAGE_SIZE))
        + b"]}"
        for page in range(PAGES)
    ]
    ways = {
        "parse_page": lambda body: lines_of(page_parser.parse_page(body)),
        "json_scanner": lambda body: lines_of(page_parser._scan_page(body)),
        "naive": naive,
    }
    assert ways["parse_page"](bodies[0]) == ways["json_scanner"](bodies[0])
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeat):
        for name, way in ways.items():
            started = time.process_time()
            for body in bodies:
                way(body)
            seconds[name].append(time.process_time() - started)
    ms = {name: round(median(runs) * 1000, 1) for name, runs in seconds.items()}
    print(
        json.dumps(
            {
                "pages": f"{PAGES} x {PAGE_SIZE} entries, {sum(map(len, bodies)) / 1e6:.1f} MB",
                "cpu_ms_median": ms,
                "scanner_over_parse_page": round(ms["json_scanner"] / ms["parse_page"], 1),
                "naive_over_parse_page": round(ms["naive"] / ms["parse_page"], 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
