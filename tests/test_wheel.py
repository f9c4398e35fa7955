"""Packaging: the built wheel installs into a fresh virtual environment and traces a fixture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, fixture


@pytest.mark.slow
def test_wheel_installs_and_traces_outside_the_repository(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("alloctrace-*.whl")
    # The fresh environment must not see the source tree (PYTHONPATH, or the egg-info the build
    # leaves beside it, would make pip skip the install as "already satisfied").
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr
    trace = tmp_path / "seed.jsonl"
    run = subprocess.run(
        [str(venv / "bin" / "alloctrace"), "record", "-o", str(trace), "--", fixture("seed")],
        cwd=tmp_path,  # not the repository: nothing may come from the source tree
        env=clean,
        check=False,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    check = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sys, alloctrace; from analyzers.analysis import analyze;"
            "a = analyze(alloctrace.load(sys.argv[1]).data);"
            "print(sorted({c.category for c in a.events}))",
            str(trace),
        ],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "['allocator', 'loader']"
