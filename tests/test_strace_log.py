"""Tests of tracer.strace_log on real strace logs of small C programs and on hand-written lines.

The C programs report every memory syscall they make (arguments and result) to a file given
on their command line, with write(2) only, so the program is the ground truth the parsed log
is checked against.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracer import flags
from tracer.errors import AlloctraceError
from tracer.strace_log import (
    StraceCall,
    StraceExec,
    StraceFrame,
    StraceLog,
    StraceSpawn,
    parse_strace,
    read_strace,
)

DATA = Path(__file__).parent / "data" / "strace"
TRACED = "mmap,munmap,brk,mprotect,mremap,madvise,prctl"

REPORT_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
static int report_fd;
static void open_report(const char *path) {
    report_fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (report_fd < 0) _exit(98);
}
/* One line per call, "<call and arguments> result=R errno=None" or "... result=None errno=E",
   written at once (threads share the file) with vsnprintf and write(2): no stdio buffers, so
   no malloc and no brk of its own. */
static void report(long result, int failed, const char *fmt, ...) {
    int error = errno;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (failed)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " result=None errno=%d\n", error);
    else
        n += snprintf(buf + n, sizeof buf - (size_t)n, " result=%lu errno=None\n",
                      (unsigned long)result);
    if (write(report_fd, buf, (size_t)n) != n) _exit(99);
}
"""

MEM_C = (
    REPORT_C
    + r"""
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif
int main(int argc, char **argv) {
    (void)argc;
    open_report(argv[1]);
    const long page = 4096;
    report(getpid(), 0, "getpid");

    char *p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report((long)p, p == MAP_FAILED, "mmap addr=0 length=%ld prot=3 flags=34 fd=-1 offset=0",
           3 * page);

    int r = mprotect(p + page, page, PROT_READ);
    report(r, r != 0, "mprotect addr=%lu length=%ld prot=1", (unsigned long)(p + page), page);

    r = madvise(p, page, MADV_DONTNEED);
    report(r, r != 0, "madvise addr=%lu length=%ld advice=4", (unsigned long)p, page);

    r = madvise(p, page, 0x42);
    report(r, r != 0, "madvise addr=%lu length=%ld advice=66", (unsigned long)p, page);

    char *q = mremap(p, 3 * page, 6 * page, MREMAP_MAYMOVE);
    report((long)q, q == MAP_FAILED, "mremap addr=%lu length=%ld new_length=%ld flags=1",
           (unsigned long)p, 3 * page, 6 * page);

    int reserve = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    char *t = mmap(NULL, 8 * page, PROT_NONE, reserve, -1, 0);
    report((long)t, t == MAP_FAILED, "mmap addr=0 length=%ld prot=0 flags=%d fd=-1 offset=0",
           8 * page, reserve);

    char *m = mremap(q, 6 * page, 6 * page, MREMAP_MAYMOVE | MREMAP_FIXED, t);
    report((long)m, m == MAP_FAILED,
           "mremap addr=%lu length=%ld new_length=%ld flags=3 new_addr=%lu", (unsigned long)q,
           6 * page, 6 * page, (unsigned long)t);

    r = munmap(m, 8 * page);
    report(r, r != 0, "munmap addr=%lu length=%ld", (unsigned long)m, 8 * page);

    char *big = mmap(NULL, 1UL << 50, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report((long)big, big == MAP_FAILED, "mmap addr=0 length=%lu prot=1 flags=34 fd=-1 offset=0",
           1UL << 50);

    int huge = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB;
    char *h = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, huge, -1, 0);
    report((long)h, h == MAP_FAILED, "mmap addr=0 length=%d prot=3 flags=%d fd=-1 offset=0",
           2 << 20, huge);

    int fd = open("/proc/self/exe", O_RDONLY);
    char *f = mmap(NULL, page, PROT_READ, MAP_PRIVATE, fd, 0);
    report((long)f, f == MAP_FAILED, "mmap addr=0 length=%ld prot=1 flags=2 fd=%d offset=0",
           page, fd);

    long b = syscall(SYS_brk, 0);
    report(b, 0, "brk addr=0");
    long b2 = syscall(SYS_brk, b + page);
    report(b2, 0, "brk addr=%lu", (unsigned long)(b + page));

    r = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)f, page, "alloctrace test");
    report(r, r != 0, "prctl addr=%lu length=%ld name=alloctrace test", (unsigned long)f, page);

    r = munmap((void *)1, page);
    report(r, r != 0, "munmap addr=1 length=%ld", page);
    return 0;
}
"""
)

THREADS_C = (
    REPORT_C
    + r"""
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#define THREADS 4
#define ROUNDS 40
static pthread_barrier_t barrier;
static void *work(void *arg) {
    long tid = syscall(SYS_gettid);
    long base = (long)arg;
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < ROUNDS; i++) {
        long length = 4096 * (base + i % 5);
        char *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        report((long)p, p == MAP_FAILED,
               "tid %ld mmap addr=0 length=%ld prot=3 flags=34 fd=-1 offset=0", tid, length);
        int r = madvise(p, 4096, MADV_DONTNEED);
        report(r, r != 0, "tid %ld madvise addr=%lu length=4096 advice=4", tid, (unsigned long)p);
        r = munmap(p, length);
        report(r, r != 0, "tid %ld munmap addr=%lu length=%ld", tid, (unsigned long)p, length);
    }
    return NULL;
}
int main(int argc, char **argv) {
    (void)argc;
    open_report(argv[1]);
    pthread_t threads[THREADS];
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (long i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, work, (void *)(i + 1));
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    pid_t child = fork();
    if (child == 0) {
        long tid = syscall(SYS_gettid);
        char *p = mmap(NULL, 4096 * 7, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        report((long)p, p == MAP_FAILED,
               "tid %ld mmap addr=0 length=28672 prot=1 flags=34 fd=-1 offset=0", tid);
        _exit(3);
    }
    waitpid(child, NULL, 0);
    return 0;
}
"""
)

SEGV_C = r"""
#include <stddef.h>
#include <sys/mman.h>
int main(void) {
    volatile char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p[0];
}
"""

STACK_C = r"""
#include <stddef.h>
#include <sys/mman.h>
int main(void) {
    void *p = mmap(NULL, 4096 * 11, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED;
}
"""

# "out" stands for "-o FILE"; every other word is an strace option.
MEM_OPTIONS = [
    [],
    ["-f"],
    ["out"],
    ["-f", "out"],
    ["-t"],
    ["-tt", "-T"],
    ["-ttt"],
    ["-y"],
    ["-yy"],
    ["-k"],
    ["-f", "-tt", "-T", "-y"],
    ["-f", "out", "-ttt", "-T", "-yy", "-k"],
]
THREAD_OPTIONS = [
    ["-f"],
    ["-f", "out"],
    ["-f", "-tt", "-T", "-y"],
    ["-f", "out", "-ttt", "-T", "-yy"],
    ["-f", "-k"],
]
MEMORY_ENTRY = re.compile(
    r"^(?:\[pid\s+\d+\] |\d+\s+)?(?:[\d:.]+ )?(?:mmap|munmap|brk|mprotect|mremap|madvise)\(",
    re.MULTILINE,
)


@dataclass
class Run:
    """One program run under strace: the log's text, the parsed log and the program's report."""

    text: str
    log: StraceLog
    report: list[str]
    binary: Path


def _strace() -> str:
    path = shutil.which("strace")
    if path is None:
        pytest.skip("strace is not installed")
    return path


def _tool(*args: str) -> str:
    """The output of a binutils command, skipping the test when it is not installed."""
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} is not installed")
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def _can_unwind(strace: str) -> str | None:
    """strace's stack-trace backend ("libunwind", "libdw"), None if built without -k."""
    version = subprocess.run([strace, "-V"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"stack-trace=(\w+)", version)
    return match[1] if match else None


@pytest.fixture(scope="session")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The C test programs, compiled once."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    root = tmp_path_factory.mktemp("programs")
    built = {}
    for name, source, extra in [
        ("mem", MEM_C, []),
        ("threads", THREADS_C, ["-pthread"]),
        ("segv", SEGV_C, []),
        ("stack", STACK_C, ["-no-pie"]),
    ]:
        (root / f"{name}.c").write_text(source)
        subprocess.run(
            [
                gcc,
                "-O0",
                "-Wall",
                "-Werror",
                *extra,
                "-o",
                str(root / name),
                str(root / f"{name}.c"),
            ],
            check=True,
        )
        built[name] = root / name
    return built


def run_strace(binary: Path, options: list[str], tmp_path: Path, trace: str = TRACED) -> Run:
    """Run binary under strace with options; the log comes from -o FILE or from stderr."""
    strace = _strace()
    if "-k" in options and _can_unwind(strace) is None:
        pytest.skip("this strace has no -k")
    args = [strace, f"--trace={trace}"]
    out = tmp_path / "strace.log"
    for option in options:
        args += ["-o", str(out)] if option == "out" else [option]
    report = tmp_path / "report.txt"
    report.unlink(missing_ok=True)
    completed = subprocess.run(
        [*args, str(binary), str(report)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        # The child's own segfault must not leave a core file behind.
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)),
        check=False,
    )
    text = out.read_text() if "out" in options else completed.stderr
    log = read_strace(out) if "out" in options else parse_strace(text)
    lines = report.read_text().splitlines() if report.exists() else []
    return Run(text, log, lines, binary)


def expected(report_line: str) -> dict[str, int | str | None]:
    """The fields one report line promises: ``mmap addr=0 length=4096 ... result=N errno=None``."""
    syscall, _, rest = report_line.partition(" ")
    fields: dict[str, int | str | None] = {"syscall": syscall}
    for match in re.finditer(r"(\w+)=(.*?)(?= \w+=|$)", rest):
        key, value = match[1], match[2]
        fields[key] = value if key == "name" else None if value == "None" else int(value)
    return fields


def assert_calls_match(calls: list[StraceCall], report: list[str]) -> None:
    """The report's calls appear, in order and back to back, among the parsed calls."""
    wanted = [expected(line) for line in report]
    keys = [(fields["syscall"], fields["result"]) for fields in wanted]
    # Addresses come back after munmap, so match the whole run of (syscall, result) pairs.
    start = next(
        index
        for index in range(len(calls) - len(wanted) + 1)
        if [(c.syscall, c.result) for c in calls[index : index + len(wanted)]] == keys
    )
    for call, fields in zip(calls[start : start + len(wanted)], wanted, strict=True):
        for key, value in fields.items():
            assert getattr(call, key) == value, (key, call, fields)


def assert_log_is_complete(run: Run) -> None:
    """No line was left unparsed and every memory syscall the log entered was parsed once."""
    assert run.log.unparsed == []
    entered = len(MEMORY_ENTRY.findall(run.text))
    prctls = sum(1 for call in run.log.calls if call.syscall == "prctl")
    assert len(run.log.calls) - prctls == entered
    assert len({call.line for call in run.log.calls}) == len(run.log.calls)


@pytest.mark.parametrize("options", MEM_OPTIONS, ids=" ".join)
def test_real_log_of_every_memory_syscall(
    programs: dict[str, Path], tmp_path: Path, options: list[str]
) -> None:
    run = run_strace(programs["mem"], options, tmp_path)
    assert_log_is_complete(run)
    pid = expected(run.report[0])["result"]
    assert isinstance(pid, int)
    mine = [call for call in run.log.calls if call.pid in (pid, None)]
    assert_calls_match(mine, run.report[1:])
    # Pids are printed with -o FILE and -f; without them the log has none.
    has_pids = "out" in options and "-f" in options
    assert {call.pid for call in run.log.calls} == ({pid} if has_pids else {None})
    assert run.log.exits[pid if has_pids else None].status == 0
    assert run.log.skipped == 0

    timed = any(option.startswith("-t") for option in options)
    assert all((call.ts is not None) == timed for call in run.log.calls)
    assert all((call.dur is not None) == ("-T" in options) for call in run.log.calls)
    if "-ttt" in options:
        assert all(call.ts is not None and call.ts > 1e9 for call in run.log.calls)
    elif timed:
        assert all(call.ts is not None and call.ts < 86400 for call in run.log.calls)
    stamps = [call.ts for call in run.log.calls if call.ts is not None]
    assert stamps == sorted(stamps)

    reported = next(expected(line) for line in run.report if " flags=2 fd=" in line)
    file_map = next(call for call in mine if call.result == reported["result"])
    with_paths = "-y" in options or "-yy" in options
    assert file_map.path == (str(run.binary.resolve()) if with_paths else None)
    libc = [c for c in run.log.calls if c.path and "libc.so" in c.path]
    assert len(libc) >= (4 if with_paths else 0)

    unwinding = "-k" in options
    assert all(bool(call.frames) == unwinding for call in run.log.calls)
    if unwinding:
        ours = [f for call in mine[-5:] for f in call.frames if f.path == str(run.binary.resolve())]
        assert any(frame.function == "main" for frame in ours)

    # Flags read back exactly as strace printed them.
    for call in run.log.calls:
        if call.syscall == "mmap":
            assert call.prot is not None
            assert call.flags is not None
            assert f"{flags.prot_names(call.prot)}, {flags.map_names(call.flags)}, " in run.text


@pytest.mark.parametrize("options", THREAD_OPTIONS, ids=" ".join)
def test_real_log_of_threads_merges_unfinished_calls(
    programs: dict[str, Path], tmp_path: Path, options: list[str]
) -> None:
    run = run_strace(programs["threads"], options, tmp_path)
    assert_log_is_complete(run)
    if (os.cpu_count() or 1) > 1:
        assert "<unfinished ...>" in run.text
        assert "resumed>" in run.text
    by_tid: dict[int, list[str]] = {}
    for line in run.report:
        _, number, call = line.split(" ", 2)
        by_tid.setdefault(int(number), []).append(call)
    assert len(by_tid) == 5  # four threads and the forked child
    calls = run.log.by_pid()
    for tid, report in by_tid.items():
        assert_calls_match(calls[tid], report)
    # Every call has a pid: the program's first lines, printed before strace used [pid N],
    # belong to its first process (from "strace: Process N attached" notes, or -o FILE).
    assert None not in calls
    assert len(run.log.exits) == 6
    (child,) = [tid for tid, report in by_tid.items() if len(report) == 1]
    assert run.log.exits[child].status == 3
    if "-k" in options:
        assert all(call.frames for call in run.log.calls)


@pytest.mark.parametrize("options", [["-f", "out"], ["-f"], ["-f", "-tt", "-T"]], ids=" ".join)
def test_real_log_spawns(programs: dict[str, Path], tmp_path: Path, options: list[str]) -> None:
    """clone3 for each thread, clone for the fork: kept in the one pass, even when strace's
    "Process N attached" cuts the clone line in two (without -o)."""
    run = run_strace(programs["threads"], options, tmp_path, f"{TRACED},clone,clone3,fork,vfork")
    assert run.log.unparsed == []
    tids = {int(line.split()[1]) for line in run.report}  # the four threads and the child
    spawns = run.log.spawns
    assert {spawn.child for spawn in spawns} == tids
    assert [spawn.line for spawn in spawns] == sorted(spawn.line for spawn in spawns)
    lines = run.text.splitlines()
    assert all(f"{spawn.syscall}(" in lines[spawn.line - 1] for spawn in spawns)  # its entry
    (parent,) = {spawn.pid for spawn in spawns}
    assert parent is not None and parent not in tids
    threads = [spawn for spawn in spawns if spawn.thread]
    (forked,) = [spawn for spawn in spawns if not spawn.thread]
    assert len(threads) == 4 and not any(spawn.sigchld for spawn in threads)
    assert forked.sigchld and run.log.exits[forked.child].status == 3
    assert all((spawn.ts is not None) == ("-tt" in options) for spawn in spawns)
    assert run.log.execs == []


def test_real_log_of_a_crash(programs: dict[str, Path], tmp_path: Path) -> None:
    unwinding = _can_unwind(_strace()) is not None
    options = ["-f", "-tt", "-k"] if unwinding else ["-f", "-tt"]
    run = run_strace(programs["segv"], options, tmp_path, trace="mmap")
    assert_log_is_complete(run)
    (segv,) = run.log.signals
    assert (segv.signal, segv.name) == (signal.SIGSEGV, "SIGSEGV")
    if unwinding:
        assert segv.frames[0].function == "main"  # where the fault happened
    (ended,) = run.log.exits.values()
    assert ended.signal == signal.SIGSEGV
    assert ended.status is None


def test_real_log_of_every_syscall_with_stacks(programs: dict[str, Path], tmp_path: Path) -> None:
    """Without -e, strace -k prints exit_group's stack after "+++ exited with N +++": those
    lines are understood, not left over."""
    if _can_unwind(_strace()) is None:
        pytest.skip("this strace has no -k")
    run = run_strace(programs["threads"], ["-f", "-k", "out"], tmp_path, trace="all")
    assert "exit_group(" in run.text and "+++ exited with 0 +++\n > " in run.text
    assert_log_is_complete(run)
    assert run.log.exits[min(run.log.exits, key=lambda pid: pid or 0)].status == 0


def test_k_address_is_the_file_offset_of_the_return_address(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """Verified fact behind StraceFrame.address, on a non-PIE binary where vaddr != offset."""
    backend = _can_unwind(_strace())
    if backend != "libunwind":
        pytest.skip(f"strace stack-trace backend is {backend}, not libunwind")
    binary = programs["stack"]
    run = run_strace(binary, ["-k"], tmp_path, trace="mmap")
    assert_log_is_complete(run)
    (call,) = [c for c in run.log.calls if c.length == 4096 * 11]
    innermost = call.frames[0]
    assert innermost.path is not None and "libc.so" in innermost.path
    assert innermost.address is not None and innermost.address < Path(innermost.path).stat().st_size
    (frame,) = [f for f in call.frames if f.function == "main"]
    assert frame.path == str(binary.resolve())
    symbols = _tool("nm", "--defined-only", str(binary)).splitlines()
    main = next(int(line.split()[0], 16) for line in symbols if line.endswith(" T main"))
    # readelf -lW: LOAD offset vaddr paddr filesz memsz flags align
    loads = [
        [int(field, 16) for field in line.split()[1:6]]
        for line in _tool("readelf", "-lW", str(binary)).splitlines()
        if line.split()[:1] == ["LOAD"]
    ]
    offset, vaddr = next((o, v) for o, v, _, _, size in loads if v <= main < v + size)
    assert offset != vaddr  # the test tells a file offset from an address
    file_offset = main - vaddr + offset
    # The return address follows a 5-byte "call rel32" (opcode e8) to mmap.
    assert frame.offset is not None
    code = binary.read_bytes()
    assert code[file_offset + frame.offset - 5] == 0xE8
    assert frame.address == file_offset + frame.offset


@pytest.mark.parametrize(
    ("log_name", "count"), [("article-glibc.log", 8), ("article-jemalloc.log", 32)]
)
def test_article_listings(log_name: str, count: int) -> None:
    log = read_strace(DATA / log_name)
    assert log.unparsed == []
    assert len(log.calls) == count
    assert {call.syscall for call in log.calls} == {"mmap"}
    assert all(call.pid is None and call.errno is None for call in log.calls)
    anonymous = [call for call in log.calls if call.flags and call.flags & flags.MAP_ANONYMOUS]
    assert all(call.fd == -1 for call in anonymous)
    loader = [call for call in log.calls if call.flags and call.flags & flags.MAP_DENYWRITE]
    assert all(call.fd == 3 for call in loader)
    # Every MAP_FIXED call got exactly the address it asked for.
    fixed = [call for call in log.calls if call.flags and call.flags & flags.MAP_FIXED]
    assert all(call.result == call.addr for call in fixed)


def test_article_glibc_listing_details() -> None:
    calls = read_strace(DATA / "article-glibc.log").calls
    assert [call.length for call in calls] == [
        8192, 31200, 2264656, 1658880, 360448, 24576, 52816, 12288
    ]  # fmt: skip
    assert [flags.map_names(call.flags or 0) for call in calls[:3]] == [
        "MAP_PRIVATE|MAP_ANONYMOUS",
        "MAP_PRIVATE",
        "MAP_PRIVATE|MAP_DENYWRITE",
    ]
    assert calls[3].prot == flags.PROT_READ | flags.PROT_EXEC
    assert calls[3].offset == 0x28000
    assert calls[3].addr == calls[3].result == 0x7BE812028000


def test_article_jemalloc_listing_details() -> None:
    calls = read_strace(DATA / "article-jemalloc.log").calls
    noreserve = [call for call in calls if call.flags and call.flags & flags.MAP_NORESERVE]
    assert [call.length for call in noreserve] == [4096, 2097152, 2097152, 4194304]
    assert calls[-4:] == noreserve
    assert sum(1 for c in calls if c.flags == flags.MAP_PRIVATE | flags.MAP_DENYWRITE) == 5
    assert sum(1 for c in calls if c.flags == flags.MAP_PRIVATE | flags.MAP_ANONYMOUS) == 4
    assert calls[6].length == 2238096  # libjemalloc's 2.2 MB .bss


GOOD = "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000"


def test_malformed_lines_are_kept_in_unparsed() -> None:
    text = "\n".join(
        [
            " > /lib/x.so(f+0x1) [0x10]",  # 1: a stack line before any call
            GOOD,  # 2
            "mmap(NULL, 4096, PROT_READ",  # 3: cut short
            "mmap(NULL, 4096, PROT_BOGUS, MAP_PRIVATE, -1, 0) = 0x7f0000000000",  # 4
            "<... munmap resumed>) = 0",  # 5: resumed without its start
            "hello world",  # 6
            "munmap(0x7f0000000000, 4096) = -1 EWHATEVER (Nope)",  # 7: unknown errno
            "+++ killed by SIGBOGUS +++",  # 8
            "mremap(0x1000, 4096) = 0x1000",  # 9: too few arguments
            "",  # blank lines are nothing
            "getpid() = 42",  # 11: another syscall, skipped
            "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3<unclosed, 0) = 0x1000",  # 12
            "munmap(0x7f0000000000, 4096) = 0",  # 13
        ]
    )
    log = parse_strace(text)
    assert [number for number, _ in log.unparsed] == [1, 3, 4, 5, 6, 7, 8, 9, 12]
    assert log.unparsed[1] == (3, "mmap(NULL, 4096, PROT_READ")
    assert [call.line for call in log.calls] == [2, 13]
    assert log.skipped == 1


def test_unparseable_files_raise() -> None:
    with pytest.raises(AlloctraceError, match="binary"):
        parse_strace("mmap(\x00\x01\x02")
    with pytest.raises(AlloctraceError, match="not an strace log"):
        parse_strace('{"kind":"header","format":"alloctrace"}\n{"kind":"footer"}\n', "t.jsonl")
    with pytest.raises(AlloctraceError, match="cannot read"):
        read_strace("/nonexistent/strace.log")
    assert parse_strace("").calls == []


def test_binary_file_raises(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.log"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(AlloctraceError, match=r"garbage\.log: binary"):
        read_strace(garbage)


def test_unfinished_and_resumed_merge_per_pid_in_order_of_entry() -> None:
    text = """\
[pid  101] 10:00:00.000001 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>
[pid  102] 10:00:00.000002 munmap(0x7f0000001000, 4096 <unfinished ...>
[pid  101] 10:00:00.000003 <... mmap resumed>) = 0x7f0000002000 <0.000002>
[pid  103] 10:00:00.000004 madvise(0x7f0000003000, 4096, MADV_FREE) = 0 <0.000001>
[pid  102] 10:00:00.000005 <... munmap resumed>) = -1 EINVAL (Invalid argument) <0.000003>
[pid  104] 10:00:00.000006 mprotect(0x7f0000004000, 4096, PROT_NONE <unfinished ...>
[pid  101] 10:00:00.000007 exit_group(0) = ?
[pid  104] 10:00:00.000008 <... mprotect resumed> <unfinished ...>) = ?
[pid  105] 10:00:00.000009 brk(NULL <unfinished ...>
[pid  104] 10:00:00.000010 +++ exited with 0 +++
"""  # noqa: E501 - strace's lines as they are
    log = parse_strace(text)
    assert log.unparsed == []
    assert [(c.line, c.pid, c.syscall) for c in log.calls] == [
        (1, 101, "mmap"),
        (2, 102, "munmap"),
        (4, 103, "madvise"),
        (6, 104, "mprotect"),
        (9, 105, "brk"),
    ]
    mmap, munmap, _, mprotect, brk = log.calls
    assert mmap.ts == pytest.approx(36000.000001)  # entry time, since midnight
    assert mmap.dur == pytest.approx(0.000002)
    assert mmap.result == 0x7F0000002000
    assert (munmap.result, munmap.errno) == (None, 22)
    assert (mprotect.prot, mprotect.result, mprotect.errno) == (0, None, None)  # never returned
    assert (brk.addr, brk.result, brk.errno) == (0, None, None)  # log ended while unfinished
    assert log.skipped == 1
    assert log.exits[104].status == 0


def test_note_inside_a_half_written_line() -> None:
    """Without -o, "strace: Process N attached" can cut a line in two."""
    text = """\
brk(NULL)                               = 0x55d000000000
strace: Process 8032 attached
[pid  8031] mmap(NULL, 8392704, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK, -1, 0) = 0x7f4217e4a000
[pid  8031] munmap(0x7f421983a000, 4096strace: Process 8033 attached
 <unfinished ...>
[pid  8033] mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f421983a000
[pid  8031] <... munmap resumed>)       = 0
[pid  8033] +++ exited with 0 +++
[pid  8032] +++ exited with 0 +++
munmap(0x7f4217e4a000, 4096)            = 0
+++ exited with 0 +++
"""  # noqa: E501
    log = parse_strace(text)
    assert log.unparsed == []
    assert [(c.line, c.pid, c.syscall, c.length) for c in log.calls] == [
        (1, 8031, "brk", None),  # before [pid N] appeared: the first process
        (3, 8031, "mmap", 8392704),
        (4, 8031, "munmap", 4096),
        (6, 8033, "mmap", 4096),
        (10, 8031, "munmap", 4096),  # the only process left
    ]
    assert log.calls[2].result == 0
    assert [note for _, note in log.notes] == [
        "strace: Process 8032 attached",
        "strace: Process 8033 attached",
    ]
    assert set(log.exits) == {8031, 8032, 8033}


def test_plain_pid_prefixes_and_epoch_timestamps() -> None:
    text = """\
8062  1795750570.832767 brk(NULL)       = 0x5565ec310000
8063  1795750570.833000 mmap(NULL, 4096, PROT_READ, MAP_SHARED, 3</tmp/a, b\\76(1).txt>(deleted), 0x1000) = 0x7f0000000000 <0.000010>
8063  1795750570.833100 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 4</dev/zero<char 1:5>>, 0) = 0x7f0000001000
8063  1795750570.833200 mmap(NULL, 4096, PROT_READ, MAP_SHARED, 5<UNIX-STREAM:[10539]>, 0) = -1 ENODEV (No such device)
8063  1795750570.876069 +++ exited with 0 +++
8062  1795750570.876436 +++ killed by SIGSEGV (core dumped) +++
"""  # noqa: E501
    log = parse_strace(text)
    assert log.unparsed == []
    brk, deleted, zero, socket = log.calls
    assert (brk.pid, brk.ts, brk.result) == (8062, 1795750570.832767, 0x5565EC310000)
    assert (deleted.pid, deleted.fd, deleted.offset) == (8063, 3, 0x1000)
    assert deleted.path == "/tmp/a, b>(1).txt (deleted)"
    assert zero.path == "/dev/zero"
    assert (socket.path, socket.errno) == ("UNIX-STREAM:[10539]", 19)
    assert log.exits[8062].signal == signal.SIGSEGV
    assert log.exits[8062].core


def test_other_spellings_strace_prints() -> None:
    text = """\
prctl(0x53564d41 /* PR_??? */, 0, 0x7f0000000000, 8192, 0x55d000001000) = 0
prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, 0x7f0000000000, 8192, "a \\"long\\", name"...) = 0
prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, 0x7f0000000000, 8192, NULL) = 0
prctl(PR_SET_NAME, "worker") = 0
mmap(NULL, 4096, 0x3 /* PROT_READ|PROT_WRITE */, 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, -1, 0) = 0x7f0000002000
mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory) (INJECTED)
mremap(0x7f0000000000, 4096, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, 0x7f0000100000) = 0x7f0000100000
madvise(0x7f0000000000, 4096, 0x66 /* MADV_??? */) = 0
munmap(0x7f0000000000, 4096) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)
brk(0xffffffffffff)                     = 0x55d000000000
--- SIGRT_2 {si_signo=SIGRT_2, si_code=SI_TKILL, si_pid=1, si_uid=0} ---
--- stopped by SIGSTOP ---
strace: Process 77 detached
"""  # noqa: E501
    log = parse_strace(text)
    assert log.unparsed == []
    assert log.skipped == 1  # PR_SET_NAME
    old, cut, cleared, verbose, injected, moved, guard, restarted, brk = log.calls
    assert (old.syscall, old.addr, old.length, old.name) == ("prctl", 0x7F0000000000, 8192, None)
    assert cut.name == 'a "long", name...'
    assert cleared.name is None
    assert (verbose.prot, verbose.flags) == (3, 0x22)
    assert (injected.result, injected.errno) == (None, 12)
    assert (moved.flags, moved.new_addr, moved.new_length) == (3, 0x7F0000100000, 8192)
    assert guard.advice == flags.MADV_GUARD_INSTALL
    assert (restarted.result, restarted.errno) == (None, 512)
    assert brk.result == 0x55D000000000  # brk returns the old break when it cannot move it
    assert [(s.signal, s.name) for s in log.signals] == [(34, "SIGRT_2")]
    assert len(log.notes) == 2


def test_stack_lines() -> None:
    text = """\
mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000
 > /usr/lib/x86_64-linux-gnu/libc.so.6(__mmap+0x26) [0xf4a26]
 > /usr/lib/libstdc++.so.6(std::vector<int, std::allocator<int> >::_M_fill(unsigned long, int const&)+0x41) [0x9a041]
 > /tmp/gone (deleted)(main+0x2d) [0x1153]
 > /tmp/a.out() [0x10e5]
 > /tmp/b.out(f+0x1) [0x11] b.c:12
 > unexpected_backtracing_error [0x7f0000001234]
 > too many stack frames
getpid() = 5
 > /usr/lib/x86_64-linux-gnu/libc.so.6(getpid+0x7) [0xe9a07]
"""  # noqa: E501
    log = parse_strace(text)
    assert log.unparsed == []
    assert log.skipped == 1
    (call,) = log.calls
    assert call.frames == (
        StraceFrame("/usr/lib/x86_64-linux-gnu/libc.so.6", "__mmap", 0x26, 0xF4A26),
        StraceFrame(
            "/usr/lib/libstdc++.so.6",
            "std::vector<int, std::allocator<int> >::_M_fill(unsigned long, int const&)",
            0x41,
            0x9A041,
        ),
        StraceFrame("/tmp/gone (deleted)", "main", 0x2D, 0x1153),
        StraceFrame("/tmp/a.out", None, None, 0x10E5),
        StraceFrame("/tmp/b.out", "f", 0x1, 0x11, source="b.c:12"),
        StraceFrame(None, None, None, 0x7F0000001234, error="unexpected_backtracing_error"),
        StraceFrame(None, None, None, None, error="too many stack frames"),
    )


def test_exec_in_a_thread_moves_the_pending_call() -> None:
    log = read_strace(DATA / "exec-in-a-thread.log")
    assert log.unparsed == []
    assert [(c.pid, c.length) for c in log.calls] == [(9399, 8392704), (9400, 4096), (9399, 8192)]
    assert log.skipped == 1
    assert list(log.exits) == [9399]
    # It returns on a line without a pid, in the leader's pid: the one process left.
    assert log.execs == [StraceExec(6, 9399, None, "execve", "/bin/true", ("/bin/true",))]


def test_spawns_and_execs() -> None:
    """-f -o FILE -ttt: plain pid prefixes; calls split in two; failed and unfinished ones."""
    text = """\
100 1700000000.000001 execve("/bin/prog", ["prog", "a\\"b", "long"...], 0x7ffd /* 3 vars */) = 0
100 1700000000.000002 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, child_tid=0x7f0000000990, parent_tid=0x7f0000000990, exit_signal=0, stack=0x7f0000000000, stack_size=0x7fff80, tls=0x7f00000006c0} <unfinished ...>
101 1700000000.000003 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000100000
100 1700000000.000004 <... clone3 resumed> => {parent_tid=[101]}, 88) = 101 <0.000002>
100 1700000000.000005 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f0000000a10) = 102
100 1700000000.000006 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f0000000a10) = -1 EAGAIN (Resource temporarily unavailable)
102 1700000000.000007 execve("/bin/missing", ["missing"], 0x7ffd /* 3 vars */) = -1 ENOENT (No such file or directory)
102 1700000000.000008 execve("/bin/true", ["true"], 0x7ffd /* 3 vars */ <unfinished ...>
100 1700000000.000009 vfork( <unfinished ...>
102 1700000000.000010 <... execve resumed>) = 0
103 1700000000.000011 execve("/bin/never", ["never"], 0x7ffd /* 3 vars */ <unfinished ...>
100 1700000000.000012 <... vfork resumed>) = 103
103 1700000000.000013 +++ killed by SIGKILL +++
102 1700000000.000014 +++ exited with 0 +++
100 1700000000.000015 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=102, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---
100 1700000000.000016 fork() = 104
101 1700000000.000017 +++ exited with 0 +++
100 1700000000.000018 +++ exited with 0 +++
"""  # noqa: E501
    log = parse_strace(text)
    assert log.unparsed == []
    assert log.spawns == [  # in order of entry
        StraceSpawn(2, 100, 1700000000.000002, "clone3", 101, thread=True, sigchld=False),
        StraceSpawn(5, 100, 1700000000.000005, "clone", 102, thread=False, sigchld=True),
        StraceSpawn(9, 100, 1700000000.000009, "vfork", 103, thread=False, sigchld=True),
        StraceSpawn(16, 100, 1700000000.000016, "fork", 104, thread=False, sigchld=True),
    ]
    assert log.execs == [  # where they returned; the failed and the unfinished one are not
        StraceExec(1, 100, 1700000000.000001, "execve", "/bin/prog", ("prog", 'a"b', "long...")),
        StraceExec(10, 102, 1700000000.00001, "execve", "/bin/true", ("true",)),
    ]
    assert [(c.line, c.pid) for c in log.calls] == [(3, 101)]
    assert log.skipped == 9  # every execve, clone, clone3, vfork and fork
    assert set(log.exits) == {100, 101, 102, 103}
    assert [s.name for s in log.signals] == ["SIGCHLD"]


def test_spawns_without_o() -> None:
    """On stderr strace's notes cut the clone line; pids are printed only with two processes."""
    text = """\
execve("/bin/forkexec", ["forkexec"], 0x7ffd /* 3 vars */) = 0
clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLDstrace: Process 201 attached
 <unfinished ...>
[pid   201] execve("/bin/true", ["true"], 0x7ffd /* 3 vars */ <unfinished ...>
[pid   200] <... clone resumed>, child_tidptr=0x7f0000000a10) = 201
[pid   201] <... execve resumed>) = 0
[pid   201] +++ exited with 0 +++
--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=201, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---
clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, child_tid=0x7f0000000990, parent_tid=0x7f0000000990, exit_signal=0, stack=0x7f0000000000, stack_size=0x7fff80, tls=0x7f00000006c0}strace: Process 202 attached
 => {parent_tid=[202]}, 88) = 202
[pid   202] +++ exited with 0 +++
+++ exited with 0 +++
"""  # noqa: E501
    log = parse_strace(text)
    assert log.unparsed == []
    assert log.spawns == [
        StraceSpawn(2, 200, None, "clone", 201, thread=False, sigchld=True),
        StraceSpawn(9, 200, None, "clone3", 202, thread=True, sigchld=False),
    ]
    assert log.execs == [
        StraceExec(1, 200, None, "execve", "/bin/forkexec", ("forkexec",)),
        StraceExec(6, 201, None, "execve", "/bin/true", ("true",)),
    ]
    assert set(log.exits) == {200, 201, 202}
