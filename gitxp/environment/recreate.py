"""Recreate a recorded environment by running installers: ``gitxp env --venv/--conda``.

Split from :mod:`gitxp.environment.capture` because it is a different concern:
environment.py *reads* an interpreter (standard library only, also run by
path in a foreign interpreter) and turns the record into text
(``requirements.txt``, ``environment.yml``); this module *acts* on a record,
running ``uv``/``venv``/pip or conda, mamba, micromamba in subprocesses and
checking what they installed. It is imported only by ``gitxp env``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp.environment.capture import _norm
from gitxp.environment.describe import _pin, conda_environment_yml, needs_allow_urls, package_source

if TYPE_CHECKING:
    import subprocess

__all__ = ["RecreateResult", "find_conda", "recreate_conda", "recreate_venv"]


@dataclass(frozen=True)
class RecreateResult:
    """What :func:`recreate_venv` achieved.

    ``installed`` are pins verified in the new interpreter; ``failed`` pairs
    a pin (or ``name==version`` of a local install) with the reason;
    ``skipped`` is installer tooling left to the venv; ``not_allowed``
    are packages recorded from a URL or VCS, left out without
    ``allow_urls`` (``name version from SOURCE``); ``warnings`` were also echoed.
    """

    path: Path
    python: Path
    installed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    skipped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    not_allowed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed


def _venv_python(dest: Path) -> Path:
    return dest / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    import subprocess

    return subprocess.run(list(cmd), capture_output=True, text=True, **kw)


def _failure_reason(output: str) -> str:
    if re.search(r"no matching distribution|could not find a version|no version of|not found in the package registry", output, re.I):
        return "no matching distribution"
    if re.search(r"requires-python|requires a different python|python>=|not supported on this platform|no wheels", output, re.I):
        return "not available for this python/platform"
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.lower().startswith(("error", "×", "╰"))]
    return (errs or lines or ["install failed"])[-1][:200]


def recreate_venv(
    env: Mapping[str, Any],
    dest: Path,
    *,
    python: str | None = None,
    progress: bool = False,
    echo: Callable[[str], Any] = print,
    allow_urls: bool = False,
    only_imported: bool = False,
) -> RecreateResult:
    """Create a venv at ``dest`` and install the recorded packages into it.

    ``only_imported`` installs just the distributions the run imported
    (``imported: true``) with their dependencies, which the other recorded
    pins constrain to the recorded versions (``-c``). gitxp itself is
    installed from the running gitxp (its source folder for a local or
    editable install, else the same release from the index); any other
    package installed from a local path is skipped, saying why, since the
    folder is on the recording machine.

    Uses ``uv`` when it is on PATH, else ``python -m venv`` and pip. All pins
    are installed in one resolver run; if that fails, each is retried alone
    (without dependencies, since the recorded set already names them) so that
    one missing release does not lose the others. Versions are then checked
    in the new interpreter.

    Args:
        env: a dict from :func:`capture` (environment.yaml).
        dest: the venv directory; must not exist or be empty.
        python: interpreter for the venv (default: the running one).
        progress: show the installer's progress on stderr, one line per package.
        echo: where warnings and the summary go.
        allow_urls: also install packages recorded from a URL or VCS
            (their setup code runs; a pulled record may point anywhere).

    Raises:
        EnvironmentRecreateError: the venv itself could not be created.
    """
    from gitxp.errors import EnvironmentRecreateError

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise EnvironmentRecreateError(f"{dest} exists and is not empty", "choose a new directory or remove it")
    if only_imported:
        imported_only(env)  # refuses a record without imports before anything is created
    uv, vpy = _create_venv(dest, python or sys.executable)
    warnings = _python_warnings(env, vpy)
    for w in warnings:
        echo(w)
    plan = _plan_packages(env, echo=echo, allow_urls=allow_urls, only_imported=only_imported)
    per_pin = _install_pins(plan, uv, vpy, progress=progress, only_imported=only_imported)
    failed = list(plan.failed)
    installed = _verify_pins(plan.pins, per_pin, _installed_versions(vpy), failed)
    echo(f"{dest}: installed {len(installed)} of {len(installed) + len(failed)} packages"
         + (f", {len(failed)} failed" if failed else ""))
    return RecreateResult(path=dest, python=vpy, installed=tuple(installed), failed=tuple(failed),
                          skipped=tuple(plan.skipped), warnings=tuple(warnings), not_allowed=tuple(plan.not_allowed))


def _create_venv(dest: Path, base: str) -> tuple[str | None, Path]:
    """An empty venv at ``dest`` from ``base`` (with ``uv`` when on PATH): (uv or None, its python)."""
    import shutil

    from gitxp.errors import EnvironmentRecreateError

    uv = shutil.which("uv")
    if uv:
        cmd = [uv, "venv", "--seed", "--python", base, str(dest)]
    else:
        cmd = [base, "-m", "venv", str(dest)]
    try:
        r = _run(cmd)
    except OSError as exc:
        raise EnvironmentRecreateError(f"cannot run {cmd[0]}: {exc}", "pass --python with a working interpreter") from exc
    vpy = _venv_python(dest)
    if r.returncode != 0 or not vpy.exists():
        why = _failure_reason(r.stderr + r.stdout)
        raise EnvironmentRecreateError(f"could not create a venv at {dest}: {why}",
                                       "check that the interpreter has the venv module (python3-venv)")
    return uv, vpy


def _python_warnings(env: Mapping[str, Any], vpy: Path) -> list[str]:
    """A warning when the new venv's Python differs (major.minor) from the recorded one."""
    got = _run([str(vpy), "-c", "import platform; print(platform.python_version())"]).stdout.strip()
    want = (env.get("python") or {}).get("version", "")
    if want and got and want.split(".")[:2] != got.split(".")[:2]:
        return [f"warning: recorded Python {want}, the new venv has Python {got}; some pins may not install"]
    return []


@dataclass
class _Plan:
    """What :func:`recreate_venv` installs, and what it leaves out before installing anything."""

    pins: list[tuple[str, str, str | None]] = field(default_factory=list)  # (requirement, name, version)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    not_allowed: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)


def _plan_packages(env: Mapping[str, Any], *, echo: Callable[[str], Any], allow_urls: bool, only_imported: bool) -> _Plan:
    """Sort the recorded packages into pins to install, constraints, and what is skipped, refused or failed."""
    plan = _Plan()
    packages = [p for p in env.get("packages") or () if isinstance(p, Mapping)]
    for pkg in packages:
        req, why = _pin(pkg, allow_urls=allow_urls)
        label = f"{pkg.get('name')}=={pkg.get('version')}"
        if only_imported and pkg.get("imported") is not True:
            if req and "==" in req and _norm(str(pkg.get("name"))) != "gitxp":
                plan.constraints.append(req)
            continue
        if _norm(str(pkg.get("name"))) == "gitxp":
            req, how = _running_gitxp()
            plan.pins.append((req, "gitxp", None))
            echo(f"gitxp: installing the running gitxp {how} (recorded: {pkg.get('version')})")
        elif req is None and needs_allow_urls(pkg) and not allow_urls:
            plan.not_allowed.append(f"{pkg.get('name')} {pkg.get('version') or ''} from {package_source(pkg)}".replace("  ", " "))
        elif req:
            plan.pins.append((req, pkg["name"], pkg.get("version")))
        elif why == "installer tooling":
            plan.skipped.append(label)
        elif why.startswith("local path"):
            plan.skipped.append(f"{label}: {why}, a folder on the recording machine; install it yourself with `pip install PATH` if you have it")
        else:
            plan.failed.append((label, why))
    return plan


def _install_pins(plan: _Plan, uv: str | None, vpy: Path, *, progress: bool, only_imported: bool) -> dict[str, str]:
    """Install every pin in one resolver run, else each alone; returns the reason for each pin that failed alone."""
    import tempfile

    pins = plan.pins
    per_pin: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gitxp-env-") as tmp:
        constraints_file = Path(tmp) / "constraints.txt"
        constraints_file.write_text("".join(f"{c}\n" for c in plan.constraints))

        def install(reqs: list[str], *, deps: bool, show: bool = False) -> subprocess.CompletedProcess[str]:
            if uv:
                cmd = [uv, "pip", "install", "--python", str(vpy)]
            else:
                cmd = [str(vpy), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
            if plan.constraints:
                cmd += ["-c", str(constraints_file)]
            cmd += ([] if deps else ["--no-deps"]) + reqs
            return _run_showing(cmd) if show else _run(cmd)

        if pins:
            if progress:
                print(f"installing {len(pins)} package(s) with {'uv' if uv else 'pip'}" + (" and their dependencies" if only_imported else ""),
                      file=sys.stderr, flush=True)
            r = install([p[0] for p in pins], deps=True, show=progress)
            if r.returncode != 0:
                for k, (req, name, _v) in enumerate(pins, 1):
                    if progress:
                        print(f"installing {k}/{len(pins)} {name} alone", file=sys.stderr, flush=True)
                    r1 = install([req], deps=only_imported or name == "gitxp")
                    if r1.returncode != 0:
                        per_pin[req] = _failure_reason(r1.stderr + r1.stdout)
    return per_pin


def _installed_versions(vpy: Path) -> dict[str, str]:
    """``{normalised name: version}`` of every distribution in the new interpreter."""
    code = ("import importlib.metadata as m, json, re;"
            "print(json.dumps({re.sub(r'[-_.]+','-',d.metadata['Name']).lower(): d.version"
            " for d in m.distributions() if d.metadata['Name']}))")
    r = _run([str(vpy), "-c", code])
    try:
        have: dict[str, str] = json.loads(r.stdout or "{}")
    except ValueError:
        have = {}
    return have


def _verify_pins(pins: list[tuple[str, str, str | None]], per_pin: Mapping[str, str], have: Mapping[str, str], failed: list[tuple[str, str]]) -> list[str]:
    """The pins verified in the new interpreter; each other one is appended to ``failed`` with its reason."""
    installed = []
    for req, name, version in pins:
        now = have.get(_norm(name))
        if req in per_pin:
            failed.append((req, per_pin[req]))
        elif now is None:
            failed.append((req, "not installed"))
        elif version and "==" in req and now != version and name != "gitxp":
            failed.append((req, f"got {now} instead"))
        else:
            installed.append(req)
    return installed


def imported_only(env: Mapping[str, Any]) -> dict[str, Any]:
    """``env`` with only the packages the run imported (``imported: true``).

    Raises:
        EnvironmentRecreateError: the record says nothing about imports.
    """
    from gitxp.errors import EnvironmentRecreateError

    packages = [p for p in env.get("packages") or () if isinstance(p, Mapping)]
    kept = [p for p in packages if p.get("imported") is True]
    if not kept:
        raise EnvironmentRecreateError("this experiment's environment records no imported packages",
                                       "it ran before gitxp recorded imports, or ran no Python; rebuild it all without --only-imported")
    return {**env, "packages": kept}


def _running_gitxp() -> tuple[str, str]:
    """(requirement, how it is said) for the gitxp running now.

    Its source folder when it runs from one (an editable install or a
    checkout on PYTHONPATH: that folder has the build files), else the same
    release from the package index.
    """
    import importlib.metadata as md

    here = Path(__file__).resolve().parents[2]  # the folder holding the gitxp package
    if (here / "pyproject.toml").exists() or (here / "setup.py").exists():
        return str(here), f"from {here}"
    try:
        version = md.version("gitxp")
    except md.PackageNotFoundError:
        from gitxp import __version__ as version
    return f"gitxp=={version}", f"{version} from the package index"


def _run_showing(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run an installer, printing one line per package as it reports it (a terminal's progress)."""
    import subprocess

    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    seen: list[str] = []
    assert proc.stdout is not None
    k = 0
    for line in proc.stdout:
        seen.append(line)
        m = re.match(r"\s*(Collecting|Downloading|Requirement already satisfied:)\s+([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        m_uv = re.match(r"\s*\+ ([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m and m.group(1) == "Collecting":
            k += 1
            print(f"  [{k}] collecting {m.group(2)}", file=sys.stderr, flush=True)
        elif m_uv:
            k += 1
            print(f"  [{k}] installed {m_uv.group(1)} {m_uv.group(2)}", file=sys.stderr, flush=True)
        elif re.match(r"\s*(Resolved|Prepared|Installed|Successfully installed) ", line):
            print(f"  {line.strip()[:200]}", file=sys.stderr, flush=True)
    rc = proc.wait()
    return subprocess.CompletedProcess(list(cmd), rc, "".join(seen), "")


def find_conda() -> str | None:
    """The first of conda, mamba, micromamba on PATH (a full path), or None."""
    import shutil

    for tool in ("conda", "mamba", "micromamba"):
        found = shutil.which(tool)
        if found:
            return found
    return None


def recreate_conda(env: Mapping[str, Any], name: str, *, file: Path | None = None, allow_urls: bool = False, progress: bool = True) -> None:
    """Create conda environment ``name`` from the recorded environment.

    Writes :func:`conda_environment_yml` to ``file`` (kept) or a temporary
    file, then runs ``<tool> env create -n NAME -f FILE`` (micromamba:
    ``micromamba create -n NAME -f FILE -y``) with its output on the terminal
    (``progress``), else quietly, its last line quoted if it fails.

    Raises:
        EnvironmentRecreateError: no conda tool, or the tool failed.
    """
    import shutil
    import subprocess
    import tempfile

    from gitxp.errors import EnvironmentRecreateError

    tool = find_conda()
    if tool is None:
        raise EnvironmentRecreateError(
            "no conda, mamba or micromamba on PATH",
            "write the file with `gitxp env REF --conda-file environment.yml` and create it where conda is installed",
        )
    text = conda_environment_yml(env, name, allow_urls=allow_urls)
    tmpdir = None
    if file is None:
        tmpdir = tempfile.mkdtemp(prefix="gitxp-conda-")
        file = Path(tmpdir) / "environment.yml"
    try:
        Path(file).write_text(text, encoding="utf-8")
        if Path(tool).name.startswith("micromamba"):
            cmd = [tool, "create", "-n", name, "-f", str(file), "-y"]
        else:
            cmd = [tool, "env", "create", "-n", name, "-f", str(file)]
        if progress:
            rc, said = subprocess.call(cmd), ""
        else:
            r = _run(cmd)
            rc, said = r.returncode, _failure_reason(r.stderr + r.stdout)
        if rc != 0:
            raise EnvironmentRecreateError(f"`{' '.join(cmd)}` failed with exit status {rc}" + (f": {said}" if said else ""),
                                           "read its output above; `--conda-file` writes the file to edit")
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
