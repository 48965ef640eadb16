"""Staging of live runs under ``.git/gitxp/runs/<id>/``: crash-safe files.

While an experiment runs, everything it records lands here first (never in
the work tree): ``meta.yaml`` (the experiment.yaml being built), params,
metric and hardware segments, output, tables. A heartbeat file and the
owner's pid plus process start time tell a live run from a dead one (pid
reuse cannot fool the start time). ``gitxp recover`` commits dead runs with
status ``crashed``; staging is deleted only after the store's ref moved.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitxp.store import layout
from gitxp.errors import GitxpError


def host_name() -> str:
    """This machine's name (a run's owner is a process on it), as ``socket.gethostname()`` gives it, without importing ``socket`` (3 ms of a command)."""
    try:
        return os.uname().nodename
    except AttributeError:  # Windows
        import socket

        return socket.gethostname()


HEARTBEAT_STALE_S = 6.0  # heartbeats come every second from the flush thread
#: Refs ``<KEEP_REFS><id>/<sha>``, one per object a staged run wrote (see
#: Repo.keep_objects); deleted when the run commits.
KEEP_REFS = "refs/gitxp/runs/"


def runs_dir(gitxp_dir: Path) -> Path:
    return gitxp_dir / "runs"


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def process_start_time(pid: int) -> float | None:
    """Start time of a process, to tell a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return float(fields[19])  # starttime, in clock ticks since boot
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def pid_alive(pid: int, start_time: float | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start_time is None:
        return True
    now = process_start_time(pid)
    return now is None or abs(now - start_time) < 1e-6


@dataclass(frozen=True)
class RunDir:
    """One staged run; all writes are atomic renames or appends."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def keep_ref(self) -> str:
        """Where the refs that keep this run's objects (code snapshot, artifacts) from ``git gc`` live."""
        return f"{KEEP_REFS}{self.id}"

    def create(self) -> RunDir:
        (self.path / "metrics").mkdir(parents=True, exist_ok=True)
        (self.path / "hardware").mkdir(exist_ok=True)
        (self.path / "tables").mkdir(exist_ok=True)
        return self

    def exists(self) -> bool:
        return (self.path / "meta.yaml").exists()

    # metadata -------------------------------------------------------

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write(self.path / "meta.yaml", layout.dump_yaml(meta))

    def read_meta(self) -> dict[str, Any]:
        return layout.load_yaml((self.path / "meta.yaml").read_bytes(), what="staged meta.yaml") or {}

    def write_yaml(self, name: str, obj: Any) -> None:
        atomic_write(self.path / name, layout.dump_yaml(obj))

    def read_yaml(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        if not p.exists():
            return default
        return layout.load_yaml(p.read_bytes(), what=f"staged {name}")

    # liveness -------------------------------------------------------

    def claim(self, pid: int | None = None) -> None:
        """Record the process that owns this run (the wrapper or the API caller)."""
        pid = pid or os.getpid()
        self.write_yaml("owner.yaml", {"pid": pid, "start_time": process_start_time(pid), "host": host_name()})
        self.heartbeat()

    def heartbeat(self) -> None:
        p = self.path / "heartbeat"
        try:
            os.utime(p)
        except FileNotFoundError:
            p.touch()

    def is_dead(self, *, stale_after: float = HEARTBEAT_STALE_S) -> bool:
        try:
            owner = self.read_yaml("owner.yaml", {}) or {}
        except (OSError, GitxpError):  # damaged: only the heartbeat tells, and recover reports the run
            owner = {}
        if not isinstance(owner, dict):
            owner = {}
        try:
            beat = (self.path / "heartbeat").stat().st_mtime
        except FileNotFoundError:
            beat = 0.0
        stale = time.time() - beat > stale_after
        if owner.get("host") not in (None, host_name()):
            return stale  # another machine sharing the filesystem: only the heartbeat tells
        pid = owner.get("pid")
        if isinstance(pid, int) and pid_alive(pid, owner.get("start_time")):
            return False
        return stale

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def run_dir(gitxp_dir: Path, exp_id: str) -> RunDir:
    return RunDir(runs_dir(gitxp_dir) / exp_id)


def list_runs(gitxp_dir: Path) -> list[RunDir]:
    d = runs_dir(gitxp_dir)
    if not d.is_dir():
        return []
    return [RunDir(p) for p in sorted(d.iterdir()) if p.is_dir() and layout.is_id(p.name) and (p / "meta.yaml").exists()]


def dead_runs(gitxp_dir: Path) -> list[RunDir]:
    return [r for r in list_runs(gitxp_dir) if r.is_dead()]
