"""The seccomp-bpf filter that makes only the memory syscalls stop the tracee.

strace's ``--seccomp-bpf`` technique (src/filter_seccomp.c): the child installs, right before
execve, a classic BPF program returning SECCOMP_RET_TRACE for the traced syscall numbers and
SECCOMP_RET_ALLOW for everything else; with PTRACE_O_TRACESECCOMP the tracer then sees a
PTRACE_EVENT_SECCOMP stop at the entry of those syscalls only. Untraced syscalls (getpid, read,
write...) never stop; like any filtered process's, they take the kernel's slower entry path.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable

# include/uapi/linux/bpf_common.h
_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
# include/uapi/linux/seccomp.h
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
# include/uapi/linux/audit.h: AUDIT_ARCH_X86_64 = EM_X86_64 | __AUDIT_ARCH_64BIT | LE
AUDIT_ARCH_X86_64 = 0xC000003E
# include/uapi/linux/prctl.h
PR_SET_VMA = 0x53564D41
# offsetof(struct seccomp_data, nr / arch / args[0]) (include/uapi/linux/seccomp.h)
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16
# syscall numbers, arch/x86/entry/syscalls/syscall_64.tbl
NR_PRCTL = 157


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build_filter(syscalls: Iterable[int]) -> bytes:
    """A BPF program tracing ``syscalls`` (x86-64 numbers); prctl only for PR_SET_VMA.

    Other architectures (a 32-bit process) are allowed through: the session refuses to start
    32-bit programs rather than misread their syscall numbers.
    """
    numbers = sorted(set(syscalls) - {NR_PRCTL})
    trace_prctl = NR_PRCTL in set(syscalls)
    body: list[bytes] = []
    # Layout: [arch check][load nr][one jeq per number][prctl: jeq, load arg0, jeq][ALLOW][TRACE]
    n = len(numbers)
    tail = 3 if trace_prctl else 0
    # distance from instruction i (0-based within the jeq block) to ALLOW / TRACE
    body.append(_insn(_BPF_LD_W_ABS, 0, 0, _OFF_ARCH))
    allow_from_arch = 1 + n + tail  # skip: load nr, jeqs, prctl block
    body.append(_insn(_BPF_JEQ_K, 0, allow_from_arch, AUDIT_ARCH_X86_64))
    body.append(_insn(_BPF_LD_W_ABS, 0, 0, _OFF_NR))
    for i, nr in enumerate(numbers):
        to_trace = (n - 1 - i) + tail + 1  # remaining jeqs, prctl block, ALLOW
        body.append(_insn(_BPF_JEQ_K, to_trace, 0, nr))
    if trace_prctl:
        body.append(_insn(_BPF_JEQ_K, 0, 2, NR_PRCTL))
        body.append(_insn(_BPF_LD_W_ABS, 0, 0, _OFF_ARG0))
        body.append(_insn(_BPF_JEQ_K, 1, 0, PR_SET_VMA))
    body.append(_insn(_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    body.append(_insn(_BPF_RET_K, 0, 0, SECCOMP_RET_TRACE))
    return b"".join(body)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class Filter:
    """A BPF program laid out for prctl(PR_SET_SECCOMP), prepared before fork: the child passes
    its address to fast_exec (tracer/_fastloop.c), which installs it right before execve."""

    def __init__(self, program: bytes) -> None:
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._buffer))

    @property
    def address(self) -> int:
        """The address of its struct sock_fprog."""
        return ctypes.addressof(self._fprog)
