"""Record a program into a trace file: the header, the session, the footer."""

from __future__ import annotations

import datetime
import os
import platform
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from tracer import procfs
from tracer.errors import AlloctraceError
from tracer.records import FORMAT_NAME, FORMAT_VERSION, Header
from tracer.session import (
    Outcome,
    Progress,
    Session,
    StackRecorder,
    TraceOptions,
    print_note,
)
from tracer.traceformat import TraceWriter

if TYPE_CHECKING:
    from tracer.stacks import StackTable

TRACER_VERSION = "0.1.0"

# Environment variables that change how allocators and the loader behave: kept in the header
# so a trace says under which settings it was made.
_ALLOCATOR_ENV = re.compile(
    r"^(LD_PRELOAD|LD_LIBRARY_PATH|LD_BIND_NOW|GLIBC_TUNABLES|MALLOC_.*|(JE_)?MALLOC_CONF|"
    r"TCMALLOC_.*|MIMALLOC_.*|PYTHONMALLOC)$"
)


def _stack_table(writer: TraceWriter, depth: int) -> StackTable:
    """The unwinder, loaded only when stacks are recorded (--no-stacks skips its imports)."""
    from tracer.stacks import StackTable

    return StackTable(writer, depth)


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


def _options(options: TraceOptions, seccomp: bool) -> dict[str, object]:
    return {"stacks": options.stacks, "stack_depth": options.stack_depth, "seccomp": seccomp}


def _started_at() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# Something that shows a run's progress while it lasts (a live status line): given a way to
# read the progress, it returns a context manager that is active during the run.
Watcher = Callable[[Callable[[], Progress]], AbstractContextManager[object]]


def _trace(
    writer: TraceWriter,
    options: TraceOptions,
    stacks: StackRecorder | None,
    notify: Callable[[str], None],
    watch: Watcher | None,
    start: Callable[[Session], object],
) -> Outcome:
    """Start the tracees with ``start`` (spawn or attach), then trace them to the end. What
    fails before the run (the C loop not built, a program that cannot start, a process that
    cannot be seized) leaves no file; an older trace at the path stays as it was."""
    table: StackTable | None = None
    if stacks is None and options.stacks:
        stacks = table = _stack_table(writer, options.stack_depth)
    running = False
    try:
        session = Session(writer, options, stacks, notify)
        with session.handling_signals():
            start(session)
            running = True  # from here on the session ends the trace itself
            if watch is None:
                return session.run()
            with watch(session.progress):
                return session.run()
    except BaseException:
        if not running:
            writer.abandon()
        raise
    finally:
        if table is not None:
            table.close()


def record(
    argv: list[str],
    output: str | os.PathLike[str],
    options: TraceOptions,
    env: dict[str, str] | None = None,
    allocator: str | None = None,
    stacks: StackRecorder | None = None,
    notify: Callable[[str], None] = print_note,
    watch: Watcher | None = None,
) -> Outcome:
    """Run ``argv`` under the tracer, writing the trace to ``output``; returns how it ended.

    SIGINT, SIGTERM or SIGHUP end the run cleanly: the program is killed and the trace ends
    with an ``interrupted`` footer. A program that cannot be started raises AlloctraceError
    and leaves no file (an older trace at ``output`` stays as it was).
    """
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
        options=_options(options, options.seccomp),
        started_at=_started_at(),
        tracer_version=TRACER_VERSION,
    )
    if not argv or not argv[0]:
        raise AlloctraceError("no program given to trace")
    writer = TraceWriter(output, header)
    return _trace(
        writer, options, stacks, notify, watch, lambda s: s.spawn(list(argv), environment)
    )


def attach(
    pid: int,
    output: str | os.PathLike[str],
    options: TraceOptions,
    stacks: StackRecorder | None = None,
    notify: Callable[[str], None] = print_note,
    watch: Watcher | None = None,
) -> Outcome:
    """Trace the running process ``pid`` (all its threads, and what it starts) until it ends
    or alloctrace gets SIGINT, SIGTERM or SIGHUP; then detach, leaving it running.

    No seccomp filter (only a process can install one on itself) and no phase breakpoints:
    every syscall stops the process twice, so it runs slower while traced.
    """
    live = procfs.live_thread(pid)  # its /proc entry shows exe and cmdline
    header = Header(
        format=FORMAT_NAME,
        version=FORMAT_VERSION,
        program=procfs.exe_path(live),
        argv=procfs.cmdline(live),
        cwd=procfs.cwd(pid),
        env=allocator_env(procfs.environ(pid)),
        allocator=None,
        machine=machine_facts(),
        options=_options(options, seccomp=False),
        started_at=_started_at(),
        tracer_version=TRACER_VERSION,
        attached=True,
    )
    writer = TraceWriter(output, header)
    options = options._replace(seccomp=False, phases=False)
    return _trace(writer, options, stacks, notify, watch, lambda s: s.attach(pid))
