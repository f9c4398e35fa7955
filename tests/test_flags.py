"""Tests of tracer.flags: the tables against the kernel headers, strace's spelling, round trips."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracer import flags

TABLES = {
    "PROT_TABLE": flags.PROT_TABLE,
    "MAP_TYPE_TABLE": flags.MAP_TYPE_TABLE,
    "MAP_FLAG_TABLE": flags.MAP_FLAG_TABLE,
    "MAP_HUGE_TABLE": flags.MAP_HUGE_TABLE,
    "MADV_TABLE": flags.MADV_TABLE,
    "MREMAP_TABLE": flags.MREMAP_TABLE,
}
ALL_ENTRIES = [entry for table in TABLES.values() for entry in table]
EXTRA_CONSTANTS = [
    "MAP_TYPE",
    "MAP_HUGE_SHIFT",
    "MAP_HUGE_MASK",
    "PR_SET_VMA",
    "PR_SET_VMA_ANON_NAME",
]
U64 = st.integers(min_value=0, max_value=2**64 - 1)


@pytest.mark.parametrize(("name", "value"), ALL_ENTRIES)
def test_table_entries_are_the_module_constants(name: str, value: int) -> None:
    assert getattr(flags, name) == value


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_tables_have_unique_names_and_values(table: flags.Xlat) -> None:
    assert len({name for name, _ in table}) == len(table)
    assert len({value for _, value in table}) == len(table)


def test_map_flag_bits_are_single_bits_outside_type_and_huge_size() -> None:
    for _, bit in flags.MAP_FLAG_TABLE:
        assert bit & (bit - 1) == 0
        assert bit & flags.MAP_TYPE == 0


def test_values_match_the_installed_kernel_headers(tmp_path: Path) -> None:
    """Every name the installed headers define has our value (newer names are not there)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    names = [name for name, _ in ALL_ENTRIES] + EXTRA_CONSTANTS
    checks = "".join(
        f'#ifdef {name}\n  printf("{name} %llu\\n", (unsigned long long)({name}));\n#endif\n'
        for name in names
    )
    source = tmp_path / "values.c"
    source.write_text(
        "#include <stdio.h>\n#include <linux/mman.h>\n#include <linux/prctl.h>\n"
        f"int main(void) {{\n{checks}  return 0;\n}}\n"
    )
    binary = tmp_path / "values"
    subprocess.run([gcc, "-o", str(binary), str(source)], check=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    found = dict(line.split() for line in output.splitlines())
    assert len(found) > 40  # the headers were really read
    for name, value in found.items():
        assert getattr(flags, name) == int(value), name


@pytest.mark.parametrize(
    ("prot", "text"),
    [
        (0, "PROT_NONE"),
        (1, "PROT_READ"),
        (3, "PROT_READ|PROT_WRITE"),
        (5, "PROT_READ|PROT_EXEC"),
        (0x1000003, "PROT_READ|PROT_WRITE|PROT_GROWSDOWN"),
        (0x101, "PROT_READ|0x100"),
        (0x100, "0x100 /* PROT_??? */"),
    ],
)
def test_prot_names_spell_like_strace(prot: int, text: str) -> None:
    assert flags.prot_names(prot) == text
    assert flags.parse_prot(text) == prot


@pytest.mark.parametrize(
    ("map_flags", "text"),
    [
        (0x22, "MAP_PRIVATE|MAP_ANONYMOUS"),
        (0x4022, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE"),
        (0x812, "MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE"),
        (0x20022, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK"),
        (0x2, "MAP_PRIVATE"),
        (0x1, "MAP_SHARED"),
        (0x20, "MAP_FILE|MAP_ANONYMOUS"),
        (0x28, "MAP_DROPPABLE|MAP_ANONYMOUS"),
        (0x25, "0x5 /* MAP_??? */|MAP_ANONYMOUS"),
        (0x102, "MAP_PRIVATE|MAP_GROWSDOWN"),
        (0x100013, "MAP_SHARED_VALIDATE|MAP_FIXED|MAP_FIXED_NOREPLACE"),
        (0x222 | (21 << 26), "MAP_PRIVATE|MAP_ANONYMOUS|0x200|21<<MAP_HUGE_SHIFT"),
        (0x40022 | flags.MAP_HUGE_1GB, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|30<<MAP_HUGE_SHIFT"),
    ],
)
def test_map_names_spell_like_strace(map_flags: int, text: str) -> None:
    assert flags.map_names(map_flags) == text
    assert flags.parse_map_flags(text) == map_flags


def test_map_uninitialized_prints_as_strace_does() -> None:
    # Bit 26 is both MAP_UNINITIALIZED and the lowest bit of the huge page size; strace reads
    # it as the size, and both spellings parse to the same value.
    assert flags.map_names(0x22 | flags.MAP_UNINITIALIZED) == (
        "MAP_PRIVATE|MAP_ANONYMOUS|1<<MAP_HUGE_SHIFT"
    )
    assert flags.parse_map_flags("MAP_PRIVATE|MAP_UNINITIALIZED") == 0x2 | 0x4000000


def test_parse_accepts_other_spellings() -> None:
    assert flags.parse_map_flags("MAP_PRIVATE|MAP_ANON") == 0x22
    assert flags.parse_map_flags("MAP_PRIVATE|MAP_HUGETLB|MAP_HUGE_2MB") == 0x40002 | (21 << 26)
    assert flags.parse_map_flags("0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */") == 0x22  # -X verbose
    assert flags.parse_map_flags("0x22") == 0x22  # -X raw
    assert flags.parse_prot("0") == 0
    assert flags.parse_prot("PROT_READ | PROT_WRITE") == 3
    assert flags.parse_madvise("4") == flags.MADV_DONTNEED
    assert flags.parse_mremap_flags("0") == 0


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (flags.parse_prot, "PROT_BOGUS"),
        (flags.parse_prot, ""),
        (flags.parse_prot, "PROT_READ|"),
        (flags.parse_map_flags, "MAP_PRIVATE|MAP_NOPE"),
        (flags.parse_map_flags, "x<<MAP_HUGE_SHIFT"),
        (flags.parse_madvise, "MADV_DONTNEED|MADV_FREE"),
        (flags.parse_madvise, "MADV_NOPE"),
        (flags.parse_mremap_flags, "MAP_FIXED"),
    ],
)
def test_parse_rejects_unknown_names(parse: Callable[[str], int], text: str) -> None:
    with pytest.raises(ValueError, match=r"unknown|empty|one advice"):
        parse(text)


@pytest.mark.parametrize(
    ("advice", "text"),
    [
        (flags.MADV_DONTNEED, "MADV_DONTNEED"),
        (flags.MADV_FREE, "MADV_FREE"),
        (flags.MADV_HUGEPAGE, "MADV_HUGEPAGE"),
        (flags.MADV_GUARD_REMOVE, "MADV_GUARD_REMOVE"),
        (0x42, "0x42 /* MADV_??? */"),
    ],
)
def test_madvise_name(advice: int, text: str) -> None:
    assert flags.madvise_name(advice) == text
    assert flags.parse_madvise(text) == advice


@pytest.mark.parametrize(
    ("mremap_flags", "text"),
    [
        (0, "0"),
        (1, "MREMAP_MAYMOVE"),
        (3, "MREMAP_MAYMOVE|MREMAP_FIXED"),
        (5, "MREMAP_MAYMOVE|MREMAP_DONTUNMAP"),
        (0x11, "MREMAP_MAYMOVE|0x10"),
        (0x10, "0x10 /* MREMAP_??? */"),
    ],
)
def test_mremap_names(mremap_flags: int, text: str) -> None:
    assert flags.mremap_names(mremap_flags) == text
    assert flags.parse_mremap_flags(text) == mremap_flags


@given(U64)
def test_prot_round_trip(value: int) -> None:
    assert flags.parse_prot(flags.prot_names(value)) == value


@given(U64)
def test_map_flags_round_trip(value: int) -> None:
    assert flags.parse_map_flags(flags.map_names(value)) == value


@given(st.sampled_from(flags.MAP_TYPE_TABLE), st.sets(st.sampled_from(flags.MAP_FLAG_TABLE)))
def test_known_map_flags_print_only_names(
    kind: tuple[str, int], chosen: set[tuple[str, int]]
) -> None:
    value = kind[1]
    for _, bit in chosen:
        value |= bit
    text = flags.map_names(value & ~(flags.MAP_HUGE_MASK << flags.MAP_HUGE_SHIFT))
    assert "0x" not in text
    assert text.startswith(kind[0])


@given(U64)
def test_madvise_round_trip(value: int) -> None:
    assert flags.parse_madvise(flags.madvise_name(value)) == value


@given(U64)
def test_mremap_round_trip(value: int) -> None:
    assert flags.parse_mremap_flags(flags.mremap_names(value)) == value


def test_article_listing_flags_round_trip() -> None:
    """Every prot and flags field of the article's strace listings reads back identically."""
    data = Path(__file__).parent / "data" / "strace"
    seen = 0
    for log in ("article-glibc.log", "article-jemalloc.log"):
        for line in (data / log).read_text().splitlines():
            args = line.split("(", 1)[1].split(", ")
            assert flags.prot_names(flags.parse_prot(args[2])) == args[2]
            assert flags.map_names(flags.parse_map_flags(args[3])) == args[3]
            seen += 1
    assert seen == 40
