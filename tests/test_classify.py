"""Classification of real traced fixtures: loader, allocator, thread stacks, the program's own."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from analyzers.analysis import Analysis, analyze
from analyzers.classify import Classifier, classify, frames_resolver
from analyzers.model import Classified
from tests.helpers import PRELOADS, fixture, preload_env, record
from tracer import flags
from tracer.records import Spawn
from tracer.traceformat import read_trace


def _classified(tmp_path: Path, argv: list[str], allocator: str | None = None) -> list[Classified]:
    result = record(tmp_path, argv, env=preload_env(allocator))
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    return classify(result.trace.data)


def test_seed_glibc_first_malloc_grows_the_heap(tmp_path: Path) -> None:
    classified = _classified(tmp_path, [fixture("seed")])
    brks = [c for c in classified if c.event.syscall == "brk"]
    assert (brks[0].category, brks[0].owner) == ("loader", "ld.so")
    assert [(c.category, c.owner, c.role, c.phase) for c in brks[1:]] == [
        ("allocator", "glibc", "grow main heap", "main")
    ] * 2
    assert brks[0].phase == "startup"
    assert all(c.decided_by == "stack" for c in classified)
    loader_maps = [c for c in classified if c.category == "loader" and c.event.path]
    assert {os.path.basename(c.object or "") for c in loader_maps} >= {"libc.so.6"}
    assert not [c for c in classified if c.category == "other"]


def test_seed_jemalloc_objects_and_startup_calls(tmp_path: Path) -> None:
    classified = _classified(tmp_path, [fixture("seed-jemalloc")])
    mapped = Counter(
        os.path.basename(c.object or "")
        for c in classified
        if c.category == "loader" and c.event.syscall == "mmap" and c.segment is not None
    )
    for name in ("libjemalloc.so.2", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libc.so.6"):
        assert any(obj.startswith(name) for obj in mapped), name
    own = [c for c in classified if c.owner == "jemalloc"]
    assert own and all(c.category == "allocator" for c in own)
    sizes = Counter(c.event.length for c in own if c.event.syscall == "mmap")
    assert sizes[4096] >= 2 and sizes[2 << 20] >= 2 and sizes[4 << 20] >= 1


@pytest.mark.parametrize("allocator", [None, "jemalloc", "tcmalloc", "mimalloc"])
def test_usermmap_own_calls_are_user_under_every_allocator(
    tmp_path: Path, allocator: str | None
) -> None:
    result = record(tmp_path, [fixture("usermmap"), "--threads", "4"], env=preload_env(allocator))
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    reported = sum(int(r["total"]) for r in result.reports("usermmap") if "total" in r)
    classified = classify(result.trace.data)
    user = [c for c in classified if c.category == "user"]
    assert len(user) == reported
    assert {c.owner for c in user} == {"usermmap"}


def test_threads_stacks_and_arenas(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("threads"), "8"])
    assert result.trace is not None
    analysis = analyze(result.trace.data)
    classified = analysis.events
    stacks = [c for c in classified if c.category == "thread-stack" and c.event.syscall == "mmap"]
    assert len(stacks) == 8
    assert all(c.event.prot == 0 for c in stacks), "stack + guard reserved PROT_NONE first"
    tries = [c for c in classified if c.role == "reserve arena heap"]
    assert all(c.event.tid != c.event.pid for c in tries), "each heap is made by a worker thread"
    # a try that glibc unmaps at once, unaligned, is no heap (see the test below)
    heaps = [a for a in analysis.arenas if a.kind == "glibc arena heap"]
    assert 1 <= len(heaps) <= 8 and len(tries) >= len(heaps)


HEURISTIC_MATRIX = [
    (argv, allocator)
    for argv in (["seed"], ["big"], ["threads", "4"], ["usermmap", "--threads", "2"], ["dlopen"])
    for allocator in (None, "jemalloc", "tcmalloc", "mimalloc")
] + [(["seed-jemalloc"], None), (["static"], None), (["forkexec"], None)]


def test_heuristics_agree_with_stacks_on_fixtures(tmp_path: Path) -> None:
    """Classifying the same traces without their stacks gives the same categories."""
    total = agree = 0
    misses: Counter[tuple[str, str, str]] = Counter()
    for argv, allocator in HEURISTIC_MATRIX:
        result = record(tmp_path, [fixture(argv[0]), *argv[1:]], env=preload_env(allocator))
        assert result.trace is not None
        by_stack = classify(result.trace.data)
        blind = Classifier().classify(result.trace.data, frames_of=lambda e: ())
        assert all(c.decided_by != "stack" for c in blind)
        for a, b in zip(by_stack, blind, strict=True):
            total += 1
            agree += a.category == b.category
            if a.category != b.category:
                misses[a.event.syscall, a.category, b.category] += 1
    assert agree / total >= 0.95, (agree, total, misses.most_common(8))


def test_seed_jemalloc_loader_objects_and_who_needed_them(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("seed-jemalloc")])
    assert result.trace is not None
    analysis = analyze(result.trace.data)
    needed_by = {
        o.name.split(".so")[0]: (o.how, os.path.basename(o.needed_by or ""))
        for o in analysis.objects
    }
    assert needed_by["libjemalloc"] == ("DT_NEEDED", "seed-jemalloc")
    for lib in ("libstdc++", "libm", "libgcc_s"):
        assert needed_by[lib] == ("DT_NEEDED", "libjemalloc.so.2"), lib
    assert needed_by["ld-linux-x86-64"][0] == "kernel"
    # Exactly the loader's file maps of each object are attributed to it.
    for obj in analysis.objects:
        maps = [
            c
            for c in analysis.events
            if c.category == "loader" and c.event.syscall == "mmap" and c.event.path == obj.path
        ]
        assert all(c.object == obj.path for c in maps)
    (info,) = analysis.allocators.values()
    assert (info.name, info.how, info.version) == ("jemalloc", "linked", "5.3.0")
    startup = [c for c in analysis.events if c.owner == "jemalloc"]
    assert startup and {c.phase for c in startup} == {"startup"}
    assert {c.role for c in startup} >= {"page probe", "extent or base block"}


@pytest.mark.parametrize("allocator", ["jemalloc", "tcmalloc", "mimalloc"])
def test_preloaded_allocator_is_detected(tmp_path: Path, allocator: str) -> None:
    result = record(tmp_path, [fixture("seed")], env=preload_env(allocator))
    assert result.trace is not None
    analysis = analyze(result.trace.data)
    (info,) = analysis.allocators.values()
    assert (info.name, info.how) == (allocator, "preloaded")
    preloaded = [o for o in analysis.objects if o.how == "LD_PRELOAD"]
    assert [o.name.split(".so")[0] for o in preloaded] == [PRELOADS[allocator].name.split(".so")[0]]


def test_threads_glibc_arena_heaps_tied_to_threads(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("threads"), "8"])
    assert result.trace is not None
    analysis = analyze(result.trace.data)
    spawned = {e.tid for e in result.trace.records if isinstance(e, Spawn)}
    heaps = [a for a in analysis.arenas if a.kind == "glibc arena heap"]
    stacks = [a for a in analysis.arenas if a.kind == "thread stack"]
    assert len(stacks) == 8 and {a.tid for a in stacks} == {stacks[0].pid}, "main makes stacks"
    assert heaps and {a.tid for a in heaps} <= spawned
    assert len({a.tid for a in heaps}) == len(heaps), "one heap per thread that made one"


def test_a_discarded_glibc_heap_attempt_is_no_arena() -> None:
    """glibc's alloc_new_heap tries a 64 MiB heap at the address after the last one, and unmaps
    it at once when the kernel put it elsewhere, unaligned: the 128 MiB reservation it makes
    next is the heap (a recorded run of threads 8 where that happened)."""
    analysis = analyze(read_trace("tests/data/traces/threads8-unaligned-heap.jsonl"))
    tries = [c.event for c in analysis.events if c.role == "reserve arena heap"]
    heap_size = 64 << 20
    unaligned = [e for e in tries if e.length == heap_size and (e.result or 0) % heap_size]
    assert len(tries) == 9 and len(unaligned) == 1, "the trace has one discarded attempt"
    heaps = [a for a in analysis.arenas if a.kind == "glibc arena heap"]
    assert len(heaps) == 8 and unaligned[0].result not in {a.addr for a in heaps}
    assert len({a.tid for a in heaps}) == 8, "one heap per thread"


def test_big_allocations_are_glibcs(tmp_path: Path) -> None:
    """Large allocations, realloc's mremap and free's munmap belong to glibc malloc."""
    classified = _classified(tmp_path, [fixture("big")])
    mine = [c for c in classified if c.phase == "main" and c.event.syscall != "brk"]
    roles = [(c.event.syscall, c.category, c.owner, c.role) for c in mine]
    assert roles == [
        ("mmap", "allocator", "glibc", "large allocation"),
        ("mremap", "allocator", "glibc", "realloc move"),
        ("munmap", "allocator", "glibc", "free large allocation"),
        ("mmap", "allocator", "glibc", "large allocation"),
        ("munmap", "allocator", "glibc", "free large allocation"),
    ]


def test_musl_malloc_metadata_and_guard(tmp_path: Path) -> None:
    """musl's libc.so has no symbols: its calls are judged by their arguments (mallocng)."""
    if not Path(fixture("seed-musl")).exists():
        pytest.skip("musl-gcc is not installed")
    result = record(tmp_path, [fixture("seed-musl")])
    assert result.trace is not None
    analysis = analyze(result.trace.data)
    (info,) = analysis.allocators.values()
    assert info.name == "musl"
    roles = [(c.event.syscall, c.category, c.owner, c.role) for c in analysis.events]
    assert roles[:3] == [
        ("brk", "allocator", "musl", "metadata"),
        ("brk", "allocator", "musl", "metadata"),
        ("mmap", "allocator", "musl", "guard page"),
    ]
    assert all(c.category == "loader" for c in analysis.events if c.event.syscall == "mprotect")
    kinds = {o.name: o.how for o in analysis.objects}
    assert set(kinds.values()) == {"kernel"}, "musl's loader is its libc, mapped by the kernel"


@pytest.mark.parametrize("name", ["threads-musl", "threads-musl-static"])
def test_musl_threads_stacks_and_mallocng(tmp_path: Path, name: str) -> None:
    """musl's libc.so has no symbols nor unwind tables: its stack frames are found by scanning
    and may carry a wrong exported name; linked statically, its functions are the program's.
    Each pthread_create maps one PROT_NONE stack (musl's, not glibc's), unmapped at join;
    mallocng's maps are musl's, none the program's own (threads.c makes no memory syscall)."""
    if not Path(fixture(name)).exists():
        pytest.skip("musl-gcc is not installed")
    result = record(tmp_path, [fixture(name), "2"])
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    threads = int(result.reports("threads")[-1]["n"])
    analysis = analyze(result.trace.data)
    (info,) = analysis.allocators.values()
    assert info.name == ("static musl" if name.endswith("static") else "musl")
    classified = analysis.events
    assert {c.owner for c in classified if c.category in ("allocator", "thread-stack")} == {"musl"}
    stacks = Counter(c.event.syscall for c in classified if c.category == "thread-stack")
    assert stacks == {"mmap": threads, "mprotect": threads, "munmap": threads}
    assert not [c for c in classified if c.category in ("user", "runtime", "other")]


def test_static_program_is_static_glibc(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("static")])
    assert result.trace is not None
    analysis = analyze(result.trace.data)
    (info,) = analysis.allocators.values()
    assert (info.name, info.how) == ("static glibc", "static")
    brks = [c for c in analysis.events if c.event.syscall == "brk"]
    assert [c.category for c in brks[:2]] == ["loader", "loader"], "static TLS before malloc"


def test_a_dynamic_programs_own_malloc_and_start_thread_are_its_code(tmp_path: Path) -> None:
    """Names glibc uses inside libc (malloc, start_thread) are the program's own functions
    in a dynamic executable: only a static one carries glibc's."""
    result = record(tmp_path, [fixture("ownnames")])
    assert result.returncode == 0, result.stderr
    (truth,) = result.reports("ownnames")
    assert result.trace is not None
    classified = classify(result.trace.data)
    own = [
        c
        for c in classified
        if c.function in ("malloc", "start_thread") and c.object == fixture("ownnames")
    ]
    assert Counter((c.function, c.event.syscall) for c in own) == {
        ("malloc", "mmap"): int(truth["malloc_maps"]),
        ("start_thread", "mmap"): int(truth["thread_maps"]),
        ("start_thread", "munmap"): int(truth["thread_maps"]),
    }
    assert {(c.category, c.owner) for c in own} == {("user", "ownnames")}
    stacks = [c.event.syscall for c in classified if c.category == "thread-stack"]
    assert Counter(stacks) == {"mmap": 1, "mprotect": 1, "madvise": 1}, "nptl's stack is nptl's"


def test_hugetlb_main_heap_grows_by_mmap(tmp_path: Path) -> None:
    """glibc.malloc.hugetlb=2 makes morecore fail: the main arena grows through
    sysmalloc_mmap_fallback (huge pages first, normal pages if none are reserved)."""
    env = preload_env(None)
    env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=2"
    result = record(tmp_path, [fixture("threads")], env=env)
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    classified = classify(result.trace.data)
    fallback = [c for c in classified if (c.function or "").startswith("sysmalloc_mmap_fallback")]
    assert fallback
    assert {(c.category, c.owner, c.role) for c in fallback} == {
        ("allocator", "glibc", "grow main heap (mmap fallback)")
    }
    libc = [c for c in classified if c.owner == "glibc" and c.category == "runtime"]
    assert not [c for c in libc if "malloc" in (c.function or "")], libc


# Debian's stripped python3.11, and the interpreter running the tests (pyenv's here: symbols,
# the interpreter in libpython3.X.so).
INTERPRETERS = sorted({"/usr/bin/python3", os.path.realpath(sys.executable)})


@pytest.mark.parametrize("python", INTERPRETERS)
def test_pymalloc_arenas_released_under_any_caller(tmp_path: Path, python: str) -> None:
    """CPython's arena free tail-calls munmap: the stack shows its caller (PyObject_Free,
    PyObject_GC_Del, or unnamed code of the stripped interpreter); every munmap of a whole
    arena is still pymalloc's, and so is every arena, in the binary or in libpython."""
    freeing = "d = [{i: str(i)} for i in range(200000)]; del d"
    result = record(tmp_path, [python, "-c", freeing])
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    classified = classify(result.trace.data)
    arenas = {
        (c.event.result, c.event.length)
        for c in classified
        if (c.owner, c.role, c.event.syscall) == ("pymalloc", "arena", "mmap")
    }
    released = [
        c
        for c in classified
        if c.event.syscall == "munmap" and (c.event.addr, c.event.length) in arenas
    ]
    assert released, "the program frees whole arenas"
    # 1 MiB arenas on 64-bit since 3.10 (256 KiB before); the arena allocator's other maps are
    # the frames' data stack chunks (_PyObject_VirtualAlloc), not arenas
    assert {length for _addr, length in arenas} <= {1 << 20, 256 << 10}
    assert {(c.category, c.owner, c.role) for c in released} == {
        ("runtime", "pymalloc", "release arena")
    }


def test_dlopened_objects_dependencies_and_relro(tmp_path: Path) -> None:
    """A dlopen'ed library's own DT_NEEDED is needed by it, not dlopen'ed by the program; an
    object mapped where ld.so.cache was (read and unmapped by an earlier dlopen) gets its
    RELRO, not the cache; an object aligned above the page size gets ld.so's reservation."""
    result = record(tmp_path, [fixture("dlopendeps")])
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    analysis = analyze(result.trace.data)
    loaded = {o.name: o for o in analysis.objects}
    top, plugin = loaded["libplugintop.so"], loaded["libplugin.so"]
    assert (top.how, top.needed_by) == ("dlopen", fixture("dlopendeps"))
    assert (plugin.how, plugin.needed_by) == ("DT_NEEDED", top.path)
    relros = [
        c
        for c in analysis.events
        if c.category == "loader" and c.event.syscall == "mprotect" and c.role == "RELRO"
    ]
    assert relros and all(c.object and c.object != "/etc/ld.so.cache" for c in relros), relros
    for name in ("libdl.so.2", "libplugintop.so", "libplugin.so", "libpluginaligned.so"):
        assert "relro" in loaded[name].segments, loaded[name]
    # 2 MiB p_align: every call of ld.so's for it, its reservation and trims too, is its own
    aligned = loaded["libpluginaligned.so"]
    assert aligned.how == "dlopen" and aligned.segments[:2] == ["align", "span"], aligned
    unnamed = [
        (c.event.syscall, c.role)
        for c in analysis.events
        if c.category == "loader" and c.phase == "main" and "ld.so.cache" not in c.role
        if not c.object
    ]
    assert not unnamed, unnamed


def test_jemalloc_linked_in_statically_is_jemalloc(tmp_path: Path) -> None:
    """libjemalloc_pic.a linked into the executable: no object is named like jemalloc, its
    frames are; it makes the calls the shared library makes (allocators.md §5)."""
    runs = {
        name: record(tmp_path, [fixture(name)], name=f"{name}.jsonl")
        for name in ("seed-jemalloc", "seed-jemalloc-static")
    }
    shared, static = (analyze(run.trace.data) for run in runs.values() if run.trace is not None)
    (info,) = static.allocators.values()
    assert (info.name, info.how, info.path) == (
        "jemalloc",
        "linked in",
        fixture("seed-jemalloc-static"),
    )
    (shared_info,) = shared.allocators.values()
    assert info.version == shared_info.version

    def own(analysis: Analysis) -> Counter[tuple[str, str, int | None]]:
        return Counter(
            (c.category, c.event.syscall, c.event.length)
            for c in analysis.events
            if c.owner == "jemalloc"
        )

    assert own(static) == own(shared)
    assert not [c for c in static.events if c.category == "user"]
    roles = {c.role for c in static.events if c.owner == "jemalloc"}
    assert roles >= {"page probe", "dss probe", "base block", "extent"}, roles


def test_dlopen_dependencies_are_credited_breadth_first(tmp_path: Path) -> None:
    """_ssl names libssl.so.3 and libcrypto.so.3, libssl names libcrypto too: ld.so maps
    _ssl's needs in order, so libcrypto is _ssl's, the first loaded object that names it."""
    result = record(tmp_path, ["/usr/bin/python3", "-c", "import _ssl"])
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    loaded = {o.name: o for o in analyze(result.trace.data).objects}
    ssl = next(o for name, o in loaded.items() if name.startswith("_ssl."))
    assert ssl.how == "dlopen"
    for name in ("libssl.so.3", "libcrypto.so.3"):
        assert (loaded[name].how, loaded[name].needed_by) == ("DT_NEEDED", ssl.path), name


def test_malloc_debug_library_is_glibcs_malloc(tmp_path: Path) -> None:
    """MALLOC_CHECK_ needs libc_malloc_debug.so preloaded, and that library carries its own
    copy of glibc's malloc.c: its large allocations are glibc's, not a library's own calls."""
    env = preload_env(None)
    env.update(
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0", "MALLOC_CHECK_": "3"}
    )
    result = record(tmp_path, [fixture("big")], env=env)
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    classified = classify(result.trace.data)
    debug = [
        c
        for c in classified
        if c.category != "loader"
        and os.path.basename(c.object or "").startswith("libc_malloc_debug")
    ]
    assert {c.event.syscall for c in debug} >= {"mmap", "mremap", "munmap"}, "big's three sizes"
    assert {(c.category, c.owner, c.decided_by) for c in debug} == {("allocator", "glibc", "stack")}


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([fixture("threads-musl"), "2"], {}),
        ([fixture("threads-musl-static"), "2"], {}),
        # setlocale maps C.utf8's LC_* files and the gconv cache
        (["/usr/bin/sort", "/etc/hostname"], {"LC_ALL": "C.UTF-8"}),
    ],
    ids=["musl-threads", "musl-static-threads", "locale"],
)
def test_heuristics_agree_with_stacks_on_programs(
    tmp_path: Path, argv: list[str], env: dict[str, str]
) -> None:
    """Without stacks: mallocng's maps in a musl process, glibc's locale files, as the stacks
    say."""
    if not Path(argv[0]).exists():
        pytest.skip(f"{argv[0]} is not there (musl-gcc is not installed)")
    result = record(tmp_path, argv, env={**preload_env(None), **env})
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    by_stack = classify(result.trace.data)
    blind = Classifier().classify(result.trace.data, frames_of=lambda e: ())
    misses = Counter(
        (a.event.syscall, a.category, b.category, b.reason)
        for a, b in zip(by_stack, blind, strict=True)
        if a.category != b.category
    )
    assert sum(misses.values()) <= 0.05 * len(by_stack), misses.most_common(5)


def test_heuristics_prot_none_noreserve_is_not_jemallocs(tmp_path: Path) -> None:
    """The JVM's and V8's heaps are MAP_NORESERVE reservations too: PROT_NONE, without jemalloc
    or mimalloc loaded, such a map is nobody's allocator (glibc's large chunks are plain)."""
    own = (  # PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE
        "import ctypes; m = ctypes.CDLL(None).mmap; m.restype = ctypes.c_void_p; "
        "m(None, 2 << 20, 0, 0x4022, -1, 0)"
    )
    result = record(tmp_path, ["/usr/bin/python3", "-c", own])
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    blind = Classifier().classify(result.trace.data, frames_of=lambda e: ())
    noreserve = [
        c
        for c in blind
        if c.event.syscall == "mmap"
        and (c.event.flags or 0) & flags.MAP_NORESERVE
        and c.event.length == 2 << 20
    ]
    assert [c.category for c in noreserve] == ["user"], noreserve


def test_jemalloc_page_probes_are_its_start_up_only(tmp_path: Path) -> None:
    """pages_boot probes madvise with one page at start-up; with dirty_decay_ms:0 jemalloc
    purges freed pages at once, many one page long: those are purges, not probes."""
    env = preload_env("jemalloc")
    env["MALLOC_CONF"] = "dirty_decay_ms:0"
    result = record(tmp_path, [fixture("threads")], env=env)
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    own = [c for c in analyze(result.trace.data).events if c.owner == "jemalloc"]
    assert {c.phase for c in own if c.role == "page probe"} == {"startup"}
    one_page = [c for c in own if c.event.syscall == "madvise" and c.event.length == 4096]
    assert {c.role for c in one_page if c.phase == "main"} == {"purge"}


def test_tcmalloc_mmap_heap_trims_its_alignment(tmp_path: Path) -> None:
    """With TCMALLOC_SKIP_SBRK the page heap grows by mmap (MmapSysAllocator), which maps
    size + alignment and unmaps the excess: trims, not releases (those are madvise)."""
    env = preload_env("tcmalloc")
    env["TCMALLOC_SKIP_SBRK"] = "1"
    result = record(tmp_path, [fixture("threads")], env=env)
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    own = [c for c in classify(result.trace.data) if c.owner == "tcmalloc"]
    assert any(c.event.syscall == "mmap" for c in own)
    assert {c.role for c in own if c.event.syscall == "munmap"} <= {"trim"}
    assert {c.role for c in own if c.event.syscall == "madvise"} <= {"purge"}


def test_malloc_trim_shrinks_the_main_heap(tmp_path: Path) -> None:
    """malloc_trim's brk is systrim's (the top of the main heap given back), its madvise the
    purge of free pages inside (mtrim): one is not the other."""
    trim = (
        "import ctypes; libc = ctypes.CDLL(None); libc.mallopt(-1, 1 << 30); "  # M_TRIM_THRESHOLD
        "blocks = [libc.malloc(60000) for _ in range(40)]; [libc.free(b) for b in blocks]; "
        "libc.malloc_trim(0)"
    )
    result = record(tmp_path, ["/usr/bin/python3", "-c", trim])
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    frames = frames_resolver(result.trace.data)
    trimmed = [
        c
        for c in classify(result.trace.data)
        if any(f.function == "malloc_trim" for f in frames(c.event))
    ]
    assert {c.event.syscall for c in trimmed} >= {"brk"}, trimmed
    assert {(c.event.syscall, c.role) for c in trimmed} <= {
        ("brk", "trim main heap"),
        ("madvise", "purge"),
    }


def _reported_before_the_munmap_that_freed_them(run_events: list[Classified]) -> int:
    """Non-MAP_FIXED mmaps that, in trace order, got a range still mapped: the kernel never
    does that, so the munmap that freed it was recorded later (threads stopped at once are
    reported in waitpid's order)."""
    live: dict[int, list[tuple[int, int]]] = {}
    count = 0
    for c in run_events:
        e = c.event
        if e.result is None or e.syscall not in ("mmap", "munmap"):
            continue
        spans = live.setdefault(e.pid, [])
        lo = e.result if e.syscall == "mmap" else e.addr or 0
        hi = lo + (((e.length or 0) + 4095) & ~4095)
        met = [s for s in spans if s[0] < hi and lo < s[1]]
        fixed = (e.flags or 0) & (flags.MAP_FIXED | flags.MAP_FIXED_NOREPLACE)
        count += e.syscall == "mmap" and bool(met) and not fixed
        spans[:] = [s for s in spans if s not in met]
        spans += [(a, b) for a, b in ((s[0], lo) for s in met) if a < b]
        spans += [(a, b) for a, b in ((hi, s[1]) for s in met) if a < b]
        if e.syscall == "mmap":
            spans.append((lo, hi))
    return count


def test_a_munmap_recorded_after_the_mmap_that_reused_its_range_is_not_that_mappings_end(
    tmp_path: Path,
) -> None:
    """16 threads each map and unmap their own pages. A munmap seen entering before an mmap
    was seen returning cannot be that mapping's end, whatever the trace order: the replays
    (classification, byte figures, the mappings table) keep the newer mapping, and the mappings
    table ends the older one at that munmap, not at the mmap that found it still mapped.
    Without stacks nearly every munmap is then decided by the region it unmaps."""
    run = record(tmp_path, [fixture("threadbench"), "16", "2000"], "--no-stacks")
    assert run.returncode == 0 and run.trace is not None, run.stderr
    events = run.trace.classified
    if not _reported_before_the_munmap_that_freed_them(events):
        pytest.skip("no munmap was recorded after the mmap that reused its range in this run")
    tid = {c.event.seq: c.event.tid for c in events}
    mappings = run.trace.mappings
    own = mappings[(mappings.category == "user") & (mappings.syscall == "mmap")]
    assert len(own) == 16 * 2000
    assert set(own["removed_by"]) == {"munmap"}, "each mapping ends by its thread's munmap"
    ended_by = [tid[seq] for seq in own["removed_seq"].astype(int).tolist()]
    assert ended_by == own["tid"].tolist(), "a thread's mapping ended by another thread's munmap"
    munmaps = Counter(c.decided_by for c in events if c.event.syscall == "munmap")
    assert munmaps["region"] >= 0.95 * sum(munmaps.values()), munmaps
