"""``--rules FILE``: user rules go before the defaults in every command that classifies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import fixture, record

RULES = """
[[rule]]
id = "my-heap"
category = "runtime"
owner = "my-runtime"
role = "heap"
functions = ["__default_morecore", "sysmalloc"]
"""


def _alloctrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alloctrace", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_user_rules_override_the_defaults(tmp_path: Path) -> None:
    trace = record(tmp_path, [fixture("seed")])
    assert trace.trace is not None
    rules = tmp_path / "mine.toml"
    rules.write_text(RULES)
    path = trace.trace.path
    default = _alloctrace("export", path)
    custom = _alloctrace("export", "--rules", str(rules), path)
    assert default.returncode == custom.returncode == 0, custom.stderr
    owners = [json.loads(line)["owner"] for line in custom.stdout.splitlines()]
    before = [json.loads(line)["owner"] for line in default.stdout.splitlines()]
    assert owners.count("my-runtime") == 2, "malloc's two brk calls"
    assert before.count("glibc") == 2 and "my-runtime" not in before
    report = _alloctrace("report", "--rules", str(rules), "--format", "json", path)
    assert report.returncode == 0, report.stderr
    assert "my-runtime" in report.stdout


def test_bad_rules_file_is_one_line(tmp_path: Path) -> None:
    trace = record(tmp_path, [fixture("seed")], "--no-stacks")
    assert trace.trace is not None
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\nid = 'x'\n")
    result = _alloctrace("report", "--rules", str(bad), trace.trace.path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "missing" in result.stderr
    assert "Traceback" not in result.stderr
