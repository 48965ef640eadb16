"""Running sweeps: a parent experiment, one child per configuration, resume, split and queue.

Expansion and validation of sweep files live in :mod:`gitxp.sweeps.spec`;
this module runs them. Decisions made here:

* **Identity.** A sweep is identified by its ``sweep_key``: a hash of its
  name and of every configuration (the command is not part of it, so fixing
  a typo in the script keeps the sweep). Its parent experiment carries the
  tags ``sweep_key`` and ``sweep_file``; each child carries ``sweep`` (the
  parent id), ``sweep_index`` (the position in the whole sweep) and
  ``sweep_key`` (:func:`~gitxp.sweeps.spec.config_key` of its params).
* **Coordination** between workers (the queue folder, the parent's lock
  and reuse, ``--queue`` claims with heartbeats, takeover and ``done``
  markers) lives in :mod:`gitxp.sweeps.queue`; its docstring explains the
  claim protocol and why it is safe.
* **Skipping.** A configuration is skipped when a child of this parent with
  the same ``sweep_key`` tag is ``completed`` in the store; other statuses
  are retried; ``rerun`` runs everything.
* **Children** are ``gitxp start`` runs in subprocesses (in their own
  process group, stdin from /dev/null); they die with their worker (Linux
  ``PR_SET_PDEATHSIG``: SIGTERM, recorded as ``interrupted``). SIGINT,
  SIGTERM and SIGHUP sent to the sweep are forwarded to every running child
  and no new configuration starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, IO

from gitxp.sweeps import queue as sweep_queue
from gitxp.sweeps import spec as sweep_spec
from gitxp.errors import UsageError
from gitxp.run.options import RunOptions

if TYPE_CHECKING:
    from gitxp.store.record import Record
    from gitxp.store.store import Store

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Planned:
    """One configuration to run: its index in the whole sweep, params, key and command."""

    index: int
    params: dict[str, Any]
    key: str
    command: list[str]


@dataclass
class Outcome:
    """What happened to one configuration in this invocation, plus what the store says."""

    planned: Planned
    status: str = "not run"  # completed, failed, interrupted, skipped, not run, elsewhere
    exit_code: int | None = None
    record: Record | None = None


@dataclass
class SweepResult:
    parent_id: str | None
    outcomes: list[Outcome]
    signal: int | None = None

    @property
    def exit_status(self) -> int:
        """0 when nothing failed, 128+N after signal N, else 1."""
        if self.signal is not None:
            return 128 + self.signal
        return 1 if any(o.status in ("failed", "interrupted") for o in self.outcomes) else 0


# --------------------------------------------------------------------------- planning


def sweep_key(name: str, configurations: Sequence[Mapping[str, Any]]) -> str:
    """The identity of a sweep (see the module docstring): name and configurations, not the command."""
    return sweep_spec.config_key({"name": name, "configurations": list(configurations)})


def plan(configurations: Sequence[dict[str, Any]], command: Sequence[str], *, split: tuple[int, int] | None = None,
         index: int | None = None) -> list[Planned]:
    """The configurations this worker considers, with their substituted commands.

    ``index`` picks configuration ``index`` alone (``--index``, a Slurm array task).

    Raises:
        SweepFileError: a ``{key}`` in ``command`` names no parameter (checked
            for every configuration before anything runs).
        UsageError: ``index`` outside the sweep.
    """
    sweep_spec.check_command(command, configurations)
    pairs = sweep_spec.split(list(configurations), *split) if split else list(enumerate(configurations))
    if index is not None:
        if not 0 <= index < len(configurations):
            raise UsageError(f"--index {index} is outside the sweep: it has {len(configurations)} configuration(s), 0 to {len(configurations) - 1}",
                             "see them with `gitxp sweep FILE --dry-run -- CMD`")
        pairs = [(index, configurations[index])]
    return [Planned(i, c, sweep_spec.config_key(c), sweep_spec.substitute(command, c) if command else []) for i, c in pairs]


# --------------------------------------------------------------------------- running


class _Sweep:
    """Runs planned configurations with ``jobs`` threads, each launching one child at a time."""

    def __init__(self, store: Store, parent: sweep_queue.Parent, todo: list[Planned], *, jobs: int,
                 claims: sweep_queue.Claims | None, fail_fast: bool, launch: Callable[[Planned], int], log: Callable[[str], None]) -> None:
        self.store, self.parent, self.todo, self.jobs, self.claims = store, parent, todo, max(1, jobs), claims
        self.fail_fast, self.launch, self.log = fail_fast, launch, log
        self.outcomes = {p.index: Outcome(p) for p in todo}
        self.stop = threading.Event()
        self.signal: int | None = None
        self.procs: set[Any] = set()
        self._lock = threading.Lock()
        self._queue = list(todo)
        self._done = 0

    def _next(self) -> Planned | None | bool:
        """The next configuration to run; False when only others' claims remain (wait)."""
        with self._lock:
            waiting = False
            for p in list(self._queue):
                got = True if self.claims is None else self.claims.claim(p.index)
                if got is None:
                    self._queue.remove(p)
                    self.outcomes[p.index].status = "elsewhere"
                elif got:
                    self._queue.remove(p)
                    return p
                else:
                    waiting = True
            return False if waiting else None

    def _worker(self) -> None:
        poll = min(1.0, self.claims.timeout / 4) if self.claims else 0
        while not self.stop.is_set():
            p = self._next()
            if p is None:
                return
            if p is False:
                time.sleep(poll)
                continue
            assert isinstance(p, Planned)
            code = self.launch(p)
            status = "completed" if code == 0 else "interrupted" if self.signal is not None or code in (130, 143) else "failed"
            out = self.outcomes[p.index]
            out.status, out.exit_code = status, code
            if self.claims is not None:
                if status == "interrupted":
                    self.claims.release(p.index)
                else:
                    self.claims.done(p.index, status)
            with self._lock:
                self._done += 1
                self.log(f"[{self._done}/{len(self.todo)}] #{p.index} {_describe(p.params)} {status}")
            if status == "failed" and self.fail_fast:
                self.log("stopping: --fail-fast")
                self.stop.set()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signal = signum
        self.stop.set()
        for proc in list(self.procs):
            try:
                os.kill(proc.pid, signum)
            except OSError:
                pass

    def run(self) -> None:
        in_main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, self._on_signal) for s in _FORWARDED} if in_main else {}
        try:
            threads = [threading.Thread(target=self._worker, name=f"gitxp-sweep-{n}", daemon=True) for n in range(min(self.jobs, len(self.todo)))]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _describe(params: Mapping[str, Any]) -> str:
    from gitxp.store.tables import flatten

    flat: dict[str, Any] = {}
    flatten("", dict(params), flat)
    return " ".join(f"{k[1:]}={sweep_spec.substitute(['{x}'], {'x': v})[0]}" for k, v in flat.items())


def _child_spec(p: Planned, *, parent: str, repo: str, name: str, options: RunOptions) -> dict[str, Any]:
    """What one child process is told (as JSON): the sweep's options, with this configuration's parent and tags."""
    child = replace(options, parent=parent, resume=None, tags={**options.tags, "sweep": parent, "sweep_index": p.index, "sweep_key": p.key})
    return {"command": p.command, "repo": repo, "name": name, "params": p.params, "options": child.to_json(), "ppid": os.getpid()}


def _child_main() -> None:
    """Entry point of a sweep's child process: exactly ``gitxp start`` with the typed params of the JSON in argv[1].

    JSON rather than ``-p KEY=VALUE`` keeps types exact (the string ``"1"``
    stays a string). The child asks Linux to SIGTERM it when its worker dies.
    """
    spec = json.loads(sys.argv[1])
    from gitxp.run import process as runner
    from gitxp.errors import GitxpError
    from gitxp.run.wrapper import run_wrapped

    # A dying worker's threads die one by one and each reparenting repeats the
    # death signal, so: before the command runs, a signal ends us (the staged
    # run is recovered as crashed); while it runs, run_child's own handler
    # forwards it (the run is `interrupted`); after, while committing, repeats
    # are ignored.
    phase = ["before"]
    real_run_child = runner.run_child

    def tracked(*args: Any, **kwargs: Any) -> Any:
        phase[0] = "running"
        try:
            return real_run_child(*args, **kwargs)
        finally:
            phase[0] = "after"

    def on_signal(signum: int, _frame: Any) -> None:
        if phase[0] == "before":
            os._exit(128 + signum)

    runner.run_child = tracked  # type: ignore[assignment]
    for s in _FORWARDED:
        signal.signal(s, on_signal)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != spec.pop("ppid"):
        sys.exit(128 + signal.SIGTERM)  # the worker died before we could ask
    try:
        status = run_wrapped(spec["command"], repo=spec["repo"], name=spec["name"], params=spec["params"],
                             options=RunOptions.from_json(spec["options"]))
    except GitxpError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        status = exc.exit_code
    sys.stdout.flush()
    sys.exit(status)


def _pump(src: IO[bytes], dst: IO[bytes], prefix: bytes, lock: threading.Lock) -> None:
    for line in iter(src.readline, b""):
        with lock:
            dst.write(prefix + line)
            dst.flush()
    src.close()


#: Each child in a process group of its own: a terminal's Ctrl-C reaches only
#: us, and we forward it once. ``process_group`` needs Python 3.11; on 3.10
#: ``start_new_session`` (setsid before exec, done in C) gives the child its
#: own group too, and unlike ``preexec_fn`` is safe from our worker threads.
_OWN_GROUP: dict[str, Any] = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}


def _subprocess_launcher(sw: _Sweep, *, repo: str, name: str, options: RunOptions, prefix: bool) -> Callable[[Planned], int]:
    out_lock = threading.Lock()

    def launch(p: Planned) -> int:
        spec = _child_spec(p, parent=sw.parent.id, repo=repo, name=name, options=options)
        argv = [sys.executable, "-c", "from gitxp.sweeps.runner import _child_main; _child_main()", json.dumps(spec)]
        pipe = subprocess.PIPE if prefix else None
        with sw._lock:
            if sw.stop.is_set():
                return 128 + (sw.signal or signal.SIGTERM)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, **_OWN_GROUP)  # type: ignore[call-overload]  # noqa: S603
            sw.procs.add(proc)
        pumps = []
        if prefix:
            tag = f"[{p.index}] ".encode()
            pumps = [threading.Thread(target=_pump, args=(s, d, tag, out_lock), daemon=True)
                     for s, d in ((proc.stdout, sys.stdout.buffer), (proc.stderr, sys.stderr.buffer))]
            for t in pumps:
                t.start()
        code = proc.wait()
        for t in pumps:
            t.join()
        sw.procs.discard(proc)
        return 128 - code if code < 0 else code

    return launch


def _execute(store: Store, *, name: str, key: str, fixed: Mapping[str, Any], parent_tags: Mapping[str, Any],
             parent_command: list[str], todo: list[Planned], jobs: int, queue: bool, fail_fast: bool, rerun: bool,
             claim_timeout: float | None, capture_code: bool, repo: str,
             make_launch: Callable[[_Sweep], Callable[[Planned], int]], log: Callable[[str], None],
             total: int | None = None) -> SweepResult:
    """The shared body of the CLI and the Python API: parent, skip, schedule, finish."""
    qdir = sweep_queue.queue_dir(store, key)
    timeout = sweep_queue.claim_timeout(store, claim_timeout) if queue else sweep_queue.DEFAULT_CLAIM_TIMEOUT
    parent = sweep_queue.Parent(store, qdir, name=name, key=key, fixed=fixed, tags=parent_tags, command=parent_command,
                                capture_code=capture_code, repo=repo)
    parent.open()
    total = len(todo) if total is None else total
    log(f"sweep {parent.id} {name}: {len(todo)} configuration(s)")
    done = set() if rerun else {str(r.tags.get("sweep_key")) for r in _children(store, parent.id) if r.status == "completed"}
    skipped = [p for p in todo if p.key in done]
    claims = sweep_queue.Claims(qdir, timeout=timeout, rerun=rerun) if queue else None
    sw = _Sweep(store, parent, [p for p in todo if p.key not in done], jobs=jobs, claims=claims, fail_fast=fail_fast,
                launch=lambda p: 0, log=log)
    sw.launch = make_launch(sw)
    for p in skipped:
        sw.outcomes[p.index] = Outcome(p, "skipped")
    if skipped:
        log(f"skipped {len(skipped)} configuration(s) already completed")
    status = "interrupted"
    try:
        sw.run()
        status = "interrupted" if sw.signal is not None else "completed"
    finally:
        if claims is not None:
            claims.close()
        parent.close(status, lambda: _counts(store, parent.id, sw, total))
    recs = _latest(store, parent.id)
    outcomes = [sw.outcomes[p.index] for p in todo]
    for o in outcomes:
        o.record = recs.get((o.planned.index, o.planned.key))
        if o.status == "elsewhere" and o.record is not None:
            o.status = f"{o.record.status} (elsewhere)"
    return SweepResult(parent.id, outcomes, sw.signal)


def _children(store: Store, parent_id: str) -> list[Record]:
    return [r for r in store.index() if r.meta.get("parent") == parent_id and "sweep_key" in r.tags]


def _latest(store: Store, parent_id: str) -> dict[tuple[int, str], Record]:
    """The newest child per (sweep_index, sweep_key); index() is newest first."""
    out: dict[tuple[int, str], Record] = {}
    for r in _children(store, parent_id):
        try:
            k = (int(r.tags.get("sweep_index", "")), str(r.tags.get("sweep_key")))
        except (TypeError, ValueError):
            continue
        out.setdefault(k, r)
    return out


def _counts(store: Store, parent_id: str, sw: _Sweep, total: int) -> dict[str, Any]:
    """The parent's summary, truthful after any number of sessions.

    ``configurations`` is the sweep's size; ``completed`` and ``failed``
    count the newest child of each configuration across every worker and
    session so far; ``ran`` and ``skipped`` (already completed) describe the
    latest session only, so a re-run reads ``completed 4, ran 0, skipped 4``.
    """
    latest = _latest(store, parent_id)
    statuses = [r.status for r in latest.values()]
    outcomes = [o.status for o in sw.outcomes.values()]
    return {"configurations": max(total, len(latest)), "completed": statuses.count("completed"),
            "failed": sum(s != "completed" for s in statuses),
            "ran": sum(s not in ("skipped", "not run", "elsewhere") for s in outcomes),
            "skipped": outcomes.count("skipped")}


def run(path: str | os.PathLike[str], command: Sequence[str], *, repo: str = ".", jobs: int = 1,
        split: tuple[int, int] | None = None, queue: bool = False, fail_fast: bool = False, rerun: bool = False,
        name: str | None = None, child_name: str, claim_timeout: float | None = None,
        options: RunOptions = RunOptions(), log: Callable[[str], None] | None = None, index: int | None = None) -> SweepResult:
    """Run the sweep file at ``path`` (what ``gitxp sweep`` does); returns every outcome.

    Store: a parent experiment and one child per configuration on the store
    branch; claims and the parent's id under ``<git dir>/gitxp/queue/``.

    Raises:
        SweepFileError: a malformed file or an unknown ``{key}`` (before anything runs).
        UsageError: a bad ``--split``, ``--jobs`` or claim timeout, or a command not found.
    """
    from gitxp.store.store import Store
    from gitxp.run.wrapper import _check_command

    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}", "e.g. --jobs 4")
    spec = sweep_spec.load(Path(path))
    todo = plan(spec.configurations, command, split=split, index=index)
    if todo:
        _check_command(todo[0].command)
    store = Store.open(repo)
    store.ensure(quiet=True)
    sweep_name = name or Path(path).stem
    emit = log or (lambda line: print(f"gitxp sweep: {line}", file=sys.stderr, flush=True))
    return _execute(
        store, name=sweep_name, key=sweep_key(sweep_name, spec.configurations), fixed=spec.fixed,
        parent_tags={"sweep_file": str(path)}, parent_command=["gitxp", "sweep", str(path), "--", *command],
        todo=todo, jobs=jobs, queue=queue, fail_fast=fail_fast, rerun=rerun, claim_timeout=claim_timeout,
        capture_code=options.capture_code, repo=repo, log=emit,
        make_launch=lambda sw: _subprocess_launcher(sw, repo=repo, name=child_name, options=options, prefix=jobs > 1),
        total=len(spec.configurations),
    )


def status(path: str | os.PathLike[str], *, repo: str = ".", name: str | None = None) -> tuple[str | None, dict[str, int]]:
    """``gitxp sweep FILE --status``: (parent id or None, children by status plus ``not run``).

    Counts the newest child of each configuration, in the store or running
    here now; a configuration with neither is ``not run``.
    """
    from gitxp.store.store import Store

    spec = sweep_spec.load(Path(path))
    store = Store.open(repo)
    sweep_name = name or Path(path).stem
    key = sweep_key(sweep_name, spec.configurations)
    qfile = store.repo.gitxp_dir / "queue" / key / "parent"
    parent_id = qfile.read_text().strip() if qfile.exists() else ""
    if not parent_id:
        parent_id = next((r.id for r in store.index() if str(r.tags.get("sweep_key")) == key and r.name == sweep_name), "")
    latest: dict[int, str] = {}
    if parent_id:
        for r in store.running():
            if r.meta.get("parent") == parent_id and str(r.tags.get("sweep_index", "")).isdigit():
                latest.setdefault(int(r.tags["sweep_index"]), "running")
        for (i, _k), r in _latest(store, parent_id).items():
            latest.setdefault(i, r.status)
    counts: dict[str, int] = {}
    for i in range(len(spec.configurations)):
        s = latest.get(i, "not run")
        counts[s] = counts.get(s, 0) + 1
    return parent_id or None, counts


def result_table(result: SweepResult, *, metrics_limit: int = 6) -> str:
    """The closing table: one row per configuration with status and final metrics."""
    from gitxp import text as render
    from gitxp.store.tables import flatten

    flats = []
    for o in result.outcomes:
        flat: dict[str, Any] = {}
        flatten("", o.planned.params, flat)
        flats.append({k[1:]: v for k, v in flat.items()})
    keys = list(dict.fromkeys(k for f in flats for k in f))
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1] or keys
    metric_names: list[str] = []
    for o in result.outcomes:
        for m in (o.record.metric_summary if o.record is not None else {}):
            if m not in metric_names and len(metric_names) < metrics_limit:
                metric_names.append(m)
    rows = []
    for o, f in zip(result.outcomes, flats):
        ms = o.record.metric_summary if o.record is not None else {}
        short = o.record.id.rsplit("-", 1)[-1][:8] if o.record is not None else None
        rows.append([o.planned.index, *(f.get(k) for k in varying), o.status, short,
                     *((ms.get(m) or {}).get("last") if isinstance(ms.get(m), Mapping) else None for m in metric_names)])
    return render.text_table(["#", *varying, "status", "id", *metric_names], rows)


# --------------------------------------------------------------------------- Python API


def _api_child(fn: Callable[[Any, dict[str, Any]], Any], spec: dict[str, Any]) -> None:
    from gitxp.run.experiment import ENV_ID, ENV_RUN_DIR, start

    os.environ.pop(ENV_ID, None)  # a new experiment, never the one this script may run inside
    os.environ.pop(ENV_RUN_DIR, None)
    with start(**spec) as xp:
        fn(xp, spec["params"])


def _warm_imports() -> None:
    """Import what every child needs once, before the fork server forks: not once per child."""
    from gitxp.run.logged import arrow_ready

    arrow_ready()  # an earlier start()'s background import of pyarrow, done before anything forks
    import pyarrow.compute  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import gitxp.artifacts.write  # noqa: F401
    import gitxp.run.begin  # noqa: F401
    import gitxp.run.finish  # noqa: F401


def sweep(fn: Callable[[Any, dict[str, Any]], Any], grid_or_file: str | os.PathLike[str] | Mapping[str, Any], *,
          jobs: int = 1, repo: str | os.PathLike[str] = ".", name: str | None = None, rerun: bool = False,
          **start_options: Any) -> Any:
    """Run ``fn(xp, params)`` once per configuration, each a child experiment of one sweep experiment.

    Each call runs in its own forked process (``jobs`` at a time; forked
    from a process started at this call, before the sweep's threads: see
    :mod:`gitxp.sweeps.forker`), inside
    ``gitxp.start(...)`` as a context manager: an exception marks that
    configuration ``failed`` and the others go on. Completed configurations
    of the same sweep are skipped unless ``rerun``. ``start_options`` go to
    ``gitxp.start`` (default ``log_hardware=False``).

    Args:
        grid_or_file: a sweep file's path, or a mapping in the same format.

    Returns:
        A pyarrow Table of the children (one row per configuration), as ``Store.table()`` builds it.

    Raises:
        SweepFileError: a malformed grid.
    """
    from gitxp.store.store import Store
    from gitxp.store.tables import experiments_table
    from gitxp.sweeps.forker import Forker

    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, got {jobs}", "e.g. jobs=4")
    if isinstance(grid_or_file, Mapping):
        configs, fixed, source = sweep_spec.expand(grid_or_file), {k: v for k, v in grid_or_file.items() if k not in ("grid", "parent")}, None
    else:
        spec = sweep_spec.load(Path(grid_or_file))
        configs, fixed, source = list(spec.configurations), spec.fixed, str(grid_or_file)
    sweep_name = name or str(getattr(fn, "__name__", "sweep"))
    todo = plan(configs, [])
    store = Store.open(repo)
    store.ensure(quiet=True)
    start_options.setdefault("log_hardware", False)
    _warm_imports()
    forker = Forker(lambda spec: _api_child(fn, spec))

    def make_launch(sw: _Sweep) -> Callable[[Planned], int]:
        def launch(p: Planned) -> int:
            tags = {"sweep": sw.parent.id, "sweep_index": p.index, "sweep_key": p.key}
            spec = {**start_options, "name": sweep_name, "params": p.params, "tags": tags, "parent": sw.parent.id, "repo": str(repo)}
            children: list[Any] = []

            def started(child: Any) -> None:
                with sw._lock:
                    sw.procs.add(child)
                    children.append(child)
                    if sw.signal is not None:  # the sweep was interrupted while this one was being forked
                        with contextlib.suppress(OSError):  # ended already
                            os.kill(child.pid, sw.signal)

            if sw.stop.is_set():
                return 128 + (sw.signal or signal.SIGTERM)
            code = forker.run(spec, started)
            with sw._lock:
                sw.procs.difference_update(children)
            return 128 - code if code < 0 else code
        return launch

    try:
        result = _execute(
            store, name=sweep_name, key=sweep_key(sweep_name, configs), fixed=fixed, parent_tags={"sweep_file": source},
            parent_command=[sys.executable, *sys.argv], todo=todo, jobs=jobs, queue=False, fail_fast=False, rerun=rerun,
            claim_timeout=None, capture_code=start_options.get("capture_code", True), repo=str(repo),
            make_launch=make_launch, log=lambda line: None, total=len(configs),
        )
    finally:
        forker.close()
    return experiments_table([o.record for o in result.outcomes if o.record is not None])
