"""What the report says of real programs outside the fixture matrix (found by sweeping real
programs against the labeller): thread stacks of several sizes (the JVM's threads)."""

from __future__ import annotations

from pathlib import Path

from analyzers.analysis import analyze
from analyzers.summarize import sentences, summarize
from tests.helpers import record

PYTHON = "/usr/bin/python3"
# glibc maps a 256 KiB stack (+ guard) for the first thread; the default 8 MiB one cannot
# reuse it from nptl's stack cache, so it maps a second size.
TWO_STACK_SIZES = (
    "import threading\n"
    "for size in (1 << 18, 0):\n"
    "    threading.stack_size(size)\n"
    "    t = threading.Thread(target=len, args=((),))\n"
    "    t.start()\n"
    "    t.join()\n"
)


def test_stacks_of_several_sizes_are_told_apart(tmp_path: Path) -> None:
    result = record(tmp_path, [PYTHON, "-c", TWO_STACK_SIZES])
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    summary = summarize(analyze(result.trace.data))
    assert summary.stacks is not None and len(summary.stacks.sizes) == 2
    (said,) = [s for s in sentences(summary) if "stacks reserved" in s]
    assert " or " in said and "PROT_NONE)" not in said, said
