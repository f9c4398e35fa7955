"""Readers of /proc for the tracer: fd paths, executables, command lines, maps and smaps."""

from __future__ import annotations

import os

from tracer.records import Mapping


def fd_path(tid: int, fd: int) -> str | None:
    """The file behind descriptor ``fd`` of thread ``tid`` (readlink of /proc/TID/fd/FD)."""
    try:
        return os.readlink(f"/proc/{tid}/fd/{fd}")
    except OSError:
        return None


def exe_path(pid: int) -> str:
    """The executable a process runs ("" when it is gone)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def cmdline(pid: int) -> list[str]:
    """A process's argv as the kernel has it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def thread_group(tid: int) -> int | None:
    """The process (Tgid) a thread belongs to, from /proc/TID/status."""
    try:
        with open(f"/proc/{tid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _parse_maps_line(line: str) -> tuple[int, int, str, int, str]:
    parts = line.split(maxsplit=5)
    start_s, end_s = parts[0].split("-")
    path = parts[5].rstrip("\n") if len(parts) > 5 else ""
    return int(start_s, 16), int(end_s, 16), parts[1], int(parts[2], 16), path


def maps(pid: int) -> list[tuple[int, int, str, int, str]]:
    """/proc/PID/maps as (start, end, perms, offset, path) tuples."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as handle:
            return [_parse_maps_line(line) for line in handle]
    except OSError:
        return []


_SMAPS_FIELDS = {"Rss:": "rss", "Pss:": "pss", "Anonymous:": "anonymous", "Swap:": "swap"}


def smaps(pid: int) -> list[Mapping]:
    """/proc/PID/smaps: each mapping with its resident, proportional, anonymous, swapped bytes."""
    try:
        with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return []
    out: list[Mapping] = []
    current: tuple[int, int, str, int, str] | None = None
    sizes: dict[str, int] = {}

    def close() -> None:
        if current is not None:
            start, end, perms, offset, path = current
            out.append(Mapping(start, end, perms, offset, path, **sizes))

    for line in lines:
        head = line.split(maxsplit=1)[0] if line.strip() else ""
        if "-" in head and not head.endswith(":"):
            close()
            current = _parse_maps_line(line)
            sizes = {}
        elif head in _SMAPS_FIELDS:
            sizes[_SMAPS_FIELDS[head]] = int(line.split()[1]) * 1024
    close()
    return out
