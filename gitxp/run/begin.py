"""Beginning a run: id, staging, code snapshot, environment and hardware capture.

Kept apart from :mod:`gitxp.run.experiment` so that the logging API stays small
and ``import gitxp`` cheap; this is what ``gitxp.start()`` and the
``gitxp start`` wrapper call once per run.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp.store import layout
from gitxp.store import staging
from gitxp.errors import ParamError, RefError, UsageError
from gitxp.run.experiment import Experiment, _set_current, default_name
from gitxp.run.logged import check_params
from gitxp.run.options import RunOptions

if TYPE_CHECKING:
    from gitxp.store.record import Record
    from gitxp.store.store import Store


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no such variable and no passwd entry (a container's odd uid)
        return os.environ.get("GITXP_USER") or "unknown"


def resolve_parent(store: Store, ref: str) -> str:
    """A parent may be stored, or still running (a sweep's parent is, while children run)."""
    if layout.is_id(ref) and staging.run_dir(store.repo.gitxp_dir, ref).exists():
        return ref
    try:
        return str(store.get(ref).id)
    except RefError:
        live = [r.id for r in staging.list_runs(store.repo.gitxp_dir) if r.id.startswith(ref) or r.id.rsplit("-", 1)[-1].startswith(ref)]
        if len(live) == 1:
            return live[0]
        raise


def begin(
    *,
    name: str | None,
    params: Mapping[str, Any] | None,
    repo: str | os.PathLike[str],
    command: Sequence[str] | None,
    options: RunOptions = RunOptions(),
    at: Any = None,
) -> Experiment:
    """Create the run and capture what is known at start.

    ``options`` says how it is recorded (:class:`~gitxp.run.options.RunOptions`);
    its ``artifact_globs`` are the files the run will log encrypted
    (``--artifact``): what they match now is left out of the snapshot.
    ``at`` (a UTC datetime) is the start time when it is not now: the id
    and ``created``/``started`` of an imported run (:func:`record`).
    """
    from gitxp.redact import mask_argv

    params, tags, name = _checked_start(params, options, name, command)
    notes = options.notes
    store = _open_store(repo)
    now = at if at is not None else layout.utcnow()
    if options.resume is not None:
        run, meta, params = _reopen(store, options.resume, name, tags, params)
    else:
        run, meta = _create(store, now, name, tags, options)
    meta.update(
        status="running",
        started=layout.isotime(now),
        ended=None,
        duration_s=None,
        command=mask_argv(command if command is not None else [sys.executable, *sys.argv]),
        cwd=os.getcwd(),
        exit_code=None,
        host=staging.host_name(),
        user=_user(),
    )
    if options.resume is not None and notes:
        meta["notes"] = ((meta.get("notes") or "") + "\n" + notes).strip()
    run.claim()
    _record_source(store, run, meta, options)
    run.write_meta(meta)
    run.write_yaml("params.yaml", params)
    exp = Experiment(store, run, meta, params, owner=True)
    exp.flush()
    if options.capture_env:
        exp._env_thread = threading.Thread(target=_capture_environment, args=(run, tuple(options.env_vars), command), daemon=True)
        exp._env_thread.start()
    if options.log_hardware:
        exp._hardware = _start_hardware(run, options.hardware_interval, os.getpid())
    if command is None:
        _set_current(exp)
    return exp


def _checked_start(
    params: Mapping[str, Any] | None, options: RunOptions, name: str | None, command: Sequence[str] | None,
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Params, tags and name as stored; every check that can fail runs before the store is touched."""
    params = check_params(params or {})
    problem = layout.params_size_problem(params)
    if problem:
        raise ParamError(problem, "store large values as artifacts, or pass a smaller --params-file")
    tags = layout.check_tags(options.tags)
    layout.check_tag_count(tags)
    name = layout.check_name(name) if name else None
    if options.notes:
        layout.check_notes(options.notes)
    for i, arg in enumerate(command or ()):  # recorded as text in experiment.yaml and the commit message
        if isinstance(arg, str) and layout.utf8_problem(arg):
            raise UsageError(f"argument {i + 1} of the command, {arg[:80]!r}, has a {layout.utf8_problem(arg)}", layout.NOT_UTF8_HINT)
    if options.hardware_interval <= 0:
        raise UsageError(f"hardware interval must be positive, got {options.hardware_interval}", "e.g. --hardware-interval 0.5")
    return params, tags, name


def _open_store(repo: str | os.PathLike[str]) -> Store:
    """The store, created if need be; a stale ref lock is named now, not after hours of training."""
    from gitxp.store.store import Store

    store = Store.open(repo)
    store.ensure()
    stale = store.repo.stale_ref_lock(store.branch)
    if stale is not None:  # say it now, not after hours of training
        from gitxp.errors import StaleLockError

        print(f"gitxp: warning: {StaleLockError(stale)}; until then experiments cannot be stored", file=sys.stderr)
    return store


def _reopen(
    store: Store, ref: str, name: str | None, tags: dict[str, Any], params: dict[str, Any],
) -> tuple[staging.RunDir, dict[str, Any], dict[str, Any]]:
    """``--resume``: stage a stored experiment again as a new session; its metrics, hardware and output carry over."""
    rec = store.get(ref)
    exp_id = rec.id
    run = staging.run_dir(store.repo.gitxp_dir, exp_id)
    if run.exists() and not run.is_dead():
        raise UsageError(f"experiment {exp_id} is already running", "wait for it to finish")
    run.remove()
    run.create()
    meta = dict(rec.meta)
    meta.pop("error", None)
    sessions = list(meta.get("sessions") or [{"started": meta.get("started"), "ended": meta.get("ended"), "status": meta.get("status")}])
    meta["sessions"] = sessions
    params = {**dict(rec.params), **params}
    _stage_previous(rec, run)
    if name:
        meta["name"] = layout.check_name(name)
    meta["tags"] = {**(meta.get("tags") or {}), **tags}
    return run, meta, params


def _create(store: Store, now: Any, name: str | None, tags: dict[str, Any], options: RunOptions) -> tuple[staging.RunDir, dict[str, Any]]:
    """A new experiment: its id (from the start time) and staging folder."""
    exp_id = layout.new_id(now)
    run = staging.run_dir(store.repo.gitxp_dir, exp_id).create()
    meta: dict[str, Any] = {
        "id": exp_id,
        "name": layout.check_name(name or default_name()),
        "parent": resolve_parent(store, options.parent) if options.parent else None,
        "status": "running",
        "created": layout.isotime(now),
    }
    meta["tags"] = tags
    meta["notes"] = options.notes
    return run, meta


def _record_source(store: Store, run: staging.RunDir, meta: dict[str, Any], options: RunOptions) -> None:
    """``source`` in experiment.yaml: the code snapshot, or (``--no-code``) only HEAD."""
    if options.capture_code:
        meta["source"] = _snapshot(store, options.code_dir, tuple(options.artifact_globs))
        if meta["source"].get("tree") and meta["source"].get("dirty"):  # new objects belong to nothing yet: keep them from `git gc`
            store.repo.keep_objects(run.keep_ref, [meta["source"]["tree"]])
    else:
        commit, branch = store.repo.head()
        meta.setdefault("source", {"branch": branch, "commit": commit, "dirty": None, "tree": None})


def _snapshot(store: Store, code_dir: str | os.PathLike[str] | None, artifact_globs: tuple[str, ...] = ()) -> dict[str, Any]:
    from gitxp.plumbing import snapshot
    from gitxp.artifacts import withheld

    repo = store.repo
    if repo.root is None:
        commit, branch = repo.head()
        return {"branch": branch, "commit": commit, "dirty": None, "tree": None}
    cd = _check_snapshot_dir(repo.root, code_dir)
    from gitxp.artifacts.keys import known_key_texts

    rules = withheld.rules(repo.root, repo.gitxp_dir, artifact_globs=artifact_globs,
                           key_texts=known_key_texts(store.store_id))
    snap = snapshot.capture(repo.root, repo.git_dir, code_dir=cd, max_file_size=store.config.snapshot_max_file_size,
                            withhold=rules)
    if snap.untracked:
        _say_untracked(snap.untracked)
    out: dict[str, Any] = {"branch": snap.branch, "commit": snap.commit, "dirty": snap.dirty, "tree": snap.tree}
    if snap.code_dir:
        out["code_dir"] = snap.code_dir
    if snap.skipped:
        out["skipped"] = list(snap.skipped)
    _add_notebook(store, out, store.config.snapshot_max_file_size)
    return out


def _check_snapshot_dir(root: Path, code_dir: str | os.PathLike[str] | None) -> Path | None:
    """``--code-dir`` as an absolute folder inside the repository (None: the whole work tree)."""
    if code_dir is None:
        return None
    cd = Path(code_dir).resolve()
    try:
        cd.relative_to(root)
    except ValueError:
        raise UsageError(f"--code-dir {code_dir} is outside the repository {root}", "give a folder inside it") from None
    if not cd.is_dir():
        raise UsageError(f"--code-dir {code_dir} is not a folder", "give an existing folder inside the repository")
    return cd


def _add_notebook(store: Store, out: dict[str, Any], cap: int) -> None:
    """The notebook a kernel runs is its code: in the snapshot even when git ignores it or it is over the cap.

    Only a notebook that ``.gitxpignore`` (or secret withholding) left out
    stays out: that was the user's choice.
    """
    from gitxp.run.notebook import notebook_path
    from gitxp.plumbing.repo import FILE_MODE, Entry

    nb = notebook_path()
    if nb is None or out.get("tree") is None or store.repo.root is None:
        return
    try:
        rel = nb.resolve().relative_to(Path(store.repo.root).resolve()).as_posix()
    except (ValueError, OSError):
        return  # outside the repository
    code_dir = out.get("code_dir")
    if code_dir and not rel.startswith(code_dir + "/"):
        return
    out["notebook"] = rel
    if nb.is_symlink() or not nb.is_file() or store.repo.lookup(out["tree"], rel) is not None:
        return
    skipped = out.get("skipped") or []
    if rel in skipped and nb.stat().st_size <= cap:
        return
    blob = store.repo.write_blob(nb.read_bytes())
    out["tree"] = store.repo.update_tree(out["tree"], {rel: Entry(nb.name, FILE_MODE, blob)})
    out["dirty"] = True
    rest = [p for p in skipped if p != rel]
    if rest:
        out["skipped"] = rest
    else:
        out.pop("skipped", None)


def _say_untracked(files: Sequence[tuple[str, int]], named: int = 3) -> None:
    """One line at start, so a checkpoint or a figure never goes into the snapshot unnoticed."""
    from gitxp.text import fmt_size

    text = ", ".join(f"{path} ({fmt_size(size)})" for path, size in files[:named])
    if len(files) > named:
        text += f" and {len(files) - named} more"
    print(f"gitxp: snapshot includes untracked {text}; add them to .gitxpignore to leave them out", file=sys.stderr)


def _capture_environment(run: staging.RunDir, env_vars: tuple[str, ...], command: Sequence[str] | None) -> None:
    """Runs in a thread so the wrapped command starts at once; failures only warn."""
    try:
        from gitxp.environment import capture as environment
        from gitxp.environment import describe

        python = _command_python(command)
        cache = str(run.path.parent.parent / "cache")  # .git/gitxp/cache, beside the runs folder
        if python is None:
            env = environment.capture(extra_env_vars=env_vars, with_module_owners=True, cache_dir=cache)
        else:
            env = environment.capture_interpreter(python, extra_env_vars=env_vars, with_module_owners=True, cache_dir=cache)
        owners = env.pop("module_owners", None)
        if isinstance(owners, dict):  # for `imported: true`, marked at commit (gitxp.environment.imports)
            import json

            from gitxp.environment.imports import OWNERS_FILE

            staging.atomic_write(run.path / OWNERS_FILE, json.dumps(owners))
        run.write_yaml(layout.ENVIRONMENT_FILE, env)
        staging.atomic_write(run.path / layout.REQUIREMENTS_FILE, describe.requirements_txt(env, allow_urls=True))  # the record of this environment, as it is
    except Exception as exc:  # a missing environment never fails a run
        print(f"gitxp: could not record the environment: {exc}", file=sys.stderr)


def _command_python(command: Sequence[str] | None) -> str | None:
    """The interpreter a wrapped command runs, when it is another Python than ours.

    ``gitxp`` installed with pipx lives in its own venv; the packages that
    matter are those of the Python that runs the script.
    """
    import shutil

    if not command:
        return None
    prog = Path(command[0]).name
    if not prog.startswith(("python", "pypy")):
        return None
    found = shutil.which(command[0])
    if found is None or _same_interpreter(found, sys.executable):
        return None
    return found


def _same_interpreter(a: str, b: str) -> bool:
    """Whether two interpreter paths run the same environment: ``venv/bin/python`` and ``venv/bin/python3``.

    Another venv's ``python`` is a link to the same binary, but its packages
    differ: the folder (whose ``pyvenv.cfg`` makes it a venv) must be the same too.
    """
    a, b = os.path.abspath(a), os.path.abspath(b)
    if a == b:
        return True
    try:
        return os.path.dirname(a) == os.path.dirname(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _start_hardware(run: staging.RunDir, interval: float, pid: int) -> Any:
    try:
        from gitxp.run.hardware import HardwareSampler

        sampler = HardwareSampler(run.path / "hardware", interval=interval, pid=pid)
        sampler.start()
        return sampler
    except Exception as exc:
        print(f"gitxp: hardware sampling is off: {exc}", file=sys.stderr)
        return None


def _stage_previous(rec: Record, run: staging.RunDir) -> None:
    """Carry a resumed experiment's metrics, hardware and output into the new session."""
    data = rec.read_file(layout.METRICS_FILE)
    if data is not None:
        staging.atomic_write(run.path / "metrics" / "00000000000000000000-previous.parquet", data)
    data = rec.read_file(layout.HARDWARE_FILE)
    if data is not None:
        staging.atomic_write(run.path / "hardware" / "hardware-000000-previous.parquet", data)
    data = rec.read_file(layout.OUTPUT_FILE)
    if data is not None:
        staging.atomic_write(run.path / "output-previous.log", data)


#: What :func:`record` accepts as the status of a run that already ended.
RECORDED_STATUSES = ("completed", "failed", "interrupted", "crashed")


def record(
    *,
    repo: str | os.PathLike[str],
    name: str,
    started: Any,
    ended: Any,
    status: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    notes: str | None = None,
    command: Sequence[str] = (),
    parent: str | None = None,
    source_commit: str | None = None,
    host: str | None = None,
    user: str | None = None,
    error: str | None = None,
    metrics: Any = (),
    artifacts: Any = (),
) -> str:
    """Store a run that happened elsewhere (an importer's), with its own times; returns its id.

    Goes through the same staging, validation, encryption and commit as a
    live run, so what it stores is what ``gitxp start`` would have stored;
    only the times, host and user are the given ones and nothing of this
    machine (code, environment, hardware) is captured. ``started``/``ended``
    are UTC datetimes; ``metrics`` yields ``(name, step, value, unix_seconds)``;
    ``artifacts`` yields ``(local_file, artifact_name)``, stored encrypted.
    If anything fails the staged run is removed: nothing half-imported is
    left for ``gitxp recover`` to commit.
    """
    if status not in RECORDED_STATUSES:
        raise UsageError(f"cannot record a run with status {status!r}", f"use one of: {', '.join(RECORDED_STATUSES)}")
    options = RunOptions(tags=tags or {}, notes=notes, parent=parent, log_hardware=False, capture_code=False, capture_env=False)
    exp = begin(name=name, params=params, repo=repo, command=list(command), options=options, at=started)
    try:
        store = exp._writer_store()
        known = isinstance(source_commit, str) and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", source_commit) and store.repo.has_object(source_commit)
        commit = source_commit if known else None  # the code's commit, when this repository has it
        exp._meta.update(host=host, user=user, cwd=None, source={"branch": None, "commit": commit, "dirty": None, "tree": None})
        exp._run.write_meta(exp._meta)
        for metric, step, value, t in metrics:
            exp.log_metric(metric, value, step, t)
        for path, art_name in artifacts:
            exp.log_artifact(path, art_name)
        exp.finish(status, error=error, ended_at=layout.isotime(ended) if ended is not None else None)
    except BaseException:
        if not exp._finished:
            import atexit

            exp._finished = True
            atexit.unregister(exp._exit_hook)
            exp._stop_background()
            exp._run.remove()
            exp._writer_store().repo.delete_refs(exp._run.keep_ref)
        raise
    return exp.id
