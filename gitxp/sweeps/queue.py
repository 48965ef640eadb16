"""Cross-process coordination of a sweep: the queue folder, the parent lock and claims.

Several ``gitxp sweep`` workers may run one sweep at once, on one machine or
on several that share the git directory (``--queue``, ``--split``, or just
the same command started twice). They coordinate through files only, so
nothing needs a server and a worker that dies leaves nothing that blocks the
others for longer than the claim timeout. :mod:`gitxp.sweeps.runner` runs the
configurations; this module decides who runs what.

**Folder** ``<git common dir>/gitxp/queue/<sweep_key>/`` (:func:`queue_dir`):

* ``lock``: an ``flock`` held only while the parent experiment is looked
  up, created, taken over or finished (:class:`Parent`);
* ``parent``: the parent experiment's id, written atomically;
* in ``--queue`` mode, per configuration ``i``: ``<i>.claim`` (who runs
  it), ``<i>.takeover`` (a short-lived guard) and ``<i>.done`` (its final
  status); and ``workers/<worker>``, one file per live worker, whose mtime
  is the moment that worker started.

**The parent** is reused across runs: the id in ``parent``, else a stored
experiment tagged with the same ``sweep_key`` and name, else a new one. One
worker at a time holds it open (status ``running`` while it works); the
others only name it as parent. Whoever finishes last re-opens it
(``resume``) and writes the final counts, so with concurrent workers the
parent ends with the counts of the whole sweep. A holder that died (its pid
is gone on this host, or its staged run is dead) is committed as
``crashed`` first. Every step happens under ``lock``, so two workers never
both create a parent or both re-open it.

**The claim protocol** (:class:`Claims`):

1. *Claim.* ``<i>.claim`` is created with ``O_CREAT|O_EXCL`` and holds the
   worker's name, host and pid. ``O_EXCL`` creation is atomic (on local
   filesystems and on NFSv3+), so exactly one worker creates it.
2. *Heartbeat.* A daemon thread touches every claim the worker holds every
   ``timeout/3`` seconds (at most :data:`MAX_HEARTBEAT_S`), after checking
   the file still names this worker.
3. *Stale after timeout.* A claim whose mtime is older than ``timeout``
   seconds (default :data:`DEFAULT_CLAIM_TIMEOUT`, ``git config
   gitxp.claimTimeout``, ``--claim-timeout``) belongs to a dead or hung
   worker. Ages are mtimes compared with ``time.time()``; the heartbeat
   runs at least three times per timeout, so modest clock skew or a slow
   filesystem does not make a live claim look stale.
4. *Takeover.* A worker that finds a stale claim first creates
   ``<i>.takeover`` with ``O_EXCL``; only the one that creates it may go on.
   Holding it, the worker checks staleness *again* (the owner may have
   beaten, or another taker finished, in between), then writes its own claim
   to a temporary file and ``os.replace``-s it over ``<i>.claim``. The claim
   file therefore never disappears (nobody can slip in with ``O_EXCL``
   meanwhile) and only one taker wins. A ``.takeover`` left by a taker that
   died inside this short section is removed once it is itself older than
   ``timeout`` (renamed to a unique name first, then unlinked).
5. *Done.* When a configuration ends, ``<i>.done`` (status, worker, time) is
   written atomically *before* the claim is removed, so there is no moment
   when the configuration looks neither claimed nor done. A claimer checks
   ``done`` before and again after claiming, and gives the claim back if it
   raced with a finisher. A ``done`` written before this worker started
   (older than its ``workers/`` file) counts only when it says
   ``completed``, so a new run retries failures (and ``rerun`` ignores it);
   one written after counts whatever it says, so each configuration runs
   once per pass. An interrupted configuration is released without a
   ``done`` so another worker can run it.

A worker only ever deletes or heartbeats a claim that names it (checked
under its own thread lock), so a worker that lost its claim to a takeover
does not disturb the new owner; at worst, a worker hung for longer than the
timeout and a taker both run the configuration, and the store keeps both
children (the newest counts). All of this assumes the timeout is much
longer than any pause of a live worker and than the clock skew between
hosts. Workers wait for configurations claimed by
live workers, so each exits only when the whole sweep is done.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp.errors import UsageError
from gitxp.store import staging

if TYPE_CHECKING:
    from gitxp.run.experiment import Experiment
    from gitxp.store.store import Store

__all__ = ["DEFAULT_CLAIM_TIMEOUT", "MAX_HEARTBEAT_S", "Claims", "Parent", "claim_timeout", "queue_dir"]

DEFAULT_CLAIM_TIMEOUT = 60.0
MAX_HEARTBEAT_S = 10.0


def queue_dir(store: Store, key: str) -> Path:
    """The sweep's coordination folder ``<git common dir>/gitxp/queue/<key>/``, created if missing."""
    qdir = store.repo.gitxp_dir / "queue" / key
    qdir.mkdir(parents=True, exist_ok=True)
    return qdir


def claim_timeout(store: Store, given: float | None) -> float:
    """Seconds after which an untouched claim is stale: ``given``, else ``gitxp.claimTimeout``, else 60.

    Raises:
        UsageError: ``gitxp.claimTimeout`` is not a number, or the timeout is not positive.
    """
    if given is None:
        text = store.repo.config("gitxp", "claimTimeout")
        try:
            given = float(text) if text else DEFAULT_CLAIM_TIMEOUT
        except ValueError:
            raise UsageError(f"invalid gitxp.claimTimeout {text!r}", "set seconds, e.g. `git config gitxp.claimTimeout 60`") from None
    if given <= 0:
        raise UsageError(f"claim timeout must be positive, got {given}", "e.g. --claim-timeout 60")
    return given


# --------------------------------------------------------------------------- the parent experiment


class Parent:
    """Finds, creates, holds and finishes the sweep's parent experiment under ``lock``."""

    def __init__(self, store: Store, qdir: Path, *, name: str, key: str, fixed: Mapping[str, Any], tags: Mapping[str, Any], command: list[str], capture_code: bool, repo: str) -> None:
        self.store, self.qdir, self.name, self.key = store, qdir, name, key
        self.fixed, self.tags, self.command, self.capture_code, self.repo = fixed, tags, command, capture_code, repo
        self.id: str = ""
        self.xp: Experiment | None = None

    def _lock(self) -> Any:
        import contextlib
        import fcntl

        @contextlib.contextmanager
        def held() -> Any:
            with open(self.qdir / "lock", "a+b") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)

        return held()

    def _run(self) -> Any:
        return staging.run_dir(self.store.repo.gitxp_dir, self.id)

    def _holder_alive(self) -> bool:
        run = self._run()
        if not run.exists():
            return False
        owner = run.read_yaml("owner.yaml", {}) or {}
        if owner.get("host") == staging.host_name() and isinstance(owner.get("pid"), int):
            return staging.pid_alive(owner["pid"], owner.get("start_time"))
        return not run.is_dead()

    def _stored(self, exp_id: str) -> bool:
        return any(r.id == exp_id for r in self.store.index())

    def open(self) -> None:
        """Find or create the parent; hold it open unless a live worker already does."""
        from gitxp.run.experiment import start

        with self._lock():
            path = self.qdir / "parent"
            found = path.read_text().strip() if path.exists() else ""
            if found:
                self.id = found
                if not (self._run().exists() or self._stored(found)):
                    found = ""  # removed from the store: start afresh
            if not found:
                found = next((r.id for r in self.store.index() if str(r.tags.get("sweep_key")) == self.key and r.name == self.name), "")
            if not found:
                self.xp = start(name=self.name, params=self.fixed, tags={**self.tags, "sweep_key": self.key}, command=self.command,
                                capture_env=False, log_hardware=False, capture_code=self.capture_code, repo=self.repo)
                self.id = self.xp.id
                from gitxp.store.staging import atomic_write

                atomic_write(path, self.id + "\n")
                return
            self.id = found
            if not self._holder_alive():
                self._take()

    def _take(self) -> Experiment:
        """Re-open the stored parent (committing a dead holder's run as crashed first)."""
        from gitxp.run.experiment import start
        from gitxp.run.finish import commit_run

        run = self._run()
        if run.exists():
            commit_run(self.store, run, status="crashed")
        self.xp = start(resume=self.id, command=self.command, capture_env=False, log_hardware=False, capture_code=False, repo=self.repo)
        return self.xp

    def close(self, status: str, summary: Callable[[], dict[str, Any]]) -> None:
        """Write the counts and finish, unless another live worker still holds the parent."""
        with self._lock():
            xp = self.xp
            if xp is None:
                if self._holder_alive():
                    return  # it will write the counts when it ends
                xp = self._take()
            counts = summary()
            xp.summary.update(counts)
            if status == "completed" and counts.get("failed"):
                status = "failed"
            xp.finish(status)

# --------------------------------------------------------------------------- queue claims


class Claims:
    """Exactly-once claims on configurations through files on a shared filesystem."""

    def __init__(self, qdir: Path, *, timeout: float, rerun: bool) -> None:
        self.qdir, self.timeout, self.rerun = qdir, timeout, rerun
        self.worker = f"{staging.host_name()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.held: set[int] = set()
        (qdir / "workers").mkdir(parents=True, exist_ok=True)
        self._ref = qdir / "workers" / self.worker
        self._ref.write_text(self._content())
        self.since = self._ref.stat().st_mtime  # the filesystem's clock, not ours
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="gitxp-claims", daemon=True)
        self._thread.start()

    def _content(self) -> str:
        return json.dumps({"worker": self.worker, "host": staging.host_name(), "pid": os.getpid(), "time": time.time()})

    def _path(self, i: int, kind: str) -> Path:
        return self.qdir / f"{i}.{kind}"

    def _stale(self, path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime > self.timeout
        except FileNotFoundError:
            return False

    def _mine(self, path: Path) -> bool:
        try:
            return json.loads(path.read_text()).get("worker") == self.worker
        except (OSError, ValueError, AttributeError):
            return False

    def finished(self, i: int) -> bool:
        """Done in this pass (after we started), or completed before it (unless rerun)."""
        path = self._path(i, "done")
        try:
            mtime = path.stat().st_mtime
            status = json.loads(path.read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            return False
        return mtime >= self.since or (status == "completed" and not self.rerun)

    def claim(self, i: int) -> bool | None:
        """True: ours now; False: a live worker has it (ask again later); None: finished."""
        if self.finished(i):
            return None
        path = self._path(i, "claim")
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not self._stale(path) or not self._take_over(i, path):
                return False
        else:
            with os.fdopen(fd, "w") as f:
                f.write(self._content())
        with self._lock:
            self.held.add(i)
        if self.finished(i):  # done between our check and the claim
            self.release(i)
            return None
        return True

    def _take_over(self, i: int, path: Path) -> bool:
        guard = self._path(i, "takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            if self._stale(guard):  # its taker died inside this tiny section
                try:
                    os.rename(guard, f"{guard}.dead.{self.worker}")
                    os.unlink(f"{guard}.dead.{self.worker}")
                except OSError:
                    pass
            return False
        try:
            if not self._stale(path):
                return False  # refreshed or taken over meanwhile
            tmp = self.qdir / f".{i}.claim.{self.worker}"
            tmp.write_text(self._content())
            os.replace(tmp, path)
            return True
        finally:
            guard.unlink(missing_ok=True)

    def done(self, i: int, status: str) -> None:
        """Record the final status (before releasing the claim, so nobody runs it again)."""
        tmp = self.qdir / f".{i}.done.{self.worker}"
        tmp.write_text(json.dumps({"status": status, "worker": self.worker, "time": time.time()}))
        os.replace(tmp, self._path(i, "done"))
        self.release(i)

    def release(self, i: int) -> None:
        path = self._path(i, "claim")
        with self._lock:
            self.held.discard(i)
            if self._mine(path):
                path.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(min(MAX_HEARTBEAT_S, self.timeout / 3)):
            with self._lock:
                for i in list(self.held):
                    path = self._path(i, "claim")
                    if self._mine(path):
                        os.utime(path)

    def close(self) -> None:
        self._stop.set()
        for i in list(self.held):
            self.release(i)
        self._ref.unlink(missing_ok=True)

