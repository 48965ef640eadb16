"""Experiments as JSON-ready data: the one serialiser behind ``--format json`` and ``gitxp ui``.

A script that reads ``gitxp log --format json`` and a page that reads
``/api/experiments`` see the same field names (README: "Browse in a web page"),
because both build their dicts here. JSON has no NaN or infinity: every
non-finite float is written as ``null`` (a diverged run must still give a
document ``json.loads`` and ``jq`` accept); the raw values stay available
through ``gitxp metrics --format parquet``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gitxp.store.record import Record

#: Packages worth a glance on an experiment's summary (the rest is a count).
KEY_PACKAGES = (
    "torch", "torchvision", "tensorflow", "jax", "jaxlib", "flax", "keras", "numpy", "scipy", "pandas",
    "scikit-learn", "transformers", "accelerate", "datasets", "lightning", "pytorch-lightning", "xgboost",
    "lightgbm", "cupy", "triton", "gitxp",
)


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None, recursively (mappings, lists, tuples)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def to_json(obj: Any) -> bytes:
    """Compact JSON; non-finite floats become null (the fast path tries without walking first)."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode()
    except ValueError:
        return json.dumps(finite(obj), separators=(",", ":"), allow_nan=False, default=str).encode()


def dumps(obj: Any) -> str:
    """Indented JSON, non-finite floats as null; ASCII only, so no stored string can put a control character on a terminal."""
    return json.dumps(finite(obj), indent=2, allow_nan=False, default=str)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []  # pulled data may hold anything


def row(rec: Record, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The listing fields of one experiment (README: "Browse in a web page", /api/experiments).

    ``metrics`` overrides the stored summary (a running experiment's, merged
    from its staged segments).
    """
    meta = rec.meta
    return {
        "id": rec.id,
        "name": rec.name,
        "status": rec.status,
        "created": rec.created,
        "duration_s": meta.get("duration_s"),
        "parent": meta.get("parent"),
        "params": _dict(rec.params),
        "metrics": _dict(metrics if metrics is not None else meta.get("metrics")),
        "summary": _dict(meta.get("summary")),
        "tags": _dict(meta.get("tags")),
    }


def detail_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What an experiment's page adds to :func:`row` from experiment.yaml (/api/experiments/REF)."""
    return {
        "source": _dict(meta.get("source")),
        "command": meta.get("command"),
        "notes": meta.get("notes"),
        "error": meta.get("error"),
        "exit_code": meta.get("exit_code"),
        "started": meta.get("started"),
        "ended": meta.get("ended"),
        "host": meta.get("host"),
        "user": meta.get("user"),
        "cwd": meta.get("cwd"),
        "inputs": _list(meta.get("inputs")),
        "alerts": _list(meta.get("alerts")),
    }


def environment_summary(env: Any) -> dict[str, Any] | None:
    """The recorded environment at a glance: python, platform, hardware, key packages and a count."""
    if not isinstance(env, Mapping):
        return None
    py, plat = _dict(env.get("python")), _dict(env.get("platform"))
    pkgs = [p for p in env.get("packages") or [] if isinstance(p, Mapping)]
    key = {str(p.get("name", "")).lower().replace("_", "-"): p for p in pkgs}
    gpus = [g for g in env.get("gpus") or [] if isinstance(g, Mapping)]
    return {
        "python": {k: py.get(k) for k in ("version", "implementation", "executable", "virtualenv")},
        "platform": plat.get("platform"),
        "cpu": _dict(env.get("cpu")).get("model"),
        "memory_total_bytes": env.get("memory_total_bytes"),
        "gpus": [{"name": g.get("name"), "memory_total_bytes": g.get("memory_total_bytes")} for g in gpus],
        "cuda": env.get("cuda"),
        "package_count": len(pkgs),
        "packages": [{"name": key[n].get("name"), "version": key[n].get("version")} for n in KEY_PACKAGES if n in key],
        "env_vars": _dict(env.get("env_vars")),
    }


def artifact_list(rec: Record, *, full: bool = False) -> list[dict[str, Any]]:
    """``path``, ``size``, ``encrypted`` of each artifact (``full``: also ``parts`` and ``digest``)."""
    from gitxp.artifacts.manifest import read_manifest

    keys = ("path", "size", "encrypted", "parts", "digest") if full else ("path", "size", "encrypted")
    return [{k: a.get(k) for k in keys} for a in read_manifest(rec)]


def describe(rec: Record) -> dict[str, Any]:
    """One stored experiment as ``gitxp show --format json`` prints it: :func:`row` plus its details.

    A damaged section (hostile or broken data) is left empty and named in
    ``problems``, as the UI's page does, rather than hiding the rest.
    """
    from gitxp.errors import GitxpError

    problems: list[str] = []

    def section(name: str, fn: Any, default: Any) -> Any:
        try:
            return fn()
        except GitxpError as exc:
            problems.append(f"{name}: {exc}")
            return default

    out = row(rec)
    out.update(detail_fields(rec.meta))
    out["environment"] = section("environment", lambda: environment_summary(rec.environment), None)
    out["artifacts"] = section("artifacts", lambda: artifact_list(rec), [])
    out["tables"] = section("tables", rec.tables, [])
    out["problems"] = problems
    return out


def listing(recs: Iterable[Record]) -> dict[str, Any]:
    """``{"total", "experiments"}`` as ``/api/experiments`` answers (``gitxp log --format json``).

    A running experiment (staged, not stored yet) carries the metrics
    logged so far, merged from its staged segments as the UI shows them.
    """
    rows = [row(r, live_metrics(r)) for r in recs]
    return {"total": len(rows), "experiments": rows}


def live_metrics(rec: Record) -> dict[str, Any] | None:
    """The metric summary of a running experiment's staged segments; None for a stored one."""
    if rec.tree:
        return None
    from gitxp.store import parquet as metrics
    from gitxp.store import staging

    seg_dir = staging.run_dir(rec.store.repo.gitxp_dir, rec.id).path / "metrics"
    try:
        return metrics.merge(seg_dir)[1] if any(seg_dir.glob(metrics.SEGMENT_GLOB)) else {}
    except OSError:
        return {}  # finishing right now


def diff(a: Any, b: Any, *, code: bool = False, env: bool = False) -> dict[str, Any]:
    """``gitxp diff A B --format json``: both rows, param changes, metrics side by side.

    ``params``: ``changed``/``added``/``removed`` lists of ``{"key", "a", "b"}``
    (dotted keys); ``metrics``: per name, A's and B's statistics and the
    change of the last value (``delta``, ``relative``; null where it cannot
    be computed); ``code``/``environment`` only when asked for.
    """
    from gitxp.review import diff as review

    ch = review.param_changes(a, b)
    out: dict[str, Any] = {
        "a": row(a),
        "b": row(b),
        "command": {"a": a.meta.get("command"), "b": b.meta.get("command")},
        "params": {k: [{"key": key, "a": x, "b": y} for key, x, y in ch[k]] for k in ("changed", "added", "removed")},
        "metrics": {},
    }
    for name in review.metric_names([a, b]):
        sa, sb = _dict(a.metric_summary.get(name)), _dict(b.metric_summary.get(name))
        va, vb = review._num(sa.get("last")), review._num(sb.get("last"))
        d = vb - va if va is not None and vb is not None and math.isfinite(va) and math.isfinite(vb) else None
        out["metrics"][name] = {"a": sa or None, "b": sb or None, "delta": d, "relative": d / abs(va) if d is not None and va else None}
    if code:
        if a.code_tree is None or b.code_tree is None:
            out["code"] = None
        else:
            diffs = review.code_diff(a.store.repo, a.code_tree, b.code_tree)
            out["code"] = [{"path": f.path, "status": f.status, "binary": f.binary, "insertions": f.insertions, "deletions": f.deletions} for f in diffs]
    if env:
        from gitxp.environment import describe as environment

        ea, eb = a.environment, b.environment
        out["environment"] = environment.diff(ea, eb) if isinstance(ea, Mapping) and isinstance(eb, Mapping) else None
    return out


def environment_doc(rec: Record) -> dict[str, Any]:
    """``gitxp env REF --format json``: the summary ``show`` gives, and everything recorded (``recorded``)."""
    env = rec.environment
    return {"id": rec.id, "name": rec.name, "environment": environment_summary(env), "recorded": dict(env) if isinstance(env, Mapping) else None}
