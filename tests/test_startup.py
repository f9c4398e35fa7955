"""Start-up stays cheap: what each command imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, fixture

_MODULES_AFTER = """
import json, sys
from alloctrace.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.__stdout__)
"""


def _modules_after(*args: str) -> set[str]:
    """The modules loaded once ``alloctrace ARGS`` has run in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: set[str] = set(json.loads(proc.stdout.splitlines()[-1]))
    return loaded


def test_version_and_help_do_not_load_the_tracer() -> None:
    for args in (["--version"], ["--help"]):
        loaded = _modules_after(*args)
        assert not {"tracer.session", "tracer.elf", "tracer.records"} & loaded, args
        assert not any(m.startswith("elftools") for m in loaded), args


def test_record_without_stacks_loads_no_unwinder(tmp_path: Path) -> None:
    out = str(tmp_path / "t.jsonl")
    loaded = _modules_after("record", "--no-stacks", "-q", "-o", out, "--", fixture("seed"))
    assert "tracer.session" in loaded
    assert not {"tracer.stacks", "tracer.unwind", "tracer.modules"} & loaded
    # typer builds, and the CLI imports, only the subcommand that runs
    commands = {m for m in loaded if m.startswith("alloctrace.commands.")}
    assert commands == {"alloctrace.commands.record"}
