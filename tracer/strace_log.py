"""Read strace's text output into memory-syscall calls: the tests' reference and import-strace.

Understands what ``strace [-f] [-o FILE] [-t|-tt|-ttt] [-T] [-y|-yy] [-k]`` writes: ``[pid N]``
and plain ``N`` pid prefixes, timestamps, durations, fd paths, ``-k`` stack lines,
``<unfinished ...>``/``<... resumed>`` pairs, errors, exits, signals and strace's own notes.
Memory syscalls (tracer.records.MEMORY_SYSCALLS, prctl only for PR_SET_VMA) become StraceCall;
other syscalls are counted as skipped, and those that change what runs are kept too: a
clone/clone3/fork/vfork that made a task as StraceSpawn, a successful execve/execveat as
StraceExec. A line that cannot be understood is kept in ``unparsed``, never dropped.

What strace calls a pid is the thread id of the caller (``[pid N]`` names threads too).
"""

from __future__ import annotations

import errno as errno_module
import os
import re
import signal as signal_module
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial

from tracer import flags
from tracer.errors import AlloctraceError
from tracer.records import MEMORY_SYSCALLS

_MEMORY = frozenset(MEMORY_SYSCALLS.values())
_SPAWNS = frozenset({"clone", "clone3", "fork", "vfork"})
_EXECS = frozenset({"execve", "execveat"})

# Errors the kernel uses internally that strace prints by name but userspace never sees
# (include/linux/errno.h); Python's errno module does not know them.
_KERNEL_ERRNOS = {
    "ERESTARTSYS": 512,
    "ERESTARTNOINTR": 513,
    "ERESTARTNOHAND": 514,
    "ENOIOCTLCMD": 515,
    "ERESTART_RESTARTBLOCK": 516,
}
# strace numbers real-time signals from the kernel's SIGRTMIN, 32 (src/signal.c).
_KERNEL_SIGRTMIN = 32


@dataclass(frozen=True, slots=True)
class StraceFrame:
    """One ``-k`` stack line; a call's frames are innermost first.

    ``address`` is the bracketed number. With strace's libunwind backend (Debian's strace, and
    this machine's; verified by tests/test_strace_log.py) it is the **file offset** in ``path``
    of the frame's pc — the address after the ``syscall`` instruction in the innermost frame,
    a return address (not minus one) in the others: ``pc - mapping start + mapping offset``,
    neither the absolute pc nor the ELF virtual address. By strace's source, its libdw backend
    prints instead the ELF address (pc minus load bias; pc - 1 for callers). ``offset`` is
    from the start of ``function`` (a dynamic symbol, demangled) to the same pc; both are None
    when strace found no symbol.
    An unwinder error line (``> unexpected_backtracing_error [0x7f...]``) has ``path`` None,
    the message in ``error`` and the absolute pc, if printed, in ``address``.
    """

    path: str | None
    function: str | None
    offset: int | None
    address: int | None
    error: str | None = None
    source: str | None = None  # "file.c:123", printed by -kk with the libdw backend


@dataclass(frozen=True, slots=True)
class StraceCall:
    """One memory syscall from the log, its arguments decoded as in tracer.records.Syscall.

    ``line`` is where the call was entered; ``ts`` its entry time, in seconds (since midnight
    for ``-t``/``-tt``, since the epoch for ``-ttt``); ``dur`` from ``-T``. ``result`` is the raw
    return value (an address for mmap/mremap/brk — brk returns the break, also when it could
    not move it) or None when the call failed, with ``errno`` set. Both are None when the call
    never returned (``= ?``, or the log ends while it is unfinished). ``path`` is the fd's
    file from ``-y``; a prctl ``name`` that strace truncated (its ``-s`` limit) ends in ``...``.
    """

    line: int
    pid: int | None
    ts: float | None
    dur: float | None
    syscall: str
    addr: int | None = None
    length: int | None = None
    prot: int | None = None
    flags: int | None = None
    fd: int | None = None
    offset: int | None = None
    path: str | None = None
    new_length: int | None = None
    new_addr: int | None = None
    advice: int | None = None
    name: str | None = None
    result: int | None = None
    errno: int | None = None
    frames: tuple[StraceFrame, ...] = ()


@dataclass(frozen=True, slots=True)
class StraceSpawn:
    """A clone, clone3, fork or vfork that made a task; ``child`` is the new thread's id.

    ``line`` and ``ts`` are where the call was entered. ``thread``: made with CLONE_THREAD, a
    thread of the caller's process. ``sigchld``: the child's exit signal is SIGCHLD, as for a
    forked process (always for fork and vfork).
    """

    line: int
    pid: int | None
    ts: float | None
    syscall: str
    child: int
    thread: bool
    sigchld: bool


@dataclass(frozen=True, slots=True)
class StraceExec:
    """An execve or execveat that succeeded, with the program's path and argv.

    ``line`` and ``ts`` are where it **returned**: the new program runs from there, while the
    process's other threads may still print lines of the old one between entry and return.
    An argument that strace cut (its ``-s`` limit) ends in ``...``; the path is as printed.
    """

    line: int
    pid: int | None
    ts: float | None
    syscall: str
    path: str
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StraceExit:
    """``+++ exited with N +++`` or ``+++ killed by SIGX [(core dumped)] +++``."""

    line: int
    pid: int | None
    ts: float | None
    status: int | None = None
    signal: int | None = None
    core: bool = False


@dataclass(frozen=True, slots=True)
class StraceSignal:
    """``--- SIGSEGV {si_signo=SIGSEGV, ...} ---``: a signal delivered to ``pid``.

    With ``-k``, ``frames`` is where the signal found the thread (for SIGSEGV, the fault).
    """

    line: int
    pid: int | None
    ts: float | None
    signal: int
    name: str
    frames: tuple[StraceFrame, ...] = ()


@dataclass
class StraceLog:
    """An strace log read back.

    ``calls`` are the memory syscalls in order of **entry**: a call split into
    ``<unfinished ...>`` and ``<... resumed>`` sits where it was entered, so each pid's calls
    are in the order that pid made them. ``spawns`` are in order of entry, ``execs`` in order of
    return (see StraceSpawn, StraceExec). ``skipped`` counts the other syscalls, spawns and
    execs included; ``notes`` keeps strace's own messages (``strace: Process N attached``,
    ``+++ superseded by execve ... +++``); ``unparsed`` the line number and text of every line
    that could not be understood.
    """

    calls: list[StraceCall] = field(default_factory=list)
    spawns: list[StraceSpawn] = field(default_factory=list)
    execs: list[StraceExec] = field(default_factory=list)
    exits: dict[int | None, StraceExit] = field(default_factory=dict)
    signals: list[StraceSignal] = field(default_factory=list)
    skipped: int = 0
    notes: list[tuple[int, str]] = field(default_factory=list)
    unparsed: list[tuple[int, str]] = field(default_factory=list)

    def by_pid(self) -> dict[int | None, list[StraceCall]]:
        """The calls of each pid, in the order that pid made them."""
        out: dict[int | None, list[StraceCall]] = defaultdict(list)
        for call in self.calls:
            out[call.pid].append(call)
        return dict(out)


@dataclass(frozen=True, slots=True)
class _Pending:
    """The first half of a call strace printed as ``<unfinished ...>``."""

    line: int
    text: str  # the original line, for ``unparsed``
    ts: float | None
    head: str  # "mmap(NULL, 4096, ..." without " <unfinished ...>"
    syscall: str
    slot: int | None  # its place in the calls, reserved for a memory syscall


# The pid and time strace puts before a line.
_PREFIX = re.compile(
    r"(?:\[pid\s+(?P<bracket>\d+)\] |(?P<plain>\d+)\s+)?"
    r"(?:(?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?)\s+|(?P<epoch>\d+\.\d+)\s+)?"
)
_EXITED = re.compile(r"\+\+\+ exited with (\d+) \+\+\+")
_KILLED = re.compile(r"\+\+\+ killed by (\w+)( \(core dumped\))? \+\+\+")
_SUPERSEDED = re.compile(r"\+\+\+ superseded by execve in pid (\d+) \+\+\+")
_STOPPED = re.compile(r"--- stopped by \w+ ---")
_SIGNAL = re.compile(r"--- (\w+)(?: \{.*\})? ---")
_RESUMED = re.compile(r"<\.\.\. (\w+) resumed>(?: <unfinished \.\.\.>)?(.*)")
_UNFINISHED = re.compile(r"(\w+\(.*) <unfinished \.\.\.>")
_PID_CHANGED = re.compile(r"(\w+\(.*) <pid changed to (\d+) \.\.\.>")
_CALL = re.compile(
    r"(?P<name>\w+)\((?P<args>.*)\)\s+= "
    r"(?P<value>-?\d+|0x[0-9a-f]+|\?)"
    r"(?: (?P<errname>E[A-Z0-9_]+) \([^)]*\))?"
    r"(?: \([A-Z ]+\))*"  # "(INJECTED)", "(DELAYED)" after -e inject
    r"(?: <(?P<dur>\d+(?:\.\d+)?)>)?",
)
# Any other syscall: only its shape matters, its result is not decoded.
_OTHER_CALL = re.compile(r"\w+\(.*\)\s+= .*")
# strace's notes start with its argv[0]: "strace: ", or "/usr/bin/strace: " when run by path.
_NOTE_NAME = r"(?:\.{0,2}(?:/[^/\s]+)*/)?strace[^\s:/]*"
_NOTE = re.compile(_NOTE_NAME + r": .*")
# Without -o, strace's notes go to the same stream and can land inside a half-written line:
# "munmap(0x7f.., 4096strace: Process 8033 attached" then " <unfinished ...>".
_NOTE_INSIDE = re.compile(
    r"(?P<head>.+?)(?P<note>" + _NOTE_NAME + r": Process \d+ (?:attached|detached|suspended)\s*)"
)
_PROCESS_NOTE = re.compile(_NOTE_NAME + r": Process (\d+) (attached|detached)")
_FRAME = re.compile(r"(?P<body>.*)\) \[0x(?P<addr>[0-9a-f]+)\](?: (?P<source>\S+:\d+))?")
_FRAME_ERROR = re.compile(r"(?P<error>.+?) \[0x(?P<addr>[0-9a-f]+)\]")
_FD = re.compile(r"(?P<fd>-?\d+)(?:<(?P<path>.*)>)?(?P<deleted>\(deleted\))?", re.DOTALL)
# -yy adds the device of a character or block device: 3</dev/zero<char 1:5>>
_DEVICE = re.compile(r"<(?:char|block) \d+:\d+>$")
_STRING = re.compile(r'"(?P<body>(?:[^"\\]|\\.)*)"(?P<cut>\.\.\.)?', re.DOTALL)
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|([0-7]{1,3})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "a": "\a", "b": "\b"}
_COMMENT = re.compile(r"\s*/\*.*?\*/", re.DOTALL)
_CLONE_FLAGS = re.compile(r"flags=(?P<flags>[A-Za-z0-9_|]+)")


def parse_strace(text: str, source: str = "<strace log>") -> StraceLog:
    """Parse the text strace wrote; raise AlloctraceError only when none of it is strace output.

    ``source`` names the text in that error (read_strace passes the file name).
    """
    if "\x00" in text:
        raise AlloctraceError(f"{source}: binary data, not an strace log")
    lines = text.splitlines()
    try:
        initial = _initial_pid(text)
    except ValueError:  # a pid of 5,000 digits: not one strace wrote
        initial = None
    parser = _Parser(initial)
    log = parser.run(lines)
    if not parser.recognized and any(line.strip() for line in lines):
        raise AlloctraceError(f"{source}: not an strace log (no line looks like strace output)")
    return log


def read_strace(path: str | os.PathLike[str]) -> StraceLog:
    """Read and parse an strace log file (``strace -o FILE`` or its captured stderr)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise AlloctraceError(f"cannot read {name}: {exc.strerror or exc}") from exc
    # strace escapes every non-ASCII byte, so undecodable bytes can only be in bad lines.
    return parse_strace(data.decode("utf-8", "surrogateescape"), source=name)


def _initial_pid(text: str) -> int | None:
    """The pid of the traced program's first process, when the log lets one tell.

    Without ``-o``, strace prefixes lines with ``[pid N]`` only while it traces more than one
    process, so the program's first lines carry no pid. The first process is the one pid in a
    prefix that strace never announced as ``Process N attached``.
    """
    attached = {int(pid) for pid in re.findall(r"strace: Process (\d+) attached", text)}
    if not attached:
        return None
    prefixed = {int(pid) for pid in re.findall(r"^\[pid\s+(\d+)\]", text, re.MULTILINE)}
    prefixed |= {int(pid) for pid in re.findall(r"<pid changed to (\d+) \.\.\.>", text)}
    first = prefixed - attached
    return first.pop() if len(first) == 1 else None


class _Parser:
    """The state of one pass over a log: pending halves, live pids, where frames go."""

    def __init__(self, initial_pid: int | None) -> None:
        self.log = StraceLog()
        self.recognized = 0
        self.initial_pid = initial_pid
        self.prefixed = False  # a [pid N] prefix was seen: unprefixed lines mean one process
        self.live: set[int] = {initial_pid} if initial_pid is not None else set()
        self.pending: dict[int | None, _Pending] = {}
        # Each memory call in order of entry, every field bound but its frames, which follow
        # its line: it is built once they are all read.
        self.slots: list[partial[StraceCall] | None] = []
        self.frames: dict[int, list[StraceFrame]] = {}  # by slot
        self.signal_frames: dict[int, list[StraceFrame]] = {}  # by index in log.signals
        # Where -k stack lines go: the frames of the call or signal printed last. A skipped
        # call's frames go to a list nobody keeps.
        self.frame_target: list[StraceFrame] | None = None

    def run(self, lines: list[str]) -> StraceLog:
        """Parse all lines, then settle calls still unfinished at the end of the log."""
        carry: tuple[int, str] | None = None
        # The notes that cut the carried line: its process wrote it before they happened, so
        # they count only once it is read (an attached process makes a line's pid ambiguous).
        held: list[tuple[int, str]] = []
        for number, raw in enumerate(lines, start=1):
            lineno, line = (carry[0], carry[1] + raw) if carry else (number, raw)
            carry = None
            if not line.strip():
                continue
            inside = None
            if "strace: Process" in line and not _NOTE.fullmatch(line):
                inside = _NOTE_INSIDE.fullmatch(line)
            if inside:
                held.append((number, inside["note"].strip()))
                carry = (lineno, inside["head"])
                continue
            try:
                self._line(lineno, line)
            except ValueError:  # a number no strace prints (5,000 digits): not understood
                self.log.unparsed.append((lineno, line))
            self._notes(held)
        if carry:
            self.log.unparsed.append(carry)
        self._notes(held)
        for pid in list(self.pending):
            self._abandon(pid)
        # A spawn is kept when it returns: put them in order of entry, like the calls.
        self.log.spawns.sort(key=lambda spawn: spawn.line)
        self.log.calls = [
            call(frames=tuple(self.frames.get(slot, ())))
            for slot, call in enumerate(self.slots)
            if call is not None
        ]
        self.log.signals = [
            replace(sig, frames=tuple(self.signal_frames.get(index, ())))
            for index, sig in enumerate(self.log.signals)
        ]
        return self.log

    def _line(self, lineno: int, line: str) -> None:
        if line.startswith(" > "):
            self._frame(lineno, line)
            return
        if _NOTE.fullmatch(line):
            self._note(lineno, line)
            return
        prefix = _PREFIX.match(line)
        assert prefix is not None  # every part of the pattern is optional
        bracket, plain = prefix["bracket"], prefix["plain"]
        pid = self._implicit_pid()
        if bracket or plain:
            pid = int(bracket or plain)
            self.prefixed = True
            self.live.add(pid)
        ts = _timestamp(prefix["clock"], prefix["epoch"])
        body = line[prefix.end() :]
        if not self._body(lineno, line, pid, ts, body):
            self.log.unparsed.append((lineno, line))
        else:
            self.recognized += 1

    def _implicit_pid(self) -> int | None:
        """The pid of a line without a prefix: the only process strace traces at that point."""
        if not self.prefixed:
            return self.initial_pid
        return next(iter(self.live)) if len(self.live) == 1 else None

    def _body(self, lineno: int, line: str, pid: int | None, ts: float | None, body: str) -> bool:
        """Handle what follows the prefix; False when it is not something strace writes."""
        if match := _EXITED.fullmatch(body):
            self._exit(StraceExit(lineno, pid, ts, status=int(match[1])))
        elif match := _KILLED.fullmatch(body):
            number = _signal_number(match[1])
            if number is None:
                return False
            self._exit(StraceExit(lineno, pid, ts, signal=number, core=bool(match[2])))
        elif match := _SUPERSEDED.fullmatch(body):
            # The thread that called execve took over the leader's pid and is gone as itself.
            self.live.discard(int(match[1]))
            self.log.notes.append((lineno, line))
            self.frame_target = None
        elif _STOPPED.fullmatch(body):
            self.log.notes.append((lineno, line))
            self.frame_target = None
        elif match := _SIGNAL.fullmatch(body):
            number = _signal_number(match[1])
            if number is None:
                return False
            # strace -k prints where the signal found the process, like a call's stack.
            self.frame_target = self.signal_frames.setdefault(len(self.log.signals), [])
            self.log.signals.append(StraceSignal(lineno, pid, ts, number, match[1]))
        elif match := _RESUMED.fullmatch(body):
            return self._resume(lineno, line, pid, ts, match[1], match[2])
        elif match := _UNFINISHED.fullmatch(body):
            self._start(lineno, line, pid, ts, match[1])
        elif match := _PID_CHANGED.fullmatch(body):
            # execve in a thread: strace finishes the call under the leader's pid.
            new_pid = int(match[2])
            self.live.add(new_pid)
            self._start(lineno, line, new_pid, ts, match[1])
        else:
            return self._complete(lineno, pid, ts, body, None, (lineno, ts))
        return True

    def _exit(self, record: StraceExit) -> None:
        self._abandon(record.pid)
        self.log.exits[record.pid] = record
        if record.pid is not None:
            self.live.discard(record.pid)
        # exit_group never returns: strace -k prints its stack after "+++ exited with N +++",
        # frames of a skipped call.
        self.frame_target = [] if record.signal is None else None

    def _notes(self, held: list[tuple[int, str]]) -> None:
        for lineno, text in held:
            self._note(lineno, text)
        held.clear()

    def _note(self, lineno: int, text: str) -> None:
        self.log.notes.append((lineno, text))
        self.recognized += 1
        if match := _PROCESS_NOTE.match(text):
            if match[2] == "attached":
                self.live.add(int(match[1]))
            else:
                self.live.discard(int(match[1]))

    def _start(self, lineno: int, line: str, pid: int | None, ts: float | None, head: str) -> None:
        """Keep the first half of an unfinished call; reserve its place if it is a memory call."""
        self._abandon(pid)
        syscall = head.split("(", 1)[0]
        slot = None
        if _is_memory(syscall, head):
            slot = len(self.slots)
            self.slots.append(None)
        self.pending[pid] = _Pending(lineno, line, ts, head, syscall, slot)
        self.frame_target = None

    def _abandon(self, pid: int | None) -> None:
        """Settle a call of pid that will not be resumed: it is kept, without a result."""
        pending = self.pending.pop(pid, None)
        if pending is None:
            return
        # Close the argument list so the call decodes like one that returned "?".
        text = pending.head + ") = ?"
        if not self._complete(pending.line, pid, pending.ts, text, pending.slot, None):
            self.log.unparsed.append((pending.line, pending.text))

    def _resume(
        self, lineno: int, line: str, pid: int | None, ts: float | None, syscall: str, rest: str
    ) -> bool:
        pending = self.pending.get(pid)
        if pending is None or pending.syscall != syscall:
            return False
        del self.pending[pid]
        text = pending.head + rest
        if not self._complete(pending.line, pid, pending.ts, text, pending.slot, (lineno, ts)):
            self.log.unparsed.extend([(pending.line, pending.text), (lineno, line)])
        return True

    def _complete(
        self,
        lineno: int,
        pid: int | None,
        ts: float | None,
        text: str,
        slot: int | None,
        returned: tuple[int, float | None] | None,
    ) -> bool:
        """Decode one whole call; False when its text is not a call strace could have written.

        ``lineno`` and ``ts`` are where the call was entered, ``returned`` the line and time of
        its result (None when it never returned).
        """
        syscall = text.split("(", 1)[0]
        if not _is_memory(syscall, text):
            if not _OTHER_CALL.fullmatch(text):
                return False
            self._skip()
            if returned is not None and (syscall in _SPAWNS or syscall in _EXECS):
                self._task(lineno, pid, ts, syscall, text, returned)
            return True
        match = _CALL.fullmatch(text)
        if match is None:
            return False
        try:
            arguments = _decode(syscall, match["args"])
            errno = _errno(match["errname"])
            value = match["value"]
            result = None if value == "?" or errno is not None else int(value, 0)  # "01": bad
            dur = float(match["dur"]) if match["dur"] else None
        except ValueError:
            return False
        call = partial(
            arguments,
            line=lineno,
            pid=pid,
            ts=ts,
            dur=dur,
            syscall=syscall,
            result=result,
            errno=errno,
        )
        if slot is None:
            slot = len(self.slots)
            self.slots.append(call)
        else:
            self.slots[slot] = call
        self.frame_target = self.frames.setdefault(slot, [])
        return True

    def _skip(self) -> None:
        self.log.skipped += 1
        self.frame_target = []

    def _task(
        self,
        lineno: int,
        pid: int | None,
        ts: float | None,
        syscall: str,
        text: str,
        returned: tuple[int, float | None],
    ) -> None:
        """Keep a spawn that made a task or an exec that succeeded; ignore failed ones."""
        match = _CALL.fullmatch(text)
        if match is None or match["errname"]:
            return
        try:
            result = int(match["value"], 10)  # "?": killed or replaced before it returned
        except ValueError:
            return
        args = match["args"]
        if syscall in _EXECS:
            if result == 0:
                path, argv = _exec_path_argv(args)
                at, at_ts = returned
                self.log.execs.append(StraceExec(at, pid, at_ts, syscall, path, argv))
        elif result > 0:
            cloned = syscall.startswith("clone")
            thread = cloned and _has_clone_thread(args)
            # clone names the exit signal among its flags, clone3 as exit_signal=.
            sigchld = not cloned or "SIGCHLD" in args
            self.log.spawns.append(StraceSpawn(lineno, pid, ts, syscall, result, thread, sigchld))

    def _frame(self, lineno: int, line: str) -> None:
        target = self.frame_target
        frame = _parse_frame(line[3:])
        if target is None or frame is None:
            self.log.unparsed.append((lineno, line))
            return
        self.recognized += 1
        target.append(frame)


def _timestamp(clock: str | None, epoch: str | None) -> float | None:
    if epoch:
        return float(epoch)
    if clock:
        hours, minutes, seconds = clock.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _signal_number(name: str) -> int | None:
    if name in signal_module.Signals.__members__:
        return int(signal_module.Signals[name])
    if match := re.fullmatch(r"SIGRT_(\d+)", name):
        return _KERNEL_SIGRTMIN + int(match[1])
    return None


def _errno(name: str | None) -> int | None:
    if name is None:
        return None
    number = getattr(errno_module, name, None) or _KERNEL_ERRNOS.get(name)
    if not isinstance(number, int):
        raise ValueError(f"unknown errno {name}")
    return number


def _num(text: str) -> int:
    """An address, length or offset as strace prints it: ``NULL``, ``0x7f...``, ``4096``."""
    value = _COMMENT.sub("", text).strip()
    if value == "NULL":
        return 0
    if value[:2] == "0x":
        return int(value, 16)
    return int(value, 10)


def _split(args: str, count: int) -> list[str]:
    """Split ``count`` arguments; the last keeps any ", " inside it (a string, an fd path)."""
    parts = args.split(", ", count - 1)
    if len(parts) != count:
        raise ValueError(f"expected {count} arguments in {args!r}")
    return parts


def _is_memory(syscall: str, text: str) -> bool:
    """Whether ``syscall(...`` is one alloctrace records: prctl only for PR_SET_VMA."""
    if syscall != "prctl":
        return syscall in _MEMORY
    option = text[len("prctl(") :].split(", ", 1)[0]
    # strace before 6.2 does not know the option and prints "0x53564d41 /* PR_??? */".
    return option == "PR_SET_VMA" or _COMMENT.sub("", option) == f"{flags.PR_SET_VMA:#x}"


def _decode(syscall: str, args: str) -> partial[StraceCall]:
    """A memory syscall's decoded arguments, bound to StraceCall; ValueError if malformed."""
    if syscall == "mmap":
        addr, length, prot, map_flags, rest = _split(args, 5)
        fd_text, offset = rest.rsplit(", ", 1)
        fd, path = _fd(fd_text)
        return partial(
            StraceCall,
            addr=_num(addr),
            length=_num(length),
            prot=flags.parse_prot(prot),
            flags=flags.parse_map_flags(map_flags),
            fd=fd,
            offset=_num(offset),
            path=path,
        )
    if syscall == "munmap":
        addr, length = _split(args, 2)
        return partial(StraceCall, addr=_num(addr), length=_num(length))
    if syscall == "mprotect":
        addr, length, prot = _split(args, 3)
        return partial(
            StraceCall, addr=_num(addr), length=_num(length), prot=flags.parse_prot(prot)
        )
    if syscall == "brk":
        return partial(StraceCall, addr=_num(args))
    if syscall == "mremap":
        parts = args.split(", ")
        if len(parts) not in (4, 5):
            raise ValueError(f"expected 4 or 5 arguments in {args!r}")
        # strace prints new_address only with MREMAP_MAYMOVE|MREMAP_FIXED, when the kernel reads it.
        return partial(
            StraceCall,
            addr=_num(parts[0]),
            length=_num(parts[1]),
            new_length=_num(parts[2]),
            flags=flags.parse_mremap_flags(parts[3]),
            new_addr=_num(parts[4]) if len(parts) == 5 else None,
        )
    if syscall == "madvise":
        addr, length, advice = _split(args, 3)
        return partial(
            StraceCall, addr=_num(addr), length=_num(length), advice=flags.parse_madvise(advice)
        )
    return _decode_prctl(args)


def _decode_prctl(args: str) -> partial[StraceCall]:
    """prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name)."""
    _, _, addr, length, name = _split(args, 5)
    return partial(StraceCall, addr=_num(addr), length=_num(length), name=_string(name))


def _string(text: str) -> str | None:
    """A string argument: ``"name"`` (``"name"...`` when cut by -s); None for NULL or a pointer."""
    match = _STRING.fullmatch(text)
    if match is None:
        _num(text)  # NULL or an address strace did not read: no name, but well formed
        return None
    return _unescape(match["body"]) + ("..." if match["cut"] else "")


def _fd(text: str) -> tuple[int, str | None]:
    """An fd argument with its -y/-yy path: ``3</usr/lib/x.so>``, ``4</memfd:x>(deleted)``."""
    match = _FD.fullmatch(text)
    if match is None:
        raise ValueError(f"not an fd: {text!r}")
    path = match["path"]
    if path is None:
        return int(match["fd"]), None
    path = _unescape(_DEVICE.sub("", path))
    # As readlink(/proc/PID/fd/N) says it, which is what the tracer records.
    if match["deleted"]:
        path += " (deleted)"
    return int(match["fd"]), path


def _has_clone_thread(args: str) -> bool:
    match = _CLONE_FLAGS.search(args)
    return match is not None and "CLONE_THREAD" in match["flags"].split("|")


def _exec_path_argv(args: str) -> tuple[str, tuple[str, ...]]:
    """The program path and argv of an execve/execveat (the path is its first string)."""
    first = _STRING.search(args)
    if first is None:
        return "", ()
    path = _exec_string(first["body"])
    argv: list[str] = []
    opening = args.find("[", first.end())
    if opening >= 0:
        pos = opening + 1
        while match := _STRING.match(args, pos):
            argv.append(_exec_string(match["body"]) + ("..." if match["cut"] else ""))
            pos = match.end()
            if not args.startswith(", ", pos):
                break
            pos += 2
    return path, tuple(argv)


def _exec_string(body: str) -> str:
    """A string of an exec, unquoted; as written when its escapes are malformed (the program
    still ran: its path is worth more than an error)."""
    try:
        return _unescape(body)
    except ValueError:
        return body


def _unescape(text: str) -> str:
    """Undo strace's quoting (``\\76`` for ``>``, ``\\x..``, ``\\n``); bytes decode like paths."""
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        out += text[pos : match.start()].encode("utf-8", "surrogateescape")
        hexa, octal, char = match.groups()
        if hexa:
            out.append(int(hexa, 16))
        elif octal:
            value = int(octal, 8)
            if value > 0xFF:
                raise ValueError(f"bad escape in {text!r}")
            out.append(value)
        else:
            out += _SIMPLE_ESCAPES.get(char, char).encode("utf-8", "surrogateescape")
        pos = match.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "surrogateescape")


# A -k log repeats the same few hundred frame lines: each is parsed once (frames are frozen).
@lru_cache(maxsize=1 << 16)
def _parse_frame(text: str) -> StraceFrame | None:
    """One ``-k`` line after `` > ``: ``/lib/x.so(func+0x26) [0xf4a26]``, ``/bin/a() [0x11]``."""
    match = _FRAME.fullmatch(text)
    if match:
        body = match["body"]
        # The symbol is the text in the last balanced parentheses (demangled C++ has its own).
        depth = 0
        for index in range(len(body) - 1, -1, -1):
            char = body[index]
            if char == ")":
                depth += 1
            elif char == "(":
                if depth == 0:
                    break
                depth -= 1
        else:
            return None
        path, symbol = body[:index], body[index + 1 :]
        function: str | None = None
        offset: int | None = None
        if symbol:
            function, plus, hex_offset = symbol.rpartition("+0x")
            if not plus:
                return None
            offset = int(hex_offset, 16)
        return StraceFrame(path, function, offset, int(match["addr"], 16), source=match["source"])
    if match := _FRAME_ERROR.fullmatch(text):
        return StraceFrame(None, None, None, int(match["addr"], 16), error=match["error"])
    return StraceFrame(None, None, None, None, error=text) if text.strip() else None
