"""Classification without stacks: the argument signatures of the loader and each allocator.

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
_MUSL_MAP = "slot group or large allocation"  # what mallocng maps (alloc_group, large malloc)
# what glibc's setlocale (_nl_load_locale*) and iconv (__gconv_load_cache) map read-only
_LOCALE_FILES = ("/lib/locale/", "/share/locale/", "/gconv/gconv-modules.cache")


def _result(event: Syscall, category: str, owner: str, role: str, why: str) -> Classified:
    return Classified(event, category, owner, role, f"signature: {why}", "heuristic")


def classify(event: Syscall, state: ProcessState, inside: str | None = None) -> Classified:
    """The best guess from the arguments and what this process did before. ``inside``: the
    owner whose unnamed code the stack shows made the call ("musl": its libc), if known."""
    program = os.path.basename(state.exe) or "program"
    fl = event.flags or 0
    prot = event.prot or 0
    length = event.length or 0
    anon = bool(fl & flags.MAP_ANONYMOUS)
    allocator = state.allocator
    loading = not state.loader_done and state.phase == "startup"
    # musl's code made the call: the stack said so, or it said nothing in a musl process
    by_musl = inside == "musl" or (inside is None and allocator == "musl")
    if event.syscall == "brk":
        return _brk(event, state, allocator)
    if event.syscall == "mmap":
        file_backed = bool(event.path) or (not anon and (event.fd or -1) >= 0)
        if event.path == "/etc/ld.so.cache":
            return _result(event, "loader", "ld.so", "read ld.so.cache", "maps /etc/ld.so.cache")
        if file_backed and fl & flags.MAP_DENYWRITE:
            return _result(event, "loader", "ld.so", "map segment", "file map with MAP_DENYWRITE")
        if event.path and any(part in event.path for part in _LOCALE_FILES):
            why = "maps a locale file or the gconv cache (setlocale, iconv)"
            return _result(event, "runtime", "glibc", "locale data", why)
        if (  # a log without -y paths: ld.so reads its cache before it maps any object
            event.path is None
            and file_backed
            and loading
            and prot == flags.PROT_READ
            and fl == flags.MAP_PRIVATE
            and not state.spans
        ):
            why = "first read-only private file map, before any object (ld.so.cache)"
            return _result(event, "loader", "ld.so", "read ld.so.cache", why)
        if anon and fl & flags.MAP_FIXED and state.loading_span(event.addr or 0):
            why = "MAP_FIXED anonymous inside an object being loaded (.bss)"
            return _result(event, "loader", "ld.so", "map segment", why)
        if anon and allocator == "musl" and prot == flags.PROT_NONE and fl & flags.MAP_FIXED:
            why = "PROT_NONE MAP_FIXED page with musl (mallocng's guard at the old break)"
            return _result(event, "allocator", "musl", "guard page", why)
        if by_musl and anon and not fl & flags.MAP_FIXED:
            # musl's libc maps anonymous memory for mallocng and for pthread_create, which
            # maps guard + stack + TLS PROT_NONE, then opens all but the guard (musl 1.2.3).
            if prot == flags.PROT_NONE:
                why = "PROT_NONE anonymous map by musl's libc (pthread_create's stack)"
                return _result(event, "thread-stack", "musl", "reserve stack (guard + stack)", why)
            why = f"anonymous map by musl's libc (mallocng: {_MUSL_MAP})"
            return _result(event, "allocator", "musl", _MUSL_MAP, why)
        stack_sized = length > MIB and length % MIB == 4096  # nptl: stack + one guard page
        if fl & flags.MAP_STACK or (anon and prot == flags.PROT_NONE and stack_sized):
            why = "MAP_STACK, or PROT_NONE of a stack size plus one guard page"
            return _result(event, "thread-stack", "glibc", "reserve stack (guard + stack)", why)
        if anon and loading and prot == _RW and length <= 64 * KIB and not fl & flags.MAP_NORESERVE:
            why = "small anonymous RW map while ld.so loads (__minimal_malloc, TLS)"
            return _result(event, "loader", "ld.so", "minimal malloc", why)
        if anon and fl & flags.MAP_NORESERVE:
            return _noreserve(event, state, program)
        if anon and allocator == "jemalloc" and state.phase == "startup" and length == 4096:
            why = "4 KiB anonymous map at jemalloc start-up (pages_boot probe)"
            return _result(event, "allocator", "jemalloc", "page probe", why)
        if anon and prot == _RW and length in (MIB, 256 * KIB) and "python" in program:
            why = "1 MiB anonymous RW in a Python process"
            return _result(event, "runtime", "pymalloc", "arena", why)
        if anon and prot == _RW and length >= 128 * KIB and allocator == "glibc":
            why = "anonymous RW at or above glibc's 128 KiB mmap threshold"
            return _result(event, "allocator", "glibc", "large allocation", why)
        return _result(event, "user", program, "own call", "no allocator or loader signature")
    if by_musl and event.syscall in ("munmap", "madvise"):
        # Reached when no replayed mapping covers the range (threads' calls recorded out of
        # the kernel's order): in musl's libc only mallocng frees anonymous memory so.
        why = f"{event.syscall} by musl's libc (mallocng's free)"
        verb = "unmap" if event.syscall == "munmap" else "advise"
        return _result(event, "allocator", "musl", f"{verb} ({_MUSL_MAP})", why)
    if event.syscall == "mprotect" and loading and prot == flags.PROT_READ:
        loader = "ld-musl" if allocator == "musl" else "ld.so"
        return _result(
            event, "loader", loader, "RELRO", "mprotect PROT_READ while the loader loads"
        )
    return _result(event, "user", program, "own call", "no allocator or loader signature")


def _brk(event: Syscall, state: ProcessState, allocator: str) -> Classified:
    if allocator == "musl":  # musl's loader never calls brk; mallocng's alloc_meta does
        return _result(event, "allocator", "musl", "metadata", "brk with musl (alloc_meta)")
    if state.brk_calls == 0 and not state.seen_mmap:
        why = "first brk, before any mmap"
        if state.static:  # a static program: libc's start-up sets up TLS with brk
            return _result(event, "loader", "glibc", "static TLS", why + " in a static program")
        return _result(event, "loader", "ld.so", "initialize break", why)
    if state.static and state.phase == "startup":
        return _result(event, "loader", "glibc", "static TLS", "brk before main, static program")
    if allocator == "jemalloc":
        return _result(event, "allocator", "jemalloc", "dss probe", "brk with jemalloc loaded")
    if allocator == "tcmalloc":
        why = "brk with tcmalloc loaded (SbrkSysAllocator)"
        return _result(event, "allocator", "tcmalloc", "sbrk (metadata or page heap)", why)
    return _result(event, "allocator", "glibc", "grow main heap", "brk after start-up")


def _noreserve(event: Syscall, state: ProcessState, program: str) -> Classified:
    """MAP_NORESERVE: glibc's arena heaps, mimalloc's segments, jemalloc's maps; V8 and the
    JVM reserve their heaps so too."""
    length, prot, allocator = event.length or 0, event.prot or 0, state.allocator
    # new_heap: 2 x the heap's maximum size, or once the maximum at the aligned address it
    # remembered; the maximum is 64 MiB, or 4 huge pages with glibc.malloc.hugetlb=2 (8 MiB)
    if prot == flags.PROT_NONE and length in (8 * MIB, 16 * MIB, 64 * MIB, 128 * MIB):
        why = "PROT_NONE MAP_NORESERVE of 1 or 2 x a heap's maximum size (glibc new_heap)"
        return _result(event, "allocator", "glibc", "reserve arena heap", why)
    hinted = 2 << 40 <= (event.result or 0) < 6 << 40  # mi_os_get_aligned_hint: 2-6 TiB
    if allocator == "mimalloc" or (length == 32 * MIB and hinted):
        role = "segment" if length >= 4 * MIB else "thread data"
        why = "MAP_NORESERVE with mimalloc, or 32 MiB at its 2-6 TiB hint"
        return _result(event, "allocator", "mimalloc", role, why)
    # jemalloc maps read-write (committing is a no-op with overcommit 0 or 1); V8's and the
    # JVM's NORESERVE maps are PROT_NONE reservations
    if allocator == "jemalloc" or prot == _RW:
        role = "page probe" if length == 4096 else "extent or base block"
        why = "MAP_NORESERVE read-write, or with jemalloc (pages_map)"
        return _result(event, "allocator", "jemalloc", role, why)
    why = "PROT_NONE MAP_NORESERVE of no allocator's shape (V8's or the JVM's heap reservation)"
    return _result(event, "user", program, "own call", why)


def allocator_role(owner: str, event: Syscall, phase: str = "main") -> str | None:
    """The role of a call inside an allocator (or CPython's arena allocator) that has no
    symbols, or no rule roles, to name it.

    Debian ships no debug files for jemalloc, tcmalloc or mimalloc, so their internal frames are
    nameless; the call's arguments say what it was (jemalloc 5.3.0 pages.c and base.c, mimalloc
    2.0.9 os.c and segment.c, gperftools 2.10 system-alloc.cc).
    """
    length = event.length or 0
    call = event.syscall
    if owner == "jemalloc":
        if length == 4096 and call in ("mmap", "madvise", "munmap") and phase == "startup":
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
    if owner == "pymalloc" and call in ("mmap", "munmap"):
        # obmalloc's arena allocator serves arenas (ARENA_SIZE: 1 MiB, 256 KiB before 3.10)
        # and, through _PyObject_VirtualAlloc, the frames' data stack chunks (16 KiB or more).
        what = "arena" if length in (MIB, 256 * KIB) else "frame data stack"
        return what if call == "mmap" else f"release {what}"
    if owner == "tcmalloc":
        return {
            "brk": "sbrk (metadata or page heap)",
            "mmap": "page heap (mmap)",
            "madvise": "purge",
            "munmap": "trim",  # MmapSysAllocator::Alloc unmaps what alignment left over
        }.get(call)
    return None
