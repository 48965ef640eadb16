"""Live runs: ``gitxp start --sync [REMOTE]`` publishes a running experiment.

At each interval a background thread of the wrapper commits the experiment
as it stands (status ``running``, its metrics so far: :func:`finish.live_files`
reads the staging folder without touching it) to the local store branch and
pushes that branch with :func:`remote.push`, which merges first when the
remote moved on. A colleague's ``gitxp pull`` then ``gitxp show ID`` sees the
run. When the run ends its final commit overlays the same directory, so the
store holds the experiment once, and it is pushed once more. In a merge the
final version wins over a ``running`` one of the same id, because it has an
``ended`` time and the running one has none (see :mod:`gitxp.remote.sync`).

Nothing here can fail the run: a push that fails (network down, remote
gone) prints one warning line and is tried again at the next interval. A
snapshot is committed only when the staging folder changed since the last
one, so an idle run adds no commits.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gitxp.run.experiment import Experiment
    from gitxp.store.store import Store

DEFAULT_INTERVAL_S = 60.0


class LiveSync:
    """Publishes ``exp`` to ``remote`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, exp: Experiment, repo: str, remote: str | None, interval: float) -> None:
        self.exp = exp
        self.repo = repo
        self.remote = remote
        self.interval = max(0.05, float(interval))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: tuple[Any, ...] | None = None
        self._failing = False
        self._store: Store | None = None
        self.published = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gitxp-live-sync", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()

    def stop(self) -> None:
        """Stop publishing; waits for a push in progress so the final commit never races it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _state(self) -> tuple[Any, ...]:
        """What changed in staging since the last snapshot: (path, size, mtime) of every file."""
        out = []
        for root, dirs, files in os.walk(self.exp.run_dir):
            dirs[:] = [d for d in dirs if d != "hardware"]  # samples are committed at the end only
            for f in files:
                try:
                    st = os.stat(os.path.join(root, f))
                except OSError:
                    continue
                if f != "heartbeat":
                    out.append((root, f, st.st_size, st.st_mtime_ns))
        return tuple(sorted(out))

    def publish(self) -> None:
        """Commit the run as it stands (if it changed) and push; never raises."""
        from gitxp.run import finish
        from gitxp.remote import sync as remote
        from gitxp.store import staging
        from gitxp.errors import GitxpError, describe_failure

        try:
            state = self._state()
            if state != self._seen:
                if self._store is None:  # its own, as the thread's git objects are not the run's to share
                    from gitxp.store.store import Store

                    self._store = Store.open(self.repo)
                store = self._store
                run = staging.run_dir(store.repo.gitxp_dir, self.exp.id)
                files, message = finish.live_files(store, run)
                store.commit_experiment(self.exp.id, files, message.replace(" running", " running (live)", 1))
                self._seen = state
            remote.push(self.repo, self.remote, quiet=True)
            self.published += 1
            if self._failing:
                print(f"gitxp: live sync to {self._where()} works again", file=sys.stderr)
            self._failing = False
        except (GitxpError, OSError, ValueError) as exc:
            if not self._failing:
                print(f"gitxp: warning: live sync to {self._where()} failed ({describe_failure(exc)}); trying again in {self.interval:g}s", file=sys.stderr)
            self._failing = True
        except Exception as exc:  # noqa: BLE001 - the run must go on whatever publishing hit
            if not self._failing:
                print(f"gitxp: warning: live sync failed ({type(exc).__name__}: {exc}); trying again in {self.interval:g}s", file=sys.stderr)
            self._failing = True

    def push_final(self) -> None:
        """Push the finished experiment once more; a failure is one warning (`gitxp push` later)."""
        from gitxp.remote import sync as remote
        from gitxp.errors import GitxpError, describe_failure

        try:
            remote.push(self.repo, self.remote, quiet=True)
        except (GitxpError, OSError) as exc:
            print(f"gitxp: warning: could not push the finished experiment to {self._where()} ({describe_failure(exc)}); run `gitxp push` later", file=sys.stderr)

    def _where(self) -> str:
        return self.remote or "origin"


def parse_interval(value: float) -> float:
    from gitxp.errors import UsageError

    if not value > 0 or value != value:
        raise UsageError(f"--sync-interval must be a positive number of seconds, not {value}", "e.g. --sync-interval 60")
    return value

