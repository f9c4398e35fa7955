"""The ptrace session: start a program, follow its threads and children, record memory syscalls.

One ``waitpid(-1, __WALL)`` loop owns every tracee. With the seccomp filter a traced syscall
costs two stops: the seccomp stop at entry (nothing read, only the time taken) and the
syscall-exit stop, where one PTRACE_GETREGS gives the number, the arguments (the kernel keeps
them) and the result. Everything else (names, classification) happens after the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from tracer import procfs, seccomp
from tracer import ptrace_adapter as pt
from tracer.breakpoints import PhaseBreakpoints
from tracer.errors import AlloctraceError
from tracer.programs import resolve_program
from tracer.records import MEMORY_SYSCALLS, Exec, Exit, Footer, Memory, Phase, Spawn
from tracer.traceformat import TraceWriter

_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_SYSCALL_TRAP = signal.SIGTRAP | 0x80  # syscall stops with PTRACE_O_TRACESYSGOOD
_MASK64 = (1 << 64) - 1
_MAP_ANONYMOUS = 0x20  # include/uapi/asm-generic/mman-common.h
_MREMAP_FIXED = 2  # include/uapi/linux/mman.h
_PR_SET_VMA_ANON_NAME = 0  # include/uapi/linux/prctl.h
_OPTIONS = (
    pt.PTRACE_O_TRACESYSGOOD
    | pt.PTRACE_O_TRACEFORK
    | pt.PTRACE_O_TRACEVFORK
    | pt.PTRACE_O_TRACECLONE
    | pt.PTRACE_O_TRACEEXEC
    | pt.PTRACE_O_TRACEEXIT
    | pt.PTRACE_O_EXITKILL
)


@dataclass(frozen=True)
class TraceOptions:
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


class _Interrupted(Exception):
    """alloctrace itself got SIGINT, SIGTERM or SIGHUP."""

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


@dataclass(frozen=True)
class Outcome:
    """How the root program ended, as a shell would report it."""

    footer: Footer

    @property
    def exit_code(self) -> int:
        """The program's exit status, or 128 + N when signal N killed it."""
        if self.footer.signal is not None:
            return 128 + self.footer.signal
        return self.footer.status if self.footer.status is not None else 1


class Session:
    """Traces one program (and everything it starts) into a TraceWriter."""

    def __init__(
        self,
        writer: TraceWriter,
        options: TraceOptions,
        stacks: StackRecorder | None = None,
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

    @property
    def uses_seccomp(self) -> bool:
        """True when the filter was installed (otherwise every syscall stops the tracee)."""
        return self._seccomp

    def _now(self) -> int:
        return time.monotonic_ns() - self._t0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- starting ---------------------------------------------------------------------------

    def spawn(self, argv: list[str], env: dict[str, str]) -> int:
        """Fork and exec ``argv`` under ptrace; returns its pid once it runs the new program."""
        path = resolve_program(argv[0], env.get("PATH", os.defpath))
        installer = (
            seccomp.Installer(seccomp.build_filter(MEMORY_SYSCALLS)) if self._seccomp else None
        )
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe()  # close-on-exec (PEP 446): EOF tells the parent exec happened
        pid = os.fork()
        if pid == 0:  # child: wait to be seized, install the filter, exec
            code = 127
            try:
                os.close(go_w)
                os.close(err_r)
                os.read(go_r, 1)
                if installer is not None:
                    failed = installer.install()
                    if failed:
                        os.write(err_w, b"S%d\n" % failed)
                os.execve(path, argv, env)
            except OSError as exc:
                os.write(err_w, b"E%d\n" % (exc.errno or 0))
            finally:
                os._exit(code)
        os.close(go_r)
        os.close(err_w)
        try:
            pt.seize(pid, _OPTIONS | (pt.PTRACE_O_TRACESECCOMP if installer else 0))
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(go_w)
            os.close(err_r)
            raise
        os.write(go_w, b"g")
        os.close(go_w)
        report = b""
        while chunk := os.read(err_r, 256):
            report += chunk
        os.close(err_r)
        for line in report.splitlines():
            if line.startswith(b"S"):  # the kernel refused the filter: plain syscall stops
                self._seccomp = False
            elif line.startswith(b"E"):
                os.waitpid(pid, pt.WALL)
                err = int(line[1:])
                raise AlloctraceError(f"cannot execute {argv[0]}: {os.strerror(err)}")
        self._root = pid
        self._threads[pid] = _Thread(pid, pid)
        return pid

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Trace until every tracee is gone (or alloctrace is interrupted); write the footer."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            self._loop()
        except _Interrupted as stop:
            self._kill_all()
            footer = self._footer(interrupted=stop.signum)
        else:
            footer = self._footer(interrupted=None)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for memory in self._memory.values():
                memory.close()
        self.writer.close(footer)
        return Outcome(footer)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        raise _Interrupted(signum)

    def _kill_all(self) -> None:
        for tid in list(self._threads):
            with contextlib.suppress(ProcessLookupError):
                os.kill(tid, signal.SIGKILL)
        while self._threads:
            try:
                tid, status = os.waitpid(-1, pt.WALL)
            except ChildProcessError:
                break
            if not os.WIFSTOPPED(status):
                self._on_gone(tid, status)

    def _footer(self, interrupted: int | None) -> Footer:
        status = self._root_status
        duration = self._now()
        events = self._seq
        if interrupted is not None:
            name = signal.Signals(interrupted).name
            return Footer("interrupted", duration, events, message=f"alloctrace got {name}")
        if status is None:
            return Footer("error", duration, events, message="the program's end was not seen")
        if os.WIFSIGNALED(status):
            return Footer("killed", duration, events, signal=os.WTERMSIG(status))
        return Footer("exited", duration, events, status=os.WEXITSTATUS(status))

    def _loop(self) -> None:
        waitpid = os.waitpid
        wall = pt.WALL
        threads = self._threads
        now = time.monotonic_ns
        t0 = self._t0
        seccomp_event = signal.SIGTRAP | (pt.PTRACE_EVENT_SECCOMP << 8)
        resume_to_syscall = pt.resume_to_syscall
        on_exit_stop = self._on_syscall_exit
        while threads:
            try:
                tid, status = waitpid(-1, wall)
            except ChildProcessError:
                return
            # Hot path first: the two stops of a traced syscall under the seccomp filter.
            if status & 0xFF == 0x7F:  # WIFSTOPPED
                stop = status >> 8
                thread = threads.get(tid)
                if thread is not None:
                    if stop == _SYSCALL_TRAP:
                        if self._seccomp:
                            on_exit_stop(thread)
                        else:
                            self._on_syscall_stop_unfiltered(thread)
                        continue
                    if stop == seccomp_event:
                        thread.entry_ns = now() - t0
                        resume_to_syscall(tid)
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
            thread.memory = 1 if nr in MEMORY_SYSCALLS else 0
            thread.entry_ns = self._now()
            self._resume(thread.tid)
        elif op == pt.SYSCALL_INFO_EXIT and thread.memory:
            thread.memory = 0
            self._on_syscall_exit(thread)
        else:
            self._resume(thread.tid)

    def _on_syscall_exit(self, thread: _Thread) -> None:
        """The exit stop of a memory syscall: read registers, write one record, resume.

        The hot function of the tracer (two per traced syscall with the stops): it reads each
        register once and builds the JSON line by hand, which costs a third of json.dumps.
        """
        tid = thread.tid
        regs = self._regs
        if not pt.get_registers(tid, regs):
            return
        name = MEMORY_SYSCALLS.get(regs.orig_rax)
        if name is None:  # not ours (a filter for other syscalls would be a bug): pass it
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
        if self._seccomp:
            pt.resume(tid)
        else:
            pt.resume_to_syscall(tid)

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
        pid = procfs.thread_group(tid) or tid
        thread = self._threads[tid] = _Thread(tid, pid)
        return thread

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
            self._threads.pop(former, None)
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
        if self._phases is not None:
            self._phases.on_exec(pid, path)

    def _on_exit_event(self, thread: _Thread) -> None:
        """PTRACE_EVENT_EXIT: the thread is about to go, its address space still intact."""
        if thread.tid != thread.pid:
            return
        mappings = tuple(procfs.smaps(thread.pid))
        if mappings:
            self._write_event(lambda seq, ts: Memory(seq, ts, thread.pid, mappings))

    def _on_gone(self, tid: int, status: int) -> None:
        thread = self._threads.pop(tid, None)
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

    def _write_event(
        self, build: Callable[[int, int], Spawn | Exec | Exit | Memory | Phase]
    ) -> None:
        self._seq += 1
        self.writer.write(build(self._seq, self._now()))
