"""Colour: text reports and diffs colour their categories (the plots' palette) on a terminal,
never when piped, with ``--color never`` or ``NO_COLOR``; markdown and JSON never.

The pseudo-terminal tests run ``alloctrace`` with its stdout and stderr on a pty (in raw mode, so
the bytes read are the bytes written) and check the traced program's output is untouched.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import tty
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alloctrace.cli import app
from alloctrace.commands import ColorMode, use_color
from alloctrace.palette import CATEGORY_COLORS, ansi
from tests.helpers import ROOT

SEED_TRACE = "tests/data/traces/report-seed-glibc.jsonl"
JEMALLOC_TRACE = "tests/data/traces/report-seed-jemalloc-preload.jsonl"
ESCAPE = "\x1b["
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
# What a category's colour starts with (whatever else a terminal may be sent, e.g. a status line).
CATEGORY_STARTS = [ansi(c, "").removesuffix("\x1b[0m").encode() for c in [*CATEGORY_COLORS, "?"]]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def _plain(text: str) -> str:
    return _ESCAPES.sub("", text)


# ---- the decision --------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("mode", "no_color", "term", "tty_stream", "expected"),
    [
        ("auto", None, "xterm", True, True),
        ("auto", None, "xterm", False, False),
        ("auto", "1", "xterm", True, False),
        ("auto", "", "xterm", True, True),  # NO_COLOR set but empty: ignored
        ("auto", None, "dumb", True, False),
        ("always", "1", "dumb", False, True),  # the command line overrides NO_COLOR
        ("never", None, "xterm", True, False),
        ("ALWAYS", None, "xterm", False, True),
    ],
)
def test_when_to_colour(
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    no_color: str | None,
    term: str,
    tty_stream: bool,
    expected: bool,
) -> None:
    if no_color is not None:
        monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.setenv("TERM", term)
    stream = _Terminal() if tty_stream else io.StringIO()
    assert use_color(mode.lower(), stream) is expected
    assert use_color(ColorMode(mode.lower()), None) is (mode.lower() == "always")


# ---- the commands, in-process (never a terminal) ------------------------------------------


def test_report_color_always_colours_the_categories() -> None:
    result = runner.invoke(app, ["report", "--color", "always", SEED_TRACE])
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert ansi("loader", "loader") in text  # the phase table's category column
    assert ansi("allocator", "allocator") in text
    assert ansi("loader", "The loader, per object") in text  # a section about one category
    plain = runner.invoke(app, ["report", SEED_TRACE]).stdout
    assert _plain(text) == plain  # colour changes nothing else
    assert ESCAPE not in plain


def test_diff_color_always_colours_the_categories() -> None:
    result = runner.invoke(app, ["diff", "--color", "always", SEED_TRACE, JEMALLOC_TRACE])
    assert result.exit_code == 0, result.stderr
    assert ansi("allocator", "allocator") in result.stdout  # where the mmaps come from
    assert ansi("user", "own") in result.stdout
    plain = runner.invoke(app, ["diff", SEED_TRACE, JEMALLOC_TRACE]).stdout
    assert _plain(result.stdout) == plain
    assert ESCAPE not in plain


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--color", "never"], {}),
        ([], {"NO_COLOR": "1"}),
        ([], {}),  # auto, and the output is not a terminal
        (["--color", "always", "--format", "markdown"], {}),
        (["--color", "always", "--format", "json"], {}),
    ],
)
def test_no_colour(args: list[str], env: dict[str, str]) -> None:
    for command in (["report", *args, SEED_TRACE], ["diff", *args, SEED_TRACE, JEMALLOC_TRACE]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 0, result.stderr
        assert result.stdout and ESCAPE not in result.stdout


def test_report_file_is_plain_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "r.txt"
    assert runner.invoke(app, ["report", "--report", str(out), SEED_TRACE]).exit_code == 0
    assert ESCAPE not in out.read_text()
    args = ["report", "--color", "always", "--report", str(out), SEED_TRACE]
    assert runner.invoke(app, args).exit_code == 0
    assert ansi("loader", "loader") in out.read_text()


# ---- a real terminal -----------------------------------------------------------------------


def _run(
    args: Sequence[str], ttys: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, dict[int, bytes]]:
    """Run ``python -m alloctrace ARGS`` with stdout and stderr on ``ttys``: "one" pty (as in a
    terminal), "two" ptys or "no" pty (pipes); what each fd received (with one pty, all of it
    under 1). The ptys are raw (no newline translation): the bytes read are those written."""
    parents: dict[int, int] = {}
    children: dict[int, int] = {}
    for fd in (1, 2):
        if ttys == "one" and fd == 2:
            children[2] = os.dup(children[1])
            continue
        if ttys == "no":
            parent, child = os.pipe()
        else:
            parent, child = pty.openpty()
            tty.setraw(child)
        parents[fd], children[fd] = parent, child
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "alloctrace", *args],
            stdin=subprocess.DEVNULL,
            stdout=children[1],
            stderr=children[2],
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
    finally:
        for child in children.values():
            os.close(child)
    received = dict.fromkeys((1, 2), b"")
    open_fds = {parent: fd for fd, parent in parents.items()}
    try:
        while open_fds:
            ready, _, _ = select.select(list(open_fds), [], [], 60)
            assert ready, "alloctrace wrote nothing for 60 s"
            for parent in ready:
                try:
                    chunk = os.read(parent, 65536)
                except OSError:  # EIO: a pty whose other end is closed
                    chunk = b""
                if chunk:
                    received[open_fds[parent]] += chunk
                else:
                    del open_fds[parent]
        code = process.wait(timeout=60)
    finally:
        for parent in parents.values():
            os.close(parent)
    return code, received


HELLO = ["-o", "t.jsonl", "--", "/bin/echo", "hello"]


@pytest.mark.parametrize(
    ("args", "env", "colored"),
    [
        ([], {}, True),
        (["--color", "never"], {}, False),
        ([], {"NO_COLOR": "1"}, False),
    ],
)
def test_a_terminal_gets_colour(
    tmp_path: Path, args: list[str], env: dict[str, str], colored: bool
) -> None:
    """stdout and stderr on one pty, as in a terminal: the report (stderr) is coloured."""
    code, received = _run([*args, *HELLO], ttys="one", cwd=tmp_path, env=env)
    assert code == 0
    output = received[1]
    assert b"hello\n" in output
    assert b"alloctrace report: /bin/echo" in output
    assert (ansi("loader", "loader").encode() in output) is colored
    assert any(start in output for start in CATEGORY_STARTS) is colored


def test_a_pipe_gets_none_and_the_program_output_is_untouched(tmp_path: Path) -> None:
    """The program's stdout is byte-identical on a terminal and on a pipe; only alloctrace's
    own output (stderr) changes, by colour alone."""
    code, on_ttys = _run(HELLO, ttys="two", cwd=tmp_path)
    assert code == 0
    code, on_pipes = _run(HELLO, ttys="no", cwd=tmp_path)
    assert code == 0
    assert on_ttys[1] == on_pipes[1] == b"hello\n"
    assert ansi("loader", "loader").encode() in on_ttys[2]
    assert ESCAPE.encode() not in on_pipes[2]

    def words(stderr: bytes) -> list[str]:
        """The report's words, figures masked (times and resident sizes vary between runs)."""
        text = _plain(stderr.decode())
        return [
            re.sub(r"[0-9.]+", "N", w) for w in text[text.index("alloctrace report: ") :].split()
        ]

    assert words(on_ttys[2]) == words(on_pipes[2])
