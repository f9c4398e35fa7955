"""Finding the program to run, as a shell would, with one clear error when it cannot be run."""

from __future__ import annotations

import os
import stat

from tracer.errors import AlloctraceError

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS32 = 1


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


def _check_runnable(name: str, path: str) -> None:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise AlloctraceError(f"{name}: {exc.strerror}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise AlloctraceError(f"{name}: is a directory, not a program")
    if not os.access(path, os.X_OK):
        raise AlloctraceError(f"{name}: not executable (permission denied)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(5)
    except OSError as exc:
        raise AlloctraceError(f"{name}: {exc.strerror}") from exc
    if head[:4] == _ELF_MAGIC:
        if len(head) == 5 and head[4] == _ELFCLASS32:
            raise AlloctraceError(
                f"{name}: a 32-bit program; alloctrace traces x86-64 programs only"
            )
        return
    if head[:2] != b"#!":
        raise AlloctraceError(f"{name}: neither an ELF program nor a script (no #! line)")
