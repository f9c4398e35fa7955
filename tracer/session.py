"""The ptrace session: start a program, follow its threads and children, record memory syscalls.

One ``waitpid(-1, __WALL)`` loop owns every tracee. With the seccomp filter a traced syscall
costs two stops: the seccomp stop at entry (nothing read, only the time taken) and the
syscall-exit stop, where one PTRACE_GETREGS gives the number, the arguments (the kernel keeps
them) and the result. Those two stops are taken in C (tracer/_fastloop.c, which also writes the
line of a call that needs nothing more); every other stop is handled here. Everything else
(names, classification) happens after the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NamedTuple, Protocol

from tracer import fastloop, procfs, seccomp
from tracer import ptrace_adapter as pt
from tracer.breakpoints import PhaseBreakpoints
from tracer.errors import AlloctraceError
from tracer.fastloop import FastLoop, Returned
from tracer.programs import file_architecture, resolve_program
from tracer.records import MEMORY_SYSCALLS, Exec, Exit, Footer, Memory, Phase, Spawn
from tracer.traceformat import TraceWriteError, TraceWriter

_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_SYSCALL_TRAP = signal.SIGTRAP | 0x80  # syscall stops with PTRACE_O_TRACESYSGOOD
_MASK64 = (1 << 64) - 1
_MAP_ANONYMOUS = 0x20  # include/uapi/asm-generic/mman-common.h
_MREMAP_FIXED = 2  # include/uapi/linux/mman.h
_PR_SET_VMA_ANON_NAME = 0  # include/uapi/linux/prctl.h
# An attached process must outlive alloctrace: no EXITKILL there (the kernel detaches it).
_ATTACH_OPTIONS = (
    pt.PTRACE_O_TRACESYSGOOD
    | pt.PTRACE_O_TRACEFORK
    | pt.PTRACE_O_TRACEVFORK
    | pt.PTRACE_O_TRACECLONE
    | pt.PTRACE_O_TRACEEXEC
    | pt.PTRACE_O_TRACEEXIT
)
# A started program carries the seccomp filter, which needs its tracer: kill it if we die.
_OPTIONS = _ATTACH_OPTIONS | pt.PTRACE_O_EXITKILL
# Signals that end tracing cleanly: kill the started program (or detach), finish the trace.
INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long ending the tracees may take before alloctrace gives up on a stuck one.
_CLEANUP_SECONDS = 5.0
# ptrace(2) itself is traced too (never per memory syscall), to explain its EPERM.
_NR_PTRACE = 101
_NR_PRCTL = 157
_EPERM_RESULT = (1 << 64) - 1  # -EPERM in rax
_PTRACE_REQUESTS = {0: "PTRACE_TRACEME", 16: "PTRACE_ATTACH", 0x4206: "PTRACE_SEIZE"}


# NamedTuples, not frozen dataclasses: those cost 0.9 ms each to define at every start-up.
class TraceOptions(NamedTuple):
    """How to trace: call stacks on or off, how deep, and whether to use the seccomp filter."""

    stacks: bool = True
    stack_depth: int = 64
    seccomp: bool = True
    phases: bool = True  # breakpoints on main and exit (tracer/breakpoints.py)


class StackRecorder(Protocol):
    """Captures the call stack at a syscall stop and keeps each process's module map current."""

    def capture(self, pid: int, tid: int, regs: pt.Registers) -> int | None:
        """Unwind from ``regs``; return the interned stack id (records written as needed)."""

    def on_exec(self, pid: int) -> None:
        """The process's address space was replaced."""

    def on_fork(self, parent: int, child: int) -> None:
        """``child`` starts with a copy of ``parent``'s address space."""

    def on_exit(self, pid: int) -> None:
        """The process is gone."""

    def on_mmap(self, pid: int, addr: int, length: int, offset: int, path: str | None) -> None:
        """A successful mmap (file-backed when ``path`` is set)."""

    def on_munmap(self, pid: int, addr: int, length: int) -> None:
        """A successful munmap."""

    def share(self, fast: FastLoop | None) -> None:
        """Let ``fast`` write the calls whose stacks it can tell (None: stop)."""

    def sync(self) -> None:
        """Bring ``fast``'s view of the module maps up to date; called before it runs again."""


class _Interrupted(BaseException):
    """alloctrace itself got SIGINT, SIGTERM or SIGHUP (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Thread:
    """What the loop keeps per traced thread."""

    __slots__ = ("entry_ns", "memory", "pid", "tid")

    def __init__(self, tid: int, pid: int) -> None:
        self.tid = tid
        self.pid = pid
        self.entry_ns = 0
        self.memory = 0  # 1 while inside a memory syscall (fallback mode only)


class Progress(NamedTuple):
    """A snapshot of a run in progress, for a live status line."""

    elapsed_ns: int
    events: int
    processes: int
    threads: int


class Outcome(NamedTuple):
    """How the root program ended, as a shell would report it."""

    footer: Footer
    interrupted_by: int | None = None  # the signal that made alloctrace stop tracing

    @property
    def exit_code(self) -> int:
        """The program's exit status, 128 + N when signal N killed it; 0 after a detach;
        128 + N when alloctrace was interrupted by signal N."""
        if self.footer.outcome == "detached":
            return 0
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        if self.footer.signal is not None:
            return 128 + self.footer.signal
        if self.footer.status is None:  # attached, its end not seen: 0 when it exited
            return 0 if self.footer.outcome == "exited" else 1
        return self.footer.status


def print_note(message: str) -> None:
    """The default way a session tells the user something: one line on stderr (if any)."""
    if sys.stderr is None:  # alloctrace started with fd 2 closed
        return
    with contextlib.suppress(OSError, ValueError):
        print(f"alloctrace: {message}", file=sys.stderr, flush=True)


class Session:
    """Traces one program (and everything it starts) into a TraceWriter."""

    def __init__(
        self,
        writer: TraceWriter,
        options: TraceOptions,
        stacks: StackRecorder | None = None,
        notify: Callable[[str], None] = print_note,
    ) -> None:
        self.writer = writer
        self.options = options
        self.stacks = stacks
        self._threads: dict[int, _Thread] = {}
        self._regs = pt.Registers()
        self._seq = 0
        self._t0 = time.monotonic_ns()
        self._root = 0
        self._root_status: int | None = None
        self._seccomp = options.seccomp
        self._memory: dict[int, pt.TraceeMemory] = {}
        self._phases = PhaseBreakpoints() if options.phases else None
        self._attached = False
        self._notify = notify
        self.notes: list[str] = []
        self._noted: set[str] = set()
        # Signal handling (see handling_signals): the handler raises only while _armed.
        self._armed = False
        self._interrupted: int | None = None
        self.undetached: list[int] = []  # threads that could not be detached in time
        # While ending the tracees, a trace that cannot be written must not stop the cleanup.
        self._cleaning = False
        self._write_failure: TraceWriteError | None = None
        self._fast: FastLoop | None = None  # the C loop, in seccomp mode (see _fast_loop)
        if self._seccomp:
            fastloop.require()  # before anything starts: a missing build is one clear error

    @property
    def uses_seccomp(self) -> bool:
        """True when the filter was installed (otherwise every syscall stops the tracee)."""
        return self._seccomp

    def _now(self) -> int:
        return time.monotonic_ns() - self._t0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def attached(self) -> bool:
        """True when tracing a process that was already running (``attach``)."""
        return self._attached

    def _note(self, key: str, message: str) -> None:
        """Tell the user something once per session (``key`` says what was told)."""
        if key in self._noted:
            return
        self._noted.add(key)
        self.notes.append(message)
        self._notify(message)

    # -- starting ---------------------------------------------------------------------------

    def spawn(self, argv: list[str], env: dict[str, str]) -> int:
        """Fork and exec ``argv`` under ptrace; returns its pid once it runs the new program."""
        path = resolve_program(argv[0] if argv else "", env.get("PATH", os.defpath))
        filtered = None
        if self._seccomp:
            bpf = seccomp.Filter(seccomp.build_filter((*MEMORY_SYSCALLS, _NR_PTRACE)))
            filtered = fastloop.FilteredExec(path, argv, env, bpf)
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe()  # close-on-exec (PEP 446): EOF tells the parent exec happened
        pid = os.fork()
        if pid == 0:  # child: wait to be seized, install the filter, exec
            code = 127
            try:
                os.close(go_w)
                os.close(err_r)
                # Python ignores these two; the program gets the defaults, as from a shell.
                with contextlib.suppress(ValueError):  # forked from a thread: not possible
                    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
                if filtered is not None:
                    filtered.run(go_r, err_w)  # in C from here: returns only if it could not run
                elif os.read(go_r, 1) == b"g":  # not seized: never run untraced
                    os.execve(path, argv, env)
            except OSError as exc:
                os.write(err_w, b"E%d\n" % (exc.errno or 0))
            finally:
                os._exit(code)
        os.close(go_r)
        os.close(err_w)
        try:
            try:
                pt.seize(pid, _OPTIONS | (pt.PTRACE_O_TRACESECCOMP if filtered else 0))
                os.write(go_w, b"g")
            except BaseException:
                _kill_and_reap(pid)  # killed before it reads EOF: it never runs untraced
                raise
            finally:
                os.close(go_w)
            report = b""
            while chunk := os.read(err_r, 256):
                report += chunk
            for line in report.splitlines():
                if line.startswith(b"S"):  # the kernel refused the filter: plain syscall stops
                    self._seccomp = False
                elif line.startswith(b"E"):
                    err = int(line[1:])
                    raise AlloctraceError(f"cannot execute {argv[0]}: {os.strerror(err)}")
        except BaseException:
            _kill_and_reap(pid)
            raise
        finally:
            os.close(err_r)
        self._root = pid
        self._track(pid, pid)
        return pid

    def attach(self, pid: int) -> list[int]:
        """Trace a running process: seize every thread (until no new one appears) and stop
        each once, to start its syscall stops. No seccomp filter (it can only be installed by
        the process itself) and no breakpoints: nothing to undo at detach. Returns the tids.
        """
        if pid <= 0:
            raise AlloctraceError(f"no process {pid}")
        if pid == os.getpid():
            raise AlloctraceError("alloctrace cannot trace itself")
        if not procfs.tasks(pid):
            raise AlloctraceError(f"no process {pid}")
        if all(procfs.state(tid) in ("Z", "X", "") for tid in procfs.tasks(pid)):
            raise AlloctraceError(f"process {pid} has exited (a zombie waiting for its parent)")
        if procfs.is_kernel_thread(pid):
            raise AlloctraceError(f"process {pid} is a kernel thread")
        foreign = file_architecture(f"/proc/{procfs.live_thread(pid)}/exe")
        if foreign is not None:
            raise AlloctraceError(
                f"process {pid} runs {foreign}; alloctrace traces x86-64 programs only"
            )
        self._seccomp = False
        self._phases = None
        self._attached = True
        self._root = pid
        seen: set[int] = set()
        try:
            while True:  # threads may be created meanwhile: until a listing brings no new one
                fresh = [tid for tid in procfs.tasks(pid) if tid not in seen]
                if not fresh:
                    break
                for tid in fresh:
                    seen.add(tid)
                    if procfs.state(tid) in ("Z", "X"):  # a leader that called pthread_exit
                        continue
                    if pt.seize_thread(tid, _ATTACH_OPTIONS) and tid not in self._threads:
                        self._track(tid, pid)
                        pt.interrupt(tid)
        except BaseException:
            self._detach_all()
            raise
        if not self._threads:
            raise AlloctraceError(f"process {pid} exited before it could be traced")
        return sorted(self._threads)

    # -- the loop ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """Inside: SIGINT, SIGTERM and SIGHUP end the tracing cleanly instead of alloctrace.

        The handler raises (ending the loop wherever it is) only while the loop runs; at any
        other time (starting, cleaning up, writing the footer) it notes the signal, which the
        loop acts on as soon as it starts. Signals ignored when alloctrace started (nohup, a
        background job) stay ignored. Only the main thread can handle signals.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[int, Any] = {}
        try:
            for signum in INTERRUPTING_SIGNALS:
                if signal.getsignal(signum) != signal.SIG_IGN:
                    previous[signum] = signal.signal(signum, self._on_signal)
            yield
        finally:
            for restored, handler in previous.items():
                signal.signal(restored, signal.SIG_DFL if handler is None else handler)

    def progress(self) -> Progress:
        """How far the run is (read by a live status display from another thread)."""
        threads = list(self._threads.values())
        return Progress(self._now(), self._seq, len({t.pid for t in threads}), len(threads))

    def run(self) -> Outcome:
        """Trace until every tracee is gone (or alloctrace is interrupted); write the footer.

        However the loop ends, no tracee is left stopped: an interrupted or failed run kills
        the program it started (or detaches from an attached one) before the footer.
        """
        with self.handling_signals():
            failure: BaseException | None = None
            try:
                try:
                    self._armed = True
                    if self._interrupted is not None:  # a signal came while starting
                        raise _Interrupted(self._interrupted)
                    self._loop()
                finally:
                    self._armed = False
            except BaseException as exc:  # every way out of the loop must end the tracees
                failure = exc
            try:
                return self._finish(failure)
            finally:
                for memory in self._memory.values():
                    memory.close()

    def _finish(self, failure: BaseException | None) -> Outcome:
        if failure is None:
            footer = self._footer()
            self.writer.close(footer)
            return Outcome(footer)
        ended = self._root_status  # the program's own end, if it came before ours
        self._cleaning = True
        if isinstance(failure, TraceWriteError):
            self._write_failure = failure
        if self._attached:
            self._detach_all()
        else:
            self._kill_all()
        if self._write_failure is not None:  # the disk filled, before or during the cleanup
            failure = self._write_failure
        if isinstance(failure, _Interrupted):
            footer = self._interrupted_footer(failure.signum, ended)
            self.writer.close(footer)
            return Outcome(footer, failure.signum)
        if isinstance(failure, TraceWriteError):
            self.writer.abandon()
            what = (
                f"alloctrace detached from process {self._root}"
                if self._attached
                else "the program was killed"
            )
            raise TraceWriteError(f"{failure} ({what}; no trace was written)") from failure
        # A bug in alloctrace: the trace says so, then the error surfaces.
        footer = Footer("error", self._now(), self._seq, message=f"alloctrace failed: {failure!r}")
        with contextlib.suppress(AlloctraceError):
            self.writer.close(footer)
        raise failure

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self._interrupted is None:
            self._interrupted = signum
        if self._armed:
            self._armed = False  # once: a second signal must not break the cleanup
            raise _Interrupted(signum)

    def _kill_all(self) -> None:
        """SIGKILL every tracee (those the loop knows and any /proc says are ours) and reap
        them; a kill reaches a thread even in a ptrace-stop, so none stays stopped."""
        me = os.getpid()
        for tid in set(self._threads) | procfs.tracees_of(me):
            _kill(tid)
        deadline = time.monotonic() + _CLEANUP_SECONDS
        while time.monotonic() < deadline:
            try:
                tid, status = os.waitpid(-1, pt.WALL | os.WNOHANG)
            except ChildProcessError:
                return
            if tid:
                if os.WIFSTOPPED(status):  # stopped before the kill landed: it dies anyway
                    _kill(tid)
                    pt.resume(tid)
                else:
                    self._on_gone(tid, status)
                continue
            for gone in [t for t in self._threads if not procfs.state(t)]:
                self._untrack(gone)  # vanished without a word (cannot happen; be safe)
            if not self._threads:
                strays = procfs.tracees_of(me)
                if not strays:
                    return
                for tid in strays:
                    _kill(tid)
            time.sleep(0.002)

    def _detach_all(self) -> None:
        """Detach from every tracee, leaving each as it would be without alloctrace.

        A thread already in a ptrace-stop (one the loop took, or one still queued) is
        detached there, passing on the signal of a signal-delivery-stop; a running one is
        asked to stop (PTRACE_INTERRUPT) and detached at whatever stop it makes next. A
        group-stopped thread stays stopped. New children found meanwhile get the same.
        """
        me = os.getpid()
        todo = set(self._threads) | procfs.tracees_of(me)
        asked: set[int] = set()
        given_up: set[int] = set()
        deadline = time.monotonic() + _CLEANUP_SECONDS
        while todo:
            self._detach_reported(todo, asked)
            leaders_last = sorted(todo - asked, key=lambda t: procfs.thread_group(t) == t)
            for tid in leaders_last:
                sig = pt.pending_signal(tid)
                if sig is not None:
                    self._detach_one(tid, sig, todo)
                elif pt.interrupt(tid):
                    asked.add(tid)
                else:
                    todo.discard(tid)
            for tid in list(asked):
                if procfs.state(tid) in ("Z", "X", ""):  # exited: nothing left to detach
                    with contextlib.suppress(ChildProcessError):
                        reaped, status = os.waitpid(tid, pt.WALL | os.WNOHANG)
                        if reaped:
                            self._on_gone(tid, status)
                    asked.discard(tid)
                    todo.discard(tid)
                    given_up.add(tid)
            if not todo:
                todo = procfs.tracees_of(me) - given_up
            if not todo or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        self.undetached = sorted(todo)
        if todo:
            self._note(
                "undetached",
                f"could not detach from threads {self.undetached} in time; the kernel "
                "releases them when alloctrace exits",
            )

    def _detach_reported(self, todo: set[int], asked: set[int]) -> None:
        """Detach the tracees whose stops are waiting to be reported (without blocking)."""
        while True:
            try:
                tid, status = os.waitpid(-1, pt.WALL | os.WNOHANG)
            except ChildProcessError:
                todo.clear()
                return
            if tid == 0:
                return
            asked.discard(tid)
            if not os.WIFSTOPPED(status):
                self._on_gone(tid, status)
                todo.discard(tid)
                continue
            event, sig = status >> 16, os.WSTOPSIG(status)
            deliver = 0
            if event == 0 and sig != _SYSCALL_TRAP:  # a signal on its way to the program
                deliver = sig
            elif event in (pt.PTRACE_EVENT_CLONE, pt.PTRACE_EVENT_FORK, pt.PTRACE_EVENT_VFORK):
                with contextlib.suppress(pt.ProcessGone):
                    todo.add(pt.event_message(tid))  # the new one is ours too: release it
            self._detach_one(tid, deliver, todo)

    def _detach_one(self, tid: int, sig: int, todo: set[int]) -> None:
        pt.detach(tid, sig)
        todo.discard(tid)
        self._untrack(tid)

    def _footer(self) -> Footer:
        status = self._root_status
        duration = self._now()
        events = self._seq
        if status is None and self._attached:  # its leader had exited before: not traced
            message = f"process {self._root} ended; its status went to its parent"
            return Footer("exited", duration, events, message=message)
        if status is None:
            return Footer("error", duration, events, message="the program's end was not seen")
        if os.WIFSIGNALED(status):
            return Footer("killed", duration, events, signal=os.WTERMSIG(status))
        return Footer("exited", duration, events, status=os.WEXITSTATUS(status))

    def _interrupted_footer(self, signum: int, ended: int | None) -> Footer:
        name = signal.Signals(signum).name
        duration, events = self._now(), self._seq
        if self._attached:
            message = f"alloctrace got {name} and detached; process {self._root} runs on"
            if self.undetached:
                message += f" (threads {self.undetached} were not detached in time)"
            return Footer("detached", duration, events, message=message)
        if ended is None:
            message = f"alloctrace got {name}: killed the program"
            return Footer("interrupted", duration, events, message=message)
        code = os.WEXITSTATUS(ended) if os.WIFEXITED(ended) else None
        sig = os.WTERMSIG(ended) if os.WIFSIGNALED(ended) else None
        return Footer(
            "interrupted",
            duration,
            events,
            status=code,
            signal=sig,
            message=f"alloctrace got {name}: killed what the program left running",
        )

    def _loop(self) -> None:
        if self._seccomp:
            self._fast_loop()
        else:
            self._python_loop()

    def _fast_loop(self) -> None:
        """Under the seccomp filter: the C loop takes the stops of memory syscalls and writes
        what it can; the rest comes back here."""
        fast = self._fast = FastLoop(self._t0, self.stacks is not None, self._regs)
        for thread in self._threads.values():
            fast.add(thread.tid, thread.pid)
        context = fast.context
        threads = self._threads
        stacks = self.stacks
        if stacks is not None:
            stacks.share(fast)
        try:
            while threads:
                returned = fast.run(self._seq)
                self._take_fast_lines(fast)
                if returned == Returned.EXIT_STOP:
                    thread = threads[context.tid]  # the C loop only knows our threads
                    thread.entry_ns = context.entry_ns
                    self._record_exit(thread)
                elif returned == Returned.STOP:
                    status = context.status
                    if status & 0xFF == 0x7F:  # WIFSTOPPED
                        self._on_other_stop(context.tid, status)
                    else:
                        self._on_gone(context.tid, status)
                elif returned == Returned.NO_CHILD:
                    return
                # FLUSH: lines taken; EINTR: Python's signal handler runs now
                if stacks is not None:
                    stacks.sync()
        finally:
            # An interruption may come between fast.run and taking its lines: keep them.
            self._take_fast_lines(fast)
            self._fast = None
            if stacks is not None:
                stacks.share(None)
            fast.close()

    def _take_fast_lines(self, fast: FastLoop) -> None:
        self._seq = fast.context.seq
        lines = fast.take_lines()
        if lines:
            self.writer.write_line(lines)

    def _python_loop(self) -> None:
        """Without the filter (attached, or refused by the kernel): every syscall stops."""
        waitpid = os.waitpid
        wall = pt.WALL
        threads = self._threads
        while threads:
            try:
                tid, status = waitpid(-1, wall)
            except ChildProcessError:
                return
            if status & 0xFF == 0x7F:  # WIFSTOPPED
                thread = threads.get(tid)
                if thread is not None and status >> 8 == _SYSCALL_TRAP:
                    self._on_syscall_stop_unfiltered(thread)
                    continue
                self._on_other_stop(tid, status)
            else:
                self._on_gone(tid, status)

    def _resume(self, tid: int, sig: int = 0) -> None:
        if self._seccomp:
            pt.resume(tid, sig)
        else:
            pt.resume_to_syscall(tid, sig)

    def _on_syscall_stop_unfiltered(self, thread: _Thread) -> None:
        """A syscall stop without the filter: every syscall stops, entry and exit."""
        try:
            op, nr = pt.syscall_stop_kind(thread.tid)
        except pt.ProcessGone:
            return
        if op == pt.SYSCALL_INFO_ENTRY:
            # What the seccomp filter would stop at: the memory syscalls (prctl only for
            # PR_SET_VMA) and ptrace.
            wanted = nr in MEMORY_SYSCALLS or nr == _NR_PTRACE
            if nr == _NR_PRCTL:
                wanted = pt.syscall_argument(0) == seccomp.PR_SET_VMA
            thread.memory = 1 if wanted else 0
            thread.entry_ns = self._now()
            self._resume(thread.tid)
        elif op == pt.SYSCALL_INFO_EXIT and thread.memory:
            thread.memory = 0
            if pt.get_registers(thread.tid, self._regs):
                self._record_exit(thread)
        else:
            self._resume(thread.tid)

    def _record_exit(self, thread: _Thread) -> None:
        """The exit stop of a memory syscall, its registers in ``self._regs``: write one
        record, resume. The C loop writes the simple calls itself (tracer/_fastloop.c); this
        writes those with a path or a name, those whose stack must be walked, and all of them
        without the filter.
        It builds the JSON line by hand, which costs a third of json.dumps.
        """
        tid = thread.tid
        regs = self._regs
        name = MEMORY_SYSCALLS.get(regs.orig_rax)
        if name is None:  # ptrace (see _on_ptrace), or a bug in the filter: pass it
            if regs.orig_rax == _NR_PTRACE:
                self._on_ptrace(thread, regs)
            self._resume(tid)
            return
        entry = thread.entry_ns
        end = time.monotonic_ns() - self._t0
        pid = thread.pid
        stacks = self.stacks
        stack = None if stacks is None else stacks.capture(pid, tid, regs)
        self._seq = seq = self._seq + 1
        raw = regs.rax
        failed = raw >= _MASK64 - 4095 and name != "brk"  # -4095..-1: -errno
        outcome = f',"errno":{(1 << 64) - raw}' if failed else f',"result":{raw}'
        tail = "}" if stack is None else f',"stack":{stack}}}'
        self.writer.write_line(
            f'{{"kind":"syscall","seq":{seq},"ts_ns":{entry},"dur_ns":{end - entry},'
            f'"pid":{pid},"tid":{tid},"syscall":"{name}"'
            f"{self._arguments(name, regs, tid, pid)}{outcome}{tail}"
        )
        if stacks is not None and not failed:
            self._update_modules(name, regs, pid, raw)
        self._resume(tid)

    def _arguments(self, name: str, regs: pt.Registers, tid: int, pid: int) -> str:
        """The call's arguments as JSON members (names from man 2, see docs/trace-format.md)."""
        addr, length = regs.rdi, regs.rsi
        if name == "mmap":
            flags = regs.r10 & 0xFFFFFFFF
            fd = regs.r8 & 0xFFFFFFFF  # an int in the kernel: -1 arrives as 0xffffffff
            fd = fd - (1 << 32) if fd >= 1 << 31 else fd
            text = (
                f',"addr":{addr},"length":{length},"prot":{regs.rdx & 0xFFFFFFFF},'
                f'"flags":{flags},"fd":{fd},"offset":{regs.r9}'
            )
            if not flags & _MAP_ANONYMOUS and fd >= 0:
                path = procfs.fd_path(tid, fd)
                if path is not None:
                    text += f',"path":{json.dumps(path)}'
            return text
        if name in ("munmap", "mprotect", "madvise"):
            text = f',"addr":{addr},"length":{length}'
            if name == "mprotect":
                return text + f',"prot":{regs.rdx & 0xFFFFFFFF}'
            if name == "madvise":
                return text + f',"advice":{regs.rdx & 0xFFFFFFFF}'
            return text
        if name == "brk":
            return f',"addr":{addr}'
        if name == "mremap":
            flags = regs.r10 & 0xFFFFFFFF
            text = f',"addr":{addr},"length":{length},"new_length":{regs.rdx},"flags":{flags}'
            if flags & _MREMAP_FIXED:
                text += f',"new_addr":{regs.r8}'
            return text
        # prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name)
        text = f',"addr":{regs.rdx},"length":{regs.r10}'
        if length == _PR_SET_VMA_ANON_NAME:
            text += f',"name":{json.dumps(self._read_string(pid, regs.r8))}'
        return text

    def _read_string(self, pid: int, addr: int) -> str:
        if addr == 0:
            return ""
        memory = self._memory.get(pid)
        if memory is None:
            memory = self._memory[pid] = pt.TraceeMemory(pid)
        raw = memory.read(addr, 256)  # the kernel caps anon names at 80 bytes
        return raw.split(b"\0", 1)[0].decode(errors="replace")

    def _update_modules(self, name: str, regs: pt.Registers, pid: int, result: int) -> None:
        assert self.stacks is not None
        if name == "mmap":
            path = None
            fd = regs.r8 & 0xFFFFFFFF
            if not regs.r10 & _MAP_ANONYMOUS and fd < 1 << 31:
                path = procfs.fd_path(pid, fd)
            self.stacks.on_mmap(pid, result, regs.rsi, regs.r9, path)
        elif name == "munmap":
            self.stacks.on_munmap(pid, regs.rdi, regs.rsi)
        elif name == "mremap":
            self.stacks.on_munmap(pid, regs.rdi, regs.rsi)
            self.stacks.on_mmap(pid, result, regs.rdx, 0, None)

    def _on_ptrace(self, thread: _Thread, regs: pt.Registers) -> None:
        """The program called ptrace: under a tracer, TRACEME and attaching to its own
        (traced) children fail with EPERM. Say why, once."""
        if regs.rax != _EPERM_RESULT:
            return
        request = regs.rdi & 0xFFFFFFFF
        what = _PTRACE_REQUESTS.get(request, f"request {request}")
        self._note(
            "ptrace",
            f"process {thread.pid} called ptrace({what}) and got EPERM: a process has only one "
            "tracer, and alloctrace traces this program and every child it starts (debuggers, "
            "sandboxes and anti-debugging checks do not work under alloctrace)",
        )

    # -- everything else: events, signals, group-stops ---------------------------------------

    def _on_other_stop(self, tid: int, status: int) -> None:
        sig = os.WSTOPSIG(status)
        event = status >> 16
        thread = self._threads.get(tid)
        if thread is None:  # a new tracee whose parent's event we have not seen yet
            thread = self._adopt(tid)
        if event == pt.PTRACE_EVENT_STOP:
            if sig in _STOP_SIGNALS:  # group-stop: stay stopped, but hear SIGCONT
                with contextlib.suppress(pt.ProcessGone):
                    pt.listen(tid)
                return
            self._resume(tid)
            return
        if event in (pt.PTRACE_EVENT_CLONE, pt.PTRACE_EVENT_FORK, pt.PTRACE_EVENT_VFORK):
            self._on_spawn(thread, event)
        elif event == pt.PTRACE_EVENT_EXEC:
            self._on_exec(thread)
        elif event == pt.PTRACE_EVENT_EXIT:
            self._on_exit_event(thread)
        elif event == 0 and sig != signal.SIGTRAP | 0x80:
            if sig == signal.SIGTRAP and self._on_breakpoint(thread):
                self._resume(tid)
                return
            # A signal for the program: deliver it unchanged.
            self._resume(tid, sig)
            return
        self._resume(tid)

    def _on_breakpoint(self, thread: _Thread) -> bool:
        """A SIGTRAP: True when it was one of our phase breakpoints (then handled)."""
        if self._phases is None or not pt.get_registers(thread.tid, self._regs):
            return False
        hit = self._phases.on_trap(thread.pid, thread.tid, self._regs)
        if hit is None:
            return False
        if hit.phase is not None:
            phase = hit.phase
            self._write_event(
                lambda seq, ts: Phase(seq, ts, thread.pid, thread.tid, phase, hit.how)
            )
        return True

    def _adopt(self, tid: int) -> _Thread:
        return self._track(tid, procfs.thread_group(tid) or tid)

    def _track(self, tid: int, pid: int) -> _Thread:
        thread = self._threads[tid] = _Thread(tid, pid)
        if self._fast is not None:
            self._fast.add(tid, pid)
        return thread

    def _untrack(self, tid: int) -> _Thread | None:
        if self._fast is not None:
            self._fast.drop(tid)
        return self._threads.pop(tid, None)

    def _on_spawn(self, parent: _Thread, event: int) -> None:
        try:
            new_tid = pt.event_message(parent.tid)
        except pt.ProcessGone:
            return
        child = self._threads.get(new_tid)
        if child is None:
            child = self._adopt(new_tid)
        if event == pt.PTRACE_EVENT_FORK:
            how = "fork"
        elif event == pt.PTRACE_EVENT_VFORK:
            how = "vfork"
        else:
            how = "thread" if child.pid == parent.pid else "clone"
        self._write_event(
            lambda seq, ts: Spawn(seq, ts, child.pid, new_tid, parent.pid, parent.tid, how)
        )
        if how != "thread":
            if self.stacks is not None:
                self.stacks.on_fork(parent.pid, child.pid)
            if self._phases is not None:
                self._phases.on_fork(parent.pid, child.pid)

    def _on_exec(self, thread: _Thread) -> None:
        try:
            former = pt.event_message(thread.tid)
        except pt.ProcessGone:
            return
        pid = thread.pid
        if former != thread.tid:  # a non-leader thread exec'd: it now has the leader's tid
            self._untrack(former)
        memory = self._memory.pop(pid, None)
        if memory is not None:
            memory.close()
        if self.stacks is not None:
            self.stacks.on_exec(pid)
        path, argv = procfs.exe_path(pid), procfs.cmdline(pid)
        self._write_event(
            lambda seq, ts: Exec(
                seq, ts, pid, thread.tid, path, argv, former if former != thread.tid else None
            )
        )
        foreign = self._check_exec(pid, path)
        if self._phases is not None and not foreign:
            self._phases.on_exec(pid, path)

    def _check_exec(self, pid: int, path: str) -> bool:
        """Tell the user about programs that run differently traced; True for a foreign one."""
        foreign = file_architecture(path) if path else None
        if foreign is not None:
            self._note(
                f"foreign {path}",
                f"process {pid} runs {path}, {foreign}: its memory syscalls are not recorded "
                "(alloctrace traces x86-64 programs only)",
            )
        try:
            info = os.stat(path)
        except OSError:
            return foreign is not None
        if info.st_mode & (stat.S_ISUID | stat.S_ISGID):
            uids, gids = procfs.ids(pid)
            lost = (info.st_mode & stat.S_ISUID and len(uids) > 1 and uids[1] != info.st_uid) or (
                info.st_mode & stat.S_ISGID and len(gids) > 1 and gids[1] != info.st_gid
            )
            if lost:
                self._note(
                    f"setid {path}",
                    f"{path} is set-user-ID or set-group-ID, but runs as uid {uids[1]} gid "
                    f"{gids[1]} under alloctrace, without its privileges: the kernel does not "
                    "grant them to a traced program unless the tracer is root",
                )
        return foreign is not None

    def _on_exit_event(self, thread: _Thread) -> None:
        """PTRACE_EVENT_EXIT: the thread is about to go, its address space still intact."""
        if thread.tid != thread.pid:
            return
        mappings = tuple(procfs.smaps(thread.pid))
        if mappings:
            self._write_event(lambda seq, ts: Memory(seq, ts, thread.pid, mappings))

    def _on_gone(self, tid: int, status: int) -> None:
        thread = self._untrack(tid)
        if thread is None:
            return
        if os.WIFSIGNALED(status):
            sig: int | None = os.WTERMSIG(status)
            code: int | None = None
        else:
            sig, code = None, os.WEXITSTATUS(status)
        core = os.WCOREDUMP(status) if sig is not None else False
        self._write_event(lambda seq, ts: Exit(seq, ts, thread.pid, tid, code, sig, core))
        if tid == thread.pid:
            memory = self._memory.pop(tid, None)
            if memory is not None:
                memory.close()
            if self.stacks is not None:
                self.stacks.on_exit(tid)
            if self._phases is not None:
                self._phases.on_exit(tid)
        if tid == self._root:
            self._root_status = status
            left = sorted({t.pid for t in self._threads.values()})
            if left and self._armed:
                ending = "detaches from" if self._attached else "kills"
                self._note(
                    "left running",
                    f"process {tid} ended, but alloctrace goes on tracing the processes it "
                    f"started ({', '.join(map(str, left[:5]))}{'...' if len(left) > 5 else ''}) "
                    f"until they end; Ctrl-C stops tracing and {ending} them",
                )

    def _write_event(
        self, build: Callable[[int, int], Spawn | Exec | Exit | Memory | Phase]
    ) -> None:
        self._seq += 1
        if self._write_failure is not None:
            return
        try:
            self.writer.write(build(self._seq, self._now()))
        except TraceWriteError as exc:
            if not self._cleaning:
                raise
            self._write_failure = exc


def _kill(tid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(tid, signal.SIGKILL)


def _kill_and_reap(pid: int) -> None:
    """End a child that never became the traced program (it may be in a ptrace-stop)."""
    _kill(pid)
    with contextlib.suppress(ChildProcessError):
        while True:
            _pid, status = os.waitpid(pid, pt.WALL)
            if not os.WIFSTOPPED(status):
                return
