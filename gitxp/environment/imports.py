"""Which distributions a Python run actually imported (``imported: true`` in environment.yaml).

``gitxp env REF --venv DIR --only-imported`` rebuilds just those, not the
whole 6 GB venv the run happened to live in. Two recorders write the same
staging files, ``imports-<pid>.txt`` (top-level module names, one a line):

* an API run (``gitxp.start()``) writes its own ``sys.modules`` when it
  finishes (:func:`record_process`);
* ``gitxp start -- CMD`` cannot rely on the child calling gitxp, so the
  wrapper puts a ``sitecustomize.py`` in the run's staging folder on the
  child's ``PYTHONPATH`` (:func:`inject`). In every Python process of the
  command it registers an ``atexit`` hook that writes that process's module
  names, removes its folder from ``sys.path`` again (the script sees the
  path it would have seen), and then imports the next ``sitecustomize`` on
  the path, so a user's or a distribution's own one still runs. The hook
  catches everything: recording never breaks the script. Modules already
  loaded when it runs (the interpreter's, those ``.pth`` files import) are
  not the script's and are left out. Nothing is
  recorded for a process killed by a signal, started with ``-I``/``-E``,
  or ending in ``os._exit`` (a forked worker: its parent records).

The names are mapped to distributions with
``importlib.metadata.packages_distributions()`` in the interpreter that
ran them (collected with the environment, at start, in the background:
``module_owners`` in :func:`gitxp.environment.capture.capture`) and marked when the
run is committed (:func:`mark`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from gitxp.errors import GitxpError

OWNERS_FILE = "module_owners.json"
PREFIX = "imports-"
SITE_DIR = "site"

SITECUSTOMIZE = '''\
# Written by `gitxp start` (gitxp/imports.py): records the top-level modules this
# Python process imported, for `imported: true` in environment.yaml; then runs any
# other sitecustomize on the path, as Python would have without this one.
import sys as _gitxp_sys


def _gitxp_setup():
    import atexit
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    out = os.environ.get("GITXP_RUN_DIR")
    at_start = set(_gitxp_sys.modules)  # the interpreter's and .pth files' own (_distutils_hack, editable finders)

    def record():
        try:
            if not out or not os.path.isdir(out):
                return
            names = sorted({str(m).partition(".")[0] for m in list(_gitxp_sys.modules) if m not in at_start})
            path = os.path.join(out, "imports-%d.txt" % os.getpid())
            with open(path + ".tmp", "w") as f:
                f.write("\\n".join(names) + "\\n")
            os.replace(path + ".tmp", path)
        except BaseException:
            pass

    try:
        atexit.register(record)
        _gitxp_sys.path[:] = [p for p in _gitxp_sys.path if os.path.abspath(p or ".") != here]
    except BaseException:
        pass
    ours = _gitxp_sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  the next one on the path (the user's), if any
    except ImportError as exc:
        if getattr(exc, "name", None) != "sitecustomize":
            raise
        if ours is not None:
            _gitxp_sys.modules["sitecustomize"] = ours


_gitxp_setup()
del _gitxp_setup
'''


def inject(env: dict[str, str], run_dir: Path) -> None:
    """Put the recording ``sitecustomize`` first on the child's ``PYTHONPATH``."""
    site = run_dir / SITE_DIR
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{site}{os.pathsep}{old}" if old else str(site)


def record_process(run_dir: Path) -> None:
    """Write this process's imported top-level module names (an API run, at finish)."""
    from gitxp.store.staging import atomic_write

    try:
        names = sorted({m.partition(".")[0] for m in list(sys.modules)})
        atomic_write(run_dir / f"{PREFIX}{os.getpid()}.txt", "\n".join(names) + "\n")
    except OSError:
        pass  # a full disk: the environment just says nothing about imports


def imported_modules(run_dir: Path) -> set[str] | None:
    """Every recorded top-level module name, or None when no process recorded any."""
    files = sorted(run_dir.glob(f"{PREFIX}*.txt"))
    if not files:
        return None
    names: set[str] = set()
    for f in files:
        try:
            names.update(ln.strip() for ln in f.read_text(errors="replace").splitlines() if ln.strip())
        except OSError:
            continue
    return names


def mark(env_yaml: bytes, run_dir: Path) -> bytes:
    """``environment.yaml`` with ``imported: true`` on each distribution the run imported.

    Unchanged when nothing was recorded (a non-Python command, a run from
    before this existed), so "not imported" is only ever claimed when known.
    """
    from gitxp.store import layout
    from gitxp.environment.capture import _norm

    names = imported_modules(run_dir)
    owners_file = run_dir / OWNERS_FILE
    if names is None or not owners_file.exists():
        return env_yaml
    try:
        owners: dict[str, list[str]] = json.loads(owners_file.read_text())
        doc: Any = layout.load_yaml(env_yaml, what=layout.ENVIRONMENT_FILE)
    except (OSError, ValueError, GitxpError):
        return env_yaml
    if not isinstance(doc, dict) or not isinstance(doc.get("packages"), list):
        return env_yaml
    used = {_norm(d) for n in names for d in owners.get(n, ()) if isinstance(d, str)}
    for pkg in doc["packages"]:
        if isinstance(pkg, dict) and isinstance(pkg.get("name"), str):
            if _norm(pkg["name"]) in used:
                pkg["imported"] = True
            else:
                pkg.pop("imported", None)
    return layout.dump_yaml(doc).encode()

