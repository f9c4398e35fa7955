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

from tracer import procfs
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
PTRACE_GETSIGINFO = 0x4202
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


_EPERM_HELP = (
    "ptrace is not permitted here (EPERM): run as root, set kernel.yama.ptrace_scope=0, "
    "or give the container CAP_SYS_PTRACE (docker run --cap-add=SYS_PTRACE)"
)


def _already_traced(tid: int) -> str | None:
    """Why ``tid`` cannot be seized when it has another tracer (None when it has none)."""
    tracer = procfs.tracer_of(tid)
    if not tracer or tracer == os.getpid():
        return None
    name = procfs.command_name(tracer) or "?"
    return (
        f"process {tid} is already traced by process {tracer} ({name}): a process has only one "
        "tracer (is alloctrace itself running under strace or gdb?)"
    )


def _seize_error(pid: int, exc: PtraceError) -> AlloctraceError:
    """One line saying why PTRACE_SEIZE failed, and for EPERM what to do about it."""
    if exc.errno == errno_mod.EPERM:
        reason = _already_traced(pid)
        if reason is not None:
            return AlloctraceError(reason)
        owner = procfs.owner(pid)
        if owner is not None and owner != os.geteuid():
            return AlloctraceError(
                f"process {pid} belongs to another user (uid {owner}): tracing it needs root "
                "or CAP_SYS_PTRACE"
            )
        return AlloctraceError(_EPERM_HELP)
    return AlloctraceError(f"cannot trace process {pid}: {os.strerror(exc.errno or 0)}")


def seize(pid: int, options: int) -> None:
    """PTRACE_SEIZE: trace ``pid`` without stopping it; job control keeps working (LISTEN).

    EPERM becomes one AlloctraceError that says why: the process already has a tracer, it
    belongs to another user, or ptrace is not allowed here at all (and how to allow it).
    """
    try:
        _call(PTRACE_SEIZE, pid, 0, options)
    except ProcessGone as exc:
        raise AlloctraceError(f"process {pid} does not exist (it has exited)") from exc
    except PtraceError as exc:
        raise _seize_error(pid, exc) from exc


def seize_thread(tid: int, options: int) -> bool:
    """PTRACE_SEIZE one thread of a running process; False when it is gone or already ours.

    A thread created by a thread already seized is traced automatically (TRACECLONE): seizing
    it again fails with EPERM, and its tracer is then alloctrace.
    """
    try:
        _call(PTRACE_SEIZE, tid, 0, options)
    except ProcessGone:
        return False
    except PtraceError as exc:
        if exc.errno == errno_mod.EPERM and procfs.tracer_of(tid) == os.getpid():
            return False
        raise _seize_error(tid, exc) from exc
    return True


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


def interrupt(tid: int) -> bool:
    """PTRACE_INTERRUPT: make a seized tracee stop (it reports a PTRACE_EVENT_STOP, or the
    stop it was about to make). False when it cannot be asked (gone)."""
    try:
        _call(PTRACE_INTERRUPT, tid)
    except (ProcessGone, PtraceError):
        return False
    return True


def detach(tid: int, signal: int = 0) -> bool:
    """PTRACE_DETACH from a tracee in a ptrace-stop: it runs on untraced, receiving ``signal``
    (0 for none). False when it was not in a ptrace-stop or is gone."""
    try:
        _call(_pt.PTRACE_DETACH, tid, 0, signal)
    except (ProcessGone, PtraceError):
        return False
    return True


class _SigInfo(ctypes.Structure):
    _fields_ = (
        ("si_signo", ctypes.c_int),
        ("si_errno", ctypes.c_int),
        ("si_code", ctypes.c_int),
        ("rest", ctypes.c_uint8 * 116),  # siginfo_t is 128 bytes
    )


_SIGTRAP = 5


def pending_signal(tid: int) -> int | None:
    """Is ``tid`` in a ptrace-stop? None when it is not (running, listening, gone); else the
    signal a detach must pass on: the signal of a signal-delivery-stop, 0 for ptrace's own
    stops (syscall, event, group- and interrupt-stops), whose siginfo PTRACE_GETSIGINFO shows
    as SIGTRAP|0x80 or ``signal | event << 8``.
    """
    info = _SigInfo()
    try:
        _call(PTRACE_GETSIGINFO, tid, 0, ctypes.addressof(info))
    except ProcessGone:
        return None
    except PtraceError as exc:
        if exc.errno == errno_mod.EINVAL:  # a group-stop of a tracee not seized
            return 0
        return None
    code = info.si_code
    if (info.si_signo == _SIGTRAP and code == _SIGTRAP | 0x80) or (code > 0 and code >> 8):
        return 0
    return int(info.si_signo)


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
# include/uapi/linux/audit.h: AUDIT_ARCH_X86_64
_AUDIT_ARCH_X86_64 = 0xC000003E
FOREIGN_SYSCALL = -1


def syscall_stop_kind(tid: int) -> tuple[int, int]:
    """At a syscall stop: (SYSCALL_INFO_ENTRY or _EXIT, syscall number at entry else 0).

    Used where seccomp cannot mark the entries (no filter, or an attached process), so the
    tracer knows entry from exit without toggling state that a missed stop would corrupt. A
    syscall of another ABI (a 32-bit program: other numbers) is FOREIGN_SYSCALL at entry.
    """
    _call(PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(_INFO), ctypes.addressof(_INFO))
    if _INFO.op != SYSCALL_INFO_ENTRY:
        return _INFO.op, 0
    if _INFO.arch != _AUDIT_ARCH_X86_64:
        return _INFO.op, FOREIGN_SYSCALL
    return _INFO.op, _INFO.nr


def syscall_argument(index: int) -> int:
    """Argument ``index`` of the syscall entry last read by syscall_stop_kind."""
    return int(_INFO.args[index])


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
