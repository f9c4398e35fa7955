"""Turn an strace text log into an alloctrace trace: another way to produce the same records.

``import_strace(LOG, TRACE)`` parses the log with tracer.strace_log and writes a trace file with
tracer.traceformat.TraceWriter: a Header (program and argv when the log shows the execve, or
given), one Syscall record per memory syscall (``seq`` in order of entry, ``ts_ns`` from
``-t``/``-tt``/``-ttt`` relative to the log's first timestamp, ``dur_ns`` from ``-T``, 0 when the
log has none), Spawn and Exec records when the log shows clone/fork/vfork/execve, an Exit
record per ``+++ exited``/``+++ killed`` line, and a Footer. Lines it cannot understand are
counted in the ImportReport (and in the footer's message), never dropped silently; a file that
is empty, binary, cut short in its last line, or not strace output at all is an AlloctraceError.

**Processes.** strace's "pid" is the caller's *thread* id. The process of each thread is found
by these rules, in order:

1. When the log shows the calls that create tasks (``clone``, ``clone3``, ``fork``, ``vfork``:
   traced with ``-e trace=%process`` or without ``-e``), they decide: a child made with
   ``CLONE_THREAD`` is a thread of its creator's process, any other child a new process.
2. The log's first thread is a process.
3. A new thread whose first call is ``brk`` and gets back a break that no live process has is a
   new process: every exec starts with ld.so's (or static glibc's) ``brk(NULL)``.
4. Any other new thread belongs to the live process that last reserved a thread stack (an
   mmap with ``MAP_STACK``), else to the most recently started live process.

Without rule 1 a forked child that does not exec is taken for a thread of its parent.
A log without pids (strace without ``-f``) is one thread of one process, numbered 0.

**Stacks** (``-k``). strace prints each frame's object and the *file offset* of its pc in that
object (tracer.strace_log.StraceFrame). The offset becomes the ELF virtual address through the
object's PT_LOAD program headers (tracer.elf), and a Module record per object and process gives
the load bias: the real one when the log shows the object's mmap with its path (``-y``), else 0
(the executable and ld.so, which the kernel maps, and any object mapped without ``-y``), so a
frame's ``pc`` is then its ELF address. Frames resolve to functions through the object file on
this machine: when its function starts disagree with the symbols strace printed (the log comes
from another machine), the object's frames are left unresolved and the report says so.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

from tracer import elf, flags
from tracer.errors import AlloctraceError
from tracer.records import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Exec,
    Exit,
    Footer,
    Frame,
    Header,
    Module,
    Record,
    Spawn,
    Stack,
    Syscall,
)
from tracer.strace_log import (
    StraceCall,
    StraceExec,
    StraceExit,
    StraceFrame,
    StraceLog,
    StraceSpawn,
    parse_strace,
)
from tracer.traceformat import TraceWriter

IMPORTER_VERSION = "0.1.0"
_PAGE_MASK = ~0xFFF
_DAY = 86400.0
_NO_PID = 0  # the one thread of a log without pids


@dataclass
class ImportReport:
    """What an import found and did: counts, and every line it could not understand."""

    source: str
    output: str
    calls: int = 0
    processes: int = 0
    threads: int = 0
    stacks: int = 0
    skipped: int = 0  # other syscalls in the log
    process_rule: str = "inferred"  # "clone lines" when rule 1 applied
    unparsed: list[tuple[int, str]] = field(default_factory=list)
    frame_errors: int = 0  # -k lines where strace's unwinder failed (the stack stops there)
    foreign_objects: dict[str, int] = field(default_factory=dict)  # path -> unresolved frames

    def lines(self, limit: int = 5) -> list[str]:
        """One-line messages for the user: the counts, then each problem."""
        out = [
            f"imported {self.calls} memory syscalls ({self.processes} process"
            f"{'es' if self.processes != 1 else ''}, {self.threads} thread"
            f"{'s' if self.threads != 1 else ''}, {self.stacks} distinct stacks) "
            f"from {self.source} into {self.output}"
        ]
        if self.calls == 0:
            out.append(
                f"{self.source}: no memory syscalls in the log "
                "(trace with -e trace=mmap,munmap,brk,mprotect,mremap,madvise, or without -e)"
            )
        if self.unparsed:
            out.append(f"{self.source}: {len(self.unparsed)} lines not understood:")
            for number, text in self.unparsed[:limit]:
                shown = text if len(text) <= 120 else text[:117] + "..."
                out.append(f"  {self.source}:{number}: {shown}")
            if len(self.unparsed) > limit:
                out.append(f"  ... and {len(self.unparsed) - limit} more")
        if self.frame_errors:
            out.append(f"{self.source}: strace could not unwind {self.frame_errors} stacks fully")
        for path, count in sorted(self.foreign_objects.items()):
            out.append(
                f"{path}: differs from the object strace saw ({count} frames left unresolved; "
                "import the log on the machine that ran strace)"
            )
        return out


@dataclass
class _Process:
    """What the importer tracks per process: threads, break, objects and their modules."""

    pid: int
    started: int
    exe: str = ""
    brk: int | None = None
    threads: set[int] = field(default_factory=set)
    live: bool = True
    file_maps: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path -> span
    modules: dict[str, int] = field(default_factory=dict)  # path -> Module.id


def read_log_text(path: str | os.PathLike[str]) -> str:
    """The text of an strace log; AlloctraceError when it cannot be read or is empty."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise AlloctraceError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise AlloctraceError(f"{name}: empty file, not an strace log")
    if data.lstrip().startswith(b'{"kind":"header"'):
        raise AlloctraceError(
            f"{name}: an alloctrace trace, not an strace log (load it with alloctrace.load)"
        )
    # strace escapes every non-ASCII byte, so undecodable bytes can only be in bad lines.
    return data.decode("utf-8", "surrogateescape")


def import_strace(
    log_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    program: str | None = None,
    argv: list[str] | None = None,
) -> ImportReport:
    """Convert the strace log at ``log_path`` into the trace file ``output``."""
    source = os.fspath(log_path)
    text = read_log_text(source)
    log = parse_strace(text, source=source)
    _check_not_cut(source, text, log)
    converter = _Converter(source, os.fspath(output), log)
    header, records, footer = converter.convert(program, argv)
    writer = TraceWriter(output, header)
    try:
        for record in records:
            writer.write(record)
    except BaseException:
        writer.abandon()
        raise
    writer.close(footer)
    return converter.report


def _check_not_cut(source: str, text: str, log: StraceLog) -> None:
    """A last line without its newline that does not parse: the file was cut short."""
    if text.endswith("\n"):
        return
    last = text.count("\n") + 1
    for number, line in log.unparsed:
        if number == last:
            raise AlloctraceError(
                f"{source}:{number}: line is cut short (the file was truncated): {line[:80]}"
            )


# -- conversion -----------------------------------------------------------------------------


class _Converter:
    """One pass over the log's calls, spawns, execs and exits, in line order."""

    def __init__(self, source: str, output: str, log: StraceLog) -> None:
        self.log = log
        self.report = ImportReport(source, output, skipped=log.skipped, unparsed=log.unparsed)
        # Lines without a pid in a log that has pids belong to the first pid strace printed.
        tasks: list[StraceSpawn | StraceExec] = [*log.spawns, *log.execs]
        tasks.sort(key=lambda task: task.line)
        self.default_tid = next(
            (c.pid for c in log.calls if c.pid is not None),
            next((t.pid for t in tasks if t.pid is not None), _NO_PID),
        )
        self.processes: dict[int, _Process] = {}
        self.process_of: dict[int, int] = {}
        self.last_stack_pid: int | None = None
        self.records: list[Record] = []
        self.seq = 0
        # Time: the first timestamp is 0; -t/-tt clocks that pass midnight go on counting.
        self.t0: float | None = None
        self.previous_ts = 0.0
        self.days = 0.0
        self.last_ns = 0
        self.stacks: dict[tuple[Frame, ...], int] = {}
        self.biases: dict[int, int] = {}  # Module.id -> bias
        self.objects: dict[str, elf.ElfObject | None] = {}
        self.foreign: dict[str, bool] = {}  # path -> the local file differs from strace's
        self.foreign_frames: dict[str, int] = {}
        self.spawned = {spawn.child for spawn in log.spawns}
        if self.spawned:
            self.report.process_rule = "clone lines"

    # -- ids and time -----------------------------------------------------------------------

    def _tid(self, tid: int | None) -> int:
        return self.default_tid if tid is None else tid

    def _ts_ns(self, ts: float | None) -> int:
        if ts is None:
            return self.last_ns
        if self.t0 is None:
            self.t0 = self.previous_ts = ts
        if ts < self.previous_ts - _DAY / 2:
            self.days += _DAY
        self.previous_ts = ts
        self.last_ns = max(round((ts + self.days - self.t0) * 1e9), 0)
        return self.last_ns

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # -- processes ----------------------------------------------------------------------------

    def _new_process(self, pid: int) -> _Process:
        process = _Process(pid, started=len(self.processes))
        self.processes[pid] = process
        return process

    def _process_for(self, tid: int, starts_process: bool = False) -> _Process:
        """The process of ``tid``: rules 2-4 of the module docstring (rule 1 is in _spawn)."""
        pid = self.process_of.get(tid)
        if pid is not None:
            return self.processes[pid]
        live = [p for p in self.processes.values() if p.live]
        if not self.processes or starts_process or not live:
            process = self._new_process(tid)
        elif self.last_stack_pid is not None and self.processes[self.last_stack_pid].live:
            process = self.processes[self.last_stack_pid]
        else:
            process = max(live, key=lambda p: p.started)
        self.process_of[tid] = process.pid
        process.threads.add(tid)
        return process

    def _starts_process(self, call: StraceCall) -> bool:
        """Rule 3: a brk that returns a break no live process has is a new exec's first call."""
        return (
            call.syscall == "brk"
            and call.result is not None
            and all(p.brk != call.result for p in self.processes.values() if p.live)
        )

    # -- the pass -----------------------------------------------------------------------------

    def convert(
        self, program: str | None, argv: list[str] | None
    ) -> tuple[Header, list[Record], Footer]:
        """Header, records in order (tables before the events that use them), footer."""
        items: list[tuple[int, int, StraceCall | StraceSpawn | StraceExec | StraceExit]] = []
        items.extend((c.line, 1, c) for c in self.log.calls)
        items.extend((s.line, 0, s) for s in self.log.spawns)
        items.extend((e.line, 0, e) for e in self.log.execs)
        items.extend((e.line, 2, e) for e in self.log.exits.values())
        items.sort(key=lambda item: (item[0], item[1]))
        root_exec: StraceExec | None = None
        for _, _, item in items:
            if isinstance(item, StraceCall):
                self._call(item)
            elif isinstance(item, StraceSpawn):
                self._spawn(item)
            elif isinstance(item, StraceExec):
                if self._exec(item) and root_exec is None:
                    root_exec = item
            else:
                self._exit(item)
        report = self.report
        report.processes = len(self.processes)
        report.threads = len(self.process_of)
        report.stacks = len(self.stacks)
        report.foreign_objects = {
            path: count for path, count in self.foreign_frames.items() if self.foreign.get(path)
        }
        exe, exe_argv = (
            (root_exec.path, list(root_exec.argv))
            if root_exec is not None
            else (self._program_from_stacks(), [])
        )
        header = Header(
            format=FORMAT_NAME,
            version=FORMAT_VERSION,
            program=program if program is not None else exe,
            argv=argv if argv is not None else (exe_argv or ([exe] if exe else [])),
            options={
                "stacks": report.stacks > 0,
                "imported": {
                    "from": "strace",
                    "source": report.source,
                    "importer_version": IMPORTER_VERSION,
                    "process_rule": report.process_rule,
                    "skipped_calls": self.log.skipped,
                    "unparsed_lines": len(self.log.unparsed),
                },
            },
            tracer_version=IMPORTER_VERSION,
        )
        return header, self.records, self._footer()

    def _exec(self, call: StraceExec) -> bool:
        """A new program in the caller's process; True when that is the root process."""
        tid = self._tid(call.pid)
        process = self._process_for(tid, starts_process=tid not in self.spawned)
        process.exe = call.path
        process.brk = None
        process.file_maps.clear()
        process.modules.clear()
        self.records.append(
            Exec(
                self._next_seq(),
                self._ts_ns(call.ts),
                process.pid,
                tid,
                call.path,
                list(call.argv),
            )
        )
        return process.started == 0

    def _spawn(self, call: StraceSpawn) -> None:
        """A new thread of the caller's process, or a new process that starts as its copy."""
        tid = self._tid(call.pid)
        process = self._process_for(tid)
        child = call.child
        if child in self.process_of:
            return
        if call.thread:
            self.process_of[child] = pid = process.pid
            process.threads.add(child)
            how = "thread"
        else:
            new = self._new_process(child)
            new.exe, new.brk = process.exe, process.brk
            new.file_maps = dict(process.file_maps)
            new.modules = dict(process.modules)  # a fork shares its parent's module ids
            new.threads.add(child)
            self.process_of[child] = pid = child
            if call.syscall in ("fork", "vfork"):
                how = call.syscall
            else:
                how = "fork" if call.sigchld else "clone"
        self.records.append(
            Spawn(self._next_seq(), self._ts_ns(call.ts), pid, child, process.pid, tid, how)
        )

    def _call(self, call: StraceCall) -> None:
        tid = self._tid(call.pid)
        process = self._process_for(tid, self._starts_process(call))
        ts_ns = self._ts_ns(call.ts)
        stack = self._stack(process, call.frames) if call.frames else None
        self.records.append(
            Syscall(
                seq=self._next_seq(),
                ts_ns=ts_ns,
                dur_ns=round(call.dur * 1e9) if call.dur is not None else 0,
                pid=process.pid,
                tid=tid,
                syscall=call.syscall,
                addr=call.addr,
                length=call.length,
                prot=call.prot,
                flags=call.flags,
                fd=call.fd,
                offset=call.offset,
                path=call.path,
                new_length=call.new_length,
                new_addr=call.new_addr,
                advice=call.advice,
                name=call.name,
                result=call.result,
                errno=call.errno,
                stack=stack,
            )
        )
        self.report.calls += 1
        self._remember(process, call)

    def _remember(self, process: _Process, call: StraceCall) -> None:
        """Keep what the process rules and the module table need: break, stacks, file maps."""
        if call.result is None:
            return
        if call.syscall == "brk":
            process.brk = call.result
        elif call.syscall == "mmap":
            map_flags = call.flags or 0
            if map_flags & flags.MAP_STACK:
                self.last_stack_pid = process.pid
            if call.path and call.path.startswith("/") and call.offset is not None:
                fixed = map_flags & flags.MAP_FIXED
                if not fixed:  # the loader's first mapping of an object: a new load bias
                    process.modules.pop(call.path, None)
                if not fixed or call.path not in process.file_maps:
                    process.file_maps[call.path] = (call.result, call.offset, call.length or 0)

    def _exit(self, record: StraceExit) -> None:
        tid = self._tid(record.pid)
        process = self._process_for(tid)
        process.threads.discard(tid)
        if tid == process.pid:
            process.live = False
        self.records.append(
            Exit(
                self._next_seq(),
                self._ts_ns(record.ts),
                process.pid,
                tid,
                status=record.status,
                signal=record.signal,
                core=record.core,
            )
        )

    def _footer(self) -> Footer:
        root = next(iter(self.processes.values()), None)
        problems = len(self.log.unparsed)
        message = f"imported from the strace log {self.report.source}"
        if problems:
            message += f"; {problems} lines not understood"
        ended = None
        if root is not None:
            ended = self.log.exits.get(root.pid)
            if ended is None and root.pid == self.default_tid:
                ended = self.log.exits.get(None)
        if ended is None:
            message += "; the log ends before the program did"
            return Footer("detached", self.last_ns, self.seq, message=message)
        if ended.signal is not None:
            return Footer("killed", self.last_ns, self.seq, signal=ended.signal, message=message)
        return Footer("exited", self.last_ns, self.seq, status=ended.status, message=message)

    # -- stacks -------------------------------------------------------------------------------

    def _stack(self, process: _Process, frames: tuple[StraceFrame, ...]) -> int | None:
        """The interned stack id of a call's -k frames (Module and Stack records as needed)."""
        out: list[Frame] = []
        for index, frame in enumerate(frames):
            if frame.error is not None or frame.path is None or frame.address is None:
                self.report.frame_errors += 1
                break
            out.append(self._frame(process, frame, "regs" if index == 0 else "cfi"))
        if not out:
            return None
        key = tuple(out)
        sid = self.stacks.get(key)
        if sid is None:
            sid = self.stacks[key] = len(self.stacks) + 1
            self.records.append(Stack(sid, key))
        return sid

    def _frame(self, process: _Process, frame: StraceFrame, how: str) -> Frame:
        path = frame.path or ""
        offset = frame.address or 0
        obj = self._object(path)
        vaddr = _vaddr(obj, offset) if obj is not None else None
        if obj is not None and vaddr is not None and self._is_foreign(path, obj, frame, vaddr):
            self.foreign_frames[path] = self.foreign_frames.get(path, 0) + 1
            return Frame(offset, None, how)
        module_id = process.modules.get(path)
        if module_id is None:
            module_id = self._module(process, path, obj)
        return Frame((offset if vaddr is None else vaddr) + self.biases[module_id], module_id, how)

    def _object(self, path: str) -> elf.ElfObject | None:
        """The object file at ``path`` on this machine (opened once per import)."""
        if path not in self.objects:
            usable = path.startswith("/")
            self.objects[path] = elf.open_elf(path.removesuffix(" (deleted)")) if usable else None
        return self.objects[path]

    def _module(self, process: _Process, path: str, obj: elf.ElfObject | None) -> int:
        """A Module record for ``path`` in ``process``, with the real bias when -y showed it."""
        module_id = len(self.biases) + 1
        span = process.file_maps.get(path)
        start, end = _extent(obj) if obj is not None else (0, 0)
        bias = 0
        if obj is not None and span is not None:
            bias = obj.bias_for(span[0], span[1])
            start, end = start + bias, end + bias
        self.biases[module_id] = bias
        process.modules[path] = module_id
        self.records.append(
            Module(
                id=module_id,
                pid=process.pid,
                path=path,
                start=start,
                end=end,
                bias=bias,
                build_id=obj.build_id if obj is not None else None,
            )
        )
        return module_id

    def _is_foreign(self, path: str, obj: elf.ElfObject, frame: StraceFrame, vaddr: int) -> bool:
        """Does the local object disagree with where strace said the frame's function starts?"""
        known = self.foreign.get(path)
        if known is not None or frame.function is None or frame.offset is None:
            return bool(known)
        starts = obj.function_symbols().starts
        found = not starts or _contains(starts, vaddr - frame.offset)
        self.foreign[path] = not found
        return not found

    def _program_from_stacks(self) -> str:
        """The executable: the first object in a -k stack that is neither ld.so nor a library."""
        for call in self.log.calls:
            for frame in reversed(call.frames):
                path = frame.path
                if path is None or frame.error is not None or not path.startswith("/"):
                    continue
                name = os.path.basename(path)
                if not name.startswith("ld-") and ".so" not in name:
                    return path
        return ""


def _contains(sorted_values: tuple[int, ...], value: int) -> bool:
    i = bisect.bisect_left(sorted_values, value)
    return i < len(sorted_values) and sorted_values[i] == value


def _vaddr(obj: elf.ElfObject, offset: int) -> int | None:
    """The ELF virtual address of file ``offset``, through the PT_LOAD segment that maps it."""
    for seg in obj.segments:
        start = seg.offset & _PAGE_MASK
        if start <= offset < seg.offset + max(seg.filesz, 1):
            return (seg.vaddr & _PAGE_MASK) + (offset - start)
    return None


def _extent(obj: elf.ElfObject) -> tuple[int, int]:
    """Lowest and highest virtual address the object's PT_LOAD segments span."""
    if not obj.segments:
        return 0, 0
    low = min(seg.vaddr for seg in obj.segments) & _PAGE_MASK
    high = max(seg.vaddr + seg.memsz for seg in obj.segments)
    return low, high
