"""Start-up stays cheap: what each command imports, and the struct ELF reader against pyelftools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from elftools.elf import elffile

from tests.helpers import ROOT, fixture
from tracer import elf

_MODULES_AFTER = """
import json, sys
from alloctrace.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.__stdout__)
"""


def _modules_after(*args: str) -> set[str]:
    """The modules loaded once ``alloctrace ARGS`` has run in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: set[str] = set(json.loads(proc.stdout.splitlines()[-1]))
    return loaded


def test_version_and_help_do_not_load_the_tracer() -> None:
    for args in (["--version"], ["--help"]):
        loaded = _modules_after(*args)
        assert not {"tracer.session", "tracer.elf", "tracer.records"} & loaded, args
        assert not any(m.startswith("elftools") for m in loaded), args


def test_record_without_stacks_loads_no_unwinder_and_no_dwarf(tmp_path: Path) -> None:
    out = str(tmp_path / "t.jsonl")
    loaded = _modules_after("record", "--no-stacks", "-q", "-o", out, "--", fixture("seed"))
    assert "tracer.session" in loaded
    assert not {"tracer.stacks", "tracer.unwind", "tracer.modules"} & loaded
    assert not any(m.startswith(("elftools.dwarf", "elftools.elf")) for m in loaded)


def _pyelftools_facts(path: str) -> dict[str, object]:
    with open(path, "rb") as handle:
        make: Any = elffile.ELFFile
        ref: Any = make(handle)
        build_id = None
        for section in ref.iter_sections():
            if section["sh_type"] == "SHT_NOTE":
                for note in section.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        build_id = str(note["n_desc"])
        interp = next(
            (str(s.get_interp_name()) for s in ref.iter_segments() if s["p_type"] == "PT_INTERP"),
            None,
        )
        soname: str | None = None
        needed: list[str] = []
        dynamic = ref.get_section_by_name(".dynamic")
        for tag in dynamic.iter_tags() if dynamic is not None else ():
            if tag.entry.d_tag == "DT_NEEDED":
                needed.append(str(tag.needed))
            elif tag.entry.d_tag == "DT_SONAME":
                soname = str(tag.soname)
        table = ref.get_section_by_name(".gnu.hash")
        symbols: dict[str, int | None] = {}
        for name in ("main", "exit", "__libc_start_main", "malloc", "no_such_symbol"):
            symbol = table.get_symbol(name) if table is not None else None
            symbols[name] = int(symbol["st_value"]) if symbol and symbol["st_value"] else None
        eh_frame_hdr = ref.get_section_by_name(".eh_frame_hdr")
        return {
            "e_type": ref["e_type"],
            "entry": ref["e_entry"],
            "build_id": build_id,
            "interpreter": interp,
            "dynamic": (soname, tuple(needed)),
            "gnu_hash": symbols,
            "eh_frame_hdr": eh_frame_hdr.data() if eh_frame_hdr is not None else None,
        }


@pytest.mark.parametrize(
    "path",
    [
        fixture("seed"),
        fixture("static"),
        "/bin/true",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    ],
)
def test_elf_reader_agrees_with_pyelftools(path: str) -> None:
    obj = elf.elf_from_bytes(path, Path(path).read_bytes())
    assert obj is not None
    table = obj._by_name.get(".gnu.hash")
    ours = {
        "e_type": obj.e_type,
        "entry": obj.entry,
        "build_id": obj.build_id,
        "interpreter": obj.interpreter,
        "dynamic": obj.dynamic(),
        "gnu_hash": {
            name: (obj._gnu_hash_lookup(table, name) or None) if table is not None else None
            for name in ("main", "exit", "__libc_start_main", "malloc", "no_such_symbol")
        },
        "eh_frame_hdr": obj.section_data(".eh_frame_hdr"),
    }
    assert ours == _pyelftools_facts(path)
