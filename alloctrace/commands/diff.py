"""``alloctrace diff``: compare saved traces, or one program run under several allocators.

    alloctrace diff A.jsonl B.jsonl
    alloctrace diff --allocator glibc --allocator jemalloc [--repeat N] [--] PROG ARGS...

With ``--allocator``, each variant is recorded (allocator injected with LD_PRELOAD; the traces are
kept and their paths printed) and, with ``--repeat N``, also run N times untraced to measure wall
time and peak RSS (``wait4`` rusage) without ptrace in the way. When alloctrace runs the program
the report goes to stderr (the program owns stdout); when it only reads traces, to stdout.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alloctrace.commands import ColorMode, ColorOption, RulesOption, fail, report_color, ruleset
from alloctrace.commands.allocators import AllocatorLibrary, environment, resolve
from alloctrace.commands.run import FormatOption, ReportOption, emit, summary_of
from alloctrace.reporters import Format
from tracer.errors import AlloctraceError
from tracer.programs import resolve_program

if TYPE_CHECKING:
    from analyzers.diff import Timing
    from analyzers.rules import RuleSet
    from analyzers.summarize import Summary


def _labels(names: list[str]) -> list[str]:
    """Unique labels: a repeated name gets ``#2``, ``#3``..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


_PR_SET_CHILD_SUBREAPER = 36  # include/uapi/linux/prctl.h
_PR_GET_CHILD_SUBREAPER = 37
# The launcher of the peak-RSS runs. The shell starts a subshell in the background, prints its pid
# on fd 3 and exits. The subshell first waits for that exit (EOF on fd 4 once the shell, the last
# holder of the pipe's write end 5, is gone), so it is already orphaned to alloctrace (a subreaper)
# when it execs the program: only alloctrace can reap it, and wait4 gives the program's rusage.
_ORPHAN = (
    'exec </dev/null >/dev/null 2>&1; ( exec 5>&-; read _ <&4; exec 3>&- 4<&- "$@" ) & echo $! >&3'
)


def _high(fd: int) -> int:
    """A close-on-exec copy of ``fd`` numbered 10 or more (so dup2 to 3, 4, 5 cannot clash)."""
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return copy


def _timed_run(path: str, argv: list[str], env: dict[str, str]) -> tuple[int, int]:
    """Wall time (ns) and exit code of one run, output discarded."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    start = time.perf_counter_ns()
    pid = os.posix_spawn(path, argv, env, file_actions=actions)
    _, status, _ = os.wait4(pid, 0)
    return time.perf_counter_ns() - start, os.waitstatus_to_exitcode(status)


def _peak_rss(path: str, argv: list[str], env: dict[str, str]) -> int:
    """Peak RSS (bytes) of one run.

    ``ru_maxrss`` keeps the largest RSS a process had, including before its ``execve``: a
    program spawned straight from alloctrace would show alloctrace's own RSS (tens of MiB). So
    the program is forked by a small shell instead and orphaned to us (PR_SET_CHILD_SUBREAPER);
    its figure then includes at most the shell's (about 1 MiB).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    before = ctypes.c_int(0)
    libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise AlloctraceError("cannot measure peak RSS: prctl(PR_SET_CHILD_SUBREAPER) failed")
    pid_read, pid_write = (_high(fd) for fd in os.pipe())
    gate_read, gate_write = (_high(fd) for fd in os.pipe())
    try:
        shell = os.posix_spawn(
            "/bin/sh",
            ["sh", "-c", _ORPHAN, "sh", path, *argv[1:]],
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, pid_write, 3),
                (os.POSIX_SPAWN_DUP2, gate_read, 4),
                (os.POSIX_SPAWN_DUP2, gate_write, 5),
            ],
        )
        for fd in (pid_write, gate_read, gate_write):
            os.close(fd)
        pid_write = gate_read = gate_write = -1
        data = b""
        while chunk := os.read(pid_read, 64):
            data += chunk
        os.waitpid(shell, 0)
        _, _, usage = os.wait4(int(data), 0)
        return usage.ru_maxrss * 1024  # KiB on Linux
    except (OSError, ValueError) as exc:
        raise AlloctraceError(f"cannot measure peak RSS of {argv[0]}: {exc}") from exc
    finally:
        for fd in (pid_read, pid_write, gate_read, gate_write):
            if fd >= 0:
                os.close(fd)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, before.value, 0, 0, 0)


def untraced_runs(argv: list[str], env: dict[str, str], runs: int) -> Timing:
    """Run ``argv`` ``runs`` times without tracing (output discarded): wall time, peak RSS.

    Each run is done twice: once spawned directly, timed; once through the launcher of
    :func:`_peak_rss`, for its peak RSS.
    """
    from analyzers.diff import timing

    path = resolve_program(argv[0], env.get("PATH", os.defpath))
    walls, peaks, codes = [], [], []
    for _ in range(runs):
        wall, code = _timed_run(path, argv, env)
        walls.append(wall)
        codes.append(code)
        peaks.append(_peak_rss(path, argv, env))
    return timing(walls, peaks, codes)


def _record_variants(
    command: list[str],
    allocators: list[AllocatorLibrary],
    directory: Path,
    stacks: bool,
    repeat: int,
    rules: RuleSet | None,
) -> tuple[list[tuple[str, Summary]], list[Timing | None]]:
    from tracer.recording import record as record_program
    from tracer.session import TraceOptions

    labels = _labels([a.name for a in allocators])
    variants: list[tuple[str, Summary]] = []
    timings: list[Timing | None] = []
    written = []
    for label, allocator in zip(labels, allocators, strict=True):
        env = environment(allocator, dict(os.environ))
        path = directory / f"{label.replace('#', '-')}.jsonl"
        record_program(command, path, TraceOptions(stacks=stacks), env=env, allocator=label)
        written.append(str(path))
        variants.append((label, summary_of(path, rules)))
        timings.append(untraced_runs(command, env, repeat) if repeat else None)
    typer.echo(f"alloctrace: traces written to {', '.join(written)}", err=True)
    return variants, timings


def diff(
    arguments: Annotated[
        list[str],
        typer.Argument(
            metavar="TRACE... | PROG [ARGS]...",
            help="Two or more traces; with --allocator, the program and its arguments.",
        ),
    ],
    allocator: Annotated[
        list[str] | None,
        typer.Option(
            "--allocator",
            metavar="NAME|PATH",
            help="Run the program under this malloc (give it twice or more): glibc, jemalloc, "
            "tcmalloc, mimalloc or a path to a shared object, injected with LD_PRELOAD.",
        ),
    ] = None,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat",
            min=0,
            max=1000,
            help="Also run each variant N times untraced: wall time and peak RSS.",
        ),
    ] = 0,
    fmt: FormatOption = Format.TEXT,
    report: ReportOption = None,
    traces_dir: Annotated[
        Path | None,
        typer.Option(
            "--traces-dir",
            "-d",
            help="Where to keep the variants' traces (default: a new temporary directory).",
        ),
    ] = None,
    no_stacks: Annotated[
        bool, typer.Option("--no-stacks", help="Do not record call stacks (faster, coarser).")
    ] = False,
    color: ColorOption = ColorMode.AUTO,
    rules: RulesOption = None,
) -> None:
    """Compare traces, or a program under several allocators.

    The report says where the difference comes from (objects mapped, the allocator's own
    calls). With --allocator (twice or more) the program is recorded once per allocator
    (injected with LD_PRELOAD; the traces are kept, see -d) and the report goes to stderr, as
    the program owns stdout; given traces, it goes to stdout. --repeat N also times N untraced
    runs of each variant: wall time and peak RSS.

    Examples:

    \b
        # The seed fixture under glibc's malloc and under jemalloc
        alloctrace diff --allocator glibc --allocator jemalloc -- fixtures/build/seed
        # Keep the traces in traces/; time 3 untraced runs of each variant
        alloctrace diff --allocator glibc --allocator mimalloc --repeat 3 \\
            -d traces -- fixtures/build/seed
        # Saved traces (here, the two just kept)
        alloctrace diff traces/glibc.jsonl traces/mimalloc.jsonl
    """
    from alloctrace.reporters import reporter
    from analyzers.diff import diff as diff_summaries

    chosen = allocator or []
    if len(chosen) == 1:
        raise fail("give --allocator twice or more (a diff needs two variants)")
    if not chosen and len(arguments) < 2:
        raise fail("give two or more traces, or --allocator twice and a program")
    if not chosen and repeat:
        raise fail("--repeat needs a program to run (use --allocator)")
    try:
        if chosen:
            libraries = [resolve(spec) for spec in chosen]
            directory = traces_dir or Path(tempfile.mkdtemp(prefix="alloctrace-diff-"))
            directory.mkdir(parents=True, exist_ok=True)
            variants, timings = _record_variants(
                arguments, libraries, directory, not no_stacks, repeat, ruleset(rules)
            )
        else:
            labels = _labels([Path(a).name.removesuffix(".jsonl") for a in arguments])
            extra = ruleset(rules)
            variants = [
                (label, summary_of(a, extra)) for label, a in zip(labels, arguments, strict=True)
            ]
            timings = [None] * len(variants)
        colored = report_color(color, report, to_stderr=bool(chosen))
        text = reporter(fmt, colored).render_diff(diff_summaries(variants, timings))
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename or 'the traces directory'}: {exc.strerror}") from None
    emit(text, report, to_stderr=bool(chosen))
