"""Diffs: variants side by side, where the difference comes from, and the same counts as strace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from alloctrace.commands.diff import _labels
from alloctrace.reporters import Format, reporter
from analyzers.analysis import analyze
from analyzers.diff import Diff, diff, timing
from analyzers.summarize import summarize
from tests.helpers import ROOT, fixture, preload_env
from tests.test_report import _strace_calls, after_the_loader, loader_mmaps_by_object, validate
from tracer.traceformat import read_trace

JEMALLOC_NEEDS = ("libstdc++.so.6", "libm.so.6", "libgcc_s.so.1")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def committed_diff(*names: str) -> Diff:
    variants = [
        (
            name.removeprefix("report-"),
            summarize(analyze(read_trace(f"tests/data/traces/{name}.jsonl"))),
        )
        for name in names
    ]
    return diff(variants)


SEED = ("report-seed-glibc", "report-seed-jemalloc-preload")
THREADS = ("report-threads8-glibc", "report-threads8-jemalloc", "report-threads8-mimalloc")


@pytest.mark.parametrize("fmt", [Format.TEXT, Format.MARKDOWN])
def test_seed_diff_snapshot(fmt: Format, snapshot: SnapshotAssertion) -> None:
    assert reporter(fmt).render_diff(committed_diff(*SEED)) == snapshot


def test_threads_diff_snapshot(snapshot: SnapshotAssertion) -> None:
    assert reporter(Format.TEXT).render_diff(committed_diff(*THREADS)) == snapshot


@pytest.mark.parametrize("names", [SEED, THREADS])
def test_json_diff_validates_against_its_schema(names: tuple[str, ...]) -> None:
    data = json.loads(reporter(Format.JSON).render_diff(committed_diff(*names)))
    validate(data)


def test_seed_diff_names_the_extra_objects_and_who_needed_them() -> None:
    d = committed_diff(*SEED)
    extra = {c.name: c for c in d.objects if c.change == "extra"}
    assert set(extra) == {"libjemalloc.so.2", *JEMALLOC_NEEDS}
    assert extra["libjemalloc.so.2"].how == "LD_PRELOAD"
    for name in JEMALLOC_NEEDS:
        assert extra[name].needed_by == "libjemalloc.so.2"
    [mmaps] = [s for s in d.sources if s.label == "seed-jemalloc-preload" and s.kind == "mmap"]
    assert mmaps.delta["total"] == 25
    assert mmaps.delta["objects"] == sum(c.mmaps for c in extra.values()) == 18
    assert mmaps.delta["allocator"] == 5
    assert sum(v for k, v in mmaps.delta.items() if k != "total") == mmaps.delta["total"]
    text = " ".join(d.sentences)
    assert "+18 from the loader mapping 4 extra objects" in text
    for name in JEMALLOC_NEEDS:
        assert f"{name} ({extra[name].mmaps} mmaps, needed by libjemalloc.so.2)" in text


def test_threads_diff_shows_arenas_per_thread() -> None:
    d = committed_diff(*THREADS)
    arenas = {v.label: v for v in d.arenas}
    assert all(v.threads == 8 for v in arenas.values())
    [heaps] = arenas["threads8-glibc"].arenas
    assert heaps.kind == "glibc arena heap" and heaps.by_main == 0 and heaps.threads >= 1
    segments = next(a for a in arenas["threads8-mimalloc"].arenas if a.kind.endswith("segment"))
    assert segments.count - segments.by_main == segments.threads - 1 == 8
    assert any(a.count > a.by_main for a in arenas["threads8-jemalloc"].arenas)
    assert any(s.startswith("Arenas per thread: threads8-glibc created 8") for s in d.sentences)


def test_metrics_and_deltas() -> None:
    d = committed_diff(*SEED)
    rows = {(m.group, m.metric): m for m in d.metrics}
    assert rows["calls", "mmap"].values == [8, 33]
    assert rows["calls", "mmap"].deltas == [0, 25]
    assert rows["loader", "objects mapped"].deltas == [0, 4]
    assert rows["allocator", "calls before main"].values == [0, 10]
    assert ("untraced", "wall time (median)") not in rows


def test_timing_statistics() -> None:
    t = timing([5, 1, 3], [30, 10, 20], [0, 0, 0])
    assert (t.wall_median, t.wall_min, t.wall_max) == (3, 1, 5)
    assert (t.rss_median, t.rss_min, t.rss_max) == (20, 10, 30)
    with pytest.raises(ValueError, match="at least one"):
        timing([], [], [])
    with pytest.raises(ValueError, match="two or more"):
        diff([("a", summarize(analyze(read_trace("tests/data/traces/v1-seed.jsonl"))))])


def test_labels_are_unique() -> None:
    assert _labels(["glibc", "jemalloc", "glibc"]) == ["glibc", "jemalloc", "glibc#2"]


# ---- live runs -----------------------------------------------------------------------------


def _alloctrace(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run(
        [sys.executable, "-m", "alloctrace", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def _json_after(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(text[text.index("\n{") + 1 :])
    return loaded


def test_seed_diff_under_glibc_and_jemalloc_equals_strace(tmp_path: Path) -> None:
    """The acceptance: extra objects, their mmap counts and who needed them; jemalloc's own
    start-up calls with sizes and roles; every count equal to `strace -f` on the same binary
    and environment."""
    seed = fixture("seed")
    proc = _alloctrace(
        "diff", "--allocator", "glibc", "--allocator", "jemalloc", "--format", "json",
        "-d", str(tmp_path / "traces"), "--", seed,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = _json_after(proc.stderr)["diff"]
    validate({"format": "alloctrace-diff", "version": 1, "diff": result})
    strace_runs = {
        "glibc": _strace_calls(tmp_path, [seed], preload_env(None)),
        "jemalloc": _strace_calls(tmp_path, [seed], preload_env("jemalloc")),
    }
    for i, label in enumerate(["glibc", "jemalloc"]):
        counts = Counter(c.syscall for c in strace_runs[label])
        for row in result["metrics"]:
            if row["group"] == "calls" and row["metric"] != "total":
                assert row["values"][i] == counts[row["metric"]], (label, row["metric"])
        total = next(r for r in result["metrics"] if r["metric"] == "total")
        assert total["values"][i] == sum(counts.values())
    by_object = loader_mmaps_by_object(strace_runs["jemalloc"])
    extra = {c["name"]: c for c in result["objects"] if c["change"] == "extra"}
    assert set(extra) == {"libjemalloc.so.2", *JEMALLOC_NEEDS}
    for name, change in extra.items():
        [path] = [p for p in by_object if p.startswith(name)]
        assert change["mmaps"] == by_object[path], name
        if name != "libjemalloc.so.2":
            assert change["needed_by"] == "libjemalloc.so.2"
    [jemalloc_calls] = [v for v in result["startup_calls"] if v["label"] == "jemalloc"]
    ours = [(c["syscall"], c["size"], c["role"]) for c in jemalloc_calls["calls"]]
    theirs = after_the_loader(strace_runs["jemalloc"])
    assert [(s, n if s != "brk" else None) for s, n, _ in ours] == [
        (c.syscall, c.length if c.syscall != "brk" else None) for c in theirs
    ]
    assert all(role and role != "jemalloc" for _, _, role in ours)
    glibc_calls = after_the_loader(strace_runs["glibc"])
    allocator = next(r for r in result["metrics"] if r["metric"] == "calls" and
                     r["group"] == "allocator")  # fmt: skip
    assert allocator["values"][0] == len(glibc_calls)
    # The same traces, diffed as files, in text: the sentences a reader sees.
    traces = tmp_path / "traces"
    text = _alloctrace("diff", str(traces / "glibc.jsonl"), str(traces / "jemalloc.jsonl"))
    assert text.returncode == 0, text.stderr
    for name in JEMALLOC_NEEDS:
        mmaps = extra[name]["mmaps"]
        assert f"{name} ({mmaps} mmaps, needed by libjemalloc.so.2)" in text.stdout.replace(
            "\n  ", " "
        )
    assert "jemalloc made 10 calls of its own before main" in text.stdout.replace("\n  ", " ")


def test_threads8_under_three_allocators_shows_arenas_per_thread(tmp_path: Path) -> None:
    proc = _alloctrace(
        "diff", "--allocator", "glibc", "--allocator", "jemalloc", "--allocator", "mimalloc",
        "--format", "json", "-d", str(tmp_path), "--", fixture("threads"), "8",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = _json_after(proc.stderr)["diff"]
    arenas = {v["label"]: v for v in result["arenas"]}
    assert [v["threads"] for v in arenas.values()] == [8, 8, 8]
    kinds = {label: {a["kind"]: a for a in v["arenas"]} for label, v in arenas.items()}
    heaps = kinds["glibc"]["glibc arena heap"]
    assert heaps["by_main"] == 0 and 1 <= heaps["threads"] <= 8
    segments = kinds["mimalloc"]["mimalloc segment"]
    assert segments["count"] - segments["by_main"] == 8
    assert any(a["count"] > a["by_main"] for a in kinds["jemalloc"].values())
    assert any(s.startswith("Arenas per thread:") for s in result["sentences"])


def test_repeat_measures_untraced_runs(tmp_path: Path) -> None:
    proc = _alloctrace(
        "diff", "--allocator", "glibc", "--allocator", "jemalloc", "--repeat", "2",
        "--format", "json", "--report", str(tmp_path / "d.json"), "-d", str(tmp_path),
        "--", fixture("seed"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "d.json").read_text())["diff"]
    for variant in result["variants"]:
        t = variant["timing"]
        assert t["runs"] == 2 and t["exit_codes"] == [0, 0]
        assert all(w > 0 for w in t["wall_ns"])
        # ru_maxrss of the program, not of alloctrace (tens of MiB) that launched it
        assert all(0 < rss < 16 << 20 for rss in t["peak_rss"]), t["peak_rss"]
    metrics = {(m["group"], m["metric"]) for m in result["metrics"]}
    assert ("untraced", "peak RSS (median)") in metrics
