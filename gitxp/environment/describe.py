"""A recorded environment described: requirement pins and ``environment.yml`` for export,
summary and differences as text for people.

:func:`requirements_txt` (``requirements.txt``), :func:`conda_environment_yml`
(``environment.yml``), :func:`summary` and :func:`diff`/:func:`format_diff`
(``gitxp show/diff --env``) turn the dict :func:`gitxp.environment.capture.capture`
recorded into text; :func:`package_source`, :func:`needs_allow_urls` and :func:`_pin`
decide what may be installed elsewhere (used by :mod:`gitxp.environment.recreate`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from gitxp.environment.capture import _norm

__all__ = [
    "ALLOW_URLS_HINT",
    "conda_environment_yml",
    "diff",
    "format_diff",
    "needs_allow_urls",
    "package_source",
    "requirements_txt",
    "summary",
]

#: Installer tooling kept out of pins: the target environment brings its own.
_TOOLING = frozenset({"pip", "setuptools", "wheel", "distribute"})

_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")
_VCS = ("git", "hg", "svn", "bzr")
#: What ``gitxp env`` says about a package it leaves out because it would come from a URL.
ALLOW_URLS_HINT = "include them with --allow-urls if you trust where this experiment came from"


def package_source(pkg: Mapping[str, Any]) -> str | None:
    """Where a package came from when not from an index: ``url …``, ``git …@commit``, ``path … (editable)``."""
    src = pkg.get("source")
    if not isinstance(src, Mapping) or not src:
        return None
    if "path" in src:
        return f"path {src['path']}" + (" (editable)" if src.get("editable") else "")
    if "vcs" in src:
        commit = f"@{src['commit']}" if src.get("commit") else ""
        return f"{src['vcs']} {src.get('url', '?')}{commit}"
    if "url" in src:
        return f"url {src['url']}"
    return f"source {dict(src)!r}"


def needs_allow_urls(pkg: Mapping[str, Any]) -> bool:
    """True for a package recorded from a URL or VCS: never installed without ``--allow-urls``.

    A recorded experiment may have been pulled from anyone's store, and
    installing from a URL runs whatever ``setup.py`` is there.
    """
    src = pkg.get("source")
    return isinstance(src, Mapping) and "path" not in src and ("vcs" in src or "url" in src)


def _pin(pkg: Mapping[str, Any], *, allow_urls: bool = False) -> tuple[str | None, str]:
    """(installable requirement or None, why not / comment text).

    Names and versions are checked (they come from a possibly pulled
    record and end up on pip's command line and in requirements files, where
    ``--index-url …`` or a second line would be an option); URL and VCS
    sources only with ``allow_urls``.
    """
    name, version = pkg.get("name"), pkg.get("version")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        return None, "not a valid package name"
    if version is not None and not (isinstance(version, str) and _VERSION_RE.fullmatch(version)):
        return None, "not a valid version"
    raw_src = pkg.get("source")
    src: Mapping[str, Any] = raw_src if isinstance(raw_src, Mapping) else {}
    if "path" in src:
        kind = "editable" if src.get("editable") else "local"
        return None, f"local path: {kind} install from {src['path']}"
    if needs_allow_urls(pkg):
        if not allow_urls:
            return None, f"from {package_source(pkg)}; not installed without --allow-urls"
        url = src.get("url")
        if not isinstance(url, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s;#]+", url):
            return None, f"unusable URL {str(url)[:80]!r}"
        if "vcs" in src:
            commit = src.get("commit")
            if src["vcs"] not in _VCS or (commit is not None and not (isinstance(commit, str) and re.fullmatch(r"[\w./-]+", commit))):
                return None, f"unusable VCS source {package_source(pkg)!r}"
            return f"{name} @ {src['vcs']}+{url}{'@' + commit if commit else ''}", ""
        return f"{name} @ {url}", ""
    if _norm(name) in _TOOLING:
        return None, "installer tooling"
    if not version:
        return None, "no version recorded"
    return f"{name}=={version}", ""


def requirements_txt(env: Mapping[str, Any], *, experiment: str | None = None, allow_urls: bool = False) -> str:
    """``requirements.txt`` text: one pip-installable pin per package.

    VCS installs become ``name @ git+url@commit`` and URL installs
    ``name @ url`` with ``allow_urls`` (else comments); local and editable
    installs cannot be installed elsewhere, so they and the installer tooling
    (pip, setuptools, wheel) are comments.
    """
    py = (env.get("python") or {}).get("version", "?")
    head = f"# environment of gitxp experiment {experiment}" if experiment else "# environment recorded by gitxp"
    lines = [head, f"# python {py} on {(env.get('platform') or {}).get('platform', '?')}"]
    comments = []
    for pkg in env.get("packages") or ():
        req, why = _pin(pkg, allow_urls=allow_urls)
        if req:
            lines.append(req)
        else:
            comments.append(f"# {_one_line(pkg.get('name'))}=={_one_line(pkg.get('version'))} ({_one_line(why)})")
    return "\n".join(lines + comments) + "\n"


def _one_line(value: Any) -> str:
    """Recorded text inside a comment line: no line breaks (a second line would be a requirement)."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(value))


def _yaml_str(s: str) -> str:
    """A YAML scalar: plain when safe, else a JSON (= YAML double-quoted) string."""
    return s if re.fullmatch(r"[A-Za-z0-9_.=<>!~+*-][A-Za-z0-9_.=<>!~+*/-]*", s) else json.dumps(s)


def conda_environment_yml(env: Mapping[str, Any], name: str, *, allow_urls: bool = False) -> str:
    """An ``environment.yml`` for ``conda env create -f``.

    Channels come from the recorded conda packages (most used first;
    ``conda-forge`` when none is known); conda packages are pinned
    ``name=version``; Python packages that conda did not install go into
    the ``pip:`` section with the pins of :func:`requirements_txt`. A
    channel given as a URL, or a package name or version that is not plain
    (conda reads ``URL::name`` as a channel), needs ``allow_urls``.
    """
    py = (env.get("python") or {}).get("version", "")
    xy = ".".join(py.split(".")[:2]) or "3"
    conda = env.get("conda") or {}
    cpkgs = [p for p in conda.get("packages") or () if p.get("name") != "python"]
    plain = [p for p in cpkgs if isinstance(p.get("name"), str) and _NAME_RE.fullmatch(p["name"])
             and (p.get("version") is None or (isinstance(p["version"], str) and _VERSION_RE.fullmatch(p["version"])))]
    unsafe = [p for p in cpkgs if p not in plain]
    cpkgs = plain
    counts: dict[str, int] = {}
    for p in cpkgs:
        if p.get("channel") and p["channel"] != "pypi" and (allow_urls or re.fullmatch(r"[\w.-]+", str(p["channel"]))):
            counts[p["channel"]] = counts.get(p["channel"], 0) + 1
    channels = sorted(counts, key=lambda c: -counts[c]) or ["conda-forge"]
    conda_names = {_norm(p["name"]) for p in cpkgs}
    pins = []
    skipped = []
    for pkg in env.get("packages") or ():
        if pkg.get("installer") == "conda" or _norm(pkg["name"]) in conda_names:
            continue
        req, why = _pin(pkg, allow_urls=allow_urls)
        if req:
            pins.append(req)
        elif _norm(pkg["name"]) not in _TOOLING:
            skipped.append(f"{_one_line(pkg.get('name'))}=={_one_line(pkg.get('version'))} ({_one_line(why)})")
    out = [f"name: {_yaml_str(name)}", "channels:"]
    out += [f"  - {_yaml_str(c)}" for c in channels]
    out += ["dependencies:", f"  - python={xy}"]
    out += [f"  - {_yaml_str(p['name'] + '=' + p['version'])}" for p in cpkgs if p.get("version")]
    if not any(p["name"] == "pip" for p in cpkgs):
        out.append("  - pip")
    if pins:
        out.append("  - pip:")
        out += [f"      - {_yaml_str(p)}" for p in pins]
    out += [f"# not installable elsewhere: {s}" for s in skipped]
    out += [f"# left out, not a plain conda package: {_one_line(p.get('name'))}={_one_line(p.get('version'))}" for p in unsafe]
    return "\n".join(out) + "\n"


def summary(env: Mapping[str, Any]) -> str:
    """A few readable lines for ``gitxp show --env``."""
    py = env.get("python") or {}
    plat = env.get("platform") or {}
    cpu = env.get("cpu") or {}
    lines = [
        f"python    {py.get('version', '?')} ({py.get('implementation', '?')})"
        f"{' venv' if py.get('virtualenv') else ''} {py.get('executable', '')}".rstrip(),
        f"platform  {plat.get('platform', '?')}",
        f"cpu       {cpu.get('model') or '?'} ({cpu.get('count_physical') or '?'} cores, "
        f"{cpu.get('count_logical') or '?'} threads)",
        f"memory    {_gib(env.get('memory_total_bytes'))}",
    ]
    gpus = env.get("gpus") or []
    if gpus:
        for g in gpus:
            lines.append(f"gpu{g.get('index', '')}      {g.get('name', '?')} ({_gib(g.get('memory_total_bytes'))})")
    else:
        lines.append("gpus      none")
    cuda = env.get("cuda")
    if cuda:
        lines.append(f"cuda      {cuda.get('cuda_version') or '?'} (driver {cuda.get('driver_version') or '?'})")
    pkgs = [p for p in env.get("packages") or [] if isinstance(p, Mapping)]
    sourced = [(p, where) for p in pkgs if (where := package_source(p))]
    local = sum(1 for _p, where in sourced if where.startswith("path "))
    urls = len(sourced) - local
    notes = []
    if urls:
        notes.append(f"{urls} from URLs or VCS")
    if local:
        notes.append(f"{local} local/editable")
    lines.append(f"packages  {len(pkgs)}" + (f" ({', '.join(notes)})" if notes else ""))
    for p, where in sourced:  # each source shown: a pulled record may point anywhere
        lines.append(f"  {_one_line(p.get('name'))} {_one_line(p.get('version') or '')}  {_one_line(where)}")
    conda = env.get("conda")
    if conda:
        lines.append(f"conda     {conda.get('name')} ({len(conda.get('packages') or [])} packages) at {conda.get('prefix')}")
    ev = env.get("env_vars") or {}
    if ev:
        lines.append("env vars  " + ", ".join(f"{k}={v}" for k, v in ev.items()))
    return "\n".join(lines)


def _gib(n: Any) -> str:
    return f"{n / 2**30:.1f} GiB" if isinstance(n, (int, float)) else "?"


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from environment ``a`` to ``b``.

    Returns:
        ``{"versions": {what: {"a": x, "b": y}}`` for python, platform, cuda
        and driver versions that differ, ``"added"``/``"removed"``:
        ``[{"name", "version"}]`` (in ``b`` only / in ``a`` only) and
        ``"changed"``: ``[{"name", "a", "b"}]``, each sorted by name.
    """
    def get(env: Mapping[str, Any], *path: str) -> Any:
        cur: Any = env
        for p in path:
            cur = cur.get(p) if isinstance(cur, Mapping) else None
        return cur

    versions = {}
    for what, path in (("python", ("python", "version")), ("platform", ("platform", "platform")),
                       ("cuda", ("cuda", "cuda_version")), ("driver", ("cuda", "driver_version"))):
        va, vb = get(a, *path), get(b, *path)
        if va != vb:
            versions[what] = {"a": va, "b": vb}
    pa_ = {_norm(p["name"]): p for p in a.get("packages") or ()}
    pb_ = {_norm(p["name"]): p for p in b.get("packages") or ()}
    added = [{"name": pb_[k]["name"], "version": pb_[k].get("version")} for k in sorted(pb_.keys() - pa_.keys())]
    removed = [{"name": pa_[k]["name"], "version": pa_[k].get("version")} for k in sorted(pa_.keys() - pb_.keys())]
    changed = [{"name": pb_[k]["name"], "a": pa_[k].get("version"), "b": pb_[k].get("version")}
               for k in sorted(pa_.keys() & pb_.keys())
               if pa_[k].get("version") != pb_[k].get("version")]
    return {"versions": versions, "added": added, "removed": removed, "changed": changed}


def format_diff(d: Mapping[str, Any]) -> str:
    """Lines ``python: 3.10.4 -> 3.11.7``, ``+ name version``, ``- …``, ``~ name a -> b``.

    Returns ``""`` when nothing differs, so callers choose their own wording.
    """
    lines = [f"{k}: {v['a']} -> {v['b']}" for k, v in (d.get("versions") or {}).items()]
    lines += [f"+ {p['name']} {p['version']}" for p in d.get("added") or ()]
    lines += [f"- {p['name']} {p['version']}" for p in d.get("removed") or ()]
    lines += [f"~ {p['name']} {p['a']} -> {p['b']}" for p in d.get("changed") or ()]
    return "\n".join(lines)
