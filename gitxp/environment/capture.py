"""Capture the environment of a run.

:func:`capture` returns the plain dict written as ``environment.yaml``: the
interpreter, platform, CPU, memory, GPUs and CUDA driver, every installed
distribution of the *running* interpreter (from ``importlib.metadata``, no
pip subprocess), the conda environment when there is one, and the ML-relevant
environment variables with secrets redacted. It runs at the start of every
experiment, so it is built for speed (a few milliseconds per hundred
packages): no subprocesses, no network, no pyyaml, pyarrow or psutil, so
that it also works inside a bare venv that only has the standard library.

Turning a recorded dict into text (requirement pins, ``environment.yml``,
summaries and diffs) lives in :mod:`gitxp.environment.describe`; rebuilding
an environment by running installers (``gitxp env --venv/--conda``) in
:mod:`gitxp.environment.recreate`.

This file is also run by path in another interpreter
(:func:`capture_interpreter`), so it must import nothing outside the standard
library at module level, gitxp's own modules included.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_PREFIXES",
    "capture",
    "capture_interpreter",
]

#: Environment variables recorded when their name starts with one of these.
ENV_PREFIXES = (
    "CUDA_", "CUBLAS_", "CUDNN_", "NCCL_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_",
    "KMP_", "BLIS_", "VECLIB_", "NUMEXPR_", "PYTHON", "PYTORCH_", "TORCH", "TF_",
    "JAX_", "XLA_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "WANDB_", "MLFLOW_",
    "SLURM_", "PBS_", "LSB_", "SGE_", "GITXP_", "CONDA_DEFAULT_ENV", "VIRTUAL_ENV",
    "LD_LIBRARY_PATH", "LD_PRELOAD", "ROCR_", "HIP_", "HSA_", "MASTER_ADDR",
    "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_", "DS_", "ONEDNN_",
)
#: ``TF_`` is TensorFlow's prefix, but Terraform's variables share it: its
#: documented ones are never recorded (``TF_VAR_*`` holds arbitrary inputs,
#: ``TF_CLI_CONFIG_FILE`` / ``TF_TOKEN_*`` credentials).
ENV_EXCLUDED_PREFIXES = (
    "TF_VAR_", "TF_CLI_", "TF_TOKEN_", "TF_LOG", "TF_INPUT", "TF_DATA_DIR", "TF_WORKSPACE",
    "TF_IN_AUTOMATION", "TF_REGISTRY_", "TF_PLUGIN_CACHE_", "TF_IGNORE", "TF_STATE_PERSIST_INTERVAL",
    "TF_APPEND_USER_AGENT",
)


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name (``PyYAML`` → ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- capture


def module_owners(cache_dir: str | os.PathLike[str] | None = None, dists: list[_Dist] | None = None) -> dict[str, list[str]]:
    """Top-level module name -> the distributions providing it (``{}`` before Python 3.10).

    ``importlib.metadata`` reads every distribution's RECORD for this (torch's
    lists thousands of files: 0.3 s of a run's start in an ML environment),
    so with ``cache_dir`` the result is kept (:func:`_cached`): an unchanged
    environment reads no RECORD. ``dists``: :func:`_distributions`, when the
    caller has them.
    """

    def compute() -> dict[str, list[str]] | None:
        try:
            import importlib.metadata as md

            owners = md.packages_distributions()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - an odd distribution must not cost the environment record
            return None
        return {k: sorted(set(v)) for k, v in owners.items()}

    def valid(doc: Any) -> bool:
        return isinstance(doc, dict) and all(isinstance(k, str) and isinstance(v, list) for k, v in doc.items())

    return _cached(cache_dir, "module-owners", dists, valid, compute) or {}


def _cached(cache_dir: str | os.PathLike[str] | None, kind: str, dists: list[_Dist] | None, valid: Callable[[Any], bool], compute: Callable[[], Any]) -> Any:
    """``compute()`` (not kept when None), kept in ``cache_dir`` as JSON under a digest of the installed distributions.

    The digest covers every metadata folder's path, size and modification
    time: any install, upgrade or removal changes it (pip replaces a
    distribution's folder, never edits it in place).
    """
    if cache_dir is None:
        return compute()
    import hashlib

    h = hashlib.sha256()
    for path, _entry, _is_dir in _distributions() if dists is None else dists:
        try:
            st = os.stat(path)
        except OSError:
            continue
        h.update(f"{path}\0{st.st_mtime_ns}\0{st.st_size}\n".encode("utf-8", "surrogateescape"))
    cache = Path(cache_dir) / f"{kind}-{h.hexdigest()[:24]}.json"
    try:
        doc = json.loads(cache.read_text(encoding="utf-8"))
        if valid(doc):
            return doc
    except (OSError, ValueError):
        pass
    doc = compute()
    if doc is not None:
        _keep(cache, json.dumps(doc))
    return doc


def _keep(path: Path, text: str, *, keep: int = 8) -> None:
    """Write a cache file atomically and drop all but the newest ``keep`` of its kind; errors are ignored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        kind = path.name.rsplit("-", 1)[0]
        old = sorted(path.parent.glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for p in old[keep:]:
            p.unlink()
    except OSError:
        pass


def capture(*, extra_env_vars: Sequence[str] = (), with_module_owners: bool = False, cache_dir: str | None = None) -> dict[str, Any]:
    """Describe the running interpreter and machine for ``environment.yaml``.

    Args:
        extra_env_vars: names recorded in addition to the allow-listed
            prefixes (``gitxp start --env-var NAME``); secrets are still
            redacted.

    Returns:
        A dict of plain values (str, int, bool, None, lists, dicts) with keys
        ``python``, ``platform``, ``cpu``, ``memory_total_bytes``, ``gpus``,
        ``cuda``, ``packages``, ``conda`` and ``env_vars``; with
        ``with_module_owners`` also ``module_owners`` (:func:`module_owners`,
        kept in staging by gitxp, not in the record; cached in ``cache_dir``).
    """
    dists = _distributions()
    cpuinfo = _cpu()
    gpus = _gpu_info()
    cuda = None
    if gpus:
        cuda = {"driver_version": gpus[0].get("driver_version"),
                "cuda_version": gpus[0].get("cuda_version")}
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "virtualenv": sys.prefix != sys.base_prefix,
        },
        "platform": _platform(),
        "cpu": cpuinfo,
        "memory_total_bytes": _memory_total(),
        "gpus": gpus,
        "cuda": cuda,
        "packages": _cached(cache_dir, "packages", dists, _packages_valid, lambda: _packages(dists)),
        "conda": _conda(sys.prefix, os.environ),
        "env_vars": _env_vars(os.environ, extra_env_vars),
        **({"module_owners": module_owners(cache_dir, dists)} if with_module_owners else {}),
    }


def _gpu_info() -> list[dict[str, Any]]:
    if __package__:
        from gitxp.run.hardware import gpu_info
    else:  # run by path in another interpreter (capture_interpreter)
        import runpy

        gpu_info = runpy.run_path(str(Path(__file__).resolve().parent.parent / "run" / "hardware.py"))["gpu_info"]
    return gpu_info()  # type: ignore[no-any-return]


def capture_interpreter(python: str, *, extra_env_vars: Sequence[str] = (), timeout: float = 60.0, with_module_owners: bool = False,
                        cache_dir: str | None = None) -> dict[str, Any]:
    """:func:`capture` as seen from another interpreter.

    ``gitxp start -- python train.py`` runs the script with whatever
    ``python`` is on PATH, which need not be gitxp's own interpreter (a
    project venv without gitxp). This runs this very file in that
    interpreter with the standard library only (``runpy``; gitxp need not be
    importable there, its ``__init__`` is never run) and reads the dict back
    as JSON. Costs one interpreter start-up.

    Raises:
        GitxpError: the interpreter could not be run or printed no result.
    """
    import subprocess

    from gitxp.errors import GitxpError

    # sys.path[0] is the probe's cwd ('' for -c), not something the script would see: drop it
    code = ("import json,runpy,sys;sys.path.pop(0);m=runpy.run_path(sys.argv[1],run_name='gitxp_env_probe');"
            f"json.dump(m['capture'](extra_env_vars=sys.argv[3:],with_module_owners={bool(with_module_owners)},cache_dir=sys.argv[2] or None),sys.stdout)")
    try:
        r = subprocess.run([python, "-c", code, str(Path(__file__).resolve()), cache_dir or "", *extra_env_vars],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise ValueError((r.stderr.strip().splitlines() or ["no output"])[-1])
        return json.loads(r.stdout)  # type: ignore[no-any-return]
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise GitxpError(f"could not read the environment of {python}: {exc}",
                         "check that the interpreter runs, or record gitxp's own with `gitxp.start()`") from exc


def _platform() -> dict[str, str]:
    # platform.platform() scans the interpreter binary for the libc version
    # (~10 ms); os.confstr gives the same answer for free on glibc.
    u = os.uname() if hasattr(os, "uname") else None
    system = platform.system()
    release = u.release if u else platform.release()
    machine = u.machine if u else platform.machine()
    libc = ""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        pass
    full = f"{system}-{release}-{machine}" + (f"-with-{libc.replace(' ', '')}" if libc else "")
    return {"system": system, "release": release, "machine": machine, "platform": full}


def _cpu() -> dict[str, Any]:
    model: str | None = None
    physical: int | None = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cores: set[tuple[str, str]] = set()
            phys = core = ""
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k == "model name" and model is None:
                    model = v.strip()
                elif k == "physical id":
                    phys = v.strip()
                elif k == "core id":
                    core = v.strip()
                    cores.add((phys, core))
            physical = len(cores) or None
    except OSError:
        pass
    if model is None:
        model = platform.processor() if sys.platform == "win32" else None
    if physical is None:
        try:
            import psutil

            physical = psutil.cpu_count(logical=False)
        except Exception:
            physical = None
    return {"model": model, "count_logical": os.cpu_count(), "count_physical": physical}


def _memory_total() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return None


def _metadata_header(path: str) -> tuple[str | None, str | None]:
    """Name and Version from a metadata file's headers, reading no further than them.

    ``Distribution.metadata`` parses the whole file with ``email`` (~0.5 ms
    a package); the two headers we need are at the top, and the body below
    (the project's README: 1.9 MB over 163 packages here) is never read.
    """
    name = version = None
    try:
        with open(path, "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    break
                if name is None and line.startswith("Name:"):
                    name = line[5:].strip()
                elif version is None and line.startswith("Version:"):
                    version = line[8:].strip()
                if name and version:
                    break
    except OSError:
        pass
    return name, version


def _source(meta: str, entry: str) -> dict[str, Any] | None:
    """Where a distribution came from, per PEP 610 ``direct_url.json``."""
    raw = _read(meta, "direct_url.json")
    if raw:
        try:
            d = json.loads(raw)
        except ValueError:
            return None
        url = str(d.get("url", ""))
        if "vcs_info" in d:
            vcs = d["vcs_info"]
            return {"vcs": vcs.get("vcs", "git"), "url": url, "commit": vcs.get("commit_id")}
        if "dir_info" in d:
            path = _file_url_path(url)
            return {"editable": bool(d["dir_info"].get("editable", False)), "path": path}
        if url.startswith("file:"):
            return {"path": _file_url_path(url)}
        return {"url": url} if url else None
    # Legacy ``setup.py develop``/egg-link installs: metadata outside site-packages.
    where = entry
    if where and not re.search(r"[/\\](site|dist)-packages$", where.rstrip("/\\")):
        if (Path(where) / "setup.py").exists() or (Path(where) / "pyproject.toml").exists():
            return {"editable": True, "path": where}
    return None


def _file_url_path(url: str) -> str:
    if url.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(url).path)
    return url


#: A distribution's metadata: (``*.dist-info``/``*.egg-info`` path, the sys.path entry holding it, whether it is a folder).
_Dist = tuple[str, str, bool]


def _distributions() -> list[_Dist]:
    """Every distribution's metadata, in sys.path order.

    The same search as ``importlib.metadata.distributions()`` for plain
    directories (``*.dist-info``, ``*.egg-info`` dirs and files), without
    importing it: importlib.metadata pulls in ``email`` and friends (~20 ms).
    """
    out: list[_Dist] = []
    seen_entries = set()
    for entry in sys.path:
        entry = entry or os.getcwd()
        if entry in seen_entries:
            continue
        seen_entries.add(entry)
        try:
            items = sorted(os.scandir(entry), key=lambda e: e.name)
        except OSError:
            continue
        out.extend((item.path, entry, item.is_dir()) for item in items if item.name.endswith((".dist-info", ".egg-info")))
    return out


def _read(meta: str, name: str) -> str | None:
    """A small file of a metadata folder, or None (absent, or ``meta`` is an egg-info file)."""
    try:
        with open(os.path.join(meta, name), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _packages(dists: list[_Dist]) -> list[dict[str, Any]]:
    """Installed distributions, first on sys.path wins, sorted by normalised name."""
    seen: dict[str, dict[str, Any]] = {}
    for meta, entry, is_dir in dists:
        if is_dir:
            name, version = _metadata_header(os.path.join(meta, "METADATA"))
            if not name:
                name, version = _metadata_header(os.path.join(meta, "PKG-INFO"))
        else:  # an old-style egg-info *file* holds PKG-INFO itself
            name, version = _metadata_header(meta)
        if not name:
            continue
        key = _norm(name)
        if key in seen:
            continue
        pkg: dict[str, Any] = {"name": name, "version": version}
        src = _source(meta, entry)
        if src:
            pkg["source"] = src
        installer = (_read(meta, "INSTALLER") or "").strip() if is_dir else ""
        if installer and installer != "pip":
            pkg["installer"] = installer
        seen[key] = pkg
    return [seen[k] for k in sorted(seen)]


def _packages_valid(doc: Any) -> bool:
    return isinstance(doc, list) and all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in doc)


_CHANNEL_RE = re.compile(r'"channel"\s*:\s*"([^"]*)"')


def _channel_name(channel: str) -> str:
    """``https://conda.anaconda.org/conda-forge/linux-64`` → ``conda-forge``."""
    c = channel.rstrip("/")
    if not c:
        return ""
    c = re.sub(r"/(noarch|[a-z]+-(64|32|aarch64|arm64|ppc64le|s390x|armv\w+))$", "", c)
    if "repo.anaconda.com/pkgs/" in c:
        return "defaults"
    if "://" in c:
        c = c.split("://", 1)[1]
        c = c.split("/", 1)[1] if "/" in c else c
    return c


def _conda(prefix: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The conda environment at ``prefix`` from ``conda-meta/*.json``, or None.

    File names give name, version and build; the channel is read from the
    head of each file (conda writes keys sorted, ``files`` far below), so a
    400-package environment costs milliseconds, not a full JSON parse each.
    """
    meta = Path(prefix) / "conda-meta"
    if not meta.is_dir():
        return None
    if environ.get("CONDA_PREFIX") and os.path.realpath(environ["CONDA_PREFIX"]) == os.path.realpath(prefix):
        name = environ.get("CONDA_DEFAULT_ENV") or Path(prefix).name
    else:
        name = Path(prefix).name if Path(prefix).parent.name == "envs" else "base"
    pkgs = []
    for entry in sorted(os.scandir(meta), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        parts = entry.name[:-5].rsplit("-", 2)
        if len(parts) != 3:
            continue
        pname, version, build = parts
        channel = ""
        try:
            with open(entry.path, encoding="utf-8", errors="replace") as f:
                head = f.read(4096)
            m = _CHANNEL_RE.search(head)
            if m is None:
                with open(entry.path, encoding="utf-8") as f:
                    channel = str(json.load(f).get("channel", ""))
            else:
                channel = m.group(1)
        except (OSError, ValueError):
            pass
        pkgs.append({"name": pname, "version": version, "build": build,
                     "channel": _channel_name(channel)})
    return {"name": name, "prefix": prefix, "packages": pkgs}


def _env_vars(environ: Mapping[str, str], extra: Sequence[str]) -> dict[str, str]:
    """The allow-listed variables: secret-looking names redacted, URL credentials masked."""
    redact = _redact()
    wanted = set(extra)
    out = {}
    for k in sorted(environ):
        if k in wanted or (k.startswith(ENV_PREFIXES) and not k.startswith(ENV_EXCLUDED_PREFIXES)):
            out[k] = redact.REDACTED if redact.looks_secret(k) else redact.mask_url(environ[k])
    return out


def _redact() -> Any:
    """:mod:`gitxp.redact`, also when this file runs by path in another interpreter."""
    if __package__:
        from gitxp import redact

        return redact
    import runpy
    import types

    return types.SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parent.parent / "redact.py")))
