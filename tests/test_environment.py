"""Environment capture and recreation with real files, interpreters and venvs."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitxp.environment import capture as environment
from gitxp.environment import recreate
from gitxp.environment.capture import capture, capture_interpreter
from gitxp.environment.describe import conda_environment_yml, diff, format_diff, requirements_txt, summary
from gitxp.environment.recreate import recreate_venv

ROOT = Path(__file__).resolve().parents[1]


def _by_name(env: dict) -> dict[str, dict]:
    return {p["name"].lower().replace("_", "-"): p for p in env["packages"]}


def test_capture_describes_this_interpreter() -> None:
    env = capture()  # its time is benchmarks/run.py case 8b
    assert set(env) >= {"python", "platform", "cpu", "memory_total_bytes", "gpus", "cuda",
                        "packages", "conda", "env_vars"}
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["python"]["executable"] == sys.executable
    assert env["python"]["virtualenv"] == (sys.prefix != sys.base_prefix)
    assert env["platform"]["system"] and env["platform"]["machine"]
    assert env["cpu"]["count_logical"] == os.cpu_count()
    assert env["memory_total_bytes"] > 100 * 2**20
    assert isinstance(env["gpus"], list)
    assert (env["cuda"] is None) == (env["gpus"] == [])
    # Plain data only: it is written as YAML and must round-trip through JSON.
    assert json.loads(json.dumps(env)) == env

    pkgs = _by_name(env)
    for dist in ("pyyaml", "pyarrow", "dulwich"):
        assert pkgs[dist]["version"] == md.version(dist)
    names = [p["name"].lower().replace("_", "-").replace(".", "-") for p in env["packages"]]
    assert names == sorted(names) and len(names) == len(set(names))


def test_env_vars_are_allow_listed_and_secrets_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("MY_API_TOKEN", "tok-not-allowed")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    monkeypatch.setenv("TORCH_SECRET_TOKEN", "s3cret")
    monkeypatch.setenv("HF_TOKEN", "hf_abc")
    monkeypatch.setenv("GITXP_KEY", "a" * 43)
    monkeypatch.setenv("WANDB_API_KEY", "w")
    monkeypatch.setenv("MY_SEED", "7")
    monkeypatch.setenv("MY_PASSWORD", "p")
    ev = capture(extra_env_vars=["MY_SEED", "MY_PASSWORD"])["env_vars"]
    assert ev["OMP_NUM_THREADS"] == "4"
    assert ev["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "MY_API_TOKEN" not in ev and "UNRELATED_SETTING" not in ev
    for secret in ("TORCH_SECRET_TOKEN", "HF_TOKEN", "GITXP_KEY", "WANDB_API_KEY", "MY_PASSWORD"):
        assert ev[secret] == "<redacted>", secret
    assert ev["MY_SEED"] == "7"
    assert "s3cret" not in json.dumps(ev) and "hf_abc" not in json.dumps(ev)


def _dist_info(site: Path, name: str, version: str, direct_url: dict | None = None,
               installer: str | None = None) -> None:
    d = site / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nlong text\nName: nope\n")
    if direct_url is not None:
        (d / "direct_url.json").write_text(json.dumps(direct_url))
    if installer:
        (d / "INSTALLER").write_text(installer + "\n")


def test_sources_from_direct_url_and_first_on_sys_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site-packages"
    project = tmp_path / "my project"
    _dist_info(site, "mylib", "0.3.0", {"url": project.as_uri(), "dir_info": {"editable": True}})
    _dist_info(site, "fromgit", "1.2.0", {"url": "https://github.com/o/fromgit.git",
                                          "vcs_info": {"vcs": "git", "commit_id": "a" * 40}})
    _dist_info(site, "fromurl", "2.0", {"url": "https://example.org/fromurl-2.0.tar.gz", "archive_info": {}})
    _dist_info(site, "PyYAML", "0.0.1", installer="uv")  # shadows the real pyyaml
    monkeypatch.syspath_prepend(str(site))
    env = capture()
    pkgs = _by_name(env)
    assert pkgs["mylib"]["source"] == {"editable": True, "path": str(project)}
    assert pkgs["fromgit"]["source"] == {"vcs": "git", "url": "https://github.com/o/fromgit.git", "commit": "a" * 40}
    assert pkgs["fromurl"]["source"] == {"url": "https://example.org/fromurl-2.0.tar.gz"}
    assert pkgs["pyyaml"] == {"name": "PyYAML", "version": "0.0.1", "installer": "uv"}
    assert [p["name"] for p in env["packages"]].count("PyYAML") == 1

    safe = requirements_txt(env).splitlines()  # URL and VCS pins only when asked: a record may be pulled
    assert not any(line.startswith(("fromgit", "fromurl")) for line in safe)
    assert "# fromurl==2.0 (from url https://example.org/fromurl-2.0.tar.gz; not installed without --allow-urls)" in safe
    req = requirements_txt(env, experiment="20261122-110512-a3f9c2d81b7e", allow_urls=True).splitlines()
    assert req[0] == "# environment of gitxp experiment 20261122-110512-a3f9c2d81b7e"
    assert f"pyarrow=={md.version('pyarrow')}" in req
    assert "PyYAML==0.0.1" in req
    assert f"fromgit @ git+https://github.com/o/fromgit.git@{'a' * 40}" in req
    assert "fromurl @ https://example.org/fromurl-2.0.tar.gz" in req
    assert f"# mylib==0.3.0 (local path: editable install from {project})" in req
    assert not any(line.startswith(("pip==", "setuptools==")) for line in req)


def test_conda_metadata_is_read_from_conda_meta(tmp_path: Path) -> None:
    prefix = tmp_path / "miniforge" / "envs" / "vision"
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True)
    (meta / "history").write_text("")
    for name, ver, build, chan in [("numpy", "1.26.4", "py311h64a7726_0", "https://conda.anaconda.org/conda-forge/linux-64"),
                                   ("python", "3.11.7", "hab00c5b_1_cpython", "https://conda.anaconda.org/conda-forge/linux-64"),
                                   ("mkl", "2023.1.0", "h213fc3f_46344", "https://repo.anaconda.com/pkgs/main/linux-64"),
                                   ("ca-certificates", "2024.2.2", "hbcca054_0", "https://conda.anaconda.org/conda-forge/noarch")]:
        body = {"build": build, "channel": chan, "files": ["x"] * 2000, "name": name, "version": ver}
        (meta / f"{name}-{ver}-{build}.json").write_text(json.dumps(body, sort_keys=True, indent=2))
    conda = environment._conda(str(prefix), {})
    assert conda is not None and conda["name"] == "vision" and conda["prefix"] == str(prefix)
    got = {p["name"]: p for p in conda["packages"]}
    assert got["numpy"] == {"name": "numpy", "version": "1.26.4", "build": "py311h64a7726_0", "channel": "conda-forge"}
    assert got["mkl"]["channel"] == "defaults"
    assert got["ca-certificates"]["channel"] == "conda-forge"
    assert environment._conda(str(tmp_path), {}) is None

    env = capture()
    env["conda"] = conda
    env["packages"].append({"name": "numpy", "version": "1.26.4", "installer": "conda"})
    doc = yaml.safe_load(conda_environment_yml(env, "vision-copy"))
    assert doc["name"] == "vision-copy"
    assert doc["channels"] == ["conda-forge", "defaults"]
    deps = doc["dependencies"]
    assert deps[0] == f"python={sys.version_info[0]}.{sys.version_info[1]}"
    assert "numpy=1.26.4" in deps and not any(str(d).startswith("python=3.11.7") for d in deps)
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert f"pyarrow=={md.version('pyarrow')}" in pip_section
    assert not any(p.startswith("numpy") for p in pip_section)  # conda provides it


def test_conda_file_defaults_to_conda_forge() -> None:
    env = {"python": {"version": "3.11.7"}, "conda": None,
           "packages": [{"name": "six", "version": "1.16.0"},
                        {"name": "odd:name", "version": "1 #2"}]}
    text = conda_environment_yml(env, "x")
    doc = yaml.safe_load(text)
    assert doc == {"name": "x", "channels": ["conda-forge"],
                   "dependencies": ["python=3.11", "pip", {"pip": ["six==1.16.0"]}]}
    assert "# not installable elsewhere: odd:name==1 #2 (not a valid package name)" in text


def test_diff_and_summary() -> None:
    a = {"python": {"version": "3.10.4"}, "cuda": {"cuda_version": "12.2", "driver_version": "535.1"},
         "packages": [{"name": "numpy", "version": "1.26.4"}, {"name": "six", "version": "1.16.0"},
                      {"name": "Same_Pkg", "version": "1"}]}
    b = {"python": {"version": "3.11.7"}, "cuda": {"cuda_version": "12.2", "driver_version": "550.5"},
         "packages": [{"name": "numpy", "version": "2.0.0"}, {"name": "idna", "version": "3.7"},
                      {"name": "same-pkg", "version": "1"}]}
    d = diff(a, b)
    assert d["versions"] == {"python": {"a": "3.10.4", "b": "3.11.7"}, "driver": {"a": "535.1", "b": "550.5"}}
    assert d["added"] == [{"name": "idna", "version": "3.7"}]
    assert d["removed"] == [{"name": "six", "version": "1.16.0"}]
    assert d["changed"] == [{"name": "numpy", "a": "1.26.4", "b": "2.0.0"}]
    assert format_diff(d).splitlines() == ["python: 3.10.4 -> 3.11.7", "driver: 535.1 -> 550.5",
                                           "+ idna 3.7", "- six 1.16.0", "~ numpy 1.26.4 -> 2.0.0"]
    assert format_diff(diff(a, a)) == ""

    env = capture()
    text = summary(env)
    assert env["python"]["version"] in text
    assert f"packages  {len(env['packages'])}" in text
    assert ("gpus      none" in text) == (not env["gpus"])


def test_capture_needs_only_the_standard_library() -> None:
    code = ("import sys; import gitxp.environment.capture as e; e.capture(); "
            "print(sorted(m for m in ('pyarrow', 'psutil', 'pynvml', 'yaml', 'importlib.metadata') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_venv_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record a real venv's packages, then rebuild them in a new venv."""
    # conftest puts the checkout on PYTHONPATH; with an editable install its
    # gitxp.egg-info would then be visible to the probed venv too
    monkeypatch.delenv("PYTHONPATH", raising=False)
    src = tmp_path / "src"
    subprocess.run([sys.executable, "-m", "venv", str(src)], check=True)
    src_py = recreate._venv_python(src)
    subprocess.run([str(src_py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "six==1.16.0", "idna==3.7"], check=True)

    # The source venv has neither gitxp nor its dependencies: capture runs there
    # with the standard library only.
    env = capture_interpreter(str(src_py), extra_env_vars=["HOME"])
    pkgs = _by_name(env)
    assert pkgs["six"]["version"] == "1.16.0" and pkgs["idna"]["version"] == "3.7"
    assert "pyyaml" not in pkgs and "pyarrow" not in pkgs
    assert env["python"]["virtualenv"] is True and env["python"]["prefix"] == str(src)
    assert env["env_vars"]["HOME"] == os.environ["HOME"]
    json.dumps(env)

    # One pin that cannot exist and one local install: the others still install.
    env["packages"].append({"name": "gitxp-no-such-dist-4f1c", "version": "0.0.1"})
    env["packages"].append({"name": "mylocal", "version": "0.1", "source": {"editable": True, "path": "/src/mylocal"}})
    lines: list[str] = []
    result = recreate_venv(env, tmp_path / "dst", echo=lines.append)
    assert set(result.installed) == {"six==1.16.0", "idna==3.7"}
    failed = dict(result.failed)
    assert failed["gitxp-no-such-dist-4f1c==0.0.1"] == "no matching distribution"
    assert "mylocal==0.1" not in failed  # a folder on the recording machine: skipped, saying why
    assert any(s.startswith("mylocal==0.1: local path") for s in result.skipped)
    assert "pip==" + pkgs["pip"]["version"] in result.skipped
    assert not result.ok and result.warnings == ()
    assert lines[-1].endswith("installed 2 of 3 packages, 1 failed")

    check = ("import importlib.metadata as m, six, idna; "
             "print(m.version('six'), m.version('idna'))")
    out = subprocess.run([str(result.python), "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1.16.0", "3.7"]


def test_recreate_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    from gitxp.errors import EnvironmentRecreateError

    (tmp_path / "busy.txt").write_text("x")
    with pytest.raises(EnvironmentRecreateError, match="not empty"):
        recreate_venv({"packages": []}, tmp_path)
    with pytest.raises(EnvironmentRecreateError, match="could not create a venv|cannot run"):
        recreate_venv({"packages": []}, tmp_path / "new", python=str(tmp_path / "no-python"))


def test_recreate_conda_without_conda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitxp.errors import EnvironmentRecreateError

    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no conda, mamba or micromamba
    assert recreate.find_conda() is None
    with pytest.raises(EnvironmentRecreateError, match="no conda, mamba or micromamba on PATH"):
        recreate.recreate_conda({"packages": []}, "x")


def _dist(site: Path, name: str, module: str) -> None:
    """A real, minimal installed distribution (as pip leaves one) providing ``module``."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text("")
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{module}/__init__.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def _in_child(site: Path, cache: Path, call: str) -> Any:
    """``call`` (over ``c``, gitxp.environment.capture, and ``cache``, the cache folder) in a fresh interpreter that sees ``site``."""
    code = f"import json,sys;import gitxp.environment.capture as c;cache=sys.argv[1];json.dump({call},sys.stdout)"
    env = {**os.environ, "PYTHONPATH": str(site)}
    return json.loads(subprocess.run([sys.executable, "-c", code, str(cache)], env=env, capture_output=True, text=True, check=True).stdout)


@pytest.mark.skipif(sys.version_info < (3, 10), reason="packages_distributions needs Python 3.10")
def test_module_owners_are_cached_until_the_environment_changes(tmp_path: Path) -> None:
    """RECORD files are read once per environment; an install invalidates the cache."""
    site, cache = tmp_path / "site", tmp_path / "cache"
    _dist(site, "alpha-dist", "alpha_mod")

    def owners() -> dict:
        return _in_child(site, cache, "c.module_owners(cache)")

    assert owners()["alpha_mod"] == ["alpha-dist"]
    cached = list(cache.glob("module-owners-*.json"))
    assert len(cached) == 1
    # the cache is what is read while nothing changes: an edit to it shows through
    doc = json.loads(cached[0].read_text())
    doc["alpha_mod"] = ["from-the-cache"]
    cached[0].write_text(json.dumps(doc))
    assert owners()["alpha_mod"] == ["from-the-cache"]
    _dist(site, "beta-dist", "beta_mod")  # an install: new metadata folder, new digest
    fresh = owners()
    assert fresh["alpha_mod"] == ["alpha-dist"] and fresh["beta_mod"] == ["beta-dist"]
    assert len(list(cache.glob("module-owners-*.json"))) == 2


def test_packages_are_cached_until_the_environment_changes(tmp_path: Path) -> None:
    """The package list is read from the metadata once per environment; an upgrade or a damaged cache reads it again."""
    import shutil

    site, cache = tmp_path / "site", tmp_path / "cache"
    _dist_info(site, "mylib", "0.1.0")

    def packages() -> dict:
        return {p["name"]: p["version"] for p in _in_child(site, cache, "c.capture(cache_dir=cache)['packages']")}

    assert packages()["mylib"] == "0.1.0"
    cached = list(cache.glob("packages-*.json"))
    assert len(cached) == 1
    doc = json.loads(cached[0].read_text())
    next(p for p in doc if p["name"] == "mylib")["version"] = "from-the-cache"
    cached[0].write_text(json.dumps(doc))
    assert packages()["mylib"] == "from-the-cache"  # nothing changed: the cache is what is read
    cached[0].write_text('{"not": "a list"}')
    assert packages()["mylib"] == "0.1.0"  # a damaged cache is read past and rewritten
    shutil.rmtree(site / "mylib-0.1.0.dist-info")
    _dist_info(site, "mylib", "0.2.0")  # an upgrade: another metadata folder, another digest
    assert packages()["mylib"] == "0.2.0"
    assert len(list(cache.glob("packages-*.json"))) == 2


def test_the_wrapper_probes_another_venv_but_not_its_own_python_under_another_name(tmp_path: Path) -> None:
    """`gitxp` (shebang venv/bin/python3) wrapping `python train.py` from the same venv runs no probe; another venv's python is probed.

    Both venvs' pythons link to the same binary: only the folder tells them apart.
    """
    from gitxp.run.begin import _command_python, _same_interpreter

    for name in ("a", "b"):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / name)], check=True)
    a, b = recreate._venv_python(tmp_path / "a"), recreate._venv_python(tmp_path / "b")
    a3 = a.with_name("python3")
    assert a3.exists() and os.path.samefile(a, b)
    assert _same_interpreter(str(a), str(a3)) and _same_interpreter(str(a), str(a))
    assert not _same_interpreter(str(a), str(b))
    assert not _same_interpreter(str(a), str(tmp_path / "gone" / "python"))
    assert _command_python([sys.executable, "train.py"]) is None
    assert _command_python([str(b), "train.py"]) == str(b)
    assert _command_python(["bash", "run.sh"]) is None
