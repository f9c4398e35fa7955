"""Robustness (docs/robustness.md): attach and detach, signals, interruption, hostile programs
and bad input. Every case checks the process table afterwards: nothing alloctrace traced is
left stopped or running.

alloctrace runs as a user runs it (a subprocess, in a session of its own, so that whatever it
leaves behind can be found by session id). Programs to attach to are started by the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import alloctrace
from alloctrace.api import Trace
from tests.helpers import FIXTURES, ROOT, fixture, parse_reports, record, syscalls_of
from tracer import procfs
from tracer.errors import AlloctraceError
from tracer.recording import machine_facts
from tracer.records import FORMAT_NAME, FORMAT_VERSION, Exec, Exit, Header, Memory, Spawn
from tracer.session import Session, TraceOptions
from tracer.stacks import StackTable
from tracer.traceformat import TraceWriter

ALLOCTRACE = [sys.executable, "-m", "alloctrace"]
ROOT_USER = os.geteuid() == 0


# -- running alloctrace and watching the process table --


class Lines:
    """A pipe read line by line in the background, so a test can wait for a line."""

    def __init__(self, stream: object) -> None:
        self.text: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        with stream:  # type: ignore[attr-defined]
            for line in stream:  # type: ignore[attr-defined]
                self.text.append(line)
                self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, needle: str, timeout: float = 30) -> str:
        """The first line (from now on) containing ``needle``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line with {needle!r} in {''.join(self.text)!r}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"EOF before {needle!r}: {''.join(self.text)!r}")
            if needle in line:
                return line

    def all(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.text)


@dataclass
class Result:
    code: int
    stderr: str
    trace: Trace | None
    session: int  # alloctrace's session id: every process it started is in it

    def reports(self, name: str | None = None) -> list[dict[str, str]]:
        return parse_reports(self.stderr, name)


class Alloctrace:
    """One alloctrace command run as a user would, in its own session."""

    def __init__(self, *args: str, cwd: Path | None = None, prefix: list[str] | None = None):
        self.proc = subprocess.Popen(
            [*(prefix or []), *ALLOCTRACE, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            cwd=cwd,
            start_new_session=True,
        )
        self.stderr = Lines(self.proc.stderr)

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def finish(self, output: Path | None = None, timeout: float = 90) -> Result:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        trace = alloctrace.load(output) if output is not None and output.exists() else None
        result = Result(code, self.stderr.all(), trace, self.proc.pid)
        assert_nothing_left(result.session)
        return result


def run(tmp_path: Path, *argv: str, options: tuple[str, ...] = ("--no-stacks",)) -> Result:
    """``alloctrace record`` of ``argv`` to the end."""
    out = tmp_path / "trace.jsonl"
    return Alloctrace("record", "-o", str(out), *options, "--", *argv).finish(out)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[3])


def _processes() -> Iterator[tuple[int, str, int]]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                yield int(name), info[0], info[1]


def assert_nothing_left(session: int | None = None, pids: tuple[int, ...] = ()) -> None:
    """No live process of alloctrace's session or among ``pids`` (zombies of orphans reparented
    to an init that does not reap do not count), and no thread anywhere stopped for a tracer
    that no longer exists."""
    deadline = time.monotonic() + 5
    while True:
        left = [
            (pid, state)
            for pid, state, sid in _processes()
            if state != "Z" and ((session is not None and sid == session) or pid in pids)
        ]
        orphaned = [
            pid
            for pid, state, _ in _processes()
            if state == "t" and not Path(f"/proc/{procfs.tracer_of(pid) or 0}").exists()
        ]
        if not left and not orphaned:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: {left}, stopped without a tracer: {orphaned}")
        time.sleep(0.05)


def assert_untraced_and_running(pid: int) -> None:
    """A process alloctrace detached from: no tracer, not stopped."""
    assert procfs.tracer_of(pid) == 0
    for tid in procfs.tasks(pid):
        assert procfs.tracer_of(tid) == 0, f"thread {tid} is still traced"
        assert procfs.state(tid) not in ("t", "T"), f"thread {tid} is stopped"


def assert_longrun_finishes_its_work(target: Target) -> None:
    """longrun, ended the friendly way: exit status 0, and its own check of its work passed."""
    code, reports = target.finish()
    assert code == 0
    (done,) = [r for r in parse_reports(reports, "longrun") if "done" in r]
    assert done["failed"] == "0"


def footer_of(result: Result) -> tuple[str, int | None, int | None]:
    assert result.trace is not None, result.stderr
    assert result.trace.footer is not None, "the trace has its footer"
    footer = result.trace.footer
    return footer.outcome, footer.status, footer.signal


def one_error_line(result: Result, needle: str) -> None:
    """Exit status 2, one ``alloctrace:`` line on stderr saying ``needle``, no traceback."""
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("alloctrace: "), result.stderr
    assert needle in lines[0], lines[0]


class Target:
    """A program the test starts, for alloctrace to attach to (longrun: SIGUSR1 ends it)."""

    def __init__(self, *argv: str, user: int | None = None) -> None:
        prefix = (
            []
            if user is None
            else ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        )
        self.proc = subprocess.Popen(
            [*prefix, *argv], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.stderr = Lines(self.proc.stderr)
        self.pid = self.proc.pid

    def finish(self) -> tuple[int, str]:
        """End it the friendly way (SIGUSR1) and return its status and reports."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGUSR1)
        return self.proc.wait(timeout=30), self.stderr.all()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.stderr.all()


@pytest.fixture
def targets() -> Iterator[list[Target]]:
    started: list[Target] = []
    yield started
    for target in started:
        target.kill()


def _switches(pid: int) -> int:
    """Context switches of a process's threads: they grow while it runs, not while stopped."""
    total = 0
    for tid in procfs.tasks(pid):
        info = procfs.status(tid)
        total += int(info.get("voluntary_ctxt_switches", "0"))
        total += int(info.get("nonvoluntary_ctxt_switches", "0"))
    return total


def _stays_stopped(pid: int) -> bool:
    before = _switches(pid)
    time.sleep(0.15)
    return _switches(pid) == before and all(procfs.state(t) in "tT" for t in procfs.tasks(pid))


def _wait_state(pid: int, states: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while procfs.state(pid) not in states:
        assert time.monotonic() < deadline, f"{pid} is {procfs.state(pid)!r}, not in {states!r}"
        time.sleep(0.01)


def _wait_tracer(pid: int, tracer: int, timeout: float = 10) -> None:
    """Until ``pid``'s TracerPid is ``tracer`` (0: none)."""
    deadline = time.monotonic() + timeout
    while procfs.tracer_of(pid) != tracer:
        assert time.monotonic() < deadline, f"{pid} is traced by {procfs.tracer_of(pid)}"
        time.sleep(0.02)


def _wait_for_events(path: Path, count: int = 50, timeout: float = 20) -> None:
    """Until the trace being written (its .partial file) has ``count`` lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for partial in path.parent.glob(f".{path.name}.*.partial"):
            with contextlib.suppress(OSError), open(partial, "rb") as handle:
                if handle.read().count(b"\n") >= count:
                    return
        time.sleep(0.02)
    raise AssertionError("the trace did not grow")


# -- 1. attach --


def test_attach_traces_every_thread_then_detaches_leaving_it_unharmed(
    tmp_path: Path, targets: list[Target]
) -> None:
    """4 busy workers plus a thread created and joined every millisecond (threads appear while
    alloctrace attaches); SIGINT detaches; the program then finishes its work and checks it."""
    target = Target(fixture("longrun"), "60", "4", "1")
    targets.append(target)
    target.stderr.wait_for("ready=1")
    workers = {
        int(r["tid"]) for r in parse_reports("".join(target.stderr.text), "longrun") if "tid" in r
    }
    out = tmp_path / "attached.jsonl"
    tracer = Alloctrace("record", "--pid", str(target.pid), "-o", str(out))
    _wait_for_events(out, 400)
    tracer.signal(signal.SIGINT)
    result = tracer.finish(out)
    assert result.code == 0, result.stderr
    assert footer_of(result)[0] == "detached"
    assert result.trace is not None and result.trace.header.attached
    assert result.trace.header.argv == [fixture("longrun"), "60", "4", "1"]
    assert "detached" in result.stderr
    assert_untraced_and_running(target.pid)
    traced = {e.tid for e in syscalls_of(result.trace)}
    assert workers <= traced, "every thread that existed at attach time is traced"
    assert {e.syscall for e in syscalls_of(result.trace)} >= {"mmap", "munmap"}
    spawned = [e for e in result.trace.records if isinstance(e, Spawn) and e.how == "thread"]
    assert spawned, "threads created while traced are followed"
    assert any(e.stack is not None for e in syscalls_of(result.trace)), "stacks when attached"
    assert_longrun_finishes_its_work(target)


def test_alloctrace_killed_while_attached_leaves_the_program_running_unharmed(
    tmp_path: Path, targets: list[Target]
) -> None:
    """SIGKILL cannot be handled: the kernel detaches every thread (a thread held in a
    syscall-stop goes on); the program finishes its work and the trace so far stays readable."""
    target = Target(fixture("longrun"), "60", "4", "1")
    targets.append(target)
    target.stderr.wait_for("ready=1")
    out = tmp_path / "attached.jsonl"
    tracer = Alloctrace("record", "--no-stacks", "--pid", str(target.pid), "-o", str(out))
    _wait_for_events(out, 400)
    tracer.signal(signal.SIGKILL)
    assert tracer.proc.wait(timeout=30) == -signal.SIGKILL
    _wait_tracer(target.pid, 0)  # the kernel detaches it as alloctrace dies
    assert_untraced_and_running(target.pid)
    (partial,) = tmp_path.glob(".attached.jsonl.*.partial")
    trace = alloctrace.load(partial)
    assert not trace.complete and len(list(trace.syscalls())) >= 300
    assert_longrun_finishes_its_work(target)


def test_detach_gives_up_on_a_thread_that_cannot_stop_and_the_kernel_releases_it(
    tmp_path: Path, targets: list[Target]
) -> None:
    """A vfork parent waits in the kernel until its child is gone, and no ptrace request stops
    it there. On SIGINT alloctrace detaches the child, gives up on the parent when its cleanup
    time is over (long before the child's 60 s end), says so, and exits; the kernel then
    releases the parent, which finishes its work untraced."""
    target = Target(fixture("vforkhold"), "60")
    targets.append(target)
    target.stderr.wait_for("ready=1")
    out = tmp_path / "held.jsonl"
    tracer = Alloctrace("record", "--no-stacks", "--pid", str(target.pid), "-o", str(out))
    _wait_tracer(target.pid, tracer.proc.pid, timeout=20)
    os.kill(target.pid, signal.SIGUSR1)
    child = int(target.stderr.wait_for("child=").split("child=")[1].split()[0])
    _wait_state(target.pid, "D")  # in the kernel's vfork wait
    tracer.signal(signal.SIGINT)
    result = tracer.finish(out)
    assert result.code == 0, result.stderr
    assert procfs.state(child) not in ("", "Z", "X"), "alloctrace did not wait for the child"
    assert f"could not detach from threads [{target.pid}]" in result.stderr
    assert footer_of(result)[0] == "detached"
    assert result.trace is not None and result.trace.footer is not None
    message = result.trace.footer.message or ""
    assert f"threads [{target.pid}] were not detached in time" in message
    assert procfs.tracer_of(target.pid) == 0 and procfs.tracer_of(child) == 0
    os.kill(child, signal.SIGKILL)  # the parent's vfork wait ends; it reports and exits
    assert target.proc.wait(timeout=30) == 0
    (done,) = [r for r in parse_reports(target.stderr.all(), "vforkhold") if "done" in r]
    assert done["status"] == "-1"  # the child was killed, not exited


def test_attach_traces_until_the_process_exits(tmp_path: Path, targets: list[Target]) -> None:
    target = Target(fixture("longrun"), "3", "2")
    targets.append(target)
    target.stderr.wait_for("ready=1")
    out = tmp_path / "t.jsonl"
    result = Alloctrace("record", "--no-stacks", "--pid", str(target.pid), "-o", str(out)).finish(
        out
    )
    assert result.code == 0, result.stderr
    assert footer_of(result) == ("exited", 0, None)
    assert target.proc.wait(timeout=10) == 0, "its parent still gets its exit status"
    assert any(isinstance(e, Memory) for e in result.trace.records)  # type: ignore[union-attr]


def test_attach_keeps_job_control_and_detach_leaves_a_stopped_process_stopped(
    tmp_path: Path, targets: list[Target]
) -> None:
    target = Target(fixture("longrun"), "60", "2")
    targets.append(target)
    target.stderr.wait_for("ready=1")
    os.kill(target.pid, signal.SIGSTOP)
    _wait_state(target.pid, "T")
    out = tmp_path / "t.jsonl"
    tracer = Alloctrace("record", "--no-stacks", "--pid", str(target.pid), "-o", str(out))
    _wait_for_events(out, 1)
    time.sleep(0.3)  # attached (seized and interrupted) by now
    assert _stays_stopped(target.pid), "attaching does not wake a stopped process"
    os.kill(target.pid, signal.SIGCONT)
    _wait_for_events(out, 200)
    assert not _stays_stopped(target.pid)
    os.kill(target.pid, signal.SIGSTOP)
    time.sleep(0.1)
    assert _stays_stopped(target.pid), "SIGSTOP stops a traced process (PTRACE_LISTEN)"
    tracer.signal(signal.SIGTERM)
    result = tracer.finish(out)
    assert result.code == 0 and footer_of(result)[0] == "detached", result.stderr
    assert procfs.tracer_of(target.pid) == 0
    assert procfs.state(target.pid) == "T", "it is still stopped, as without alloctrace"
    assert _stays_stopped(target.pid)
    os.kill(target.pid, signal.SIGCONT)
    code, _ = target.finish()
    assert code == 0


def test_default_command_attaches_with_pid_and_reports(
    tmp_path: Path, targets: list[Target]
) -> None:
    target = Target(fixture("longrun"), "60", "2")
    targets.append(target)
    target.stderr.wait_for("ready=1")
    one_error_line(
        Alloctrace("--allocator", "jemalloc", "--pid", str(target.pid)).finish(),
        "--allocator applies to a program alloctrace starts",
    )
    out = tmp_path / "t.jsonl"
    tracer = Alloctrace("--pid", str(target.pid), "--no-stacks", "-o", str(out))
    _wait_for_events(out, 100)
    tracer.signal(signal.SIGINT)
    result = tracer.finish(out)
    assert result.code == 0, result.stderr
    assert footer_of(result)[0] == "detached"
    assert "alloctrace report" in result.stderr, "the default command reports"
    assert_untraced_and_running(target.pid)
    assert target.finish()[0] == 0


def _unused_pid() -> int:
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    while Path(f"/proc/{pid}").exists():
        pid -= 1
    return pid


def test_attach_errors_are_one_line(tmp_path: Path, targets: list[Target]) -> None:
    out = tmp_path / "t.jsonl"
    one_error_line(
        Alloctrace("record", "--pid", str(_unused_pid()), "-o", str(out)).finish(), "no process"
    )
    one_error_line(
        Alloctrace("record", "--pid", "1", "-o", str(out), "--", fixture("seed")).finish(),
        "not both",
    )
    one_error_line(Alloctrace("record", "-o", str(out)).finish(), "no program given")
    if procfs.status(2).get("Name") == "kthreadd":
        one_error_line(Alloctrace("record", "--pid", "2").finish(), "kernel thread")
    # $$ is the shell's pid, which exec makes alloctrace's
    itself = Alloctrace(
        prefix=["sh", "-c", 'exec "$0" -m alloctrace record --pid $$', sys.executable]
    )
    one_error_line(itself.finish(), "cannot trace itself")
    zombie = subprocess.Popen([fixture("exitcode")], stderr=subprocess.DEVNULL)
    try:
        _wait_state(zombie.pid, "Z")
        one_error_line(Alloctrace("record", "--pid", str(zombie.pid)).finish(), "has exited")
    finally:
        zombie.wait()
    assert not out.exists()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_attach_to_a_process_already_traced_says_by_whom(tmp_path: Path) -> None:
    strace = subprocess.Popen(
        ["strace", "-f", "-o", "/dev/null", fixture("longrun"), "30"],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = Lines(strace.stderr)
    pid = 0
    try:
        pid = int(parse_reports(lines.wait_for("ready=1"))[0]["pid"])
        result = Alloctrace("record", "--pid", str(pid), "-o", str(tmp_path / "t.jsonl")).finish()
        one_error_line(result, f"already traced by process {strace.pid} (strace)")
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
        strace.terminate()
        strace.wait(timeout=30)
        lines.all()


@pytest.mark.skipif(not ROOT_USER, reason="needs root to run a process as another user")
def test_attach_without_cap_sys_ptrace_explains(tmp_path: Path, targets: list[Target]) -> None:
    """Another user's process, and CAP_SYS_PTRACE dropped: EPERM, explained."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    target = Target(fixture("longrun"), "30", user=65534)
    targets.append(target)
    target.stderr.wait_for("ready=1")
    drop = ["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace"]
    result = Alloctrace("record", "--pid", str(target.pid), prefix=drop).finish()
    one_error_line(
        result, "belongs to another user (uid 65534): tracing it needs root or CAP_SYS_PTRACE"
    )
    assert_untraced_and_running(target.pid)


# -- 2. signals --


def test_program_signals_and_job_control_are_as_without_alloctrace(tmp_path: Path) -> None:
    """Handlers, siginfo, blocked signals, a timer; SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU stop a child
    that stays stopped until SIGCONT, and its parent sees both with waitpid."""
    plain = subprocess.run(
        [fixture("jobcontrol")], check=False, capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == 0, plain.stderr
    traced = run(tmp_path, fixture("jobcontrol"))
    assert traced.code == 0, traced.stderr

    def facts(text: str) -> list[dict[str, str]]:
        return [
            {k: v for k, v in r.items() if k != "child"} for r in parse_reports(text, "jobcontrol")
        ]

    assert facts(traced.stderr) == facts(plain.stderr)
    assert facts(plain.stderr)[0] == {
        "fixture": "jobcontrol",
        "usr1": "1",
        "value": "1234",
        "code": "-1",
        "usr2": "1",
        "pending": "1",
        "alrm": "1",
    }
    assert all(r.get("stayed", "1") == "1" for r in facts(traced.stderr))


def test_program_gets_default_sigpipe_not_pythons_ignore(tmp_path: Path) -> None:
    result = run(tmp_path, "/bin/sh", "-c", "kill -PIPE $$; exit 0")
    assert result.code == 128 + signal.SIGPIPE, result.stderr
    assert footer_of(result) == ("killed", None, signal.SIGPIPE)


@pytest.mark.skipif(shutil.which("nohup") is None, reason="nohup is not installed")
def test_under_nohup_sighup_stays_ignored(tmp_path: Path) -> None:
    """A signal ignored when alloctrace starts stays ignored, for alloctrace and the program."""
    out = tmp_path / "t.jsonl"
    tracer = Alloctrace(
        "record", "--no-stacks", "-o", str(out), "--", fixture("longrun"), "60", prefix=["nohup"]
    )
    pid = int(parse_reports(tracer.stderr.wait_for("ready=1"))[0]["pid"])
    tracer.signal(signal.SIGHUP)
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.3)
    assert tracer.proc.poll() is None and procfs.state(pid) not in ("", "Z")
    tracer.signal(signal.SIGINT)
    result = tracer.finish(out)
    assert result.code == 128 + signal.SIGINT
    assert footer_of(result)[0] == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_to_alloctrace_kills_the_program_and_finishes_the_trace(
    tmp_path: Path, signum: int
) -> None:
    out = tmp_path / "t.jsonl"
    tracer = Alloctrace("record", "-o", str(out), "--", fixture("longrun"), "60", "2")
    pid = int(parse_reports(tracer.stderr.wait_for("ready=1"))[0]["pid"])
    tracer.signal(signum)
    result = tracer.finish(out)
    assert result.code == 128 + signum
    outcome, _, _ = footer_of(result)
    assert outcome == "interrupted"
    assert result.trace is not None and result.trace.footer is not None
    assert signal.Signals(signum).name in (result.trace.footer.message or "")
    assert_nothing_left(pids=(pid,))
    exits = {e.tid for e in result.trace.records if isinstance(e, Exit)}
    assert pid in exits, "the killed program's end is recorded"


def test_signal_while_starting_is_acted_on_once_the_program_runs(tmp_path: Path) -> None:
    """In-process: a SIGTERM that arrives between fork and the loop is not lost."""
    out = tmp_path / "t.jsonl"
    writer = TraceWriter(out, _header())
    session = Session(writer, TraceOptions(stacks=False), notify=lambda _message: None)
    with session.handling_signals():
        pid = session.spawn([fixture("longrun"), "60"], dict(os.environ))
        os.kill(os.getpid(), signal.SIGTERM)  # only noted: the loop has not started
        time.sleep(0.05)
        outcome = session.run()
    assert outcome.footer.outcome == "interrupted"
    assert outcome.exit_code == 128 + signal.SIGTERM
    assert alloctrace.load(out).complete
    assert_nothing_left(pids=(pid,))


@pytest.mark.parametrize("attached", [False, True], ids=["started", "attached"])
def test_signal_mid_stop_leaves_no_tracee_stopped(
    tmp_path: Path, targets: list[Target], attached: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: alloctrace is interrupted while the loop holds a thread in a syscall stop it
    has taken and not resumed, and while a signal for the program waits in its stop; the program
    is killed (or detached, and then gets that signal: SIGUSR1 makes longrun finish). With
    stacks on and no walks shared with the C loop, it hands every memory syscall's exit stop to
    Python unresumed."""
    out = tmp_path / "t.jsonl"
    writer = TraceWriter(out, _header())
    stacks = StackTable(writer)
    monkeypatch.setattr(stacks, "share", lambda fast: None)
    session = Session(writer, TraceOptions(), stacks, notify=lambda _message: None)
    target = None
    if attached:
        target = Target(fixture("longrun"), "60", "3")
        targets.append(target)
        target.stderr.wait_for("ready=1")
    stops = Counter[str]()
    original_unfiltered = session._on_syscall_stop_unfiltered
    original_exit = session._record_exit
    original_other = session._on_other_stop

    def interrupt_at_stop(kind: str) -> None:
        stops[kind] += 1
        if stops[kind] == 200 and target is not None:
            os.kill(target.pid, signal.SIGUSR1)  # a signal on its way: a signal-delivery stop
        if stops[kind] == 300:
            os.kill(os.getpid(), signal.SIGINT)  # handled right here, before the resume
            time.sleep(0.01)

    def unfiltered(thread: object) -> None:
        interrupt_at_stop("syscall")
        original_unfiltered(thread)  # type: ignore[arg-type]

    def exit_stop(thread: object) -> None:
        interrupt_at_stop("syscall")
        original_exit(thread)  # type: ignore[arg-type]

    def other(tid: int, status: int) -> None:
        if target is not None and os.WSTOPSIG(status) == signal.SIGUSR1 and status >> 16 == 0:
            os.kill(os.getpid(), signal.SIGINT)  # interrupted holding the signal's stop
            time.sleep(0.01)
        original_other(tid, status)

    session._on_syscall_stop_unfiltered = unfiltered  # type: ignore[method-assign]
    session._record_exit = exit_stop  # type: ignore[method-assign]
    session._on_other_stop = other  # type: ignore[method-assign]
    with session.handling_signals():
        if target is not None:
            session.attach(target.pid)
            pids: tuple[int, ...] = ()
        else:
            pids = (session.spawn([fixture("longrun"), "60", "3"], dict(os.environ)),)
        outcome = session.run()
    stacks.close()
    assert outcome.footer.outcome == ("detached" if attached else "interrupted")
    assert alloctrace.load(out).complete
    if target is not None:
        assert session.undetached == []
        code, reports = target.proc.wait(timeout=30), target.stderr.all()
        assert code == 0, "the SIGUSR1 held in the stop was delivered at detach"
        assert "done=1" in reports
    else:
        assert_nothing_left(pids=pids)


def _header() -> Header:
    return Header(FORMAT_NAME, FORMAT_VERSION, "p", ["p"], machine=machine_facts())


# -- 3. hostile programs --


def test_exec_from_a_thread_takes_the_leader_tid(tmp_path: Path) -> None:
    result = run(tmp_path, fixture("execthread"))
    assert result.code == 0, result.stderr
    first, second = result.reports("execthread")
    pid, exec_tid = int(first["pid"]), int(first["exec_tid"])
    assert exec_tid != pid
    assert (int(second["pid"]), int(second["tid"])) == (pid, pid)
    assert result.trace is not None
    execs = [e for e in result.trace.records if isinstance(e, Exec)]
    assert [(e.pid, e.tid, e.former_tid) for e in execs] == [(pid, pid, None), (pid, pid, exec_tid)]
    after = [e for e in syscalls_of(result.trace) if e.seq > execs[1].seq]
    assert {e.tid for e in after} == {pid}
    assert any(e.syscall == "mmap" and e.length == 8192 for e in after)
    assert footer_of(result) == ("exited", 0, None)


@pytest.mark.parametrize("attempt", range(3))
def test_threads_killed_while_stopped_at_syscalls(tmp_path: Path, attempt: int) -> None:
    """_exit(3) while 8 threads sit in the tracer's stops: every thread's end is recorded."""
    del attempt
    result = run(tmp_path, fixture("exitrace"), "8")
    assert result.code == 3, result.stderr
    assert footer_of(result) == ("exited", 3, None)
    tids = {int(r["tid"]) for r in result.reports("exitrace") if "tid" in r}
    assert result.trace is not None
    exits = {e.tid for e in result.trace.records if isinstance(e, Exit)}
    assert tids <= exits


def test_leader_exits_before_its_threads(tmp_path: Path) -> None:
    """main() calls pthread_exit: the leader is a zombie while the workers run (and call exit,
    where the phase breakpoint must be handled through a live thread)."""
    result = run(tmp_path, fixture("exitrace"), "4", "leader")
    assert result.code == 0, result.stderr
    assert footer_of(result) == ("exited", 0, None)
    pid = int(next(r["pid"] for r in result.reports("exitrace") if "pid" in r))
    assert result.trace is not None
    per_tid = Counter(e.tid for e in syscalls_of(result.trace) if e.length == 4096)
    tids = {int(r["tid"]) for r in result.reports("exitrace") if "tid" in r}
    assert all(per_tid[t] >= 400 for t in tids), "200 mmap + 200 munmap per worker"
    assert [e.tid for e in result.trace.records if isinstance(e, Exit)][-1] == pid


def test_attach_to_a_process_whose_leader_has_exited(tmp_path: Path, targets: list[Target]) -> None:
    target = Target(fixture("exitrace"), "3", "leader", "0")
    targets.append(target)
    workers = {int(target.stderr.wait_for("tid=").split("tid=")[1]) for _ in range(3)}
    _wait_state(target.pid, "Z")
    out = tmp_path / "t.jsonl"
    tracer = Alloctrace("record", "--no-stacks", "--pid", str(target.pid), "-o", str(out))
    _wait_for_events(out, 300)
    tracer.signal(signal.SIGINT)
    result = tracer.finish(out)
    assert result.code == 0 and footer_of(result)[0] == "detached", result.stderr
    assert {e.tid for e in syscalls_of(result.trace)} == workers
    for tid in workers:
        assert procfs.tracer_of(tid) == 0 and procfs.state(tid) not in ("t", "T")


def test_vfork_children(tmp_path: Path) -> None:
    result = run(tmp_path, fixture("vforkexec"))
    assert result.code == 0, result.stderr
    (report,) = result.reports("vforkexec")
    assert (report["status"], report["status2"]) == ("5", "6")
    child, child2 = int(report["child"]), int(report["child2"])
    assert result.trace is not None
    spawns = [(e.pid, e.how) for e in result.trace.records if isinstance(e, Spawn)]
    assert spawns == [(child, "vfork"), (child2, "vfork")]
    execs = [e for e in result.trace.records if isinstance(e, Exec) and e.pid == child]
    assert len(execs) == 1 and execs[0].path.endswith("/exitcode")
    exits = {
        e.pid: e.status for e in result.trace.records if isinstance(e, Exit) and e.tid == e.pid
    }
    assert (exits[child], exits[child2]) == (5, 6)


def test_double_fork_daemon_is_traced_until_it_ends(tmp_path: Path) -> None:
    result = run(tmp_path, fixture("daemon"), "300")
    assert result.code == 0, result.stderr
    roles = {r["role"]: r for r in result.reports("daemon")}
    parent, daemon = int(roles["parent"]["pid"]), int(roles["daemon"]["pid"])
    assert "goes on tracing" in result.stderr, "the user is told why alloctrace did not end"
    assert result.trace is not None
    parent_exit = next(
        e.seq for e in result.trace.records if isinstance(e, Exit) and e.tid == parent
    )
    calls = [e for e in syscalls_of(result.trace) if e.pid == daemon and e.length == 7 * 4096]
    assert [(e.syscall, e.seq > parent_exit) for e in calls] == [("mmap", True), ("munmap", True)]
    assert calls[0].result == int(roles["daemon"]["mmap"], 16)
    assert footer_of(result) == ("exited", 0, None)
    assert_nothing_left(pids=(daemon,))


def test_interrupt_kills_the_daemon_left_running(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    tracer = Alloctrace("record", "--no-stacks", "-o", str(out), "--", fixture("daemon"), "60000")
    daemon = int(parse_reports(tracer.stderr.wait_for("role=child"))[0]["daemon"])
    tracer.stderr.wait_for("goes on tracing")
    tracer.signal(signal.SIGINT)
    result = tracer.finish(out)
    assert result.code == 128 + signal.SIGINT
    assert footer_of(result) == ("interrupted", 0, None), "the program itself had exited 0"
    assert_nothing_left(pids=(daemon,))


def test_a_thousand_short_lived_threads(tmp_path: Path) -> None:
    result = run(tmp_path, fixture("manythreads"), "1000")
    assert result.code == 0, result.stderr
    assert result.trace is not None
    threads = {e.tid for e in result.trace.records if isinstance(e, Spawn) and e.how == "thread"}
    assert len(threads) == 1000
    ended = {e.tid for e in result.trace.records if isinstance(e, Exit)}
    assert threads <= ended
    own = [e for e in syscalls_of(result.trace) if e.length == 3 * 4096 and e.tid in threads]
    assert Counter(e.syscall for e in own) == {"mmap": 1000, "munmap": 1000}
    assert {e.tid for e in own} == threads, "each thread's own call is on its own tid"


def test_running_out_of_address_space_is_recorded_as_enomem(tmp_path: Path) -> None:
    result = run(tmp_path, fixture("addrspace"), "64")
    assert result.code == 0, result.stderr
    (report,) = result.reports("addrspace")
    assert report["errno"] == "12"
    blocks = [e for e in syscalls_of(result.trace) if e.syscall == "mmap" and e.length == 1 << 20]
    assert [e.errno for e in blocks] == [None] * int(report["maps"]) + [12]
    assert blocks[-1].result is None


@pytest.mark.parametrize("stopped_first", [False, True], ids=["running", "group-stopped"])
def test_program_killed_by_sigkill_from_outside(tmp_path: Path, stopped_first: bool) -> None:
    out = tmp_path / "t.jsonl"
    tracer = Alloctrace(
        "record", "--no-stacks", "-o", str(out), "--", fixture("longrun"), "60", "4"
    )
    pid = int(parse_reports(tracer.stderr.wait_for("ready=1"))[0]["pid"])
    if stopped_first:  # its threads end while stopped
        os.kill(pid, signal.SIGSTOP)
        _wait_state(pid, "tT")
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    result = tracer.finish(out)
    assert result.code == 128 + signal.SIGKILL
    assert footer_of(result) == ("killed", None, signal.SIGKILL)
    assert result.trace is not None
    assert len({e.tid for e in result.trace.records if isinstance(e, Exit)}) == 5


def test_sigkill_of_alloctrace_kills_the_program_and_leaves_a_loadable_partial_trace(
    tmp_path: Path,
) -> None:
    out = tmp_path / "t.jsonl"
    tracer = Alloctrace(
        "record", "--no-stacks", "-o", str(out), "--", fixture("longrun"), "60", "2"
    )
    pid = int(parse_reports(tracer.stderr.wait_for("ready=1"))[0]["pid"])
    _wait_for_events(out, 100)
    tracer.signal(signal.SIGKILL)
    result = tracer.finish()
    assert result.code == -signal.SIGKILL
    assert_nothing_left(pids=(pid,))  # PTRACE_O_EXITKILL
    assert not out.exists()
    (partial,) = tmp_path.glob(".t.jsonl.*.partial")
    with contextlib.suppress(AlloctraceError):  # cut at a line boundary or, rarely, mid-line
        assert not alloctrace.load(partial).complete


def test_program_using_ptrace_itself_gets_eperm_and_the_user_is_told(tmp_path: Path) -> None:
    plain = subprocess.run(
        [fixture("selfptrace")], check=False, capture_output=True, text=True, timeout=30
    )
    assert parse_reports(plain.stderr, "selfptrace")[0]["seize"] == "0"
    result = run(tmp_path, fixture("selfptrace"))
    assert result.code == 0, result.stderr
    (report,) = result.reports("selfptrace")
    assert (report["seize_errno"], report["traceme_errno"]) == ("1", "1")
    notes = [line for line in result.stderr.splitlines() if "ptrace(PTRACE_" in line]
    assert len(notes) == 1 and "only one tracer" in notes[0], "said once"


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_alloctrace_under_strace_says_the_program_is_already_traced(tmp_path: Path) -> None:
    result = Alloctrace(
        "record",
        "-o",
        str(tmp_path / "t.jsonl"),
        "--",
        fixture("seed"),
        prefix=["strace", "-f", "-o", "/dev/null"],
    ).finish()
    one_error_line(result, "is already traced by process")
    assert "(strace)" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not ROOT_USER or shutil.which("setpriv") is None, reason="needs root, setpriv")
def test_setuid_program_runs_without_privilege_and_the_user_is_told(tmp_path: Path) -> None:
    """A set-user-ID root program traced by an ordinary user runs as that user."""
    work = Path(tempfile_dir())
    program = work / "ids"
    shutil.copy(fixture("ids"), program)
    os.chown(program, 0, 0)
    program.chmod(0o4755)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        plain = subprocess.run(
            [*nobody, str(program)], check=False, capture_output=True, text=True, timeout=30
        )
        if parse_reports(plain.stderr, "ids")[0]["euid"] != "0":
            pytest.skip("set-user-ID bits are ignored on this file system (nosuid)")
        out = work / "t.jsonl"
        result = Alloctrace("record", "-o", str(out), "--", str(program), prefix=nobody).finish(out)
        assert result.code == 0, result.stderr
        assert result.reports("ids")[0]["euid"] == "65534"
        notes = [line for line in result.stderr.splitlines() if "set-user-ID" in line]
        assert len(notes) == 1 and "without its privileges" in notes[0]
    finally:
        shutil.rmtree(work)


def tempfile_dir() -> str:
    import tempfile

    work = tempfile.mkdtemp(prefix="alloctrace-")
    os.chmod(work, 0o777)  # for the other user
    return work


def _elf_header(ei_class: int, machine: int) -> bytes:
    return (
        b"\x7fELF"
        + bytes([ei_class, 1, 1, 0])
        + bytes(8)
        + (2).to_bytes(2, "little")
        + machine.to_bytes(2, "little")
        + bytes(44)
    )


@pytest.mark.parametrize(
    ("ei_class", "machine", "what"),
    [(1, 3, "a 32-bit i386 program"), (2, 183, "a 64-bit AArch64 program"), (1, 62, "x32")],
)
def test_foreign_binaries_are_refused_clearly(
    tmp_path: Path, ei_class: int, machine: int, what: str
) -> None:
    program = tmp_path / "foreign"
    program.write_bytes(_elf_header(ei_class, machine))
    program.chmod(0o755)
    result = Alloctrace("record", "-o", str(tmp_path / "t.jsonl"), "--", str(program)).finish()
    one_error_line(result, what)
    assert "x86-64 programs only" in result.stderr


@pytest.mark.skipif(not (FIXTURES / "tiny32").exists(), reason="the compiler cannot build -m32")
def test_real_32_bit_program_refused_and_noted_when_exec_d(tmp_path: Path) -> None:
    one_error_line(run(tmp_path, fixture("tiny32")), "a 32-bit i386 program")
    result = run(tmp_path, "/bin/sh", "-c", fixture("tiny32"))
    assert result.code == 0, result.stderr
    assert result.reports("tiny32") == [{"fixture": "tiny32", "ok": "1"}]
    assert "a 32-bit i386 program: its memory syscalls are not recorded" in result.stderr


@pytest.mark.skipif(not (FIXTURES / "pause32").exists(), reason="the compiler cannot build -m32")
def test_attach_to_a_32_bit_program_is_refused_untouched(
    tmp_path: Path, targets: list[Target]
) -> None:
    target = Target(fixture("pause32"))
    targets.append(target)
    target.stderr.wait_for("ready=1")
    out = tmp_path / "t.jsonl"
    result = Alloctrace("record", "--pid", str(target.pid), "-o", str(out)).finish()
    one_error_line(result, "a 32-bit i386 program; alloctrace traces x86-64 programs only")
    assert not out.exists()
    assert procfs.status(target.pid).get("TracerPid") == "0"
    assert target.proc.poll() is None, "it runs on, never seized"


def test_program_that_closes_every_fd(tmp_path: Path) -> None:
    result = run(tmp_path, fixture("closefds"))
    assert result.code == 0, f"step {result.code} failed: {result.stderr}"
    pid = int(result.reports("closefds")[0]["pid"])
    calls = [e for e in syscalls_of(result.trace) if e.pid == pid and e.fd == 0]
    assert [(e.syscall, e.path) for e in calls] == [("mmap", fixture("closefds"))]


# -- 4. bad input --


def _bad_programs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    not_exec = tmp_path / "not-executable"
    not_exec.write_bytes(Path(fixture("seed")).read_bytes())
    data = tmp_path / "data.txt"
    data.write_text("just text\n")
    data.chmod(0o755)
    empty = tmp_path / "empty"
    empty.touch(0o755)
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    return {
        "missing": (["/nonexistent/program"], "No such file or directory"),
        "not on PATH": (["no-such-command-xyz"], "command not found"),
        "not executable": ([str(not_exec)], "not executable"),
        "directory": ([str(tmp_path)], "is a directory"),
        "text": ([str(data)], "neither an ELF program nor a script"),
        "empty file": ([str(empty)], "neither an ELF program nor a script"),
        "interpreter missing": ([str(script)], "interpreter /nonexistent/interpreter does not"),
        "device": (["/dev/null"], "not a regular file"),
        "empty command": ([], "no program given"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not on PATH",
        "not executable",
        "directory",
        "text",
        "empty file",
        "interpreter missing",
        "device",
        "empty command",
    ],
)
def test_bad_program_is_one_line_and_an_old_trace_stays(tmp_path: Path, case: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv, message = _bad_programs(work)[case]
    out = tmp_path / "t.jsonl"
    out.write_text("old trace\n")
    result = Alloctrace("record", "-o", str(out), "--", *argv).finish()
    one_error_line(result, message)
    assert out.read_text() == "old trace\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl", "work"], "no partial file"


def test_unwritable_output_locations(tmp_path: Path) -> None:
    for output, message in [
        (tmp_path / "missing" / "t.jsonl", "No such file or directory"),
        (tmp_path, "it is a directory"),
        (Path("/proc/t.jsonl"), "cannot write the trace to /proc/t.jsonl"),
    ]:
        result = Alloctrace("record", "-o", str(output), "--", fixture("seed")).finish()
        one_error_line(result, message)
        assert "fixture: seed" not in result.stderr, "the program never ran"


@contextlib.contextmanager
def _tmpfs(directory: Path, options: str) -> Iterator[Path]:
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.mark.skipif(not ROOT_USER, reason="mounting a tmpfs needs root")
def test_full_disk_is_one_line_kills_the_program_and_keeps_the_old_trace(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "size=64k") as small:
        out = small / "t.jsonl"
        out.write_text("old trace\n")
        tracer = Alloctrace("record", "-o", str(out), "--", fixture("mmapbench"), "200000")
        result = tracer.finish()
        one_error_line(result, "No space left on device")
        assert "the program was killed; no trace was written" in result.stderr
        assert "fixture: mmapbench" not in result.stderr, "it did not get to finish"
        assert out.read_text() == "old trace\n"
        assert [p.name for p in small.iterdir()] == ["t.jsonl"], "the partial file is removed"


@pytest.mark.skipif(not ROOT_USER, reason="mounting a tmpfs needs root")
def test_read_only_output_location(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        result = Alloctrace("record", "-o", str(ro / "t.jsonl"), "--", fixture("seed")).finish()
        one_error_line(result, "Read-only file system")


NO_PTRACE = r"""
import ctypes, os, struct, sys
def insn(code, jt, jf, k):
    return struct.pack("=HBBI", code, jt, jf, k)
# ptrace(2) fails with EPERM, as under many container runtimes' seccomp profiles.
prog = insn(0x20, 0, 0, 0) + insn(0x15, 0, 1, 101)
prog += insn(0x06, 0, 0, 0x50001) + insn(0x06, 0, 0, 0x7FFF0000)
class Fprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))
buf = ctypes.create_string_buffer(prog, len(prog))
fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):
    sys.exit(97)
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_ptrace_not_permitted_explains_how_to_allow_it(tmp_path: Path) -> None:
    result = Alloctrace(
        "record",
        "-o",
        str(tmp_path / "t.jsonl"),
        "--",
        fixture("seed"),
        prefix=[sys.executable, "-c", NO_PTRACE],
    ).finish()
    if result.code == 97:
        pytest.skip("cannot install a seccomp filter here")
    one_error_line(result, "ptrace is not permitted here (EPERM)")
    assert "CAP_SYS_PTRACE" in result.stderr and "ptrace_scope" in result.stderr
    assert not list(tmp_path.iterdir())


GOOD_TRACE = (ROOT / "tests" / "data" / "traces" / "v1-seed.jsonl").read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (GOOD_TRACE.encode()[: GOOD_TRACE.index('"kind":"syscall"') + 20], "cut short"),
        (GOOD_TRACE.encode().replace(b'"kind":"syscall"', b'"kind":"sys\xffcall"', 1), "not UTF-8"),
        (GOOD_TRACE.replace('"seq":5,', '"seq":5,,', 1).encode(), "not valid JSON"),
        (GOOD_TRACE.replace('"pid":', '"pid":"abc","x":', 1).encode(), "field 'pid'"),
        (
            GOOD_TRACE.replace('"version":1', '"version":7', 1).encode(),
            "newer than this alloctrace",
        ),
        (b'execve("/bin/true", ["true"], 0x7ffd /* 1 var */) = 0\n', "not an alloctrace trace"),
        (b"[1, 2, 3]\n", "not an alloctrace trace"),
        (bytes(range(256)) * 8, "not"),
    ],
    ids=[
        "empty",
        "truncated",
        "not-utf8",
        "corrupted",
        "wrong-type",
        "newer",
        "strace",
        "json",
        "binary",
    ],
)
def test_bad_trace_files_are_one_line_on_report(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    result = Alloctrace("report", str(path)).finish()
    assert result.code != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"alloctrace: {path}"), result.stderr
    assert message in lines[0]


def test_report_of_a_missing_trace(tmp_path: Path) -> None:
    result = Alloctrace("report", str(tmp_path / "none.jsonl")).finish()
    assert result.code != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


# -- 6. stress --


@pytest.mark.parametrize("seed", range(10))
def test_interrupted_at_a_random_moment_the_trace_loads(tmp_path: Path, seed: int) -> None:
    """SIGINT (twice, sometimes: the second lands during the cleanup) after a random delay."""
    rng = random.Random(seed)
    out = tmp_path / "t.jsonl"
    options = ["--no-stacks"] if seed % 2 else []
    tracer = Alloctrace(
        "record", *options, "-o", str(out), "--", fixture("longrun"), "60", "4", "1"
    )
    pid = int(parse_reports(tracer.stderr.wait_for("ready=1"))[0]["pid"])
    time.sleep(rng.uniform(0, 0.4))
    tracer.signal(signal.SIGINT)
    twice = rng.random() < 0.5
    if twice:
        time.sleep(rng.uniform(0, 0.02))
        with contextlib.suppress(ProcessLookupError):
            tracer.signal(signal.SIGINT)
    result = tracer.finish(out)
    # A second SIGINT that lands after the trace is finished ends alloctrace as it would any
    # program (130 from the CLI, or killed by SIGINT while Python shuts down).
    assert result.code in ((130, -signal.SIGINT) if twice else (130,)), result.stderr
    assert footer_of(result)[0] == "interrupted"
    assert_nothing_left(pids=(pid,))
    lines = out.read_text().splitlines()
    assert all(json.loads(line) for line in lines), "every line is whole"


def test_a_large_environment_does_not_stall_the_start(tmp_path: Path) -> None:
    """Between installing the seccomp filter and exec the child must not allocate: a memory
    syscall there stops it for the tracer, which is waiting for the exec. Python's os.execve
    copied a 100 KB variable with an mmap and both waited for ever; fast_exec
    (tracer/_fastloop.c) installs the filter and execs with arrays built before fork."""
    env = {**os.environ, "ALLOCTRACE_TEST_BIG": "x" * 100_000}
    check = 'test "${#ALLOCTRACE_TEST_BIG}" -eq 100000'  # the program gets it whole
    run = record(tmp_path, ["sh", "-c", check], "-q", env=env)
    assert run.returncode == 0, run.stderr
    trace = run.trace
    assert trace is not None
    assert trace.complete and trace.footer is not None and trace.footer.status == 0
    assert any(e.syscall == "mmap" for e in trace.syscalls())
