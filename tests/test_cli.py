"""The command line in-process (typer's CliRunner): every subcommand and the default one.

Bad arguments give one ``alloctrace: ...`` line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alloctrace.cli import app
from tests.helpers import ROOT, fixture

SEED_TRACE = "tests/data/traces/report-seed-glibc.jsonl"
JEMALLOC_TRACE = "tests/data/traces/report-seed-jemalloc-preload.jsonl"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("LD_PRELOAD", raising=False)


def test_run_is_the_default_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`alloctrace PROG`: the trace is kept (default path, printed), the report goes to stderr."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [fixture("seed")])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "alloctrace.jsonl").exists()
    assert "alloctrace: trace written to alloctrace.jsonl" in result.stderr
    assert "alloctrace report: " in result.stderr
    assert "glibc made 2 calls" in result.stderr
    assert result.stdout == ""


def test_run_options_before_the_program(tmp_path: Path) -> None:
    out, report = tmp_path / "t.jsonl", tmp_path / "r.md"
    args = ["-o", str(out), "--format", "markdown", "--report", str(report), "--"]
    result = runner.invoke(app, [*args, fixture("exitcode"), "3"])
    assert result.exit_code == 3, result.stderr  # the program's status
    assert out.exists()
    assert report.read_text().startswith("# alloctrace report: ")
    assert "# alloctrace report" not in result.stderr


def test_run_with_an_allocator(tmp_path: Path) -> None:
    out, report = tmp_path / "t.jsonl", tmp_path / "r.json"
    args = ["run", "--allocator", "jemalloc", "-o", str(out), "--format", "json"]
    result = runner.invoke(app, [*args, "--report", str(report), fixture("seed")])
    assert result.exit_code == 0, result.stderr
    data = json.loads(report.read_text())["report"]
    assert data["header"]["env"]["LD_PRELOAD"].endswith("libjemalloc.so.2")
    assert [a["name"] for a in data["header"]["allocators"]] == ["jemalloc"]


def test_a_program_named_like_a_subcommand_runs_after_double_dash() -> None:
    result = runner.invoke(app, ["--", "record"])
    assert result.exit_code == 2
    assert result.stderr == "alloctrace: record: command not found (searched PATH)\n"


def test_record(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["record", "-o", str(out), "--", fixture("seed")])
    assert result.exit_code == 0, result.stderr
    assert out.exists()
    assert "alloctrace report" not in result.stderr  # record only records


@pytest.mark.parametrize(
    ("fmt", "start"),
    [("text", "alloctrace report: "), ("markdown", "# alloctrace report: "), ("json", "{")],
)
def test_report(fmt: str, start: str) -> None:
    result = runner.invoke(app, ["report", "--format", fmt, SEED_TRACE])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(start)


def test_report_to_a_file_and_stacks(tmp_path: Path) -> None:
    out = tmp_path / "r.txt"
    result = runner.invoke(app, ["report", "--report", str(out), SEED_TRACE])
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_text().startswith("alloctrace report: ")
    stacks = runner.invoke(app, ["report", "--stacks", SEED_TRACE])
    assert stacks.exit_code == 0
    assert " > libc.so.6(" in stacks.stdout


def test_diff_of_two_traces() -> None:
    result = runner.invoke(app, ["diff", SEED_TRACE, JEMALLOC_TRACE])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "alloctrace diff: report-seed-glibc vs report-seed-jemalloc-preload"
    )
    assert "libstdc++.so.6" in result.stdout


def test_diff_of_allocators(tmp_path: Path) -> None:
    args = ["diff", "--allocator", "glibc", "--allocator", "mimalloc", "-d", str(tmp_path)]
    result = runner.invoke(app, [*args, "--", fixture("seed")])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glibc.jsonl", "mimalloc.jsonl"]
    assert "alloctrace diff: glibc vs mimalloc" in result.stderr
    assert "libmimalloc.so.2" in result.stderr


def test_allocators() -> None:
    result = runner.invoke(app, ["allocators"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "library", "version"]
    assert lines[2].startswith("glibc ")
    assert any(line.startswith("jemalloc ") and "libjemalloc.so.2" in line for line in lines)


def test_allocator_by_path(tmp_path: Path) -> None:
    trace = str(tmp_path / "t.jsonl")  # not /dev/null: a trace is written, then read back
    args = ["--allocator", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2", "-o", trace]
    report = tmp_path / "r.json"
    result = runner.invoke(
        app, [*args, "--format", "json", "--report", str(report), fixture("seed")]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(report.read_text())["report"]["header"]["allocators"][0]["name"] == (
        "mimalloc"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["report", "--format", "xml", SEED_TRACE],
        ["report"],
        ["report", "no-such-trace.jsonl"],
        ["report", "README.md"],
        ["diff", SEED_TRACE],
        ["diff", "--allocator", "glibc", "--", "prog"],
        ["diff", "--allocator", "glibc", "--allocator", "nope", "--", "prog"],
        ["diff", "--repeat", "2", SEED_TRACE, JEMALLOC_TRACE],
        ["diff", "--repeat", "-1", "--allocator", "glibc", "--allocator", "glibc", "--", "x"],
        ["--allocator", "/etc/passwd", "--", "true"],
        ["--bogus"],
        ["allocators", "extra"],
        ["run", "--", "/no/such/program"],
        ["record", "-o", "/no/such/dir/t.jsonl", "--", "true"],
    ],
)
def test_bad_arguments_are_one_line(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert result.stderr.startswith("alloctrace: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
