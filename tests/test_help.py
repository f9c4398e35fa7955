"""The help that teaches: every ``--help`` (snapshots), every example in them run for real,
``--version``, shell completion and ``python -m alloctrace``.

An example is an indented line of a help's ``Examples:`` section (``#`` lines are comments, a
trailing ``\\`` continues the line). Each help's examples run in order, in bash, in a temporary
directory where ``fixtures`` is the repository's and ``seed.jsonl`` (the seed fixture),
``glibc.jsonl`` and ``jemalloc.jsonl`` (seed under each allocator) are already recorded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from syrupy.assertion import SnapshotAssertion
from typer.testing import CliRunner

import alloctrace
from alloctrace.cli import app
from tests.helpers import ROOT

runner = CliRunner()
SUBCOMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
HELPS = [[], *([name] for name in SUBCOMMANDS)]
TRACES = ("seed.jsonl", "glibc.jsonl", "jemalloc.jsonl")


def help_text(args: list[str]) -> str:
    """``alloctrace ARGS --help`` as an 80-column terminal shows it."""
    result = runner.invoke(app, [*args, "--help"], prog_name="alloctrace", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


def examples(text: str) -> list[str]:
    """The commands of a help's ``Examples:`` section."""
    lines = text.splitlines()
    start = [i for i, line in enumerate(lines) if line.strip() == "Examples:"]
    assert len(start) == 1, "one Examples: section"
    out, pending = [], ""
    for line in lines[start[0] + 1 :]:
        if line and not line.startswith(" "):  # the next section: Arguments:, Options:...
            break
        command = line.strip()
        if not command or command.startswith("#"):
            continue
        if command.endswith("\\"):
            pending += command[:-1]
            continue
        out.append(pending + command)
        pending = ""
    assert not pending, "a continued line ends the examples"
    return out


def _ids(args: list[str]) -> str:
    return args[0] if args else "alloctrace"


@pytest.mark.parametrize("args", HELPS, ids=_ids)
def test_help_snapshot(args: list[str], snapshot: SnapshotAssertion) -> None:
    assert help_text(args) == snapshot


@pytest.mark.parametrize("args", HELPS, ids=_ids)
def test_help_has_a_purpose_and_examples(args: list[str]) -> None:
    """A one-line purpose (shown whole in the root's command list), then real examples."""
    lines = help_text(args).splitlines()
    assert lines[0].startswith("Usage: alloctrace")
    assert lines[1] == "" and lines[3] == "", "the purpose is one line"
    assert lines[2].strip().endswith(".")
    found = examples("\n".join(lines))
    assert 2 <= len(found) <= 4
    assert any(e.startswith("alloctrace ") for e in found)


def test_the_command_list_shows_whole_purposes() -> None:
    text = help_text([])
    listing = text[text.index("\nCommands:\n") :].splitlines()[2:]
    assert len(listing) == len(SUBCOMMANDS)
    for line in listing:
        assert not line.endswith("..."), line
        name = line.split()[0]
        purpose = help_text([name]).splitlines()[2].strip()
        assert line.split(None, 1)[1] == purpose


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = runner.invoke(app, [flag])
    assert result.exit_code == 0
    assert result.stdout == f"alloctrace {alloctrace.__version__}\n"


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alloctrace", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"alloctrace {alloctrace.__version__}\n"


def test_shell_completion() -> None:
    """typer's completion: the scripts, and the answers they ask alloctrace for."""
    shown = runner.invoke(app, ["--show-completion", "bash"], prog_name="alloctrace")
    assert shown.exit_code == 0
    assert "_ALLOCTRACE_COMPLETE=complete_bash" in shown.stdout
    for words, expected in (("alloctrace rep", "report"), ("alloctrace report --co", "--color")):
        env = {
            "_ALLOCTRACE_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        result = runner.invoke(app, [], prog_name="alloctrace", env=env)
        assert result.exit_code == 0
        assert result.stdout.split() == [expected]


# ---- every example, run --------------------------------------------------------------------


def _environment(bin_dir: Path) -> dict[str, str]:
    """PATH finds ``alloctrace`` (this interpreter's, via ``python -m``) and ``python3``."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "NO_COLOR")}
    path = [str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", os.defpath)]
    env["PATH"] = os.pathsep.join(path)
    return env


def _shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def _workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """The ``alloctrace`` command and the traces the examples read, made once."""
    base = tmp_path_factory.mktemp("examples")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    script = bin_dir / "alloctrace"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m alloctrace "$@"\n')
    script.chmod(0o755)
    env = _environment(bin_dir)
    traces = base / "traces"
    traces.mkdir()
    (traces / "fixtures").symlink_to(ROOT / "fixtures")
    for command in (
        "alloctrace record -o seed.jsonl -- fixtures/build/seed",
        "alloctrace diff --allocator glibc --allocator jemalloc -d . --report diff.txt "
        "-- fixtures/build/seed",
    ):
        done = _shell(command, traces, env)
        assert done.returncode == 0, done.stderr
    yield traces, env


@pytest.mark.parametrize("args", HELPS, ids=_ids)
def test_every_example_runs(
    args: list[str], tmp_path: Path, _workspace: tuple[Path, dict[str, str]]
) -> None:
    traces, env = _workspace
    found = examples(help_text(args))
    if any(e.startswith("strace ") for e in found) and shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    (tmp_path / "fixtures").symlink_to(ROOT / "fixtures")
    for name in TRACES:
        shutil.copy(traces / name, tmp_path / name)
    for example in found:
        done = _shell(example, tmp_path, env)
        assert done.returncode == 0, f"{example}\n{done.stdout}\n{done.stderr}"
