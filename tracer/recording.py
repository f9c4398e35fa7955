"""Record a program into a trace file: the header, the session, the footer."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

from tracer.records import FORMAT_NAME, FORMAT_VERSION, Header
from tracer.session import Outcome, Session, StackRecorder, TraceOptions
from tracer.stacks import StackTable
from tracer.traceformat import TraceWriter

TRACER_VERSION = "0.1.0"

# Environment variables that change how allocators and the loader behave: kept in the header
# so a trace says under which settings it was made.
_ALLOCATOR_ENV = re.compile(
    r"^(LD_PRELOAD|LD_LIBRARY_PATH|LD_BIND_NOW|GLIBC_TUNABLES|MALLOC_.*|(JE_)?MALLOC_CONF|"
    r"TCMALLOC_.*|MIMALLOC_.*|PYTHONMALLOC)$"
)


def _read_first_line(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def machine_facts() -> dict[str, object]:
    """What about this machine changes memory syscalls: kernel, CPUs, overcommit, THP, libc."""
    thp = _read_first_line("/sys/kernel/mm/transparent_hugepage/enabled")
    selected = re.search(r"\[(\w+)\]", thp)
    return {
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "overcommit_memory": _read_first_line("/proc/sys/vm/overcommit_memory"),
        "thp": selected.group(1) if selected else thp,
        "libc": os.confstr("CS_GNU_LIBC_VERSION") or "",
    }


def allocator_env(env: dict[str, str]) -> dict[str, str]:
    """The part of ``env`` that affects allocators and the loader."""
    return {k: v for k, v in sorted(env.items()) if _ALLOCATOR_ENV.match(k)}


def record(
    argv: list[str],
    output: str | os.PathLike[str],
    options: TraceOptions,
    env: dict[str, str] | None = None,
    allocator: str | None = None,
    stacks: StackRecorder | None = None,
) -> Outcome:
    """Run ``argv`` under the tracer, writing the trace to ``output``; returns how it ended."""
    environment = dict(os.environ if env is None else env)
    header = Header(
        format=FORMAT_NAME,
        version=FORMAT_VERSION,
        program=argv[0] if argv else "",
        argv=list(argv),
        cwd=os.getcwd(),
        env=allocator_env(environment),
        allocator=allocator,
        machine=machine_facts(),
        options={
            "stacks": options.stacks,
            "stack_depth": options.stack_depth,
            "seccomp": options.seccomp,
        },
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        tracer_version=TRACER_VERSION,
    )
    writer = TraceWriter(output, header)
    table: StackTable | None = None
    if stacks is None and options.stacks:
        stacks = table = StackTable(writer, options.stack_depth)
    session = Session(writer, options, stacks)
    try:
        session.spawn(list(argv), environment)
    except BaseException:
        writer.abandon()
        raise
    try:
        return session.run()
    finally:
        if table is not None:
            table.close()
