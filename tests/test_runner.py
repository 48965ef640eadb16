"""Tests for gitxp.run.process: real child processes, real pipes, real signals.

Tests that send signals run ``run_child`` inside a small wrapper process
(``_WRAPPER``) started in its own session, so that signals and terminals
never touch pytest itself; the wrapper writes its ChildResult as JSON to a
file because its stdout/stderr carry the child's pass-through output.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gitxp.errors import UsageError
from gitxp.run.process import ChildResult, run_child
from gitxp.run.scalars import parse_scalars

ROOT = Path(__file__).resolve().parents[1]

_WRAPPER = r"""
import dataclasses, json, os, sys
from pathlib import Path
from gitxp.run.process import run_child

spec = json.loads(sys.argv[1])
if spec.get("ctty"):
    import fcntl, termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
lines = []
result = run_child(
    spec["argv"],
    output_path=Path(spec["output"]) if spec.get("output") else None,
    output_cap=spec.get("cap", 10 * 2**20),
    on_line=lines.append if spec.get("lines") else None,
)
report = dataclasses.asdict(result)
report["lines"] = lines
if spec.get("ctty"):
    report["foreground_restored"] = os.tcgetpgrp(0) == os.getpgrp()
Path(spec["result"]).write_text(json.dumps(report))
"""


def _child(tmp_path: Path, code: str, name: str = "child.py") -> list[str]:
    """argv running ``code`` as a Python script."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return [sys.executable, str(script)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start_wrapper(tmp_path: Path, argv: list[str], **spec: object) -> tuple[subprocess.Popen[bytes], Path]:
    result = tmp_path / "result.json"
    spec.update(argv=argv, result=str(result))
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        start_new_session=True,
    )
    return proc, result


def _read_until(stream, marker: bytes, timeout: float = 10.0) -> bytes:
    """Read a pipe line by line until ``marker`` appears (the child is ready)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} in {seen!r}"
        line = stream.readline()
        assert line, f"EOF before {marker!r}: {seen!r}"
        seen += line
    return seen


# --- exit status -------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_passes_through(tmp_path: Path, code: int) -> None:
    result = run_child([sys.executable, "-c", f"import sys; sys.exit({code})"])
    assert isinstance(result, ChildResult)
    assert (result.returncode, result.exit_status, result.signal, result.interrupted) == (code, code, None, False)
    assert result.duration_s > 0


@pytest.mark.parametrize("sig, interrupted", [(signal.SIGKILL, False), (signal.SIGTERM, True)])
def test_death_by_signal_maps_to_128_plus_n(tmp_path: Path, sig: int, interrupted: bool) -> None:
    argv = [sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(sig)})"]
    result = run_child(argv, output_path=tmp_path / "out.log")
    assert result.returncode == -sig
    assert result.exit_status == 128 + sig
    assert result.signal == sig
    assert result.interrupted is interrupted


def test_missing_command_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="command not found: no-such-gitxp-cmd") as info:
        run_child(["no-such-gitxp-cmd", "--flag"])
    assert info.value.exit_code == 2
    assert "after `--`" in str(info.value)


def test_non_executable_is_a_usage_error(tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text("echo hi\n")
    with pytest.raises(UsageError, match="command not executable") as info:
        run_child([str(script)])
    assert info.value.exit_code == 2


def test_missing_cwd_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="working directory not found"):
        run_child([sys.executable, "-c", "pass"], cwd=str(tmp_path / "nope"))


def test_on_spawn_failure_kills_the_child(tmp_path: Path) -> None:
    pids: list[int] = []

    def fail(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("sampler broke")

    with pytest.raises(RuntimeError, match="sampler broke"):
        run_child([sys.executable, "-c", "import time; time.sleep(30)"], on_spawn=fail)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # killed and reaped


def test_empty_command_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no command"):
        run_child([])


def test_env_cwd_and_pythonunbuffered(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    code = "import os; print(os.getcwd(), os.environ['GITXP_EXPERIMENT'], os.environ['PYTHONUNBUFFERED'])"
    env = {"PATH": os.environ["PATH"], "GITXP_EXPERIMENT": "x1"}
    result = run_child([sys.executable, "-c", code], env=env, cwd=str(tmp_path), output_path=out)
    assert result.returncode == 0
    assert out.read_text().split() == [str(tmp_path), "x1", "1"]
    env["PYTHONUNBUFFERED"] = "0"
    run_child([sys.executable, "-c", code], env=env, cwd=str(tmp_path), output_path=out)
    assert out.read_text().split()[-1] == "0"  # appended, and not overridden


def test_on_spawn_gets_the_child_pid(tmp_path: Path) -> None:
    pids: list[int] = []
    out = tmp_path / "out.log"
    run_child([sys.executable, "-c", "import os; print(os.getpid())"], output_path=out, on_spawn=pids.append)
    assert pids == [int(out.read_text())]


# --- output ------------------------------------------------------------------


def test_live_pass_through_and_interleaved_log(tmp_path: Path) -> None:
    argv = _child(
        tmp_path,
        """
        import sys, time
        for i in range(3):
            print(f"out {i}", flush=True)
            time.sleep(0.05)
            print(f"err {i}", file=sys.stderr, flush=True)
            time.sleep(0.05)
        sys.stdout.write("progress 1\\rprogress 2\\r")
        """,
    )
    log = tmp_path / "output.log"
    proc, result_file = _start_wrapper(tmp_path, argv, output=str(log))
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert stdout == b"out 0\nout 1\nout 2\nprogress 1\rprogress 2\r"
    assert stderr == b"err 0\nerr 1\nerr 2\n"
    assert log.read_bytes() == b"out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\nprogress 1\rprogress 2\r"
    assert json.loads(result_file.read_text())["returncode"] == 0


def test_pass_through_is_live(tmp_path: Path) -> None:
    """Output reaches our stdout while the child still runs, without a newline."""
    argv = _child(tmp_path, "import sys, time\nsys.stdout.write('50%\\r')\ntime.sleep(3)\n")
    proc, _ = _start_wrapper(tmp_path, argv, output=str(tmp_path / "o.log"))
    try:
        assert proc.stdout is not None
        start = time.monotonic()
        assert proc.stdout.read(4) == b"50%\r"
        assert time.monotonic() - start < 2.5
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()


def test_no_capture_inherits_streams(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code = "import os, sys; print('plain'); print(os.environ.get('PYTHONUNBUFFERED'), sys.stdout.isatty())"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = run_child([sys.executable, "-c", code], env=env)
    assert result.returncode == 0
    assert capfd.readouterr().out == "plain\nNone False\n"


def test_tail_cap_keeps_the_last_lines(tmp_path: Path) -> None:
    cap = 100 * 1024
    argv = _child(
        tmp_path,
        """
        import sys
        w = sys.stdout.write
        for i in range(100_000):
            w(f"line {i:06d} " + "x" * 38 + "\\n")
        """,
    )
    log = tmp_path / "output.log"
    result = run_child(argv, output_path=log, output_cap=cap, on_spawn=None)
    assert result.returncode == 0
    data = log.read_bytes()
    first, rest = data.split(b"\n", 1)
    total = 100_000 * 51  # "line NNNNNN " + 38 x + "\n"
    assert first == f"[gitxp: {total - len(rest)} bytes of earlier output dropped]".encode()
    assert len(rest) <= cap
    assert len(rest) > cap - 60  # cut at a line boundary, not much more
    assert rest.startswith(b"line ")
    assert rest.endswith(b"line 099999 " + b"x" * 38 + b"\n")


def test_bounded_log_continues_an_existing_marker(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"[gitxp: 7 bytes of earlier output dropped]\nold\n")
    run_child([sys.executable, "-c", "print('n' * 30)"], output_path=log, output_cap=20)
    data = log.read_bytes()
    first, rest = data.split(b"\n", 1)
    assert rest == b"n" * 19 + b"\n"  # the last 20 bytes: no line boundary to cut at
    assert first == b"[gitxp: 22 bytes of earlier output dropped]"  # 7 + 35 written - 20 kept


def test_output_reaches_disk_while_running_and_survives_kill_9(tmp_path: Path) -> None:
    argv = _child(
        tmp_path,
        """
        import os, sys, time
        print("pid", os.getpid())
        print("early line")
        time.sleep(4)
        print("late line")
        """,
    )
    log = tmp_path / "output.log"
    proc, _ = _start_wrapper(tmp_path, argv, output=str(log))
    child_pid = None
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and b"early line" not in (log.read_bytes() if log.exists() else b""):
            time.sleep(0.05)
        assert proc.poll() is None  # the runner still runs
        text = log.read_text()
        assert "early line" in text and "late line" not in text
        child_pid = int(text.split()[1])
        proc.kill()  # kill -9 of the wrapper: what was written stays
        proc.wait()
        assert "early line" in log.read_text()
    finally:
        proc.kill()
        proc.communicate()
        if child_pid is not None:
            try:
                os.kill(child_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_on_line_sees_lines_and_progress(tmp_path: Path) -> None:
    argv = _child(
        tmp_path,
        """
        import sys, time
        sys.stdout.write("a=1\\r")
        sys.stdout.flush()
        time.sleep(0.1)
        sys.stdout.write("\\nb: 2\\r\\nhalf")
        sys.stdout.flush()
        time.sleep(0.1)
        sys.stdout.write("-line\\n\\xe9\\n")
        sys.stderr.write("err=1\\rerr=2\\rtail")
        """,
    )
    lines: list[str] = []
    result = run_child(argv, output_path=tmp_path / "o.log", on_line=lines.append)
    assert result.returncode == 0
    out = [line for line in lines if not line.startswith("err") and line != "tail"]
    assert out == ["a=1", "b: 2", "half-line", "\xe9"]  # "\r" then "\n" in another read is one line end
    assert [line for line in lines if line.startswith("err") or line == "tail"] == ["err=1", "err=2", "tail"]


def test_on_line_errors_do_not_stop_the_run(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    def boom(line: str) -> None:
        calls.append(line)
        raise RuntimeError("bad callback")

    result = run_child([sys.executable, "-c", "print('x'); print('y'); print('z')"], on_line=boom)
    assert result.returncode == 0
    assert calls == ["x", "y", "z"]
    err = capfd.readouterr().err
    assert err.count("bad callback") == 1


def test_on_line_without_output_file(tmp_path: Path) -> None:
    lines: list[str] = []
    run_child([sys.executable, "-c", "print('loss=1')"], on_line=lines.append)
    assert lines == ["loss=1"]
    assert list(tmp_path.iterdir()) == []


# --- signals -----------------------------------------------------------------

_COUNTING_CHILD = """
import os, signal, sys, time
SIG = signal.{sig}
count = 0
def handler(signum, frame):
    global count
    count += 1
signal.signal(SIG, handler)
print("ready", os.getpgrp() == os.getpid(), flush=True)
deadline = time.monotonic() + 15
while count == 0 and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.5)  # would a second copy arrive?
print("caught", count, flush=True)
sys.exit(128 + SIG)
"""


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_to_wrapper_is_forwarded_once(tmp_path: Path, signame: str) -> None:
    argv = _child(tmp_path, _COUNTING_CHILD.format(sig=signame))
    proc, result_file = _start_wrapper(tmp_path, argv, output=str(tmp_path / "o.log"))
    assert proc.stdout is not None
    assert b"ready True" in _read_until(proc.stdout, b"ready")  # the child has its own group
    os.kill(proc.pid, getattr(signal, signame))
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert b"caught 1\n" in stdout
    result = json.loads(result_file.read_text())
    sig = int(getattr(signal, signame))
    assert result["returncode"] == result["exit_status"] == 128 + sig
    assert result["interrupted"] is True
    assert result["signal"] is None


def test_third_sigint_kills_a_stubborn_child(tmp_path: Path) -> None:
    argv = _child(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(15)
        """,
    )
    proc, result_file = _start_wrapper(tmp_path, argv, output=str(tmp_path / "o.log"))
    assert proc.stdout is not None
    _read_until(proc.stdout, b"ready")
    for _ in range(3):
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.2)
    proc.communicate(timeout=20)
    result = json.loads(result_file.read_text())
    assert (result["returncode"], result["exit_status"], result["signal"]) == (-9, 137, 9)
    assert result["interrupted"] is True


def test_handlers_are_restored() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    run_child([sys.executable, "-c", "pass"])
    assert {s: signal.getsignal(s) for s in before} == before


_TTY_CHILD = """
import os, signal, sys, time
count = 0
def handler(signum, frame):
    global count
    count += 1
signal.signal(signal.SIGINT, handler)
deadline = time.monotonic() + 5
while os.tcgetpgrp(0) != os.getpgrp() and time.monotonic() < deadline:
    time.sleep(0.01)
print("ready fg", os.tcgetpgrp(0) == os.getpgrp(), flush=True)
print("got", input(), flush=True)  # reading the terminal works (no SIGTTIN)
deadline = time.monotonic() + 15
while count == 0 and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.5)
print("caught", count, flush=True)
sys.exit(130)
"""


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, state: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _proc_state(pid) != state:
        assert time.monotonic() < deadline, f"pid {pid} not in state {state}"
        time.sleep(0.02)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_terminal_job_control(tmp_path: Path) -> None:
    """With a controlling terminal the child gets the foreground: it can read
    the terminal, Ctrl-Z suspends child and wrapper, and Ctrl-C reaches the
    child exactly once (not once from the terminal and once forwarded)."""
    import pty

    argv = _child(tmp_path, _TTY_CHILD)
    master, slave = pty.openpty()
    result_file = tmp_path / "result.json"
    spec = {"argv": argv, "result": str(result_file), "output": str(tmp_path / "o.log"), "ctty": True}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, json.dumps(spec)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_env(),
        start_new_session=True,
    )
    os.close(slave)
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 10
        while marker not in seen:
            assert time.monotonic() < deadline, seen
            seen += os.read(master, 1024)

    try:
        read_until(b"ready fg ")
        read_until(b"\n")
        assert b"ready fg True" in seen
        os.write(master, b"hello\n")
        read_until(b"got hello")
        child_pid = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        os.write(master, b"\x1a")  # Ctrl-Z
        _wait_state(child_pid, "T")
        _wait_state(proc.pid, "T")  # the wrapper suspended itself, as the shell expects
        os.kill(proc.pid, signal.SIGCONT)  # `bg`/`fg`
        deadline = time.monotonic() + 5
        while _proc_state(child_pid) == "T":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.write(master, b"\x03")  # Ctrl-C
        proc.wait(timeout=20)
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        proc.kill()
        os.close(master)
    assert b"caught 1" in seen
    result = json.loads(result_file.read_text())
    assert result["returncode"] == 130
    assert result["interrupted"] is True
    assert result["foreground_restored"] is True


# --- parse_scalars -----------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("epoch 3 loss=0.25 acc: 0.91", {"loss": 0.25, "acc": 0.91}),
        ("step: 3", {"step": 3.0}),
        ("step=3 loss = 1.5", {"step": 3.0}),  # `loss = 1.5` reads like an equation: never a metric
        ("==> Learned function: y = -13.59 x^1 + 0.81 x^2", {}),
        ("Classification report for classifier SVC(gamma=0.001):", {}),
        ("Result: y = 0.049 x + 1.2", {}),
        ("Loss: 0.000953 after 395 batches", {"Loss": 0.000953}),  # PyTorch's regression example
        ("Accuracy: 0.93 on the test set", {"Accuracy": 0.93}),
        ("Note: 3 files skipped", {}),
        ("fit: -13.59 x^1 + 0.8 x^2", {}),
        ("Train Epoch: 1 [0/60000 (0%)]", {}),
        ("Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.301", {"Loss": 2.301}),
        ("Test set: Average loss: 0.0339, Accuracy: 9889/10000 (99%)", {"loss": 0.0339}),
        ("loss: 0.3 | acc: 0.5", {"loss": 0.3, "acc": 0.5}),
        ("val/loss=-0.5 train.acc=1e-3 lr-max: +2.", {"val/loss": -0.5, "train.acc": 0.001, "lr-max": 2.0}),
        ("x=.5, y=-inf; z=Infinity", {"x": 0.5, "y": -math.inf, "z": math.inf}),
        ("INFO:root:loss=0.3", {"loss": 0.3}),
        ("{'loss': 0.5, 'learning_rate': 5e-05, 'epoch': 0.5}", {"loss": 0.5, "learning_rate": 5e-05, "epoch": 0.5}),
        ("1875/1875 [===] - 3s 1ms/step - loss: 0.2950 - accuracy: 0.9146", {"loss": 0.295, "accuracy": 0.9146}),
        ("10/10 [00:00<00:00, 50.2it/s, v_num=0, loss=0.123]", {"v_num": 0.0, "loss": 0.123}),
        ("loss=1 loss=2", {"loss": 2.0}),
        ("Epoch 1/10", {}),
        ("see http://example.com:8080/x", {}),
        ("at 12:30:01 started", {}),
        ("listening on localhost:8080", {}),
        ("status: ok, mode=train", {}),
        ("python train.py --lr=0.1 --wd=1e-4", {}),
        ("took t=3s acc: 91% n=1,000 k=3/10", {}),
        ("version=1.2.3", {}),
        ("python==3.11", {}),
        ("", {}),
    ],
)
def test_parse_scalars(line: str, expected: dict[str, float]) -> None:
    assert parse_scalars(line) == expected


def test_parse_scalars_nan() -> None:
    got = parse_scalars("loss=nan acc=NaN")
    assert list(got) == ["loss", "acc"]
    assert all(math.isnan(v) for v in got.values())
