"""Classification without stacks: the argument signatures of shared/allocators.md, section 11.

Used for ``--no-stacks`` traces and imported strace logs, and wherever a stack does not decide.
Each signature is checked in order; sizes alone are weak evidence (counts vary with ASLR,
kernel alignment, CPU count and overcommit), so the reason says which signature matched.
"""

from __future__ import annotations

import os

from analyzers.model import Classified, ProcessState
from tracer import flags
from tracer.records import Syscall

KIB = 1024
MIB = 1024 * KIB
_ANON_RW_PRIVATE = flags.MAP_PRIVATE | flags.MAP_ANONYMOUS
_RW = flags.PROT_READ | flags.PROT_WRITE


def _result(event: Syscall, category: str, owner: str, role: str, why: str) -> Classified:
    return Classified(event, category, owner, role, f"signature: {why}", "heuristic")


def classify(event: Syscall, state: ProcessState) -> Classified:
    """The best guess from the arguments and what this process did before."""
    program = os.path.basename(state.exe) or "program"
    fl = event.flags or 0
    prot = event.prot or 0
    length = event.length or 0
    anon = bool(fl & flags.MAP_ANONYMOUS)
    if event.syscall == "brk":
        if state.brk_calls == 0 and not state.seen_mmap:
            return _result(
                event, "loader", "ld.so", "initialize break", "first brk, before any mmap"
            )
        return _result(event, "allocator", "glibc", "grow main heap", "brk after start-up")
    if event.syscall == "mmap":
        if event.path == "/etc/ld.so.cache":
            return _result(event, "loader", "ld.so", "read ld.so.cache", "maps /etc/ld.so.cache")
        if event.path and fl & flags.MAP_DENYWRITE:
            return _result(event, "loader", "ld.so", "map segment", "file map with MAP_DENYWRITE")
        if anon and fl & flags.MAP_FIXED and state.loading_span(event.addr or 0):
            return _result(
                event,
                "loader",
                "ld.so",
                "map segment",
                "MAP_FIXED anonymous inside an object being loaded (.bss)",
            )
        if fl & flags.MAP_STACK or (anon and prot == flags.PROT_NONE and length % MIB == 4096):
            return _result(
                event,
                "thread-stack",
                "glibc",
                "reserve stack (guard + stack)",
                "MAP_STACK or PROT_NONE of stack size + one guard page",
            )
        if (
            anon
            and prot == flags.PROT_NONE
            and fl & flags.MAP_NORESERVE
            and length in (64 * MIB, 128 * MIB)
        ):
            return _result(
                event,
                "allocator",
                "glibc",
                "reserve arena heap",
                "128 MiB PROT_NONE MAP_NORESERVE (2 x HEAP_MAX_SIZE)",
            )
        if anon and fl & flags.MAP_NORESERVE and length == 32 * MIB:
            return _result(
                event, "allocator", "mimalloc", "segment", "32 MiB MAP_NORESERVE (mimalloc segment)"
            )
        if anon and fl & flags.MAP_NORESERVE and (length == 4096 or length % (2 * MIB) == 0):
            return _result(
                event,
                "allocator",
                "jemalloc",
                "extent or base block",
                "MAP_NORESERVE page or 2 MiB multiple (jemalloc pages_map)",
            )
        if (
            anon
            and not state.seen_main_heap
            and prot == _RW
            and length in (8 * KIB, 12 * KIB, 16 * KIB)
            and not fl & flags.MAP_FIXED
            and state.brk_calls <= 1
        ):
            return _result(
                event, "loader", "ld.so", "minimal malloc", "small anonymous RW map during start-up"
            )
        if anon and prot == _RW and length in (MIB, 256 * KIB) and "python" in program:
            return _result(
                event, "runtime", "pymalloc", "arena", "1 MiB anonymous RW in a Python process"
            )
        if anon and prot == _RW and length >= 128 * KIB and length % 4096 == 0:
            return _result(
                event,
                "allocator",
                "glibc",
                "large allocation",
                "anonymous RW at or above the 128 KiB mmap threshold",
            )
        return _result(event, "user", program, "own call", "no allocator or loader signature")
    if event.syscall == "mprotect" and prot == flags.PROT_READ and not state.seen_main_heap:
        return _result(event, "loader", "ld.so", "RELRO", "mprotect PROT_READ during start-up")
    return _result(event, "user", program, "own call", "no allocator or loader signature")


def allocator_role(owner: str, event: Syscall) -> str | None:
    """The role of a call inside an allocator library that has no symbols to name it.

    Debian ships no debug files for jemalloc, tcmalloc or mimalloc, so their internal frames are
    nameless; the call's arguments say what it was (shared/allocators.md sections 5-7).
    """
    length = event.length or 0
    call = event.syscall
    if owner == "jemalloc":
        if length == 4096 and call in ("mmap", "madvise", "munmap"):
            return "page probe"  # pages_boot: does MADV_DONTNEED / MADV_FREE really work?
        if call == "mmap":
            return "extent or base block"
        if call == "madvise":
            return "purge"
        if call == "brk":
            return "dss probe"  # extent_dss_boot: sbrk(0) records the break
        if call == "munmap":
            return "trim"
    if owner == "mimalloc":
        if call == "mmap":
            return "segment" if length >= 4 * MIB else "thread data"
        return {"mprotect": "commit", "madvise": "purge", "munmap": "release segment"}.get(call)
    if owner == "tcmalloc":
        return {
            "brk": "sbrk (metadata or page heap)",
            "mmap": "page heap (mmap)",
            "madvise": "purge",
            "munmap": "release",
        }.get(call)
    return None
