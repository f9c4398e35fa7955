"""The library face of alloctrace: load, run or import a trace into a Trace with pandas views.

``load(path)`` reads a trace file; ``run(argv, allocator=...)`` traces a program first;
``import_strace(log)`` converts an strace log first. A Trace keeps the typed records
(``records``, ``syscalls()``, ``frames()``) and analyzes them once, on first use
(analyzers.analysis: symbols, classification, loaded objects, allocators, arenas). The pandas
views (``events``, ``processes``, ``objects``, ``arenas``, ``mappings``, ``summary()``,
``diff()``) and the plots import pandas and matplotlib only when called, so ``import
alloctrace`` stays light. The columns are documented in ``EVENT_COLUMNS`` and docs/notebooks.md.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno as errno_module
import importlib.util
import itertools
import operator
import os
import shlex
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tracer import flags
from tracer.errors import AlloctraceError
from tracer.records import (
    Event,
    Exec,
    Exit,
    Footer,
    Frame,
    Header,
    Module,
    Spawn,
    Syscall,
    field_names,
)
from tracer.traceformat import TraceData, read_trace

if TYPE_CHECKING:
    import pandas as pd

    from alloctrace.mappings import Lifetime
    from alloctrace.plots import Plot
    from analyzers.analysis import Analysis
    from analyzers.model import Classified
    from analyzers.rules import RuleSet
    from analyzers.summarize import Summary
    from analyzers.symbols import ResolvedFrame, Symbolizer
    from tracer.strace_import import ImportReport

PathLike = str | os.PathLike[str]

# One row per memory syscall: (column, meaning). docs/notebooks.md has the same table.
EVENT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("seq", "position in the trace (shared by every record kind)"),
    ("ts_ns", "when the call was entered, in ns since the trace started"),
    ("dur_ns", "from entry to exit, in ns (0 when unknown)"),
    ("pid", "process id"),
    ("tid", "thread id"),
    ("syscall", "mmap, munmap, mprotect, brk, mremap, madvise or prctl"),
    ("addr", "first argument (mremap: old_address; brk: the break asked for, 0 to query)"),
    ("length", "second argument (mremap: old_size); missing for brk"),
    ("prot", "PROT_ bits (mmap, mprotect)"),
    ("prot_names", "prot as strace prints it, e.g. PROT_READ|PROT_WRITE"),
    ("flags", "MAP_ bits (mmap) or MREMAP_ bits (mremap)"),
    ("flags_names", "flags as strace prints them, e.g. MAP_PRIVATE|MAP_ANONYMOUS"),
    ("fd", "mmap's file descriptor (-1: anonymous)"),
    ("offset", "mmap's file offset"),
    ("path", "the file behind fd"),
    ("new_length", "mremap's new_size"),
    ("new_addr", "mremap's new_address (with MREMAP_FIXED)"),
    ("advice", "madvise's advice"),
    ("advice_name", "advice as strace prints it, e.g. MADV_DONTNEED"),
    ("name", "the name prctl(PR_SET_VMA_ANON_NAME) gives"),
    ("result", "return value: an address for mmap/mremap/brk, 0 otherwise; missing on failure"),
    ("errno", "error number of a failed call"),
    ("errno_name", "errno's name, e.g. ENOMEM"),
    ("category", "loader, allocator, thread-stack, runtime, user or other"),
    ("owner", "who made the call within the category: ld.so, glibc, jemalloc, the program..."),
    ("role", "what the call does for its owner: map segment, grow main heap, thread stack..."),
    ("phase", "startup (exec until main), main or exit"),
    ("object", "the file a loader call maps, else the object of the deciding stack frame"),
    ("segment", "loader calls: span, align, text, rodata, data, bss, relro or gap"),
    ("function", "the deciding stack frame's function"),
    ("reason", "why the call got its category, in words"),
    ("decided_by", "stack, region or heuristic"),
    ("stack_id", "the id of the call stack in the trace file"),
    ("stack", "the call stack, innermost frame first: object(function+0xoff) joined by ';'"),
)
# The recorded fields, in the record's order (its stack comes as stack_id and stack).
_SYSCALL_COLUMNS = tuple(name for name in field_names(Syscall) if name != "stack")
_INT_COLUMNS = ("seq", "ts_ns", "dur_ns", "pid", "tid")
_NULLABLE_INT_COLUMNS = (
    "addr",
    "length",
    "prot",
    "flags",
    "fd",
    "offset",
    "new_length",
    "new_addr",
    "advice",
    "result",
    "errno",
    "stack_id",
)
_PROCESS_COLUMNS = (
    "pid",
    "parent_pid",
    "program",
    "argv",
    "threads",
    "syscalls",
    "startup_calls",
    "status",
    "signal",
    "allocator",
    "allocator_version",
    "allocator_how",
    "runtime",
)
_ORDERED: Final[dict[str, tuple[str, ...]]] = {
    "category": ("loader", "allocator", "thread-stack", "runtime", "user", "other"),
    "phase": ("startup", "main", "exit"),
}
_SYMBOLIZER: Symbolizer | None = None


def _symbolizer() -> Symbolizer:
    """One Symbolizer for the whole process: symbol tables are shared between traces."""
    global _SYMBOLIZER  # noqa: PLW0603 - a lazily built, process-wide cache
    if _SYMBOLIZER is None:
        from analyzers.symbols import Symbolizer

        _SYMBOLIZER = Symbolizer()
    return _SYMBOLIZER


@dataclass
class Trace:
    """A trace: its header, its events in order, how it ended, and what alloctrace made of it."""

    data: TraceData
    rules: RuleSet | None = None
    import_report: ImportReport | None = None  # set when the trace came from an strace log
    _resolved: dict[int, tuple[ResolvedFrame, ...]] = field(
        default_factory=dict, init=False, repr=False
    )
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    # -- the records ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The file it was read from."""
        return self.data.path

    @property
    def header(self) -> Header:
        """What was traced, how, and where."""
        return self.data.header

    @property
    def records(self) -> list[Event]:
        """Every event (syscalls, spawns, execs, exits, memory snapshots) in order."""
        return self.data.events

    @property
    def footer(self) -> Footer | None:
        """How the program ended; None when the trace was cut short."""
        return self.data.footer

    @property
    def complete(self) -> bool:
        """False when the trace has no footer (the tracer did not finish it)."""
        return self.data.complete

    def syscalls(self) -> Iterator[Syscall]:
        """The memory syscalls, in order."""
        return self.data.syscalls()

    def frames(self, event: Syscall) -> tuple[ResolvedFrame, ...]:
        """The call stack that made ``event``, innermost first, with names (empty without stacks).

        Each frame has ``object`` (path), ``function`` (None when no symbol covers it),
        ``offset`` (in the function, else in the object), ``address`` (pc - bias), ``pc`` and
        ``how`` it was found (regs, cfi, fp, scan).
        """
        return self._frames_of_stack(event.stack)

    def _frames_of_stack(self, stack_id: int | None) -> tuple[ResolvedFrame, ...]:
        if stack_id is None:
            return ()
        resolved = self._resolved.get(stack_id)
        if resolved is None:
            stack = self.data.stacks.get(stack_id)
            if stack is None:
                return ()
            resolved = _symbolizer().resolve_all(stack.frames, self.data.modules)
            self._resolved[stack_id] = resolved
        return resolved

    def raw_frames(self, event: Syscall) -> tuple[Frame, ...]:
        """The recorded frames of ``event`` (pc, module id, how), without names."""
        if event.stack is None or event.stack not in self.data.stacks:
            return ()
        return self.data.stacks[event.stack].frames

    def module(self, frame: Frame | ResolvedFrame) -> Module | None:
        """The object a frame's address lies in."""
        return None if frame.module is None else self.data.modules.get(frame.module)

    # -- analysis (once per Trace) --------------------------------------------------------------

    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def analysis(self) -> Analysis:
        """Every analyzer's result: classified events, loaded objects, allocators, arenas."""
        from analyzers.analysis import analyze

        result: Analysis = self._cached(
            "analysis", lambda: analyze(self.data, self.rules, _symbolizer())
        )
        return result

    @property
    def classified(self) -> list[Classified]:
        """Every syscall with its classification, in order (``analysis.events``)."""
        return self.analysis.events

    @property
    def report(self) -> Summary:
        """The figures and sentences of ``alloctrace report`` (analyzers.summarize)."""
        from analyzers.summarize import summarize

        result: Summary = self._cached("summary", lambda: summarize(self.analysis))
        return result

    @property
    def sentences(self) -> list[str]:
        """What the trace shows, in plain sentences built from its figures."""
        return list(self.report.sentences)

    @property
    def label(self) -> str:
        """A short name for comparisons: the first process's allocator, else the program."""
        allocators = self.analysis.allocators
        if allocators:
            info = allocators[min(allocators, key=self._process_order)]
            return f"{info.name} {info.version}" if info.version else info.name
        if self.header.allocator:
            return self.header.allocator
        return os.path.basename(self.header.program) or Path(self.path).stem

    def _process_order(self, pid: int) -> int:
        order = self._cached("pid_order", self._pid_order)
        return int(order.get(pid, len(order)))

    def _pid_order(self) -> dict[int, int]:
        order: dict[int, int] = {}
        for event in self.data.events:
            order.setdefault(event.pid, len(order))
        return order

    # -- plain columns (no pandas) --------------------------------------------------------------

    def event_columns(self) -> dict[str, list[Any]]:
        """The ``events`` table as plain Python lists, one per column of EVENT_COLUMNS."""
        result: dict[str, list[Any]] = self._cached("columns", self._event_columns)
        return result

    def event_rows(self) -> Iterator[dict[str, Any]]:
        """The ``events`` table one dict per syscall (None where a value does not apply)."""
        columns = self.event_columns()
        names = list(columns)
        for values in zip(*columns.values(), strict=True):
            yield dict(zip(names, values, strict=True))

    def _event_columns(self) -> dict[str, list[Any]]:
        classified = self.classified
        events = [c.event for c in classified]
        cols: dict[str, list[Any]] = {}
        for name in _SYSCALL_COLUMNS:
            getter = operator.attrgetter(name)
            cols[name] = [getter(e) for e in events]
        cols["prot_names"] = _named(cols["prot"], flags.prot_names)
        flag_names: dict[tuple[str, int], str] = {}
        names: list[str | None] = []
        for syscall, value in zip(cols["syscall"], cols["flags"], strict=True):
            if value is None or syscall not in ("mmap", "mremap"):
                names.append(None)
                continue
            text = flag_names.get((syscall, value))
            if text is None:
                describe = flags.map_names if syscall == "mmap" else flags.mremap_names
                text = flag_names[syscall, value] = describe(value)
            names.append(text)
        cols["flags_names"] = names
        cols["advice_name"] = _named(cols["advice"], flags.madvise_name)
        cols["errno_name"] = _named(cols["errno"], lambda n: errno_module.errorcode.get(n, str(n)))
        for name in ("category", "owner", "role", "phase", "object", "segment", "function"):
            getter = operator.attrgetter(name)
            cols[name] = [getter(c) for c in classified]
        cols["reason"] = [c.reason for c in classified]
        cols["decided_by"] = [c.decided_by for c in classified]
        cols["stack_id"] = [e.stack for e in events]
        texts: dict[int | None, str | None] = {None: None}
        for sid in set(cols["stack_id"]):
            if sid not in texts:
                frames = self._frames_of_stack(sid)
                texts[sid] = ";".join(str(f) for f in frames) if frames else None
        cols["stack"] = [texts[sid] for sid in cols["stack_id"]]
        return {name: cols[name] for name, _ in EVENT_COLUMNS}

    # -- pandas views ---------------------------------------------------------------------------

    @property
    def events(self) -> pd.DataFrame:
        """One row per memory syscall, with its classification (columns: EVENT_COLUMNS)."""
        result: pd.DataFrame = self._cached("events", self._events_frame)
        return result.copy(deep=False)

    def _events_frame(self) -> pd.DataFrame:
        import pandas as pd

        cols = self.event_columns()
        data: dict[str, Any] = {}
        for name, values in cols.items():
            if name in _INT_COLUMNS:
                data[name] = pd.array(values, dtype="int64")
            elif name in _NULLABLE_INT_COLUMNS:
                data[name] = pd.array(values, dtype="Int64")
            else:
                data[name] = _categorical(values, _ORDERED.get(name))
        return pd.DataFrame(data, columns=[name for name, _ in EVENT_COLUMNS])

    @property
    def processes(self) -> pd.DataFrame:
        """One row per process: parent, program, threads, calls, how it ended, its allocator."""
        import pandas as pd

        return pd.DataFrame(self._cached("processes", self._process_rows), columns=_PROCESS_COLUMNS)

    def _process_rows(self) -> list[dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        tids: dict[int, set[int]] = {}

        def row(pid: int) -> dict[str, Any]:
            if pid not in rows:
                root = not rows
                rows[pid] = dict.fromkeys(_PROCESS_COLUMNS)
                rows[pid].update(
                    pid=pid,
                    program=self.header.program if root else None,
                    argv=list(self.header.argv) if root else None,
                    threads=0,
                    syscalls=0,
                    startup_calls=0,
                )
                tids[pid] = set()
            return rows[pid]

        for event in self.data.events:
            entry = row(event.pid)
            if isinstance(event, Exec):
                entry["program"], entry["argv"] = event.path, list(event.argv)
            elif isinstance(event, Spawn) and event.how != "thread":
                entry["parent_pid"] = event.parent_pid
                parent = rows.get(event.parent_pid)
                if parent is not None and entry["program"] is None:
                    entry["program"], entry["argv"] = parent["program"], parent["argv"]
            elif isinstance(event, Exit) and event.tid == event.pid:
                entry["status"], entry["signal"] = event.status, event.signal
            if not isinstance(event, Syscall) and hasattr(event, "tid"):
                tids[event.pid].add(event.tid)
        for c in self.classified:
            entry = row(c.event.pid)
            tids[c.event.pid].add(c.event.tid)
            entry["syscalls"] += 1
            entry["startup_calls"] += c.phase == "startup"
        for pid, info in self.analysis.allocators.items():
            entry = row(pid)
            entry["allocator"], entry["allocator_version"] = info.name, info.version
            entry["allocator_how"], entry["runtime"] = info.how, info.runtime
        for pid, entry in rows.items():
            entry["threads"] = len(tids[pid])
        return list(rows.values())

    @property
    def objects(self) -> pd.DataFrame:
        """Per process, each ELF object the loader (or kernel) mapped: how, who needed it, calls."""
        import pandas as pd

        from analyzers.loader import LoadedObject

        rows = [_record(obj, name=obj.name) for obj in self.analysis.objects]
        return pd.DataFrame(rows, columns=[*_field_names(LoadedObject), "name"])

    @property
    def arenas(self) -> pd.DataFrame:
        """Heaps, segments, extents and thread stacks, each with the thread that made it."""
        import pandas as pd

        from analyzers.arenas import Arena

        rows = [_record(arena) for arena in self.analysis.arenas]
        return pd.DataFrame(rows, columns=_field_names(Arena))

    @property
    def mappings(self) -> pd.DataFrame:
        """Each mapping from the call that made it to the one that removed it (the plot's bars)."""
        import pandas as pd

        from alloctrace.mappings import Lifetime

        rows = [dataclasses.asdict(life) for life in self.lifetimes()]
        frame = pd.DataFrame(rows, columns=_field_names(Lifetime))
        for name in ("removed_seq", "removed_ns"):
            frame[name] = pd.array(frame[name].tolist(), dtype="Int64")
        frame["category"] = _categorical(frame["category"].tolist(), _ORDERED["category"])
        return frame

    def lifetimes(self) -> list[Lifetime]:
        """The mappings as plain records (what ``mappings`` and the address-space map show)."""
        from alloctrace.mappings import lifetimes

        found: list[Lifetime] = self._cached(
            "lifetimes", lambda: lifetimes(self.data.events, self.classified)
        )
        return found

    def summary(self) -> pd.DataFrame:
        """Calls per syscall and bytes reserved, committed and resident, per phase and category.

        The figures of ``alloctrace report`` (analyzers.summarize); the last row is the total.
        ``reserved``: mapped PROT_NONE; ``committed``: made accessible; ``resident``: Rss at
        exit (from the trace's smaps snapshots; the ``kernel`` row is what exec mapped).
        """
        import pandas as pd

        from analyzers.summarize import SYSCALL_KINDS

        report = self.report
        rows = [(r.phase, r.category, r.figures) for r in report.table]
        rows.append(("total", "", report.totals))
        frame = pd.DataFrame(
            [
                {
                    "phase": phase,
                    "category": category,
                    "calls": figures.total,
                    **{kind: figures.calls.get(kind, 0) for kind in SYSCALL_KINDS},
                    "reserved": figures.reserved,
                    "committed": figures.committed,
                    "resident": figures.resident,
                }
                for phase, category, figures in rows
            ]
        )
        return frame.set_index(["phase", "category"])

    def upfront(self) -> dict[str, int]:
        """Calls before ``main`` (the startup phase), per category."""
        return dict(self.report.upfront.by_category)

    def diff(self, other: Trace, *more: Trace, labels: Sequence[str] | None = None) -> pd.DataFrame:
        """This trace (the baseline) against others: one row per figure, one column per trace.

        The figures of ``alloctrace diff`` (analyzers.diff); the ``change`` columns are each
        trace's value minus the baseline's. ``attrs["sentences"]`` says where the differences
        come from. Labels default to each trace's allocator (``label``).
        """
        import pandas as pd

        from analyzers.diff import diff

        traces = [self, other, *more]
        names = _unique_labels(traces, labels)
        result = diff([(name, t.report) for name, t in zip(names, traces, strict=True)])
        rows = []
        for metric in result.metrics:
            row: dict[str, Any] = {
                "group": metric.group,
                "metric": metric.metric,
                "unit": metric.unit,
            }
            for name, value in zip(names, metric.values, strict=True):
                row[name] = value
            for name, delta in zip(names[1:], metric.deltas[1:], strict=True):
                row[f"change {name}" if len(names) > 2 else "change"] = delta
            rows.append(row)
        frame = pd.DataFrame(rows).set_index(["group", "metric"])
        frame.attrs["sentences"] = list(result.sentences)
        frame.attrs["labels"] = list(names)
        return frame

    # -- plots and export -----------------------------------------------------------------------

    def plot(self, pid: int | None = None, limit: int = 60, ax: Any = None) -> Plot:
        """The address-space map: each mapping a bar from creation to removal, by category."""
        from alloctrace.plots import address_map

        return address_map(self, pid=pid, limit=limit, ax=ax)

    def plot_upfront(self, *others: Trace, labels: Sequence[str] | None = None) -> Plot:
        """Calls before main per category, one bar per trace (this one first)."""
        from alloctrace.plots import upfront_calls

        return upfront_calls([self, *others], labels=labels)

    def to_parquet(self, path: PathLike) -> None:
        """Write ``events`` to a Parquet file (needs pyarrow)."""
        if importlib.util.find_spec("pyarrow") is None:
            raise AlloctraceError("Parquet needs pyarrow: pip install 'alloctrace[notebook]'")
        try:
            self.events.to_parquet(os.fspath(path), index=False)
        except OSError as exc:
            raise AlloctraceError(f"cannot write {os.fspath(path)}: {exc}") from exc

    def to_csv(self, path: PathLike) -> None:
        """Write ``events`` as CSV (without pandas; empty cells where a value does not apply)."""
        from alloctrace.export import write_csv

        with open(os.fspath(path), "w", encoding="utf-8", newline="") as handle:
            write_csv(self, handle)

    def to_jsonl(self, path: PathLike) -> None:
        """Write ``events`` as JSON Lines, one analyzed syscall per line (without pandas)."""
        from alloctrace.export import write_jsonl

        with open(os.fspath(path), "w", encoding="utf-8") as handle:
            write_jsonl(self, handle)


# -- helpers --------------------------------------------------------------------------------


def _named(values: list[Any], describe: Callable[[int], str]) -> list[str | None]:
    names: dict[int, str] = {}
    out: list[str | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        text = names.get(value)
        if text is None:
            text = names[value] = describe(value)
        out.append(text)
    return out


def _categorical(values: list[Any], order: tuple[str, ...] | None = None) -> Any:
    """A categorical of strings: ``order`` first (an ordered one), the others sorted."""
    import pandas as pd

    known = order or ()
    extra = sorted({v for v in values if v is not None and v not in known})
    categories = pd.Index([*known, *extra], dtype="str")
    return pd.Categorical(values, categories=categories, ordered=order is not None)


def _field_names(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _record(obj: Any, **extra: Any) -> dict[str, Any]:
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    out.update(extra)
    return out


def _unique_labels(traces: Sequence[Trace], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(traces) or len(set(labels)) != len(labels):
            raise AlloctraceError(f"need {len(traces)} distinct labels, got {list(labels)}")
        return list(labels)
    names = [t.label for t in traces]
    if len(set(names)) < len(names):
        names = [
            f"{n} ({os.path.basename(t.header.program) or i + 1})"
            for i, (n, t) in enumerate(zip(names, traces, strict=True))
        ]
    if len(set(names)) < len(names):
        names = [f"{n} #{i + 1}" for i, n in enumerate(names)]
    return names


def _rules(rules: Any) -> RuleSet | None:
    if rules is None:
        return None
    from analyzers.rules import RuleSet, load_rules

    if isinstance(rules, RuleSet):
        return rules
    paths = [rules] if isinstance(rules, str | os.PathLike) else list(rules)
    return load_rules([Path(p) for p in paths])


# -- entry points ---------------------------------------------------------------------------

_SCRATCH: list[str] = []
_COUNTER = itertools.count(1)


def _scratch_path(stem: str) -> str:
    """A fresh file name in this process's scratch directory (removed when Python exits)."""
    if not _SCRATCH:
        directory = tempfile.mkdtemp(prefix="alloctrace-")
        _SCRATCH.append(directory)
        atexit.register(shutil.rmtree, directory, True)
    return os.path.join(_SCRATCH[0], f"{stem}-{next(_COUNTER)}.jsonl")


def load(path: PathLike, rules: Any = None) -> Trace:
    """Read a trace file; raises AlloctraceError (one precise line) if it is malformed.

    ``rules``: extra classification rule files (TOML, as analyzers/rules/default.toml), tried
    before the defaults.
    """
    return Trace(read_trace(path), _rules(rules))


def run(
    argv: str | Sequence[PathLike],
    allocator: str | None = None,
    *,
    output: PathLike | None = None,
    stacks: bool = True,
    env: dict[str, str] | None = None,
    rules: Any = None,
) -> Trace:
    """Trace a program (from a notebook cell) and return its Trace.

    ``argv``: the program and its arguments (a string is split like a shell would).
    ``allocator``: ``"jemalloc"``, ``"tcmalloc"``, ``"mimalloc"`` or a library path is injected
    with LD_PRELOAD (``alloctrace allocators`` lists them); ``"glibc"`` removes any LD_PRELOAD;
    None leaves the environment as it is.
    ``output``: where to keep the trace file (default: a scratch file removed at exit).
    The program's exit status is in ``footer``; only a program that cannot be started raises.
    """
    from alloctrace.commands.allocators import environment, resolve
    from tracer.recording import record
    from tracer.session import TraceOptions

    args = shlex.split(argv) if isinstance(argv, str) else [os.fspath(a) for a in argv]
    if not args:
        raise AlloctraceError("no program given to trace")
    library = resolve(allocator) if allocator is not None else None
    environment_ = environment(library, dict(os.environ if env is None else env))
    out = os.fspath(output) if output is not None else _scratch_path(Path(args[0]).name)
    record(
        args,
        out,
        TraceOptions(stacks=stacks),
        env=environment_,
        allocator=library.name if library is not None else None,
    )
    return load(out, rules)


def import_strace(
    log: PathLike,
    output: PathLike | None = None,
    *,
    program: str | None = None,
    rules: Any = None,
) -> Trace:
    """Convert an strace text log into a trace (tracer.strace_import) and return its Trace.

    Lines that could not be understood are listed in ``import_report`` and announced with a
    warning. ``program`` names the traced executable when the log does not show its execve.
    """
    from tracer.strace_import import import_strace as convert

    out = os.fspath(output) if output is not None else _scratch_path(Path(log).stem)
    report = convert(log, out, program=program)
    if report.unparsed:
        warnings.warn("; ".join(report.lines(limit=3)[1:]), UserWarning, stacklevel=2)
    trace = load(out, rules)
    trace.import_report = report
    return trace
