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
