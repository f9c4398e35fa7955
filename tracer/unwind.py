"""The live unwinder: from a stopped thread's registers to the return addresses on its stack.

DWARF call-frame information (``.eh_frame``/``.debug_frame``, via tracer.elf) says, for every
instruction, how to find the caller's frame: the CFA (canonical frame address, the caller's
stack pointer) as a register plus an offset, where the return address and the callee-saved
registers are stored relative to it. Walking it needs the registers at the stop and the words
of the stack: the top of the stack is read in one ``pread`` of /proc/PID/mem (more only when a
frame lies beyond it), and each pc's decoded rule is cached in the process's module map, so a
warm unwind is a few dict lookups and ``unpack_from`` calls per frame.

Where CFI is missing (hand-written assembly, JIT code, a stripped ``.eh_frame``), two guesses
follow: the frame-pointer chain (``[rbp]`` is the caller's rbp, ``[rbp+8]`` the return address)
and stack scanning (the first word above the stack pointer that points just after a call
instruction in an executable mapping). Every frame says how it was found: ``regs`` (the stop's
own pc), ``cfi``, ``fp`` or ``scan``. The walk ends at the outermost frame (its CFI marks the
return address undefined: ``_start``, ``clone3``), a null return address, or the depth limit.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Final, Protocol

from tracer import elf
from tracer.modules import LoadedModule, PcEntry, ProcessModules

# How a frame's pc was found.
HOW_REGS: Final = "regs"
HOW_CFI: Final = "cfi"
HOW_FP: Final = "fp"
HOW_SCAN: Final = "scan"

# Kinds of per-pc cache entries.
_SIMPLE: Final = 0  # CFA = reg + offset, every saved register (and the RA) at CFA + n
_GENERAL: Final = 1  # anything else the CFI can say (expressions, register copies)
_OUTERMOST: Final = 2  # return address undefined: the last frame
_NO_CFI: Final = 3  # a known object without CFI for this pc
_NO_MODULE: Final = 4  # no known object here

_MAX_READ: Final = 65536
_MAX_STACK: Final = 8 << 20  # never read further than this above the stop's rsp
_SCAN_WORDS: Final = 1024  # words scanned for a return address when all else fails
_MAX_PC_CACHE: Final = 200_000
_MAX_WALKS: Final = 100_000
_WORD = struct.Struct("<Q")
_MASK64: Final = (1 << 64) - 1

Frames = list[tuple[int, int | None, str]]


class MemoryReader(Protocol):
    """Reads the tracee's memory (tracer.ptrace_adapter.TraceeMemory)."""

    def read(self, addr: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``addr``; fewer (or none) where the memory ends."""


class _Fail(Exception):
    """The CFI asks for something we cannot compute (unknown register, unreadable memory)."""


class _Stack:
    """The words read from the stack: one buffer from the stop's rsp, grown on demand."""

    __slots__ = ("base", "buf", "end", "memory", "short")

    def __init__(self, memory: MemoryReader, base: int, buf: bytes, short: bool) -> None:
        self.memory = memory
        self.base = base
        self.buf = buf
        self.end = base + len(buf)
        self.short = short  # the read stopped short: the stack mapping ends at self.end

    def covers(self, lo: int, hi: int) -> bool:
        """Make [lo, hi) readable from the buffer if it can be (grow it); True when it is."""
        if lo < self.base:
            return False
        if hi <= self.end:
            return True
        if self.short or hi - self.base > _MAX_STACK:
            return False
        want = min(max(2 * len(self.buf), hi - self.base + 4096), _MAX_STACK)
        self.buf += self.memory.read(self.end, want - len(self.buf))
        self.end = self.base + len(self.buf)
        self.short = len(self.buf) < want
        return hi <= self.end

    def word(self, addr: int) -> int:
        """The 8-byte word at ``addr`` (raises _Fail when it cannot be read)."""
        if self.covers(addr, addr + 8):
            return int(_WORD.unpack_from(self.buf, addr - self.base)[0])
        raw = self.memory.read(addr, 8)  # not on the stack we read (a signal frame's pointer...)
        if len(raw) != 8:
            raise _Fail
        return int(_WORD.unpack(raw)[0])


def _after_call(code: bytes) -> bool:
    """True when the 7 bytes before a return address end with a call instruction."""
    if len(code) != 7:
        return False
    if code[2] == 0xE8:  # call rel32 (5 bytes)
        return True
    # call r/m64 (FF /2): 2 to 7 bytes long, ModRM reg field 2.
    return any(code[7 - n] == 0xFF and (code[8 - n] >> 3) & 7 == 2 for n in range(2, 8))


class RegisterSet(Protocol):
    """The registers the unwinder starts from (tracer.ptrace_adapter.Registers has them)."""

    rip: int
    rsp: int
    rbp: int
    rbx: int
    r12: int
    r13: int
    r14: int
    r15: int


@functools.lru_cache(maxsize=4096)
def _gather(offsets: tuple[int, ...]) -> struct.Struct:
    """A Struct that reads the words at ``offsets`` (increasing) of a buffer in one call."""
    fmt = ["<"]
    at = 0
    for off in offsets:
        if off > at:
            fmt.append(f"{off - at}x")
        fmt.append("Q")
        at = off + 8
    return struct.Struct("".join(fmt))


class Unwinder:
    """Unwinds one thread's stack at a stop; all caches live in the ProcessModules."""

    def __init__(self, depth: int) -> None:
        self.depth = max(1, depth)

    def unwind(self, space: ProcessModules, memory: MemoryReader, regs: RegisterSet) -> Frames:
        """The frames from the stop's pc outwards: (pc, module id, how), innermost first."""
        pcs, hows = self.walk(space, memory, regs)
        out: Frames = []
        for i, pc in enumerate(pcs[1:]):
            how = hows[i] if hows is not None else (HOW_REGS if i == 0 else HOW_CFI)
            out.append((pc, module_id(space, pc, i), how))
        return out

    def walk(
        self, space: ProcessModules, memory: MemoryReader, regs: RegisterSet
    ) -> tuple[tuple[int, ...], tuple[str, ...] | None]:
        """The hot path: ``(space.layout, pc0, pc1, ...)`` and, only when some frame was not
        found by CFI (or pc0 by the registers), how each was found. The first tuple is a ready
        key for interning (the layout token stands for the module map the pcs refer to).

        A walk whose every frame had a CFA relative to rsp depends only on (rip, rsp) and the
        return-address words it read, so it is remembered: the next stop with the same rip
        and rsp reads those words in one ``unpack_from`` and, if they are unchanged, reuses
        the result without walking.
        """
        rip = regs.rip
        rsp = regs.rsp
        hint = space.read_hint
        buf = memory.read(rsp, hint)
        memo = space.walks.get((rip, rsp))
        if memo is not None:
            gather, _offsets, expected, result = memo
            if gather.size <= len(buf) and gather.unpack_from(buf) == expected:
                return result, None
        return self._walk(space, memory, regs, buf, hint)

    def _walk(
        self,
        space: ProcessModules,
        memory: MemoryReader,
        regs: RegisterSet,
        buf: bytes,
        hint: int,
    ) -> tuple[tuple[int, ...], tuple[str, ...] | None]:
        rip = regs.rip
        rsp = lo = regs.rsp
        hi = rsp + len(buf) - 8  # the last address a word can be read at
        stack: _Stack | None = None  # made only when the fast path is not enough
        v: list[int | None] = [
            None, None, None, regs.rbx, None, None, regs.rbp, rsp,
            None, None, None, None, regs.r12, regs.r13, regs.r14, regs.r15, rip,
        ]  # fmt: skip
        cache = space.pc_cache
        pcs = [space.layout, rip]
        hows: list[str] | None = None
        ra_at: list[int] | None = []  # offsets of the return addresses read (for the memo)
        depth = self.depth + 1
        lookup = rip
        unpack = _WORD.unpack_from
        while len(pcs) < depth:
            entry = cache.get(lookup)
            if entry is None:
                entry = self._resolve(space, lookup)
            kind = entry[1]
            sp = v[7]
            assert sp is not None
            if kind == _SIMPLE:
                cfa_reg = entry[2]
                base = v[cfa_reg]
                if base is not None:
                    cfa = base + entry[3]
                    if lo <= cfa + entry[7] and cfa + entry[8] <= hi:
                        at = cfa + entry[4] - lo
                        ra = unpack(buf, at)[0]
                        if ra_at is not None:
                            if cfa_reg == elf.RSP:
                                ra_at.append(at)
                            else:
                                ra_at = None
                        for reg, off in entry[5]:
                            v[reg] = unpack(buf, cfa + off - lo)[0]
                        if ra < 4096 or cfa <= sp:
                            break  # null return address, or a CFA that does not move up
                        v[7] = cfa
                        v[16] = ra
                        pcs.append(ra)
                        if hows is not None:
                            hows.append(HOW_CFI)
                        lookup = ra - 1
                        continue
            elif kind == _OUTERMOST:
                break
            # The slow path: words beyond the buffer, expressions, no CFI.
            ra_at = None
            if stack is None:
                stack = _Stack(memory, lo, buf, len(buf) < hint)
            found = self._slow_step(space, entry, v, stack)
            buf = stack.buf
            hi = stack.end - 8
            if found is None:
                break
            ra, how, signal = found
            if hows is None:
                hows = [HOW_REGS] + [HOW_CFI] * (len(pcs) - 2)
            v[16] = ra
            pcs.append(ra)
            hows.append(how)
            # A return address is after the call: look the caller up at the call itself, so
            # a call ending a function (noreturn) does not land in the next one. A pc
            # interrupted by a signal is exact.
            lookup = ra if signal else ra - 1
        # Next time read as much as this walk needed (plus a margin), in one pread.
        sp = v[7]
        assert sp is not None
        need = min(max(((sp - rsp) | 1023) + 1025, 1024), _MAX_READ)
        if need > hint or need < hint // 2:
            space.read_hint = need
        result = tuple(pcs)
        if ra_at and hows is None:
            walks = space.walks
            if len(walks) >= _MAX_WALKS:
                walks.clear()
            offsets = tuple(ra_at)
            gather = _gather(offsets)
            walks[rip, rsp] = (gather, offsets, gather.unpack_from(buf), result)
        return result, None if hows is None else tuple(hows)

    def _slow_step(
        self, space: ProcessModules, entry: PcEntry, v: list[int | None], stack: _Stack
    ) -> tuple[int, str, bool] | None:
        """One frame the fast path could not do: (return address, how, signal frame) or None."""
        kind = entry[1]
        sp = v[7]
        assert sp is not None
        if kind in (_SIMPLE, _GENERAL):
            row = entry[6]
            assert isinstance(row, elf.CfiRow)
            saved = list(v)
            try:
                ra, cfa = self._general(row, v, stack)
            except _Fail:
                v[:] = saved
            else:
                if ra < 4096 or (cfa <= sp and not row.signal):
                    return None
                return ra, HOW_CFI, row.signal
        # No CFI (or CFI we cannot follow): the frame pointer, else a scan.
        found = self._fallback(space, v, stack)
        if found is None:
            return None
        return found[0], found[1], False

    # -- per-pc rules ---------------------------------------------------------------------------

    def _resolve(self, space: ProcessModules, lookup: int) -> PcEntry:
        module = space.find(lookup)
        if module is None and lookup not in space.refreshed_misses:
            space.refresh()  # something mapped that we did not see (one /proc read)
            module = space.find(lookup)
            space.refreshed_misses.add(lookup)
        if len(space.pc_cache) > _MAX_PC_CACHE:
            space.pc_cache.clear()
        entry = _entry_for(module, lookup)
        space.pc_cache[lookup] = entry
        return entry

    def _general(self, row: elf.CfiRow, v: list[int | None], stack: _Stack) -> tuple[int, int]:
        if row.cfa_expr is not None:
            cfa = _evaluate(row.cfa_expr, v, stack, None)
        else:
            base = v[row.cfa_reg] if 0 <= row.cfa_reg < elf.REGISTER_COUNT else None
            if base is None:
                raise _Fail
            cfa = base + row.cfa_offset
        if row.ra is None:
            raise _Fail
        ra = _recover(row.ra, cfa, v, stack)
        if ra is None:
            raise _Fail
        restored: list[tuple[int, int | None]] = [
            (reg_rule[0], _recover(reg_rule, cfa, v, stack)) for reg_rule in row.saved
        ]
        for reg, value in restored:
            v[reg] = value
        if not any(reg == elf.RSP for reg, _ in restored):
            v[elf.RSP] = cfa
        return ra, cfa

    # -- without CFI ------------------------------------------------------------------------------

    def _fallback(
        self, space: ProcessModules, v: list[int | None], stack: _Stack
    ) -> tuple[int, str] | None:
        """The caller by frame pointer, else by scanning; updates ``v`` (rsp, rbp)."""
        sp = v[7]
        rbp = v[6]
        assert sp is not None
        if rbp is not None and sp <= rbp < sp + _MAX_STACK and not rbp & 7:
            try:
                ra = stack.word(rbp + 8)
                caller_rbp = stack.word(rbp)
            except _Fail:
                ra = 0
            if ra and self._is_return_address(space, ra) and caller_rbp > rbp:
                v[6] = caller_rbp
                v[7] = rbp + 16
                return ra, HOW_FP
        for i in range(_SCAN_WORDS):
            slot = sp + 8 * i
            try:
                word = stack.word(slot)
            except _Fail:
                return None
            if word > 4096 and self._is_return_address(space, word):
                v[7] = slot + 8
                return word, HOW_SCAN
        return None

    def _is_return_address(self, space: ProcessModules, addr: int) -> bool:
        known = space.call_sites.get(addr)
        if known is None:
            known = False
            module = space.find(addr)
            if module is not None:
                obj = module.elf()
                if obj is not None:
                    vaddr = addr - module.bias
                    known = obj.is_executable(vaddr) and _after_call(obj.read_vaddr(vaddr - 7, 7))
            space.call_sites[addr] = known
        return known


def module_id(space: ProcessModules, pc: int, index: int) -> int | None:
    """The id of the module holding frame ``index``'s pc (a return address: its call)."""
    module = space.find(pc if index == 0 else pc - 1)
    return None if module is None else module.id


def _entry_for(module: LoadedModule | None, lookup: int) -> PcEntry:
    if module is None:
        return (None, _NO_MODULE, 0, 0, 0, (), None, 0, 0)
    obj = module.elf()
    row = obj.cfi_row(lookup - module.bias) if obj is not None else None
    if row is None:
        return (module.id, _NO_CFI, 0, 0, 0, (), None, 0, 0)
    ra = row.ra
    if ra is not None and ra[1] == elf.RULE_UNDEFINED:
        return (module.id, _OUTERMOST, 0, 0, 0, (), row, 0, 0)
    simple = (
        row.cfa_expr is None
        and 0 <= row.cfa_reg < elf.REGISTER_COUNT
        and ra is not None
        and ra[1] == elf.RULE_OFFSET
        and not row.signal
        and all(kind == elf.RULE_OFFSET and reg != elf.RSP for reg, kind, _ in row.saved)
    )
    if simple:
        assert ra is not None and isinstance(ra[2], int)
        saved = tuple((reg, arg) for reg, _, arg in row.saved if isinstance(arg, int))
        offsets = [ra[2]] + [off for _, off in saved]
        return (
            module.id, _SIMPLE, row.cfa_reg, row.cfa_offset, ra[2], saved, row,
            min(offsets), max(offsets),
        )  # fmt: skip
    return (module.id, _GENERAL, 0, 0, 0, (), row, 0, 0)


def _recover(
    rule: elf.RegisterRecovery, cfa: int, v: list[int | None], stack: _Stack
) -> int | None:
    _reg, kind, arg = rule
    if kind == elf.RULE_OFFSET:
        assert isinstance(arg, int)
        return stack.word(cfa + arg)
    if kind == elf.RULE_VAL_OFFSET:
        assert isinstance(arg, int)
        return cfa + arg
    if kind == elf.RULE_REGISTER:
        assert isinstance(arg, int)
        return v[arg] if 0 <= arg < elf.REGISTER_COUNT else None
    if kind == elf.RULE_EXPRESSION:
        assert not isinstance(arg, int)
        return stack.word(_evaluate(arg, v, stack, cfa))
    if kind == elf.RULE_VAL_EXPRESSION:
        assert not isinstance(arg, int)
        return _evaluate(arg, v, stack, cfa)
    return None  # undefined


def _binary(op: Callable[[int, int], int]) -> Callable[[list[int]], None]:
    def apply(st: list[int]) -> None:
        b = st.pop()
        a = st.pop()
        st.append(op(a, b) & _MASK64)

    return apply


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


_BINARY: Final[dict[str, Callable[[list[int]], None]]] = {
    "DW_OP_plus": _binary(lambda a, b: a + b),
    "DW_OP_minus": _binary(lambda a, b: a - b),
    "DW_OP_mul": _binary(lambda a, b: a * b),
    "DW_OP_and": _binary(lambda a, b: a & b),
    "DW_OP_or": _binary(lambda a, b: a | b),
    "DW_OP_xor": _binary(lambda a, b: a ^ b),
    "DW_OP_shl": _binary(lambda a, b: a << b if b < 64 else 0),
    "DW_OP_shr": _binary(lambda a, b: a >> b),
    "DW_OP_ge": _binary(lambda a, b: int(_signed(a) >= _signed(b))),
    "DW_OP_gt": _binary(lambda a, b: int(_signed(a) > _signed(b))),
    "DW_OP_le": _binary(lambda a, b: int(_signed(a) <= _signed(b))),
    "DW_OP_lt": _binary(lambda a, b: int(_signed(a) < _signed(b))),
    "DW_OP_eq": _binary(lambda a, b: int(a == b)),
    "DW_OP_ne": _binary(lambda a, b: int(a != b)),
}


def _evaluate(expr: elf.Expression, v: list[int | None], stack: _Stack, push: int | None) -> int:
    """A DWARF expression of the kinds CFI uses (PLT entries, signal frames, realigned stacks)."""
    st: list[int] = [] if push is None else [push]
    for name, args in expr:
        if name.startswith("DW_OP_breg") and name != "DW_OP_bregx":
            value = v[int(name[10:])] if int(name[10:]) < elf.REGISTER_COUNT else None
            if value is None:
                raise _Fail
            st.append((value + args[0]) & _MASK64)
        elif name == "DW_OP_bregx":
            value = v[args[0]] if args[0] < elf.REGISTER_COUNT else None
            if value is None:
                raise _Fail
            st.append((value + args[1]) & _MASK64)
        elif name.startswith("DW_OP_lit"):
            st.append(int(name[9:]))
        elif name.startswith("DW_OP_const"):
            st.append(args[0] & _MASK64)
        elif name == "DW_OP_plus_uconst":
            st.append((st.pop() + args[0]) & _MASK64)
        elif name == "DW_OP_deref":
            st.append(stack.word(st.pop()))
        elif name == "DW_OP_dup":
            st.append(st[-1])
        elif name == "DW_OP_drop":
            st.pop()
        elif name == "DW_OP_swap":
            st[-1], st[-2] = st[-2], st[-1]
        elif name in _BINARY:
            _BINARY[name](st)
        else:
            raise _Fail
    if not st:
        raise _Fail
    return st[-1]
