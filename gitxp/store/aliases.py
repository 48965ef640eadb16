"""Aliases: exclusive names (``production``, ``best``) for one experiment each.

Kept on the store branch in ``aliases.yaml``::

    production: {id: 20261206-051200-a3f9..., set_at: '2026-12-06T05:12:00.000Z', set_by: ana}
    old:        {id: null, set_at: ..., set_by: ...}     # removed: a tombstone

A removal is a tombstone rather than a deleted key so that it merges: two
clones that each changed an alias agree on the later change, whichever it
was (:func:`merge`; a time from the future never wins, as for ``ended``).
``alias/NAME`` is a ref everywhere a ref is taken (see :mod:`gitxp.store.resolve`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gitxp.store import layout
from gitxp.errors import UsageError

if TYPE_CHECKING:
    from gitxp.plumbing.repo import Repo
    from gitxp.store.store import Store

FILE = "aliases.yaml"
PREFIX = "alias/"
MAX_CHARS = 100
#: Aliases (removed ones included) one store holds; what pull accepts.
MAX_ALIASES = 10_000


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be an alias (None when it can)."""
    if not isinstance(name, str) or not name:
        return "an alias name must be non-empty text"
    if len(name) > MAX_CHARS:
        return f"alias name {name[:40]!r}... is longer than {MAX_CHARS} characters"
    if "/" in name or "\\" in name:
        return f"alias name {name!r} has a '/' or '\\'"
    if name.strip() != name:
        return f"alias name {name!r} starts or ends with a space"
    problem = layout.text_problem(name)
    return f"alias name {name[:80]!r} has a {problem}" if problem else None


def check_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise UsageError(problem, f"use up to {MAX_CHARS} printable characters without '/', e.g. gitxp alias set production @")
    return name


def problems(doc: Any) -> list[str]:
    """What is wrong with an ``aliases.yaml`` document (empty when nothing); pull refuses these."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        return [f"{FILE}: not a mapping but a {type(doc).__name__}"]
    out = []
    if len(doc) > MAX_ALIASES:
        out.append(f"{FILE}: {len(doc)} aliases, over the {MAX_ALIASES} limit")
    for name, entry in list(doc.items())[:MAX_ALIASES]:
        problem = name_problem(name)
        if problem:
            out.append(f"{FILE}: {problem}")
        elif not isinstance(entry, dict):
            out.append(f"{FILE}: alias {name!r} must be a mapping of id, set_at, set_by")
        elif entry.get("id") is not None and not (isinstance(entry["id"], str) and layout.is_id(entry["id"])):
            out.append(f"{FILE}: alias {name!r} names {str(entry.get('id'))[:40]!r}, not an experiment id")
        elif not isinstance(entry.get("set_at"), str) or not isinstance(entry.get("set_by"), (str, type(None))):
            out.append(f"{FILE}: alias {name!r} needs set_at (a time) and set_by (text)")
        elif isinstance(entry.get("set_by"), str) and layout.text_problem(entry["set_by"]):
            out.append(f"{FILE}: alias {name!r} set_by has a {layout.text_problem(entry['set_by'])}")
        if len(out) >= 10:
            break
    return out


def read(repo: Repo, tree: str | None) -> dict[str, dict[str, Any]]:
    """All entries of ``aliases.yaml`` in ``tree`` (tombstones included); a damaged file reads as none."""
    data = repo.read_path(tree, FILE) if tree else None
    if data is None:
        return {}
    doc = layout.load_yaml(data, what=FILE)
    if problems(doc):
        return {k: v for k, v in doc.items() if not problems({k: v})} if isinstance(doc, dict) else {}
    return dict(doc or {})


def live(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{name: experiment id}`` of the aliases that are set (not removed)."""
    return {k: str(v["id"]) for k, v in sorted(entries.items()) if v.get("id")}


def _when(entry: Mapping[str, Any]) -> tuple[float, str]:
    from gitxp.remote.merge import _timestamp

    stamp = _timestamp(entry.get("set_at"))
    return (float("-inf") if stamp is None else stamp, str(entry.get("id") or ""))


def merge(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """Each alias as its later set (or removal) left it; a time in the future counts as none.

    Ties (the same time) go to the larger id, so every clone merges alike.
    """
    out = dict(ours)
    for name, entry in theirs.items():
        if name not in out or _when(entry) > _when(out[name]):
            out[name] = entry
    return dict(sorted(out.items()))


def _write(store: Store, change: Callable[[dict[str, Any]], dict[str, Any] | None], message: str) -> None:
    from gitxp.plumbing.repo import FILE_MODE, Entry

    def build(tip: str | None, tree: str | None) -> tuple[str, str] | None:
        entries = read(store.repo, tree)
        new = change(entries)
        if new is None:
            return None
        blob = store.repo.write_blob(layout.dump_yaml(new).encode())
        return store.repo.update_tree(tree, {FILE: Entry(FILE, FILE_MODE, blob)}), message

    store.ensure()
    store.repo.commit_to_branch(store.branch, build)


def set_alias(store: Store, name: str, ref: str) -> tuple[str, str | None]:
    """Point alias ``name`` at the experiment ``ref`` names; returns (new id, previous id or None)."""
    check_name(name)
    rec = store.get(ref)
    before = live(read(store.repo, _tree(store))).get(name)
    entry = {"id": rec.id, "set_at": layout.isotime(), "set_by": _user()}

    def change(entries: dict[str, Any]) -> dict[str, Any]:
        return {**entries, name: entry}

    _write(store, change, f"gitxp: alias {name} -> {rec.id}\n")
    return rec.id, before


def remove_alias(store: Store, name: str) -> str:
    """Remove alias ``name`` (a tombstone, so the removal merges); returns the id it named."""
    check_name(name)
    current = live(read(store.repo, _tree(store)))
    if name not in current:
        raise UsageError(f"no alias {name!r}", "see `gitxp alias list`")

    def change(entries: dict[str, Any]) -> dict[str, Any] | None:
        if not (entries.get(name) or {}).get("id"):
            return None  # removed meanwhile
        return {**entries, name: {"id": None, "set_at": layout.isotime(), "set_by": _user()}}

    _write(store, change, f"gitxp: remove alias {name}\n")
    return current[name]


def _user() -> str:
    from gitxp.run.begin import _user as user  # the name experiments record in `user`

    return user()


def _tree(store: Store) -> str | None:
    tip = store.tip
    return store.repo.read_commit(tip)["tree"] if tip else None


def entries(store: Store) -> dict[str, dict[str, Any]]:
    """The aliases that are set, ``{name: {id, set_at, set_by}}``, by name."""
    return {k: v for k, v in sorted(read(store.repo, _tree(store)).items()) if v.get("id")}

