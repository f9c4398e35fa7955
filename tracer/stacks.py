"""The session's StackRecorder: unwind at each memory syscall, intern stacks, write the tables.

A stack is the tuple of its frames (pc, module id, how); the first time one is seen it gets an
id and a ``stack`` record, and every module it mentions that the trace has not described yet
gets a ``module`` record first (path, build-id, load bias), so a reader always meets a module
and a stack before the event that refers to them. A repeated stack costs the event its id.
Module maps are per process and follow exec, fork, exit, mmap and munmap (tracer.modules).

Under the C loop, every walk that tracer.unwind remembers is handed to it with its stack id,
together with the module map it was made in: a repeated call site is then written by the C
loop without coming back here (tracer/_fastloop.c, "Remembered walks").
"""

from __future__ import annotations

from typing import Final

from tracer import procfs
from tracer.fastloop import FastLoop
from tracer.modules import ProcessModules
from tracer.ptrace_adapter import Registers, TraceeMemory
from tracer.records import Frame, Module, Stack
from tracer.traceformat import TraceWriter
from tracer.unwind import HOW_CFI, HOW_REGS, Unwinder, module_id

_MAX_INTERNED: Final = 1_000_000  # distinct stacks remembered; past it, stacks are re-emitted


class StackTable:
    """Implements tracer.session.StackRecorder by CFI unwinding (tracer.unwind)."""

    def __init__(self, writer: TraceWriter, depth: int = 64) -> None:
        self._writer = writer
        self._unwinder = Unwinder(depth)
        self._spaces: dict[int, ProcessModules] = {}
        self._memory: dict[int, TraceeMemory] = {}
        self._stacks: dict[tuple[object, ...], int] = {}
        self._written: set[int] = set()
        self._next_module = 0
        self._next_stack = 0
        self.errors = 0  # walks that raised (see capture)
        self._fast: FastLoop | None = None
        self._shared: dict[int, int] = {}  # pid → the layout of the map the C loop was given

    def _new_module_id(self) -> int:
        self._next_module += 1
        return self._next_module

    def _space(self, pid: int) -> ProcessModules:
        space = self._spaces.get(pid)
        if space is None:  # a process we have not seen exec (attached, or adopted early)
            space = self._spaces[pid] = ProcessModules(pid, self._new_module_id)
            space.seed(procfs.maps(pid))
        return space

    # -- the hot path ---------------------------------------------------------------------------

    def capture(self, pid: int, tid: int, regs: Registers) -> int | None:
        """Unwind the thread's stack; return the interned stack id (records written as needed)."""
        del tid  # threads share the address space: /proc/PID/mem reads any thread's stack
        space = self._spaces.get(pid)
        if space is None:
            space = self._space(pid)
        memory = self._memory.get(pid)
        if memory is None:
            memory = self._memory[pid] = TraceeMemory(pid)
        try:
            pcs, hows = self._unwinder.walk(space, memory, regs)
        except Exception:  # a bad object must not end the trace
            # Something the unwinder did not expect (a malformed CFI entry, say): keep the
            # stop's pc, which is always right, and go on.
            self.errors += 1
            pcs, hows = (space.layout, regs.rip), None
        key: tuple[object, ...] = pcs if hows is None else (pcs, hows)
        sid = self._stacks.get(key)
        if sid is None:
            sid = self._intern(pid, space, key, pcs, hows)
        if self._fast is not None and hows is None:
            walk = space.walks.get((regs.rip, regs.rsp))
            if walk is not None and walk[3] is pcs:  # this stop's walk was remembered
                self._share_map(pid, space)
                self._fast.remember(pid, regs.rip, regs.rsp, sid, walk[1], walk[2])
        return sid

    def _intern(
        self,
        pid: int,
        space: ProcessModules,
        key: tuple[object, ...],
        pcs: tuple[int, ...],
        hows: tuple[str, ...] | None,
    ) -> int:
        frames: list[Frame] = []
        for i, pc in enumerate(pcs[1:]):  # pcs[0] is the layout token
            how = hows[i] if hows is not None else (HOW_REGS if i == 0 else HOW_CFI)
            mid = module_id(space, pc, i)
            if mid is not None and mid not in self._written:
                self._write_module(pid, space, pc if i == 0 else pc - 1, mid)
            frames.append(Frame(pc, mid, how))
        if len(self._stacks) >= _MAX_INTERNED:
            self._stacks.clear()
        self._next_stack += 1
        sid = self._stacks[key] = self._next_stack
        self._writer.write(Stack(sid, tuple(frames)))
        return sid

    def _write_module(self, pid: int, space: ProcessModules, addr: int, mid: int) -> None:
        module = space.find(addr)
        if module is None or module.id != mid:
            module = next((m for m in space.modules() if m.id == mid), None)
            if module is None:
                return
        self._written.add(mid)
        self._writer.write(
            Module(
                id=mid,
                pid=pid,
                path=module.path,
                start=module.start,
                end=module.end,
                bias=module.bias,
                build_id=module.build_id,
            )
        )

    # -- sharing remembered walks with the C loop --------------------------------------------------

    def share(self, fast: FastLoop | None) -> None:
        """Hand remembered walks to ``fast`` from now on (None: stop)."""
        self._fast = fast
        self._shared.clear()

    def sync(self) -> None:
        """Give the C loop the module maps that changed since it was given them, and forget
        the processes that are gone; call it before the C loop runs again."""
        fast = self._fast
        if fast is None:
            return
        for pid in list(self._shared):
            space = self._spaces.get(pid)
            if space is None:
                fast.forget(pid)
                del self._shared[pid]
            else:
                self._share_map(pid, space)

    def _share_map(self, pid: int, space: ProcessModules) -> None:
        """Give the C loop ``pid``'s module map, unless it has this one already."""
        if self._shared.get(pid) != space.layout:
            assert self._fast is not None
            self._fast.modules(pid, [(start, end) for start, end, _ in space.intervals()])
            self._shared[pid] = space.layout

    # -- keeping the module maps current ----------------------------------------------------------

    def _forget(self, pid: int) -> None:
        self._spaces.pop(pid, None)
        memory = self._memory.pop(pid, None)
        if memory is not None:
            memory.close()

    def on_exec(self, pid: int) -> None:
        """New address space: the kernel mapped the program, ld.so and the vDSO."""
        self._forget(pid)
        self._space(pid)

    def on_fork(self, parent: int, child: int) -> None:
        """The child starts with the parent's mappings (and shares its module ids)."""
        space = self._spaces.get(parent)
        if space is not None:
            self._forget(child)
            self._spaces[child] = space.copy(child)

    def on_exit(self, pid: int) -> None:
        """The process is gone."""
        self._forget(pid)

    def on_mmap(self, pid: int, addr: int, length: int, offset: int, path: str | None) -> None:
        """A successful mmap: a file maps (part of) an object, anonymous memory replaces one."""
        space = self._spaces.get(pid)
        if space is None:
            return
        if path is not None and (path.startswith("/") and not path.startswith("/dev/")):
            space.add_file(addr, length, offset, path)
        else:
            space.remove(addr, length)

    def on_munmap(self, pid: int, addr: int, length: int) -> None:
        """A successful munmap."""
        space = self._spaces.get(pid)
        if space is not None:
            space.remove(addr, length)

    def close(self) -> None:
        """Release the /proc/PID/mem descriptors."""
        for pid in list(self._memory):
            self._forget(pid)
