"""The only module that touches python-ptrace: typed ptrace requests for the rest of the tracer.

python-ptrace gives the binding (the libc ``ptrace`` call, request numbers, the register
structure); its high-level debugger loop is not used (it polls and costs 2x, see
docs/how-it-works.md). Requests it lacks (SEIZE, LISTEN, INTERRUPT, seccomp and exit-kill
options, GET_SYSCALL_INFO) are defined here from include/uapi/linux/ptrace.h.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os

from ptrace import PtraceError
from ptrace.binding import func as _pt

from tracer.errors import AlloctraceError

# struct user_regs_struct, arch/x86/include/asm/user_64.h (python-ptrace's copy is untyped).
_REGISTER_NAMES = (
    "r15",
    "r14",
    "r13",
    "r12",
    "rbp",
    "rbx",
    "r11",
    "r10",
    "r9",
    "r8",
    "rax",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "orig_rax",
    "rip",
    "cs",
    "eflags",
    "rsp",
    "ss",
    "fs_base",
    "gs_base",
    "ds",
    "es",
    "fs",
    "gs",
)


class Registers(ctypes.Structure):
    """The x86-64 general registers of a stopped thread, as PTRACE_GETREGS fills them."""

    _fields_ = tuple((name, ctypes.c_ulong) for name in _REGISTER_NAMES)
    r15: int
    r14: int
    r13: int
    r12: int
    rbp: int
    rbx: int
    r11: int
    r10: int
    r9: int
    r8: int
    rax: int
    rcx: int
    rdx: int
    rsi: int
    rdi: int
    orig_rax: int
    rip: int
    cs: int
    eflags: int
    rsp: int
    ss: int
    fs_base: int
    gs_base: int
    ds: int
    es: int
    fs: int
    gs: int


# include/uapi/linux/ptrace.h
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_O_TRACESYSGOOD = _pt.PTRACE_O_TRACESYSGOOD
PTRACE_O_TRACEFORK = _pt.PTRACE_O_TRACEFORK
PTRACE_O_TRACEVFORK = _pt.PTRACE_O_TRACEVFORK
PTRACE_O_TRACECLONE = _pt.PTRACE_O_TRACECLONE
PTRACE_O_TRACEEXEC = _pt.PTRACE_O_TRACEEXEC
PTRACE_O_TRACEEXIT = _pt.PTRACE_O_TRACEEXIT
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_FORK = _pt.PTRACE_EVENT_FORK
PTRACE_EVENT_VFORK = _pt.PTRACE_EVENT_VFORK
PTRACE_EVENT_CLONE = _pt.PTRACE_EVENT_CLONE
PTRACE_EVENT_EXEC = _pt.PTRACE_EVENT_EXEC
PTRACE_EVENT_EXIT = _pt.PTRACE_EVENT_EXIT
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128
# wait(2): also wait for threads (clone children), not only fork children.
WALL = 0x40000000

_ptrace = _pt.ptrace
# The hot requests (CONT, SYSCALL, GETREGS at every stop) skip python-ptrace's wrapper, which
# checks errno and builds exceptions, and declare no argtypes (ints go as C ints, pointers as
# byref/None): 0.6 us per call instead of 1.9 us through the wrapper, measured here.
_raw = ctypes.CDLL(None).ptrace
_raw.restype = ctypes.c_long
_CONT = _pt.PTRACE_CONT
_SYSCALL = _pt.PTRACE_SYSCALL
_GETREGS = _pt.PTRACE_GETREGS


class ProcessGone(Exception):
    """The thread is gone (ESRCH): it was killed or exited while we looked at it."""


def _call(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    try:
        return int(_ptrace(request, tid, addr, data))
    except PtraceError as exc:
        if exc.errno == errno_mod.ESRCH:
            raise ProcessGone(tid) from exc
        raise


def seize(pid: int, options: int) -> None:
    """PTRACE_SEIZE: trace ``pid`` without stopping it; job control keeps working (LISTEN)."""
    try:
        _call(PTRACE_SEIZE, pid, 0, options)
    except PtraceError as exc:
        if exc.errno == errno_mod.EPERM:
            raise AlloctraceError(
                "ptrace is not permitted here (EPERM): run as root, set "
                "kernel.yama.ptrace_scope=0, or give the container CAP_SYS_PTRACE "
                "(docker run --cap-add=SYS_PTRACE)"
            ) from exc
        raise AlloctraceError(f"cannot trace process {pid}: {os.strerror(exc.errno or 0)}") from exc


def resume(tid: int, signal: int = 0) -> None:
    """PTRACE_CONT: run until the next seccomp stop, event or signal.

    Failure means the thread is gone; waitpid reports its end, so nothing is raised.
    """
    _raw(_CONT, tid, None, signal)


def resume_to_syscall(tid: int, signal: int = 0) -> None:
    """PTRACE_SYSCALL: run until the next syscall entry or exit stop (failure: thread gone)."""
    _raw(_SYSCALL, tid, None, signal)


def listen(tid: int) -> None:
    """PTRACE_LISTEN: leave a group-stopped tracee stopped, but let us hear SIGCONT."""
    _call(PTRACE_LISTEN, tid)


def interrupt(tid: int) -> None:
    """PTRACE_INTERRUPT: stop a running seized tracee."""
    _call(PTRACE_INTERRUPT, tid)


def detach(tid: int, signal: int = 0) -> None:
    """PTRACE_DETACH: let the tracee run on untraced."""
    _call(_pt.PTRACE_DETACH, tid, 0, signal)


def get_registers(tid: int, regs: Registers) -> bool:
    """PTRACE_GETREGS into a reused structure (no allocation at the stop); False if gone."""
    return bool(_raw(_GETREGS, tid, None, ctypes.byref(regs)) == 0)


def event_message(tid: int) -> int:
    """PTRACE_GETEVENTMSG: new tid at clone/fork, former tid at exec, status at exit."""
    value = ctypes.c_ulong()
    _call(_pt.PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(value))
    return value.value


class TraceeMemory:
    """Reads a process's memory through one cached /proc/PID/mem descriptor.

    One ``pread`` costs about 1.5 us here against 3.5 us per word for PTRACE_PEEKDATA. The
    descriptor belongs to one address space: call ``close`` at exec and exit.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd: int | None = None

    def read(self, addr: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``addr``; fewer (or none) where the memory ends."""
        if self._fd is None:
            self._fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(self._fd, size, addr)
        except OSError:
            return b""

    def close(self) -> None:
        """Forget the descriptor (the address space changed or went away)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# include/uapi/linux/ptrace.h: struct ptrace_syscall_info
PTRACE_GET_SYSCALL_INFO = 0x420E
SYSCALL_INFO_ENTRY = 1
SYSCALL_INFO_EXIT = 2


class _SyscallInfo(ctypes.Structure):
    _fields_ = (
        ("op", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("stack_pointer", ctypes.c_uint64),
        ("nr", ctypes.c_uint64),  # entry.nr, or exit.rval
        ("args", ctypes.c_uint64 * 6),
        ("ret_data", ctypes.c_uint32),
    )


_INFO = _SyscallInfo()


def syscall_stop_kind(tid: int) -> tuple[int, int]:
    """At a syscall stop: (SYSCALL_INFO_ENTRY or _EXIT, syscall number at entry else 0).

    Used where seccomp cannot mark the entries (no filter, or an attached process), so the
    tracer knows entry from exit without toggling state that a missed stop would corrupt.
    """
    _call(PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(_INFO), ctypes.addressof(_INFO))
    return _INFO.op, _INFO.nr if _INFO.op == SYSCALL_INFO_ENTRY else 0


def set_registers(tid: int, regs: Registers) -> bool:
    """PTRACE_SETREGS (used to rewind the instruction pointer after a breakpoint)."""
    return bool(_raw(_pt.PTRACE_SETREGS, tid, None, ctypes.byref(regs)) == 0)


def write_memory(pid: int, addr: int, data: bytes) -> bool:
    """Write tracee memory through /proc/PID/mem (allowed on read-only text for its tracer)."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.pwrite(fd, data, addr) == len(data)
    except OSError:
        return False
    finally:
        os.close(fd)
