"""Finding the program to run, as a shell would, with one clear error when it cannot be run."""

from __future__ import annotations

import os
import stat

from tracer.errors import AlloctraceError

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS32 = 1
_ELFCLASS64 = 2
_EM_X86_64 = 62  # e_machine, include/uapi/linux/elf-em.h
_MACHINES = {3: "i386", 40: "ARM", 183: "AArch64", 243: "RISC-V", 8: "MIPS", 21: "PowerPC64"}


def resolve_program(name: str, search_path: str) -> str:
    """The file ``name`` runs: as given when it has a slash, else the first match on PATH."""
    if not name:
        raise AlloctraceError("no program given to trace")
    if "/" in name:
        _check_runnable(name, name)
        return name
    for directory in search_path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            _check_runnable(name, candidate)
            return candidate
    raise AlloctraceError(f"{name}: command not found (searched PATH)")


def foreign_architecture(head: bytes) -> str | None:
    """What a non-x86-64 ELF file is built for ("a 32-bit i386 program"), None when the
    file is an x86-64 ELF or not an ELF file at all. ``head``: its first 20 bytes or more.
    """
    if head[:4] != _ELF_MAGIC or len(head) < 5:
        return None
    bits = {_ELFCLASS32: "32-bit", _ELFCLASS64: "64-bit"}.get(head[4], "unknown-class")
    machine = int.from_bytes(head[18:20], "little") if len(head) >= 20 else _EM_X86_64
    if head[4] == _ELFCLASS64 and machine == _EM_X86_64:
        return None
    if machine == _EM_X86_64:  # x32: ELFCLASS32 with x86-64 instructions
        return f"a {bits} x32 program"
    return f"a {bits} {_MACHINES.get(machine, f'machine-{machine}')} program"


def file_architecture(path: str) -> str | None:
    """foreign_architecture of the file at ``path`` (None when unreadable)."""
    try:
        with open(path, "rb") as handle:
            return foreign_architecture(handle.read(20))
    except OSError:
        return None


def _check_runnable(name: str, path: str) -> None:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise AlloctraceError(f"{name}: {exc.strerror}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise AlloctraceError(f"{name}: is a directory, not a program")
    if not stat.S_ISREG(info.st_mode):
        raise AlloctraceError(f"{name}: not a regular file, so not a program")
    if not os.access(path, os.X_OK):
        raise AlloctraceError(f"{name}: not executable (permission denied)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError as exc:
        raise AlloctraceError(f"{name}: {exc.strerror}") from exc
    if head[:4] == _ELF_MAGIC:
        foreign = foreign_architecture(head)
        if foreign is not None:
            raise AlloctraceError(f"{name}: {foreign}; alloctrace traces x86-64 programs only")
        return
    if head[:2] != b"#!":
        raise AlloctraceError(f"{name}: neither an ELF program nor a script (no #! line)")
    words = head[2:].split(b"\n", 1)[0].split()
    if not words:
        raise AlloctraceError(f"{name}: its #! line names no interpreter")
    interpreter = words[0].decode(errors="replace")
    if not os.path.isfile(interpreter):
        raise AlloctraceError(f"{name}: its interpreter {interpreter} does not exist")
