"""Classification: each memory syscall gets a category, owner and role, with the reason why.

By stack when the trace has one (the rules of analyzers/rules/default.toml decide), else by the
documented argument signatures of analyzers/heuristics.py. Calls that touch an existing mapping
(munmap, mprotect, madvise, mremap) and that no rule claims inherit the owner of that mapping,
which the address-space replay (analyzers/addrspace.py) knows; so does a munmap of a whole
allocator, runtime or stack mapping from the object that made it, whatever its frame is named
(a free function that tail-calls munmap leaves no frame of its own).
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from msgspec.structs import replace

from analyzers import heuristics
from analyzers.addrspace import Region, pages
from analyzers.allocators import static_libc
from analyzers.model import Classified, ProcessState
from analyzers.phases import has_phase_records, phases_from_stacks
from analyzers.rules import RuleSet, default_rules
from analyzers.symbols import ResolvedFrame, Symbolizer
from tracer import elf, flags
from tracer.records import Exec, Memory, Phase, Spawn, Syscall
from tracer.traceformat import TraceData

# GCC's clones and split functions: sysmalloc_mmap.constprop.0 is sysmalloc_mmap.
_CLONE_SUFFIX = re.compile(r"\.(?:constprop|isra|part|cold|lto_priv|localalias)(?:\.\d+)*$")

_UNNAMED = "<unnamed object at "  # span key of an object mapped without a known path

FramesOf = Callable[[Syscall], Sequence[ResolvedFrame]]


def frames_resolver(trace: TraceData, symbolizer: Symbolizer | None = None) -> FramesOf:
    """Resolved frames of each event's stack, each stack resolved once."""
    names = symbolizer or Symbolizer()
    cache: dict[int, tuple[ResolvedFrame, ...]] = {}

    def frames_of(event: Syscall) -> Sequence[ResolvedFrame]:
        if event.stack is None or event.stack not in trace.stacks:
            return ()
        found = cache.get(event.stack)
        if found is None:
            found = names.resolve_all(trace.stacks[event.stack].frames, trace.modules)
            cache[event.stack] = found
        return found

    return frames_of


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What a stack decides: everything of a Classified but the event itself."""

    category: str
    owner: str
    role: str
    reason: str
    object: str | None
    function: str | None
    refine: bool = False  # let the arguments name the role (libraries without symbols)
    deferred: bool = False  # the owner's code, unnamed: its arguments decide (heuristics)
    # the stack alone decides, the same for every call (no argument or loader detail), unless
    # ``unmaps`` and the call unmaps a whole mapping its object made (_released_by_mapper)
    plain: bool = False
    unmaps: bool = False  # a program's munmap

    def classify(self, event: Syscall, phase: str = "main") -> Classified:
        role = self.role
        if self.refine:
            role = heuristics.allocator_role(self.owner, event, phase) or role
        return Classified(
            event,
            self.category,
            self.owner,
            role,
            self.reason,
            "stack",
            self.object,
            self.function,
            None,
            phase,
        )


_UNDECIDED = _Verdict("", "", "", "", None, None)


class Classifier:
    """Replays a trace's events in order, classifying each syscall."""

    def __init__(self, rules: RuleSet | None = None) -> None:
        self.rules = rules or default_rules()
        # A stack decides the same way for every call made through it: decided once per
        # executable, syscall and stack id (nested: no key tuple to build and hash per call).
        self._verdicts: dict[str, dict[str, dict[int, _Verdict | None]]] = {}

    def classify(self, trace: TraceData, frames_of: FramesOf | None = None) -> list[Classified]:
        """Every syscall of ``trace`` with its classification, in trace order."""
        self._verdicts.clear()  # stack ids are the trace's own
        frames = frames_of or frames_resolver(trace)
        # The tracer's Phase records set each process's phase as they come; without them (an
        # imported strace log) the stacks tell it: the roles that depend on it need it either way.
        next_phase = (
            None if has_phase_records(trace) else iter(phases_from_stacks(trace, frames)).__next__
        )
        kernel_spans = _kernel_mapped(trace)
        states: dict[int, ProcessState] = {}
        out: list[Classified] = []
        # The state and verdicts of the process of the previous call, kept at hand while its
        # calls follow one another; pid None after a process's state was replaced.
        pid: int | None = None
        state = ProcessState(0)  # replaced before the first call is classified
        verdicts: dict[str, dict[int, _Verdict | None]] = {}
        for event in trace.events:
            if isinstance(event, Syscall):  # nearly every event: tested first
                if event.pid != pid:
                    pid = event.pid
                    found = states.get(pid)
                    if found is None:
                        found = states[pid] = ProcessState(pid, exe=trace.header.program)
                    state = found
                    verdicts = self._verdicts.setdefault(state.exe, {})
                if next_phase is None:
                    phase = state.phase
                else:
                    state.phase = phase = next_phase()
                verdict = None
                if event.stack is not None:
                    by_stack = verdicts.get(event.syscall)
                    if by_stack is None:
                        by_stack = verdicts[event.syscall] = {}
                    verdict = by_stack.get(event.stack, _UNDECIDED)
                    if verdict is _UNDECIDED:  # the frames are needed only the first time
                        stack = frames(event)
                        verdict = self._by_stack(event.syscall, stack, state.exe) if stack else None
                        by_stack[event.stack] = verdict
                if (
                    verdict is not None
                    and verdict.plain
                    and not (verdict.unmaps and _in_mapper_mapping(state, event.addr or 0))
                ):
                    # Most calls: built here, in its phase, with no loader segment to name an
                    # alignment reservation after. Python's cost per call is the bytecodes it
                    # runs: this path, the nested verdict cache and the process kept at hand
                    # take a fifth of the instructions per call off mmapbench's (measured).
                    result = Classified(
                        event,
                        verdict.category,
                        verdict.owner,
                        verdict.role,
                        verdict.reason,
                        "stack",
                        verdict.object,
                        verdict.function,
                        None,
                        phase,
                    )
                    # _remember's replay of the two calls most programs make, inline: the frame
                    # it saves is 8% of analyze's instructions on threadbench's trace (measured).
                    if event.result is None:
                        pass  # failed: nothing changed
                    elif event.syscall == "munmap" and event.addr is not None:
                        end = event.addr + (((event.length or 0) + 4095) & ~4095)  # pages()
                        state.space.remove(event.addr, end, event.ts_ns)
                    elif event.syscall == "mmap" and not event.path:
                        state.seen_mmap = True
                        start = event.result
                        state.space.add(
                            Region(
                                start,
                                start + (((event.length or 0) + 4095) & ~4095),  # pages()
                                verdict.category,
                                verdict.owner,
                                verdict.role,
                                verdict.object,
                                event.prot or 0,
                                event.ts_ns + event.dur_ns,  # returned_ns
                            )
                        )
                    else:
                        self._remember(event, result, state)
                    out.append(result)
                    continue
                result = self._classify_one(event, verdict, state)
                self._remember(event, result, state)
                if state.align is not None or result.segment == "align":
                    _name_alignment_reservation(event, result, state, out)
                out.append(result if result.phase == phase else replace(result, phase=phase))
            elif isinstance(event, Phase):
                found = states.get(event.pid)
                if found is None:
                    found = states[event.pid] = ProcessState(event.pid, exe=trace.header.program)
                found.phase = event.phase
            elif isinstance(event, Exec):
                spans = kernel_spans.get((event.pid, event.seq), {})
                names = loader_names(event.path)
                states[event.pid] = ProcessState(
                    event.pid,
                    exe=event.path,
                    spans=dict(spans),
                    libraries=names,
                    static=len(names) == 1,
                    static_musl=static_libc(event.path) == "musl",
                )
                pid = None
            elif isinstance(event, Spawn) and event.how != "thread":
                parent = states.get(event.parent_pid)
                if parent is not None:
                    states[event.pid] = ProcessState(
                        event.pid,
                        exe=parent.exe,
                        space=parent.space.copy(),
                        spans=dict(parent.spans),
                        libraries=set(parent.libraries),
                        seen_mmap=True,
                        brk_calls=parent.brk_calls,
                        loader_done=True,
                        static=parent.static,
                        static_musl=parent.static_musl,
                    )
                    pid = None
        return out

    def _classify_one(
        self, event: Syscall, verdict: _Verdict | None, state: ProcessState
    ) -> Classified:
        """The call's classification where its stack's verdict is not all of it, or there is
        none."""
        if verdict is not None and not verdict.deferred:
            decided = None
            if verdict.unmaps:
                decided = self._released_by_mapper(event, verdict, state)
            if decided is None:
                decided = verdict.classify(event, state.phase)
        else:
            inside = None if verdict is None else verdict.owner  # a rule deferred: whose code
            decided = self._by_region(event, state) or heuristics.classify(event, state, inside)
        if decided.category == "loader":
            decided = self._loader_details(event, decided, state)
        return decided

    def _by_stack(self, syscall: str, stack: Sequence[ResolvedFrame], exe: str) -> _Verdict | None:
        """What the stack says, the same for every call with this stack and syscall."""
        wrappers = self.rules.wrappers
        decider = next((f for f in stack if f.function is None or f.function not in wrappers), None)
        if decider is None:
            return None
        is_exe = decider.object is not None and _same_file(decider.object, exe)
        decider_function = (
            _CLONE_SUFFIX.sub("", decider.function) if decider.function is not None else None
        )
        name = decider.object_name
        functions = [_CLONE_SUFFIX.sub("", f.function) for f in stack if f.function]
        static = static_libc(exe) if is_exe else None
        for rule in self.rules.rules:
            if not rule.claims(name, is_exe, decider_function, static):
                continue
            if rule.context is not None and not any(rule.context.fullmatch(f) for f in functions):
                continue
            if rule.defer:  # code that cannot be named: the arguments decide
                return _Verdict("", rule.owner, "", "", decider.object, None, deferred=True)
            role = rule.role
            for candidate in rule.roles:
                if candidate.syscalls and syscall not in candidate.syscalls:
                    continue
                pattern = candidate.functions
                if pattern is None or any(pattern.fullmatch(f) for f in functions):
                    role = candidate.name
                    break
            return _Verdict(
                rule.category,
                rule.owner,
                role,
                f"{decider} (rule {rule.id})",
                decider.object,
                decider.function,
                # a library without symbols: its arguments tell the role
                refine=not rule.roles,
                plain=bool(rule.roles) and rule.category != "loader",
                unmaps=(rule.category, syscall) == ("user", "munmap"),
            )
        if decider.object is None:
            return None
        # Unclaimed code: the program itself, or a library it uses.
        return _Verdict(
            "user",
            os.path.basename(exe) if is_exe else name,
            "own call",
            f"{decider} is the program's code" if is_exe else f"{decider} (a library it uses)",
            decider.object,
            decider.function,
            plain=True,
            unmaps=syscall == "munmap",
        )

    def _released_by_mapper(
        self, event: Syscall, verdict: _Verdict, state: ProcessState
    ) -> Classified | None:
        """A munmap of exactly a mapping that a runtime, allocator or thread library in the
        same object made.

        A free function that ends by tail-calling munmap leaves no frame of its own, so the
        stack names whatever called it (CPython's arena free under ``PyObject_GC_Del``), and a
        static program's libc has no file name of its own (musl's pthread_join unmapping a
        stack); the object that mapped the range and unmaps the whole of it is releasing it.
        """
        start = event.addr or 0
        if not _in_mapper_mapping(state, start):  # most munmaps: the program's own mapping
            return None
        end = start + pages(event.length)
        parts = state.space.overlapping(start, end)  # one mapping, split by mprotect or not
        if not parts or (parts[0].start, parts[-1].end) != (start, end):
            return None
        region = parts[0]
        if (
            region.object is None
            or verdict.object is None
            or not _same_file(region.object, verdict.object)
            or any(p.end != q.start for p, q in itertools.pairwise(parts))
            or any((p.owner, p.object) != (region.owner, region.object) for p in parts[1:])
        ):
            return None
        caller = f"{os.path.basename(verdict.object)}({verdict.function or '?'})"
        return Classified(
            event,
            region.category,
            region.owner,
            "free stack" if region.category == "thread-stack" else f"release {region.role}",
            f"unmaps the whole {region.owner} mapping ({region.role}) at {region.start:#x} "
            f"from the object that mapped it, in {caller}",
            "region",
            region.object,
        )

    def _by_region(self, event: Syscall, state: ProcessState) -> Classified | None:
        """munmap/mprotect/madvise/mremap of a mapping whose owner is known."""
        if event.syscall not in ("munmap", "mprotect", "madvise", "mremap") or event.addr is None:
            return None
        region = state.space.find(event.addr)
        if region is None:
            return None
        role = {
            "munmap": "unmap",
            "mprotect": "change protection",
            "madvise": "advise",
            "mremap": "remap",
        }[event.syscall]
        return Classified(
            event,
            region.category,
            region.owner,
            f"{role} ({region.role})",
            f"inside a {region.owner} mapping ({region.role}) at {region.start:#x}",
            "region",
            region.object,
        )

    def _loader_details(self, event: Syscall, found: Classified, state: ProcessState) -> Classified:
        """Name the object a loader call works on and the segment kind."""
        obj = found.object if found.object and not _is_loader_object(found.object) else None
        segment = None
        fl = event.flags or 0
        if event.syscall == "mmap" and event.path and event.path != "/etc/ld.so.cache":
            obj = event.path
            fixed = fl & flags.MAP_FIXED
            prot = event.prot or 0
            reserved = state.align
            aligned = reserved is not None and reserved[0] <= (event.addr or 0) < reserved[1]
            if not fixed or (aligned and event.path not in state.spans):
                segment = "span"  # the whole object, at an address of its own or one aligned
            elif prot & flags.PROT_EXEC:
                segment = "text"
            elif prot & flags.PROT_WRITE:
                segment = "data"
            else:
                segment = "rodata"
        elif (
            event.syscall == "mmap"
            and fl & flags.MAP_ANONYMOUS
            and not fl & flags.MAP_FIXED
            and event.prot == flags.PROT_NONE
            and found.role == "map segment"
        ):
            # _dl_map_segment: p_align above the page size, so it reserves the object's length
            # plus the alignment, maps the object aligned inside and unmaps the excess
            segment = "align"
        elif event.addr is not None:
            owner = _object_at(state, event.addr)
            if owner is not None:
                obj = None if owner.startswith(_UNNAMED) else owner
                if event.syscall == "mmap":
                    segment = "bss"
                elif event.syscall == "mprotect":
                    segment = "relro" if event.prot == flags.PROT_READ else "gap"
                elif event.syscall == "munmap":
                    segment = "span"
        return Classified(
            found.event,
            found.category,
            found.owner,
            found.role,
            found.reason,
            found.decided_by,
            obj,
            found.function,
            segment,
        )

    def _remember(self, event: Syscall, result: Classified, state: ProcessState) -> None:
        """Replay the call into the process's address space."""
        if event.result is None:
            return
        if event.syscall == "mmap":
            state.seen_mmap = True
            if event.path:
                state.add_library(os.path.basename(event.path))
            start = event.result
            end = start + (((event.length or 0) + 4095) & ~4095)  # pages(), inline (hot)
            state.space.add(
                Region(
                    start,
                    end,
                    result.category,
                    result.owner,
                    result.role,
                    result.object,
                    event.prot or 0,
                    event.ts_ns + event.dur_ns,  # returned_ns, inline: no property call
                )
            )
            if (
                result.category == "loader"
                and (event.path or (event.fd or -1) >= 0)
                and not (event.flags or 0) & (flags.MAP_FIXED | flags.MAP_ANONYMOUS)
            ):
                # Not MAP_FIXED: any span it meets was unmapped, and must not claim its pages.
                state.forget_spans(start, end, overlapping=True)
                # A log without paths still shows each object's span: key it by its address.
                state.spans[event.path or f"{_UNNAMED}{start:#x}"] = (start, end)
        elif event.syscall == "munmap" and event.addr is not None:
            end = event.addr + (((event.length or 0) + 4095) & ~4095)  # pages(), inline
            state.space.remove(event.addr, end, event.ts_ns)
            if result.category == "loader":  # ld.so unmaps objects (dlclose, excess, cache)
                if "ld.so.cache" in result.role or result.object == "/etc/ld.so.cache":
                    state.loader_done = True
                state.forget_spans(event.addr, end)
        elif event.syscall == "mprotect" and event.addr is not None:
            state.space.reprotect(event.addr, event.addr + pages(event.length), event.prot or 0)
        elif event.syscall == "mremap" and event.addr is not None:
            old = state.space.find(event.addr)
            state.space.remove(event.addr, event.addr + pages(event.length), event.ts_ns)
            keep = old or Region(0, 0, result.category, result.owner, result.role, result.object)
            start, end = event.result, event.result + pages(event.new_length)
            state.space.add(replace(keep, start=start, end=end, made_ns=event.returned_ns))
        elif event.syscall == "brk":
            state.brk_calls += 1


_MAPPERS = ("allocator", "runtime", "thread-stack")  # who maps what a free may unmap whole


def _in_mapper_mapping(state: ProcessState, addr: int) -> bool:
    """Is ``addr`` in a mapping an allocator, runtime or thread library made? Only then can a
    program's munmap there release a whole mapping (Classifier._released_by_mapper)."""
    region = state.space.find(addr)
    return region is not None and region.category in _MAPPERS


def _name_alignment_reservation(
    event: Syscall, result: Classified, state: ProcessState, out: list[Classified]
) -> None:
    """An alignment reservation waits for the object mapped into it: then it is that object's,
    and so is the range, until the excess is unmapped."""
    if result.segment == "align":
        if event.result is not None:
            state.align = (event.result, event.result + pages(event.length), len(out))
        return
    if result.segment != "span" or state.align is None or result.object is None:
        return
    start, end, index = state.align
    state.align = None
    if start <= (event.addr or 0) < end:
        out[index] = replace(out[index], object=result.object)
        state.spans[result.object] = (start, end)


def _kernel_mapped(trace: TraceData) -> dict[tuple[int, int], dict[str, tuple[int, int]]]:
    """Spans of the objects the kernel maps at exec (the executable and its PT_INTERP loader).

    ld.so never mmaps them, so their RELRO mprotects are attributed through these spans,
    taken from the module table or, without stacks, from the exit-time smaps snapshot.
    """
    out: dict[tuple[int, int], dict[str, tuple[int, int]]] = {}
    current: dict[int, tuple[int, str]] = {}  # pid -> (exec seq, exe path)
    kernel: dict[int, set[str]] = {}  # pid -> real paths of the executable and its loader
    for event in trace.events:
        if isinstance(event, Syscall):  # nearly every event: one test, not two
            continue
        if isinstance(event, Exec):
            current[event.pid] = (event.seq, event.path)
            out[event.pid, event.seq] = {}
            kernel[event.pid] = _kernel_objects(event.path)
        elif isinstance(event, Memory) and event.pid in current:
            seq, _exe = current[event.pid]
            spans = out[event.pid, seq]
            for m in event.mappings:
                if m.path and os.path.realpath(m.path) in kernel[event.pid]:
                    lo, hi = spans.get(m.path, (m.start, m.end))
                    spans[m.path] = (min(lo, m.start), max(hi, m.end))
    for module in trace.modules.values():
        for (pid, _seq), spans in out.items():
            if (
                pid == module.pid
                and module.path not in spans
                and os.path.realpath(module.path) in kernel.get(pid, set())
            ):
                spans[module.path] = (module.start, module.end)
    return out


@functools.lru_cache(maxsize=256)
def _kernel_objects(exe: str) -> set[str]:
    """Real paths of what the kernel maps for ``exe``: itself and its PT_INTERP loader."""
    paths = {os.path.realpath(exe)}
    obj = elf.open_elf(exe)
    if obj is not None and obj.interpreter:
        paths.add(os.path.realpath(obj.interpreter))
    return paths


def loader_names(exe: str) -> set[str]:
    """File names the process's kernel-mapped objects answer to (the loader's PT_INTERP name
    too: musl's ld-musl-x86_64.so.1 is its libc.so)."""
    obj = elf.open_elf(exe)
    names = {os.path.basename(p) for p in _kernel_objects(exe)}
    if obj is not None and obj.interpreter:
        names.add(os.path.basename(obj.interpreter))
    return names


def _object_at(state: ProcessState, addr: int) -> str | None:
    for path, (start, end) in state.spans.items():
        if start <= addr < end:
            return path
    return None


def _is_loader_object(path: str) -> bool:
    return os.path.basename(path).startswith(("ld-linux", "ld-musl"))


@functools.lru_cache(maxsize=1024)
def _same_file(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.basename(a) == os.path.basename(b)


def classify(trace: TraceData, rules: RuleSet | None = None) -> list[Classified]:
    """Classify every syscall of a trace (by stack where it has them, else by heuristics)."""
    return Classifier(rules).classify(trace)
