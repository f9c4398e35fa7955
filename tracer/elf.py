"""Cached ELF access with pyelftools: build-id, load layout, call-frame information, symbols.

One ``ElfObject`` per file, cached by build-id (or path, inode and mtime when the file has none)
in bounded caches, so every process that maps libc shares one parse. Everything is lazy:
opening reads the ELF, program and section headers and the build-id note only; call-frame
information is found through ``.eh_frame_hdr`` by bisection and one FDE is decoded when a pc
first needs it (pyelftools 0.32 decodes a single entry in tens of microseconds, the whole of
libc's CFI in 20+ ms); symbols are read with ``struct`` straight from ``.symtab``/``.dynsym``.
pyelftools is pinned to 0.32: 0.33 raises on ``DW_CFA_GNU_args_size`` (docs/how-it-works.md,
"Call stacks").
"""

from __future__ import annotations

import atexit
import bisect
import functools
import io
import os
import struct
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, BinaryIO, Final, NamedTuple, overload

from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse as _struct_parse
from elftools.dwarf import callframe as _callframe
from elftools.dwarf import dwarf_expr as _dwarf_expr
from elftools.dwarf import structs as _dwarf_structs
from elftools.elf import elffile as _elffile

# pyelftools is only partly annotated: its objects are handled as Any behind this module.
FDE: Any = _callframe.FDE
CallFrameInfo: Any = _callframe.CallFrameInfo
RegisterRule: Any = _callframe.RegisterRule
DWARFExprParser: Any = _dwarf_expr.DWARFExprParser
DWARFStructs: Any = _dwarf_structs.DWARFStructs
ELFFile: Any = _elffile.ELFFile
struct_parse: Any = _struct_parse

# DWARF register numbers on x86-64 (System V psABI, figure 3.36).
RBX: Final = 3
RBP: Final = 6
RSP: Final = 7
RA: Final = 16  # the return address column (rip)
REGISTER_COUNT: Final = 17

PF_X: Final = 1
_PAGE_MASK: Final = ~0xFFF
_STT_FUNC: Final = 2
_STT_GNU_IFUNC: Final = 10
_STT_NOTYPE: Final = 0
_SHF_EXECINSTR: Final = 4
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym
_BINDING_RANK: Final = {1: 0, 2: 1}  # STB_GLOBAL, STB_WEAK; then STB_LOCAL and the others
_NO_NAME: Final = frozenset(b"\0@")  # first bytes of a name that is empty before "@version"


def _symbol_name(strtabs: Sequence[bytes], key: int) -> str:
    """The name a SymbolNames key stands for, without its ``@version``."""
    table, start = strtabs[key & 1], key >> 1
    return table[start : table.find(b"\0", start)].decode(errors="replace").split("@", 1)[0]


def _rank(st_info: int, name: str) -> tuple[bool, int, int, int]:
    """Which of the symbols at one address names it, lowest first: a function over a label, the
    fewest leading underscores, global over weak over local, the shortest name."""
    return (
        st_info & 0xF == _STT_NOTYPE,
        len(name) - len(name.lstrip("_")),
        _BINDING_RANK.get(st_info >> 4, 2),
        len(name),
    )


_DW_EH_PE_OMIT: Final = 0xFF
_MAX_OBJECTS: Final = 128
_MAX_ROWS_PER_OBJECT: Final = 65536

# How a register's value in the caller is found (compiled from pyelftools' RegisterRule).
RULE_OFFSET: Final = 0  # saved at CFA + n
RULE_VAL_OFFSET: Final = 1  # is CFA + n
RULE_REGISTER: Final = 2  # is in register n
RULE_EXPRESSION: Final = 3  # saved at the address the expression computes
RULE_VAL_EXPRESSION: Final = 4  # is what the expression computes
RULE_UNDEFINED: Final = 5  # not recoverable (for the return address: outermost frame)

_RULE_TYPES: Final = {
    RegisterRule.OFFSET: RULE_OFFSET,
    RegisterRule.VAL_OFFSET: RULE_VAL_OFFSET,
    RegisterRule.REGISTER: RULE_REGISTER,
    RegisterRule.EXPRESSION: RULE_EXPRESSION,
    RegisterRule.VAL_EXPRESSION: RULE_VAL_EXPRESSION,
    RegisterRule.UNDEFINED: RULE_UNDEFINED,
}

# A DWARF expression compiled to (operation name, arguments) pairs (see tracer.unwind).
Expression = tuple[tuple[str, tuple[int, ...]], ...]
RegisterRecovery = tuple[int, int, int | Expression]  # (register, RULE_*, offset/reg/expr)


# NamedTuples, not frozen dataclasses: those cost 1.2 ms each to define at every start-up.
class Segment(NamedTuple):
    """One PT_LOAD program header."""

    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int


class CfiRow(NamedTuple):
    """The unwinding rule at one address: how to find the CFA, the return address, saved registers.

    The CFA is ``register + offset`` or, when ``cfa_expr`` is set, what that expression computes.
    ``ra`` is the return address's rule (None: the CFI does not say, so it cannot be trusted);
    ``saved`` the callee-saved registers that the frame stored; ``signal`` marks a signal
    trampoline's frame (its caller's pc is exact, not a return address).
    """

    cfa_reg: int
    cfa_offset: int
    cfa_expr: Expression | None
    ra: RegisterRecovery | None
    saved: tuple[RegisterRecovery, ...]
    signal: bool


class SymbolNames(Sequence[str]):
    """The names of an object's function symbols, decoded from its string tables when asked.

    A stack names a few dozen functions of an object that has tens of thousands (cc1: 26,000),
    so the names stay in the string tables until then. ``keys[i]`` is symbol i's name offset in
    ``strtabs[key & 1]`` times two (``.symtab``'s table or ``.dynsym``'s). Where several
    symbols name one address, ``keys[i]`` is ``~j``: ``aliases[j]`` holds their (key, st_info)
    in table order, and the plainest name (``_rank``) is chosen when the address is first asked
    for. Ranking every alias as it was read took half of reading glibc's debug symbols (6,400
    aliases among 10,000 symbols; measured).
    """

    __slots__ = ("_aliases", "_first", "_strtabs", "keys")

    def __init__(
        self,
        keys: tuple[int, ...],
        strtabs: Sequence[bytes],
        aliases: Sequence[list[tuple[int, int]]] = (),
    ) -> None:
        self.keys = keys
        self._strtabs = strtabs
        self._aliases = aliases
        self._first: dict[str, int] | None = None  # name -> its first index, once asked

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        key = self.keys[i]
        return _symbol_name(self._strtabs, key if key >= 0 else self._plainest(~key))

    def _plainest(self, j: int) -> int:
        """The key of the plainest of the symbols ``aliases[j]``; the first of equals."""
        candidates = self._aliases[j]
        if len(candidates) > 1:
            strtabs = self._strtabs
            best = min(candidates, key=lambda c: _rank(c[1], _symbol_name(strtabs, c[0])))
            candidates[:] = [best]  # ranked once
        return candidates[0][0]

    def _by_name(self) -> dict[str, int]:
        if self._first is None:
            self._first = {}
            for i in range(len(self.keys)):
                self._first.setdefault(self[i], i)
        return self._first

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The first symbol named ``value``."""
        if start or stop is not None:
            return super().index(value, start, len(self) if stop is None else stop)
        found = self._by_name().get(value)
        if found is None:
            raise ValueError(f"{value!r} is not a function symbol")
        return found

    def __contains__(self, value: object) -> bool:
        return value in self._by_name()


class FunctionSymbols(NamedTuple):
    """Function symbols of one object sorted by address, for bisection."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    names: Sequence[str]

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """(name, offset) of the function containing ``vaddr``, or None."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0 or vaddr >= self.ends[i]:
            return None
        return self.names[i], vaddr - self.starts[i]


_NO_ROW: Final = CfiRow(0, 0, None, None, (), False)  # placeholder meaning "no CFI here"


def _cfi_structs() -> Any:
    """The DWARF structures of x86-64 CFI, built when CFI is first read (pyelftools keeps them):
    building them costs 1.3 ms at start-up that a recording without stacks does not need."""
    return DWARFStructs(little_endian=True, dwarf_format=32, address_size=8)


class _CfiSource:
    """One CFI section: FDE start addresses sorted for bisection, entries decoded on demand.

    With an index (from ``.eh_frame_hdr``) nothing is parsed until a pc asks; without one
    (``.debug_frame``, or an ``.eh_frame`` without header) every entry is parsed once.
    """

    def __init__(self, cfi: Any, index: tuple[list[int], list[int]] | None = None) -> None:
        self.cfi = cfi
        self.entries: dict[int, Any] | None = None  # offset → FDE when parsed eagerly
        if index is None:
            entries: dict[int, Any] = {}
            pairs: list[tuple[int, int]] = []
            for entry in cfi.get_entries():
                if isinstance(entry, FDE):
                    entries[entry.offset] = entry
                    pairs.append((entry["initial_location"], entry.offset))
            pairs.sort()
            self.entries = entries
            index = ([p[0] for p in pairs], [p[1] for p in pairs])
        self.starts, self.offsets = index

    def find(self, vaddr: int) -> Any:
        """The FDE covering ``vaddr``, or None."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        offset = self.offsets[i]
        fde: Any = (
            self.entries.get(offset)
            if self.entries is not None
            else self.cfi._parse_entry_at(offset)
        )
        if not isinstance(fde, FDE):
            return None
        start = fde["initial_location"]
        return fde if start <= vaddr < start + fde["address_range"] else None


class ElfObject:
    """One ELF file: headers read at open, CFI and symbols on demand, all cached."""

    def __init__(self, path: str, data: BinaryIO) -> None:
        self.path = path
        self._stream = data
        self._elf: Any = ELFFile(data)
        if self._elf.elfclass != 64 or not self._elf.little_endian:
            raise ELFError("not a 64-bit little-endian ELF object")
        self.e_type: str = self._elf["e_type"]
        # Headers, not pyelftools' segment and section objects: building the PT_DYNAMIC segment
        # or the name map builds every section, and a hash section parses its whole table at
        # construction (15,000 struct reads for libc). Only the sections asked for are built.
        phoff, phentsize = self._elf["e_phoff"], self._elf["e_phentsize"]
        phdrs = [
            struct_parse(self._elf.structs.Elf_Phdr, data, phoff + i * phentsize)
            for i in range(self._elf.num_segments())
        ]
        self.segments: tuple[Segment, ...] = tuple(
            Segment(h["p_vaddr"], h["p_offset"], h["p_filesz"], h["p_memsz"], h["p_flags"])
            for h in phdrs
            if h["p_type"] == "PT_LOAD"
        )
        self._interp = next(
            ((h["p_offset"], h["p_filesz"]) for h in phdrs if h["p_type"] == "PT_INTERP"), None
        )
        self._shdrs, self._section_index = self._read_section_headers()
        self.build_id = self._read_build_id()
        self._rows: dict[int, CfiRow] = {}
        self._cfi_sources: list[_CfiSource] | None = None
        self._symbols: FunctionSymbols | None = None
        self._dynamic: tuple[str | None, tuple[str, ...]] | None = None  # the loader asks often
        self._expr_parser: Any = None  # made with the first expression (0.2 ms per object)

    def _read_section_headers(self) -> tuple[list[Any], dict[str, int]]:
        """The section headers, and each name's index (the last of a repeated name, as in
        pyelftools' own map)."""
        elf = self._elf
        size = elf["e_shentsize"]
        if not elf["e_shoff"] or size < elf.structs.Elf_Shdr.sizeof():
            return [], {}
        headers = [
            struct_parse(elf.structs.Elf_Shdr, self._stream, elf["e_shoff"] + i * size)
            for i in range(elf.num_sections())
        ]
        names = elf.get_section(elf.get_shstrndx())
        if not hasattr(names, "get_string"):
            raise ELFError("no section name table")
        return headers, {names.get_string(h["sh_name"]): i for i, h in enumerate(headers)}

    def _section(self, name: str) -> Any:
        """The pyelftools section called ``name`` (None when absent), built on its own."""
        index = self._section_index.get(name)
        return None if index is None else self._elf.get_section(index)

    # -- identity and layout ----------------------------------------------------------------

    def _read_build_id(self) -> str | None:
        for i, header in enumerate(self._shdrs):
            if header["sh_type"] != "SHT_NOTE":
                continue
            for note in self._elf.get_section(i).iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return str(note["n_desc"])
        return None

    def bias_for(self, addr: int, offset: int) -> int:
        """The load bias implied by a mapping of file ``offset`` at address ``addr``."""
        for seg in self.segments:
            start = seg.offset & _PAGE_MASK
            if start <= offset < seg.offset + max(seg.filesz, 1):
                return addr - ((seg.vaddr & _PAGE_MASK) + (offset - start))
        if self.segments:
            first = self.segments[0]
            return addr - (first.vaddr & _PAGE_MASK) + (first.offset & _PAGE_MASK) - offset
        return addr - offset

    def is_executable(self, vaddr: int) -> bool:
        """True when ``vaddr`` lies in an executable PT_LOAD segment."""
        return any(s.flags & PF_X and s.vaddr <= vaddr < s.vaddr + s.memsz for s in self.segments)

    def read_vaddr(self, vaddr: int, size: int) -> bytes:
        """File bytes at ``vaddr`` (code and read-only data), b"" outside file-backed segments."""
        for seg in self.segments:
            if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
                self._stream.seek(seg.offset + vaddr - seg.vaddr)
                return self._stream.read(size)
        return b""

    def section_data(self, name: str) -> bytes | None:
        """The bytes of section ``name`` (None when absent or without file contents)."""
        section = self._section(name)
        if section is None or section["sh_type"] == "SHT_NOBITS":
            return None
        data: bytes = section.data()
        return data

    @property
    def entry(self) -> int:
        """The ELF entry point (a virtual address; add the load bias)."""
        return int(self._elf["e_entry"])

    @property
    def interpreter(self) -> str | None:
        """PT_INTERP: the dynamic loader the kernel maps with this program (None: static)."""
        if self._interp is None:
            return None
        offset, size = self._interp
        self._stream.seek(offset)
        return self._stream.read(size).split(b"\0", 1)[0].decode(errors="replace")

    def symbol_address(self, name: str) -> int | None:
        """The address of function ``name``: by the GNU hash table for exported symbols (no
        scan of the whole symbol table: 7 ms instead of 55 ms for libc), else by the symbols."""
        table = self._gnu_hash
        if table is not None:
            symbol = table.get_symbol(name)
            if symbol is not None and symbol["st_value"]:
                return int(symbol["st_value"])
        symbols = self.function_symbols()
        try:
            return symbols.starts[symbols.names.index(name)]
        except ValueError:
            return None

    @functools.cached_property
    def _gnu_hash(self) -> Any:
        """The GNU hash section (None when absent), kept: pyelftools reads its whole bloom filter
        and bucket table when it builds one (1.1 ms for libc's, 10x a lookup)."""
        table = self._section(".gnu.hash")
        return table if table is not None and hasattr(table, "get_symbol") else None

    def dynamic(self) -> tuple[str | None, tuple[str, ...]]:
        """DT_SONAME and the DT_NEEDED names, in the order the loader reads them."""
        if self._dynamic is None:
            self._dynamic = self._read_dynamic()
        return self._dynamic

    def _read_dynamic(self) -> tuple[str | None, tuple[str, ...]]:
        section = self._section(".dynamic")
        if section is None or not hasattr(section, "iter_tags"):
            return None, ()
        soname: str | None = None
        needed: list[str] = []
        for tag in section.iter_tags():
            if tag.entry.d_tag == "DT_NEEDED":
                needed.append(str(tag.needed))
            elif tag.entry.d_tag == "DT_SONAME":
                soname = str(tag.soname)
        return soname, tuple(needed)

    # -- call-frame information -------------------------------------------------------------

    def cfi_row(self, vaddr: int) -> CfiRow | None:
        """The unwinding rule at ``vaddr`` (None when no FDE covers it); cached per address."""
        row = self._rows.get(vaddr)
        if row is None:
            try:
                row = self._decode_row(vaddr)
            except (ELFError, ValueError, KeyError, IndexError, AssertionError, struct.error):
                row = _NO_ROW  # a malformed entry: treat the pc as having no CFI
            if len(self._rows) >= _MAX_ROWS_PER_OBJECT:
                self._rows.clear()
            self._rows[vaddr] = row
        return None if row is _NO_ROW else row

    def _decode_row(self, vaddr: int) -> CfiRow:
        fde = self._find_fde(vaddr)
        if fde is None:
            return _NO_ROW
        table = fde.get_decoded().table
        found: dict[Any, Any] | None = None
        for line in table:
            if line["pc"] > vaddr:
                break
            found = line
        if found is None:
            return _NO_ROW
        return self._compile(found, fde)

    def _compile(self, line: dict[Any, Any], fde: Any) -> CfiRow:
        cfa = line["cfa"]
        expr = self._expression(cfa.expr) if cfa.expr is not None else None
        ra: RegisterRecovery | None = None
        saved: list[RegisterRecovery] = []
        for reg, rule in line.items():
            if not isinstance(reg, int) or reg >= REGISTER_COUNT:
                continue
            kind = _RULE_TYPES.get(rule.type)
            if kind is None:  # SAME_VALUE, ARCHITECTURAL: nothing to do
                continue
            arg: int | Expression = rule.arg if rule.arg is not None else 0
            if kind in (RULE_EXPRESSION, RULE_VAL_EXPRESSION):
                arg = self._expression(rule.arg)
            recovery = (reg, kind, arg)
            if reg == RA:
                ra = recovery
            else:
                saved.append(recovery)
        cie = fde.cie
        signal = bool(cie is not None and b"S" in (cie.header.get("augmentation") or b""))
        return CfiRow(
            cfa.reg if cfa.reg is not None else -1,
            cfa.offset or 0,
            expr,
            ra,
            tuple(saved),
            signal,
        )

    def _expression(self, raw: list[int]) -> Expression:
        if self._expr_parser is None:
            self._expr_parser = DWARFExprParser(_cfi_structs())
        ops = self._expr_parser.parse_expr(raw)
        return tuple((op.op_name, tuple(int(a) for a in op.args)) for op in ops)

    def _find_fde(self, vaddr: int) -> Any:
        if self._cfi_sources is None:
            self._cfi_sources = self._open_cfi()
        for source in self._cfi_sources:
            fde = source.find(vaddr)
            if fde is not None:
                return fde
        return None

    def _open_cfi(self) -> list[_CfiSource]:
        """``.eh_frame`` (indexed by ``.eh_frame_hdr``), then ``.debug_frame``."""
        sources: list[_CfiSource] = []
        structs = _cfi_structs()
        eh_frame = self._section(".eh_frame")
        if eh_frame is not None and eh_frame["sh_type"] != "SHT_NOBITS" and eh_frame["sh_size"]:
            data = eh_frame.data()
            cfi = CallFrameInfo(
                io.BytesIO(data), len(data), eh_frame["sh_addr"], structs, for_eh_frame=True
            )
            index = self._eh_frame_hdr_index(eh_frame["sh_addr"], len(data))
            sources.append(_CfiSource(cfi, index))
        debug_frame = self._section(".debug_frame")
        if debug_frame is not None and debug_frame["sh_type"] != "SHT_NOBITS":
            data = debug_frame.data()
            sources.append(_CfiSource(CallFrameInfo(io.BytesIO(data), len(data), 0, structs)))
        return sources

    def _eh_frame_hdr_index(
        self, eh_frame_addr: int, size: int
    ) -> tuple[list[int], list[int]] | None:
        hdr = self._section(".eh_frame_hdr")
        if hdr is None:
            return None
        data = hdr.data()
        # version 1, eh_frame_ptr pcrel|sdata4, fde_count udata4, table datarel|sdata4: what
        # GNU ld, gold, lld and mold all write on x86-64. Anything else: the eager path.
        if len(data) < 12 or data[0] != 1 or data[1] != 0x1B or data[2] != 0x03 or data[3] != 0x3B:
            return None
        (count,) = struct.unpack_from("<I", data, 8)
        if 12 + 8 * count > len(data):
            return None
        base = hdr["sh_addr"]
        table = struct.unpack_from(f"<{2 * count}i", data, 12)
        starts = [base + loc for loc in table[0::2]]
        offsets = [base + fde - eh_frame_addr for fde in table[1::2]]
        if any(not 0 <= off < size for off in offsets[:1] + offsets[-1:]):
            return None
        return starts, offsets

    # -- symbols ----------------------------------------------------------------------------

    def debuglink(self) -> tuple[str, int] | None:
        """The ``.gnu_debuglink`` file name and CRC32, when the object names a debug file."""
        data = self.section_data(".gnu_debuglink")
        if not data or b"\0" not in data:
            return None
        name, _, rest = data.partition(b"\0")
        crc_at = (len(name) + 4) & ~3
        crc = struct.unpack_from("<I", data, crc_at)[0] if len(data) >= crc_at + 4 else 0
        del rest
        return name.decode(errors="replace"), crc

    def has_symtab(self) -> bool:
        """True when the object carries a full ``.symtab`` (not only dynamic symbols)."""
        section = self._section(".symtab")
        return section is not None and section["sh_type"] == "SHT_SYMTAB"

    def function_symbols(self) -> FunctionSymbols:
        """Functions from ``.symtab`` and ``.dynsym``; aliases resolved to the plainest name."""
        if self._symbols is None:
            self._symbols = self._read_symbols()
        return self._symbols

    def _read_symbols(self) -> FunctionSymbols:
        # address -> (name key, st_info, size) of the first symbol there; then its aliases, the
        # index of their list in ``aliases`` as the key (~index). Names are decoded only when a
        # frame asks (SymbolNames): decoding and ranking every symbol took two thirds of
        # reading cc1's (measured).
        best: dict[int, tuple[int, int, int]] = {}
        aliases: list[list[tuple[int, int]]] = []
        strtabs: list[bytes] = []
        executable: dict[int, bool] = {}  # section index → SHF_EXECINSTR
        for section_name in (".symtab", ".dynsym"):
            section = self._section(section_name)
            if section is None or section["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
                continue
            strtab = self._elf.get_section(section["sh_link"]).data()
            table = len(strtabs)
            strtabs.append(strtab)
            raw = section.data()
            raw = raw[: len(raw) - len(raw) % _SYM.size]
            for st_name, st_info, _other, shndx, value, size in _SYM.iter_unpack(raw):
                kind = st_info & 0xF
                if shndx == 0 or shndx >= 0xFF00 or value == 0:
                    continue
                if kind == _STT_NOTYPE:  # assembler labels (ld.so's _start): code only
                    if shndx not in executable:
                        flags = self._shdrs[shndx]["sh_flags"] if shndx < len(self._shdrs) else 0
                        executable[shndx] = bool(flags & _SHF_EXECINSTR)
                    if not executable[shndx]:
                        continue
                elif kind not in (_STT_FUNC, _STT_GNU_IFUNC):
                    continue
                head = strtab[st_name : st_name + 2]
                if not head or head[0] in _NO_NAME or head == b".L":  # no name, a local label
                    continue
                key = st_name * 2 + table
                current = best.get(value)
                if current is None:
                    best[value] = (key, st_info, size)
                    continue
                first, first_info, first_size = current
                if first >= 0:  # the second symbol at this address
                    aliases.append([(first, first_info)])
                    first = ~(len(aliases) - 1)
                aliases[~first].append((key, st_info))
                best[value] = (first, first_info, max(size, first_size))
        starts = sorted(best)
        ends: list[int] = []
        for i, start in enumerate(starts):
            size = best[start][2]
            if size:
                ends.append(start + size)
            else:  # an assembler label without a size: up to the next function
                ends.append(starts[i + 1] if i + 1 < len(starts) else start + 1)
        keys = tuple(best[s][0] for s in starts)
        return FunctionSymbols(tuple(starts), tuple(ends), SymbolNames(keys, strtabs, aliases))

    def close(self) -> None:
        """Release the file."""
        self._stream.close()


class _Cache:
    """Bounded LRU of opened objects: by file identity and by build-id."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.by_file: OrderedDict[tuple[str, int, int, int, int], ElfObject | None] = OrderedDict()
        # A build-id alone does not name one file: an object and its separate debug file share
        # it. (build-id, size) does.
        self.by_build_id: dict[tuple[str, int], ElfObject] = {}

    def get(self, path: str) -> ElfObject | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        key = (path, info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        if key in self.by_file:
            self.by_file.move_to_end(key)
            return self.by_file[key]
        obj = _open(path)
        build_id = obj.build_id if obj is not None else None
        if obj is not None and build_id is not None:
            shared = self.by_build_id.get((build_id, info.st_size))
            if shared is not None:  # the same object under another name: share its caches
                obj.close()
                obj = shared
            else:
                self.by_build_id[build_id, info.st_size] = obj
        self.by_file[key] = obj
        if len(self.by_file) > self.size:
            _, old = self.by_file.popitem(last=False)
            if old is not None and old not in self.by_file.values():
                for bkey in [k for k, v in self.by_build_id.items() if v is old]:
                    del self.by_build_id[bkey]
                old.close()
        return obj

    def close(self) -> None:
        """Close every cached object's file (at interpreter exit)."""
        for obj in {id(o): o for o in self.by_file.values() if o is not None}.values():
            obj.close()
        self.by_file.clear()
        self.by_build_id.clear()


def _open(path: str) -> ElfObject | None:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - owned by the ElfObject
    except OSError:
        return None
    try:
        if handle.read(4) != b"\x7fELF":
            handle.close()
            return None
        handle.seek(0)
        return ElfObject(path, handle)
    except (ELFError, OSError, ValueError, struct.error, KeyError):
        handle.close()
        return None


_CACHE = _Cache(_MAX_OBJECTS)
# The cached objects keep their files open for lazy reads; close them before the interpreter
# goes, rather than leave it to the garbage collector (ResourceWarning).
atexit.register(_CACHE.close)


def open_elf(path: str) -> ElfObject | None:
    """The cached ELF object at ``path``; None when it is missing or not a usable ELF file."""
    return _CACHE.get(path)


def elf_from_bytes(name: str, data: bytes) -> ElfObject | None:
    """An ELF object from memory (e.g. the vDSO read from a process); not cached."""
    try:
        return ElfObject(name, io.BytesIO(data))
    except (ELFError, ValueError, struct.error, KeyError):
        return None


def build_id_of(path: str) -> str | None:
    """The GNU build-id of the file at ``path`` (hex), if it is an ELF object that has one."""
    obj = open_elf(path)
    return None if obj is None else obj.build_id
