"""The kernel's flag values for the memory syscalls (x86-64 Linux), as data, in strace's spelling.

Each table cites the uapi header it comes from, like strace's ``src/xlat/*.in``; values were
checked against /usr/include (Linux 6.1 headers) and, for the newer ones, against the kernel
source and strace's xlat files. Names are printed the way strace 6.x prints them, so a formatted
value can be compared with an strace log character for character.
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

Xlat: TypeAlias = tuple[tuple[str, int], ...]

# From include/uapi/asm-generic/mman-common.h
PROT_NONE: Final = 0x0
PROT_READ: Final = 0x1
PROT_WRITE: Final = 0x2
PROT_EXEC: Final = 0x4
PROT_SEM: Final = 0x8
PROT_GROWSDOWN: Final = 0x01000000
PROT_GROWSUP: Final = 0x02000000

# From include/uapi/linux/mman.h: the mapping type, the low four bits of mmap's flags.
# MAP_DROPPABLE is Linux 6.11, newer than the installed headers.
MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_SHARED_VALIDATE: Final = 0x03
MAP_DROPPABLE: Final = 0x08
# From include/uapi/asm-generic/mman-common.h
MAP_TYPE: Final = 0x0F
MAP_FILE: Final = 0  # a compatibility name for "no type bits"; strace prints type 0 as MAP_FILE
MAP_FIXED: Final = 0x10
MAP_ANONYMOUS: Final = 0x20
MAP_POPULATE: Final = 0x008000
MAP_NONBLOCK: Final = 0x010000
MAP_STACK: Final = 0x020000
MAP_HUGETLB: Final = 0x040000
MAP_SYNC: Final = 0x080000
MAP_FIXED_NOREPLACE: Final = 0x100000
MAP_UNINITIALIZED: Final = 0x4000000
# From arch/x86/include/uapi/asm/mman.h (MAP_ABOVE4G is Linux 6.6)
MAP_32BIT: Final = 0x40
MAP_ABOVE4G: Final = 0x80
# From include/uapi/asm-generic/mman.h
MAP_GROWSDOWN: Final = 0x0100
MAP_DENYWRITE: Final = 0x0800
MAP_EXECUTABLE: Final = 0x1000
MAP_LOCKED: Final = 0x2000
MAP_NORESERVE: Final = 0x4000

# From include/uapi/asm-generic/hugetlb_encode.h: with MAP_HUGETLB, bits 26..31 hold log2 of
# the huge page size.
MAP_HUGE_SHIFT: Final = 26
MAP_HUGE_MASK: Final = 0x3F
MAP_HUGE_16KB: Final = 14 << MAP_HUGE_SHIFT
MAP_HUGE_64KB: Final = 16 << MAP_HUGE_SHIFT
MAP_HUGE_512KB: Final = 19 << MAP_HUGE_SHIFT
MAP_HUGE_1MB: Final = 20 << MAP_HUGE_SHIFT
MAP_HUGE_2MB: Final = 21 << MAP_HUGE_SHIFT
MAP_HUGE_8MB: Final = 23 << MAP_HUGE_SHIFT
MAP_HUGE_16MB: Final = 24 << MAP_HUGE_SHIFT
MAP_HUGE_32MB: Final = 25 << MAP_HUGE_SHIFT
MAP_HUGE_256MB: Final = 28 << MAP_HUGE_SHIFT
MAP_HUGE_512MB: Final = 29 << MAP_HUGE_SHIFT
MAP_HUGE_1GB: Final = 30 << MAP_HUGE_SHIFT
MAP_HUGE_2GB: Final = 31 << MAP_HUGE_SHIFT
MAP_HUGE_16GB: Final = 34 << MAP_HUGE_SHIFT

# From include/uapi/asm-generic/mman-common.h (MADV_GUARD_* are Linux 6.13, newer than the
# installed headers; values as in strace's src/xlat/madvise_cmds.in)
MADV_NORMAL: Final = 0
MADV_RANDOM: Final = 1
MADV_SEQUENTIAL: Final = 2
MADV_WILLNEED: Final = 3
MADV_DONTNEED: Final = 4
MADV_FREE: Final = 8
MADV_REMOVE: Final = 9
MADV_DONTFORK: Final = 10
MADV_DOFORK: Final = 11
MADV_MERGEABLE: Final = 12
MADV_UNMERGEABLE: Final = 13
MADV_HUGEPAGE: Final = 14
MADV_NOHUGEPAGE: Final = 15
MADV_DONTDUMP: Final = 16
MADV_DODUMP: Final = 17
MADV_WIPEONFORK: Final = 18
MADV_KEEPONFORK: Final = 19
MADV_COLD: Final = 20
MADV_PAGEOUT: Final = 21
MADV_POPULATE_READ: Final = 22
MADV_POPULATE_WRITE: Final = 23
MADV_DONTNEED_LOCKED: Final = 24
MADV_COLLAPSE: Final = 25
MADV_HWPOISON: Final = 100
MADV_SOFT_OFFLINE: Final = 101
MADV_GUARD_INSTALL: Final = 102
MADV_GUARD_REMOVE: Final = 103

# From include/uapi/linux/mman.h
MREMAP_MAYMOVE: Final = 1
MREMAP_FIXED: Final = 2
MREMAP_DONTUNMAP: Final = 4

# From include/uapi/linux/prctl.h: naming anonymous mappings (shown in /proc/PID/maps).
PR_SET_VMA: Final = 0x53564D41
PR_SET_VMA_ANON_NAME: Final = 0

# Tables, in the order strace prints them (src/xlat/mmap_prot.in, mmap_flags.in, ...).
PROT_TABLE: Final[Xlat] = (
    ("PROT_NONE", PROT_NONE),
    ("PROT_READ", PROT_READ),
    ("PROT_WRITE", PROT_WRITE),
    ("PROT_EXEC", PROT_EXEC),
    ("PROT_SEM", PROT_SEM),
    ("PROT_GROWSDOWN", PROT_GROWSDOWN),
    ("PROT_GROWSUP", PROT_GROWSUP),
)

MAP_TYPE_TABLE: Final[Xlat] = (
    ("MAP_FILE", MAP_FILE),
    ("MAP_SHARED", MAP_SHARED),
    ("MAP_PRIVATE", MAP_PRIVATE),
    ("MAP_SHARED_VALIDATE", MAP_SHARED_VALIDATE),
    ("MAP_DROPPABLE", MAP_DROPPABLE),
)

MAP_FLAG_TABLE: Final[Xlat] = (
    ("MAP_FIXED", MAP_FIXED),
    ("MAP_ANONYMOUS", MAP_ANONYMOUS),
    ("MAP_32BIT", MAP_32BIT),
    ("MAP_ABOVE4G", MAP_ABOVE4G),
    ("MAP_NORESERVE", MAP_NORESERVE),
    ("MAP_POPULATE", MAP_POPULATE),
    ("MAP_NONBLOCK", MAP_NONBLOCK),
    ("MAP_GROWSDOWN", MAP_GROWSDOWN),
    ("MAP_DENYWRITE", MAP_DENYWRITE),
    ("MAP_EXECUTABLE", MAP_EXECUTABLE),
    ("MAP_LOCKED", MAP_LOCKED),
    ("MAP_STACK", MAP_STACK),
    ("MAP_HUGETLB", MAP_HUGETLB),
    ("MAP_SYNC", MAP_SYNC),
    ("MAP_UNINITIALIZED", MAP_UNINITIALIZED),
    ("MAP_FIXED_NOREPLACE", MAP_FIXED_NOREPLACE),
)

MAP_HUGE_TABLE: Final[Xlat] = (
    ("MAP_HUGE_16KB", MAP_HUGE_16KB),
    ("MAP_HUGE_64KB", MAP_HUGE_64KB),
    ("MAP_HUGE_512KB", MAP_HUGE_512KB),
    ("MAP_HUGE_1MB", MAP_HUGE_1MB),
    ("MAP_HUGE_2MB", MAP_HUGE_2MB),
    ("MAP_HUGE_8MB", MAP_HUGE_8MB),
    ("MAP_HUGE_16MB", MAP_HUGE_16MB),
    ("MAP_HUGE_32MB", MAP_HUGE_32MB),
    ("MAP_HUGE_256MB", MAP_HUGE_256MB),
    ("MAP_HUGE_512MB", MAP_HUGE_512MB),
    ("MAP_HUGE_1GB", MAP_HUGE_1GB),
    ("MAP_HUGE_2GB", MAP_HUGE_2GB),
    ("MAP_HUGE_16GB", MAP_HUGE_16GB),
)

MADV_TABLE: Final[Xlat] = (
    ("MADV_NORMAL", MADV_NORMAL),
    ("MADV_RANDOM", MADV_RANDOM),
    ("MADV_SEQUENTIAL", MADV_SEQUENTIAL),
    ("MADV_WILLNEED", MADV_WILLNEED),
    ("MADV_DONTNEED", MADV_DONTNEED),
    ("MADV_FREE", MADV_FREE),
    ("MADV_REMOVE", MADV_REMOVE),
    ("MADV_DONTFORK", MADV_DONTFORK),
    ("MADV_DOFORK", MADV_DOFORK),
    ("MADV_MERGEABLE", MADV_MERGEABLE),
    ("MADV_UNMERGEABLE", MADV_UNMERGEABLE),
    ("MADV_HUGEPAGE", MADV_HUGEPAGE),
    ("MADV_NOHUGEPAGE", MADV_NOHUGEPAGE),
    ("MADV_DONTDUMP", MADV_DONTDUMP),
    ("MADV_DODUMP", MADV_DODUMP),
    ("MADV_WIPEONFORK", MADV_WIPEONFORK),
    ("MADV_KEEPONFORK", MADV_KEEPONFORK),
    ("MADV_COLD", MADV_COLD),
    ("MADV_PAGEOUT", MADV_PAGEOUT),
    ("MADV_POPULATE_READ", MADV_POPULATE_READ),
    ("MADV_POPULATE_WRITE", MADV_POPULATE_WRITE),
    ("MADV_DONTNEED_LOCKED", MADV_DONTNEED_LOCKED),
    ("MADV_COLLAPSE", MADV_COLLAPSE),
    ("MADV_HWPOISON", MADV_HWPOISON),
    ("MADV_SOFT_OFFLINE", MADV_SOFT_OFFLINE),
    ("MADV_GUARD_INSTALL", MADV_GUARD_INSTALL),
    ("MADV_GUARD_REMOVE", MADV_GUARD_REMOVE),
)

MREMAP_TABLE: Final[Xlat] = (
    ("MREMAP_MAYMOVE", MREMAP_MAYMOVE),
    ("MREMAP_FIXED", MREMAP_FIXED),
    ("MREMAP_DONTUNMAP", MREMAP_DONTUNMAP),
)

_HUGE_BITS = MAP_HUGE_MASK << MAP_HUGE_SHIFT
_PROT_BY_NAME = dict(PROT_TABLE)
_MAP_BY_NAME = {
    **dict(MAP_TYPE_TABLE),
    **dict(MAP_FLAG_TABLE),
    **dict(MAP_HUGE_TABLE),
    "MAP_ANON": MAP_ANONYMOUS,  # glibc's alias
}
_MADV_BY_NAME = dict(MADV_TABLE)
_MADV_BY_VALUE = {value: name for name, value in MADV_TABLE}
_MREMAP_BY_NAME = dict(MREMAP_TABLE)
_MAP_TYPE_BY_VALUE = {value: name for name, value in MAP_TYPE_TABLE}

_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|\d+")
_HUGE_SHIFT_TERM = re.compile(r"(\d+)\s*<<\s*MAP_HUGE_SHIFT")


def _unknown(value: int, prefix: str) -> str:
    """How strace prints a value none of whose bits it knows: ``0x100 /* PROT_??? */``."""
    return f"{value:#x} /* {prefix}??? */"


def _bit_names(value: int, table: Xlat) -> tuple[list[str], int]:
    """The names of the table's bits set in value (table order), and the bits left over."""
    names: list[str] = []
    rest = value
    for name, bit in table:
        if bit and rest & bit == bit:
            names.append(name)
            rest &= ~bit
    return names, rest


def _flags_text(value: int, table: Xlat, prefix: str) -> str:
    """strace's ``printflags``: known names joined by ``|``, unknown bits in hex at the end."""
    if value == 0:
        zero = [name for name, bit in table if bit == 0]
        return zero[0] if zero else "0"
    names, rest = _bit_names(value, table)
    if not names:
        return _unknown(value, prefix)
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names)


def prot_names(prot: int) -> str:
    """mmap/mprotect's ``prot`` as strace prints it: ``PROT_READ|PROT_WRITE``, ``PROT_NONE``."""
    return _flags_text(prot, PROT_TABLE, "PROT_")


def map_names(flags: int) -> str:
    """mmap's ``flags`` as strace prints them: the type first, then flags, then the huge size.

    Like strace, bits 26..31 always print as ``N<<MAP_HUGE_SHIFT`` (so MAP_UNINITIALIZED,
    which is bit 26 and means nothing on an MMU kernel, reads ``1<<MAP_HUGE_SHIFT``).
    """
    kind = flags & MAP_TYPE
    text = _MAP_TYPE_BY_VALUE.get(kind) or _unknown(kind, "MAP_")
    rest = flags & ~MAP_TYPE & ~_HUGE_BITS
    if rest:
        names, unknown = _bit_names(rest, MAP_FLAG_TABLE)
        if unknown:
            names.append(f"{unknown:#x}")
        text += "|" + "|".join(names)
    huge = (flags & _HUGE_BITS) >> MAP_HUGE_SHIFT
    if huge:
        text += f"|{huge}<<MAP_HUGE_SHIFT"
    return text


def madvise_name(advice: int) -> str:
    """madvise's ``advice`` as strace prints it: ``MADV_DONTNEED``, or ``0x42 /* MADV_??? */``."""
    name = _MADV_BY_VALUE.get(advice)
    return name if name is not None else _unknown(advice, "MADV_")


def mremap_names(flags: int) -> str:
    """mremap's ``flags`` as strace prints them: ``MREMAP_MAYMOVE|MREMAP_FIXED``, ``0``."""
    return _flags_text(flags, MREMAP_TABLE, "MREMAP_")


def _parse_terms(text: str, names: dict[str, int], what: str, huge: bool = False) -> int:
    """Parse ``A|B|0x10`` (strace's spelling, comments and raw numbers allowed) into an int."""
    # strace -X verbose prints "0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */": the number is the value.
    stripped = _COMMENT.sub("", text).strip()
    if not stripped:
        raise ValueError(f"empty {what}")
    value = 0
    for raw in stripped.split("|"):
        term = raw.strip()
        if term in names:
            value |= names[term]
        elif _NUMBER.fullmatch(term):
            value |= int(term, 16) if term[:2].lower() == "0x" else int(term)
        elif huge and (match := _HUGE_SHIFT_TERM.fullmatch(term)):
            value |= int(match[1]) << MAP_HUGE_SHIFT
        else:
            raise ValueError(f"unknown {what} {term!r} in {text!r}")
    return value


def parse_prot(text: str) -> int:
    """The inverse of prot_names: ``PROT_READ|PROT_EXEC`` → 5; accepts hex numbers and ``0``."""
    return _parse_terms(text, _PROT_BY_NAME, "PROT_ flag")


def parse_map_flags(text: str) -> int:
    """The inverse of map_names; also accepts ``MAP_ANON``, ``MAP_HUGE_2MB`` and hex numbers."""
    return _parse_terms(text, _MAP_BY_NAME, "MAP_ flag", huge=True)


def parse_madvise(text: str) -> int:
    """The inverse of madvise_name: ``MADV_FREE`` → 8; accepts a number."""
    if "|" in _COMMENT.sub("", text):
        raise ValueError(f"madvise takes one advice, not {text!r}")
    return _parse_terms(text, _MADV_BY_NAME, "MADV_ advice")


def parse_mremap_flags(text: str) -> int:
    """The inverse of mremap_names: ``MREMAP_MAYMOVE`` → 1; accepts hex numbers and ``0``."""
    return _parse_terms(text, _MREMAP_BY_NAME, "MREMAP_ flag")
