"""The bench's plumbing on tiny sizes: every workload under every variant ends up in the report.

No timing is asserted (the bench is its own target, `make bench`); this only checks that the
commands run, the traces are counted and the tables have the rows they should.
"""

from __future__ import annotations

import shutil

import pytest

from bench.suite import render, run
from bench.workloads import STRACE_K, VARIANTS, Sizes

TINY = Sizes(
    mmap_pairs=40,
    getpids=1_000,
    getpid_pairs=10,
    threads=4,
    thread_pairs=10,
    stress_threads=2,
    stress_ops=200,
    rss_pairs=100,
    k_mmap_pairs=20,
    k_getpids=500,
    k_thread_pairs=5,
)
KEYS = ("(a)", "(b)", "(c)", '(d) python3 -c "import json"', "(d) gcc", "(d) allocstress", "(e)")


def _table(report: str, heading: str) -> list[list[str]]:
    """The body rows of the first markdown table after ``heading``."""
    lines = report[report.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.skipif(
    shutil.which("strace") is None or shutil.which("taskset") is None,
    reason="the bench needs strace and taskset",
)
def test_quick_plumbing_produces_the_full_table() -> None:
    """One run at tiny sizes: 7 workloads x 5 variants, RSS, analysis and acceptance rows."""
    results = run(TINY, runs=1, progress=False, mode=" (test)", analyzed=("a", "d3"))
    report = render(results)

    main = _table(report, "## Recording overhead")
    assert len(main) == 7 * len(VARIANTS)
    titles = [row[0] for row in main if row[0]]
    assert len(titles) == 7
    for key, title in zip(KEYS, titles, strict=True):
        assert title.startswith(key)
    variants = [row[1] for row in main]
    for i in range(7):
        block = variants[i * len(VARIANTS) : (i + 1) * len(VARIANTS)]
        expected = [
            v if v != STRACE_K or i > 2 else "strace -k (1/2 size, scaled)" for v in VARIANTS
        ]
        assert block == expected
    # every workload's events were counted from its trace, and every cell has its ratios
    assert all(int(row[4].replace(",", "")) > 0 for row in main if row[0])
    assert all(row[5] and row[6] for row in main)
    # the sized fixtures (a)-(c) also ran at size 0 under every variant
    assert all(row[3] for row in main[: 3 * len(VARIANTS)])
    assert "per getpid" in report

    assert len(_table(report, "## Per-event cost")) == 4
    assert len(_table(report, "## Tracer peak RSS")) == 2
    rss = results.rss
    assert [r.events >= 2 * TINY.rss_pairs for r in rss] == [True, True]
    assert len(_table(report, "## Analysis time")) == 2
    acceptance = _table(report, "## Issue 7 acceptance")
    assert len(acceptance) == 10
    assert all(row[1] != "not measured" for row in acceptance)
