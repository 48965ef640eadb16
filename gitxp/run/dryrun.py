"""``gitxp start --dry-run``: what a run would record, with nothing run, written or committed.

Everything here only reads: the snapshot is previewed with
:func:`gitxp.plumbing.snapshot.preview` (no objects, no temporary index), inputs are
measured without hashing (the digest cache is not written), and the store
branch is not created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def plan(
    command: Sequence[str], *, repo: str, name: str, params: Mapping[str, Any], tags: Mapping[str, Any],
    code_dir: str | None, capture_code: bool, artifact_globs: Sequence[str], inputs: Sequence[str], alert_specs: Sequence[str],
) -> dict[str, Any]:
    """The would-be record: name, params, tags, command (masked), inputs, alerts and the snapshot."""
    from gitxp.store import alerts
    from gitxp.store import layout
    from gitxp.artifacts import withheld
    from gitxp.store import inputs as _inputs
    from gitxp.run.logged import check_params
    from gitxp.run.begin import _check_snapshot_dir
    from gitxp.redact import mask_argv
    from gitxp.store.store import Store
    from gitxp.run.wrapper import _check_command

    params = check_params(params)
    layout.check_tags(tags)
    conditions = [alerts.Alert(*alerts.split_spec(spec)) for spec in alert_specs]
    _check_command(list(command))
    store = Store.open(repo)
    out: dict[str, Any] = {
        "name": layout.check_name(name), "params": params, "tags": dict(tags), "command": mask_argv(list(command)),
        "alerts": [a.spec() for a in conditions], "inputs": [],
    }
    for spec in inputs:
        label, path = _inputs.parse_spec(spec)
        p = _inputs.check_path(path)
        files = [p] if p.is_file() else [f for _, f in _inputs._walk(p)]
        out["inputs"].append({"name": label or _inputs.default_name(p), "path": _inputs._recorded_path(p, store.repo.root),
                              "size": sum(f.stat().st_size for f in files), "files": len(files)})
    if capture_code and store.repo.root is not None:
        from gitxp.plumbing import snapshot

        root = Path(store.repo.root)
        cd = _check_snapshot_dir(root, code_dir)
        from gitxp.artifacts.keys import known_key_texts

        rules = withheld.rules(root, store.repo.gitxp_dir, artifact_globs=tuple(artifact_globs),
                               key_texts=known_key_texts(store.store_id if store.exists() else None))
        out["snapshot"] = snapshot.preview(root, store.repo.git_dir, code_dir=cd, max_file_size=store.config.snapshot_max_file_size, withhold=rules)
    else:
        out["snapshot"] = None
    return out


def render(p: Mapping[str, Any]) -> str:
    """The plan as a person reads it (``--format json`` prints :func:`plan` itself)."""
    from gitxp.store.layout import dump_yaml
    from gitxp.text import fmt_size

    lines = ["gitxp: dry run: nothing was run, written or committed", f"name:     {p['name']}", f"command:  {' '.join(p['command'])}"]
    if p["params"]:
        lines += ["params:"] + ["  " + line for line in dump_yaml(p["params"]).splitlines()]
    if p["tags"]:
        lines.append("tags:     " + ", ".join(f"{k}={v}" for k, v in p["tags"].items()))
    for i in p["inputs"]:
        lines.append(f"input:    {i['name']} = {i['path']} ({fmt_size(i['size'])}, {i['files']} file{'s' if i['files'] != 1 else ''}; digest taken when it runs)")
    for a in p["alerts"]:
        lines.append(f"alert:    {a['text']} when {a['condition']}")
    snap = p.get("snapshot")
    if snap is None:
        lines.append("snapshot: none (--no-code)")
        return "\n".join(lines)
    lines.append(f"snapshot: {snap['files']} files, {fmt_size(snap['size'])}, from {snap['branch'] or '(detached)'} {str(snap['commit'] or '(no commit)')[:10]}")
    for what in ("edited", "untracked"):
        items = snap[what]
        if items:
            shown = ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")
            lines.append(f"  {what}: {shown}")
    for path, why in snap["left_out"]:
        lines.append(f"  left out: {path} ({why})")
    return "\n".join(lines)
