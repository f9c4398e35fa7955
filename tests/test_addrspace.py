"""The replayed address space against a page-by-page model: mappings replace what they cover,
unmapping cuts regions at its edges, and the shortcuts for the common cases (a mapping where
nothing is, an unmap of exactly one region) give what the general path gives."""

from __future__ import annotations

import itertools
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from analyzers.addrspace import AddressSpace, Region

PAGES = 24

ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "reprotect"]),
        st.integers(0, PAGES - 1),
        st.integers(0, 6),
        st.integers(0, 7),
    ),
    max_size=40,
)


@given(ops)
def test_address_space_matches_a_page_model(steps: list[tuple[str, int, int, int]]) -> None:
    """Step n's mapping is made at time n. A removal's fourth number says how many steps
    earlier its munmap entered (7: no time given): it leaves the pages of mappings made later."""
    space = AddressSpace()
    model: dict[int, tuple[str, int, int]] = {}  # page -> (owner, prot, made)
    for n, (op, first, count, arg) in enumerate(steps):
        start, end = first, min(first + count, PAGES)
        if op == "add":
            space.add(Region(start, end, "user", f"call {n}", "own call", prot=arg, made_ns=n))
            model.update(dict.fromkeys(range(start, end), (f"call {n}", arg, n)))
        elif op == "remove":
            entered = None if arg == 7 else n - arg
            space.remove(start, end, entered)
            for p in range(start, end):
                if p in model and (entered is None or model[p][2] <= entered):
                    del model[p]
        else:
            space.reprotect(start, end, arg)
            model.update(
                {p: (model[p][0], arg, model[p][2]) for p in range(start, end) if p in model}
            )
        regions = space.overlapping(0, PAGES)
        assert all(a.end <= b.start for a, b in itertools.pairwise(regions))
        assert all(r.start < r.end for r in regions)
        for p in range(PAGES):
            region = space.find(p)
            found = None if region is None else (region.owner, region.prot, region.made_ns)
            assert found == model.get(p)


def test_unmapping_what_was_mapped_leaves_nothing() -> None:
    space = AddressSpace()
    for _ in range(3):
        space.add(Region(0x1000, 0x2000, "user", "p", "own call"))
        space.remove(0x1000, 0x2000)
    assert space.overlapping(0, 1 << 64) == []


def test_copies_are_independent_and_references_balance() -> None:
    """The C space holds a reference to each region it keeps, and only those: after cuts,
    removals, a copy and the space's end, every region is back to the references it had."""
    made = [
        Region(n * 0x1000, (n + 2) * 0x1000, "user", f"call {n}", "own call") for n in range(40)
    ]
    before = [sys.getrefcount(r) for r in made]
    space = AddressSpace()
    for region in made:  # each overlaps the one before: cut, then mapped over
        space.add(region)
    del region  # the loop's own reference
    fork = space.copy()
    assert type(fork) is AddressSpace
    space.remove(0x5000, 0x9000)
    space.reprotect(0x10000, 0x14800, 1)
    assert fork.find(0x6000) == replace(made[6], end=0x7000)  # cut by call 7's mapping
    assert fork.find(0x28000) is made[39]
    assert space.find(0x6000) is None
    assert [r.prot for r in space.overlapping(0x10000, 0x15000)] == [1, 1, 1, 1, 1, 0]
    assert len(fork.overlapping(0, 1 << 64)) == 40
    del space, fork
    assert [sys.getrefcount(r) for r in made] == before


def test_addresses_outside_the_machines_range_are_clamped_not_fatal() -> None:
    """Only a corrupt trace holds them: negative addresses count as 0 and those past 2**64 as
    its end, so the space neither fails nor crashes on them."""
    space = AddressSpace()
    space.add(Region(-0x2000, 0x1000, "user", "p", "own call"))
    space.add(Region(1 << 70, (1 << 70) + 0x1000, "user", "q", "own call"))  # empty once clamped
    assert [r.owner for r in space.overlapping(-(1 << 80), 1 << 80)] == ["p"]
    space.remove(-5, 1 << 90, -(1 << 100))
    assert space.overlapping(0, 1 << 64) == [Region(-0x2000, 0x1000, "user", "p", "own call")]
    space.remove(-5, 1 << 90)
    assert space.find(0) is None


@pytest.mark.parametrize(
    ("call", "args", "error"),
    [
        ("find", ("0x1000",), TypeError),
        ("remove", (1,), TypeError),
        ("remove", (0, 0x1000, "later"), TypeError),
        ("reprotect", (0, None, 1), TypeError),
        ("add", (object(),), AttributeError),
    ],
)
def test_wrong_arguments_raise_errors(
    call: str, args: tuple[object, ...], error: type[Exception]
) -> None:
    """As the Python class did: an exception, never a crash, and the space unchanged."""
    space = AddressSpace()
    space.add(Region(0, 0x1000, "user", "p", "own call"))
    with pytest.raises(error):
        getattr(space, call)(*args)
    assert space.overlapping(0, 1 << 64) == [Region(0, 0x1000, "user", "p", "own call")]
