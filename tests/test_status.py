"""The live status line: on a terminal only, never in the program's own output."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.helpers import ROOT

_PROGRAM = ["/bin/sh", "-c", "echo hello; sleep 1; echo bye"]


def _run(tmp_path: Path, *options: str, tty: bool) -> tuple[bytes, bytes, int]:
    """alloctrace on ``_PROGRAM`` with stderr on a 24x80 pty (or a pipe); stdout to a pipe."""
    argv = [sys.executable, "-m", "alloctrace", "record", *options, "-o", str(tmp_path / "t")]
    if not tty:
        done = subprocess.run(
            [*argv, "--", *_PROGRAM], capture_output=True, cwd=ROOT, timeout=60, check=False
        )
        return done.stdout, done.stderr, done.returncode
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [*argv, "--", *_PROGRAM], stdout=subprocess.PIPE, stderr=slave, cwd=ROOT
    )
    os.close(slave)
    terminal = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the last writer closed the pty
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    return out, terminal, proc.wait(timeout=60)


def test_status_line_on_a_terminal_and_not_in_the_programs_output(tmp_path: Path) -> None:
    out_tty, terminal, code = _run(tmp_path, tty=True)
    out_pipe, err_pipe, code_pipe = _run(tmp_path, tty=False)
    assert code == code_pipe == 0
    assert out_tty == out_pipe == b"hello\nbye\n", "the program's stdout is untouched"
    assert b"events" in terminal and b"\x1b[1;23r" in terminal, "status on the reserved row"
    assert terminal.rstrip().endswith(b"trace written to " + str(tmp_path / "t").encode())
    assert b"\x1b[r" in terminal, "the scroll region is given back"
    assert b"events" not in err_pipe and b"\x1b" not in err_pipe


def test_quiet_turns_it_off(tmp_path: Path) -> None:
    _, terminal, code = _run(tmp_path, "--quiet", tty=True)
    assert code == 0
    assert b"events" not in terminal and b"\x1b[" not in terminal
