"""The replayed address space against a page-by-page model: mappings replace what they cover,
unmapping cuts regions at its edges, and the shortcuts for the common cases (a mapping where
nothing is, an unmap of exactly one region) give what the general path gives."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

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
    space = AddressSpace()
    model: dict[int, tuple[str, int]] = {}  # page -> (owner, prot)
    for n, (op, first, count, prot) in enumerate(steps):
        start, end = first, min(first + count, PAGES)
        if op == "add":
            space.add(Region(start, end, "user", f"call {n}", "own call", prot=prot))
            model.update(dict.fromkeys(range(start, end), (f"call {n}", prot)))
        elif op == "remove":
            space.remove(start, end)
            for p in range(start, end):
                model.pop(p, None)
        else:
            space.reprotect(start, end, prot)
            model.update({p: (model[p][0], prot) for p in range(start, end) if p in model})
        regions = space.overlapping(0, PAGES)
        assert all(a.end <= b.start for a, b in itertools.pairwise(regions))
        assert all(r.start < r.end for r in regions)
        for p in range(PAGES):
            region = space.find(p)
            assert (None if region is None else (region.owner, region.prot)) == model.get(p)


def test_unmapping_what_was_mapped_leaves_nothing() -> None:
    space = AddressSpace()
    for _ in range(3):
        space.add(Region(0x1000, 0x2000, "user", "p", "own call"))
        space.remove(0x1000, 0x2000)
    assert space.overlapping(0, 1 << 64) == []
