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


def status(tid: int) -> dict[str, str]:
    """/proc/TID/status as {field: value} ({} when the thread is gone)."""
    try:
        with open(f"/proc/{tid}/status", "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in raw.decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def tracer_of(tid: int) -> int:
    """The pid tracing ``tid`` (TracerPid), 0 when none or when the thread is gone."""
    value = status(tid).get("TracerPid", "0")
    return int(value) if value.isdigit() else 0


def owner(pid: int) -> int | None:
    """The real uid of a process (None when it is gone)."""
    fields = status(pid).get("Uid", "").split()
    return int(fields[0]) if fields and fields[0].isdigit() else None


def ids(pid: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(real, effective, saved, fs) uids and the same gids of a process (empty when gone)."""
    info = status(pid)
    uids = tuple(int(v) for v in info.get("Uid", "").split() if v.isdigit())
    gids = tuple(int(v) for v in info.get("Gid", "").split() if v.isdigit())
    return uids, gids


def command_name(pid: int) -> str:
    """The kernel's short name of a process (/proc/PID/comm), "" when it is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as handle:
            return handle.read().decode(errors="replace").strip()
    except OSError:
        return ""


def state(tid: int) -> str:
    """The one-letter state of a thread (R, S, D, T, t, Z...), "" when it is gone."""
    try:
        with open(f"/proc/{tid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return ""
    # comm (in parentheses) may contain anything: the state follows the last ')'.
    rest = raw[raw.rfind(b")") + 1 :].split()
    return rest[0].decode() if rest else ""


_PF_KTHREAD = 0x00200000  # include/linux/sched.h


def is_kernel_thread(pid: int) -> bool:
    """True for a kernel thread (PF_KTHREAD in the flags of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return False
    fields = raw[raw.rfind(b")") + 1 :].split()
    # state ppid pgrp session tty_nr tpgid flags
    return len(fields) > 6 and bool(int(fields[6]) & _PF_KTHREAD)


def live_thread(pid: int) -> int:
    """A thread of ``pid`` that is not a zombie (the leader may have called pthread_exit),
    for what /proc only shows through a live thread (exe, cmdline, mem); ``pid`` if none."""
    for tid in tasks(pid):
        if state(tid) not in ("Z", "X", ""):
            return tid
    return pid


def tasks(pid: int) -> list[int]:
    """The thread ids of a process (/proc/PID/task), [] when it is gone."""
    try:
        names = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


def tracees_of(tracer: int) -> set[int]:
    """Every thread on the machine whose TracerPid is ``tracer`` (a scan of /proc).

    Used when tracing ends, to find tracees the loop has not heard of yet (a child created
    while alloctrace was being interrupted): a few milliseconds, never per stop.
    """
    found: set[int] = set()
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        for tid in tasks(int(pid)):
            if tracer_of(tid) == tracer:
                found.add(tid)
    return found


def cwd(pid: int) -> str:
    """A process's working directory ("" when unreadable)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def environ(pid: int) -> dict[str, str]:
    """A process's initial environment ({} when unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


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
