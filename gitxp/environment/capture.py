"""Capture the environment of a run, and describe it as text.

:func:`capture` returns the plain dict written as ``environment.yaml``: the
interpreter, platform, CPU, memory, GPUs and CUDA driver, every installed
distribution of the *running* interpreter (from ``importlib.metadata``, no
pip subprocess), the conda environment when there is one, and the ML-relevant
environment variables with secrets redacted. It runs at the start of every
experiment, so it is built for speed (a few milliseconds per hundred
packages): no subprocesses, no network, no pyyaml, pyarrow or psutil, so
that it also works inside a bare venv that only has the standard library.

The rest turns a recorded dict into text: :func:`requirements_txt`
(``requirements.txt``), :func:`conda_environment_yml` (``environment.yml``),
:func:`summary` and :func:`diff`/:func:`format_diff` (``gitxp show/diff --env``).
Rebuilding an environment by running installers (``gitxp env --venv/--conda``)
lives in :mod:`gitxp.environment.recreate`.

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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_PREFIXES",
    "capture",
    "capture_interpreter",
    "conda_environment_yml",
    "diff",
    "format_diff",
    "requirements_txt",
    "summary",
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
#: Installer tooling kept out of pins: the target environment brings its own.
_TOOLING = frozenset({"pip", "setuptools", "wheel", "distribute"})


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name (``PyYAML`` → ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- capture


def module_owners() -> dict[str, list[str]]:
    """Top-level module name -> the distributions providing it (``{}`` before Python 3.10)."""
    try:
        import importlib.metadata as md

        owners = md.packages_distributions()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - an odd distribution must not cost the environment record
        return {}
    return {k: sorted(set(v)) for k, v in owners.items()}


def capture(*, extra_env_vars: Sequence[str] = (), with_module_owners: bool = False) -> dict[str, Any]:
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
        kept in staging by gitxp, not in the record).
    """
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
        "packages": _packages(),
        "conda": _conda(sys.prefix, os.environ),
        "env_vars": _env_vars(os.environ, extra_env_vars),
        **({"module_owners": module_owners()} if with_module_owners else {}),
    }


def _gpu_info() -> list[dict[str, Any]]:
    if __package__:
        from gitxp.run.hardware import gpu_info
    else:  # run by path in another interpreter (capture_interpreter)
        import runpy

        gpu_info = runpy.run_path(str(Path(__file__).resolve().parent.parent / "run" / "hardware.py"))["gpu_info"]
    return gpu_info()  # type: ignore[no-any-return]


def capture_interpreter(python: str, *, extra_env_vars: Sequence[str] = (), timeout: float = 60.0, with_module_owners: bool = False) -> dict[str, Any]:
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
            f"json.dump(m['capture'](extra_env_vars=sys.argv[2:],with_module_owners={bool(with_module_owners)}),sys.stdout)")
    try:
        r = subprocess.run([python, "-c", code, str(Path(__file__).resolve()), *extra_env_vars],
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


def _metadata_header(text: str) -> tuple[str | None, str | None]:
    """Name and Version from the metadata headers without the email parser.

    ``Distribution.metadata`` parses the whole file with ``email`` (~0.5 ms
    a package); the two headers we need are at the top.
    """
    name = version = None
    for line in text.splitlines():
        if not line:
            break
        if name is None and line.startswith("Name:"):
            name = line[5:].strip()
        elif version is None and line.startswith("Version:"):
            version = line[8:].strip()
        if name and version:
            break
    return name, version


def _source(meta: Path, entry: str) -> dict[str, Any] | None:
    """Where a distribution came from, per PEP 610 ``direct_url.json``."""
    raw = _read(meta, "direct_url.json") if meta.is_dir() else None
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


def _metadata_dirs() -> Iterator[tuple[Path, str]]:
    """(metadata path, sys.path entry) for every distribution, in sys.path order.

    The same search as ``importlib.metadata.distributions()`` for plain
    directories (``*.dist-info``, ``*.egg-info`` dirs and files), without
    importing it: importlib.metadata pulls in ``email`` and friends (~20 ms).
    """
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
        for item in items:
            if item.name.endswith((".dist-info", ".egg-info")):
                yield Path(item.path), entry


def _read(meta: Path, name: str) -> str | None:
    try:
        return (meta / name).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _packages() -> list[dict[str, Any]]:
    """Installed distributions, first on sys.path wins, sorted by normalised name."""
    seen: dict[str, dict[str, Any]] = {}
    for meta, entry in _metadata_dirs():
        if meta.is_dir():
            text = _read(meta, "METADATA") or _read(meta, "PKG-INFO") or ""
        else:  # an old-style egg-info *file* holds PKG-INFO itself
            try:
                text = meta.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
        name, version = _metadata_header(text)
        if not name:
            continue
        key = _norm(name)
        if key in seen:
            continue
        pkg: dict[str, Any] = {"name": name, "version": version}
        src = _source(meta, entry)
        if src:
            pkg["source"] = src
        installer = (_read(meta, "INSTALLER") or "").strip() if meta.is_dir() else ""
        if installer and installer != "pip":
            pkg["installer"] = installer
        seen[key] = pkg
    return [seen[k] for k in sorted(seen)]


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


# ---------------------------------------------------------------- exports


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
