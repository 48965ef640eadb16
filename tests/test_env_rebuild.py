"""Lean environment rebuilds: `imported: true` and `gitxp env REF --venv DIR --only-imported`.

Real runs record what they imported (a wrapped command through the injected
sitecustomize, an API run at finish); real venvs are rebuilt with pip (uv
kept off PATH) and with uv where it can be found, and the recorded script
runs in them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import gitxp, run_in_pty

import gitxp as api

SCRIPT = "import yaml\nprint('loaded', yaml.safe_load('a: 1'))\n"


def _env_of(repo: Path, ref: str = "@") -> dict:
    rec = api.open(repo).get(ref)
    return rec.environment


def _path_without_uv() -> str:
    keep = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "uv").exists()]
    return os.pathsep.join([str(Path(sys.executable).parent), *keep])


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv  # the PyPI package ships the binary

        return str(uv.find_uv_bin())
    except Exception:  # noqa: BLE001
        return None


def _imported(env: dict) -> set[str]:
    return {p["name"].lower() for p in env["packages"] if p.get("imported") is True}


def test_wrapped_run_records_imports_and_only_imported_venv_runs_it_with_pip(git_repo: Path, tmp_path: Path) -> None:
    (git_repo / "uses_yaml.py").write_text(SCRIPT)
    r = gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "uses_yaml.py")
    assert "loaded {'a': 1}" in r.stdout
    env = _env_of(git_repo)
    assert _imported(env) == {"pyyaml"}  # not gitxp's own modules, not the interpreter's start-up ones
    assert len(env["packages"]) > 20

    dest = tmp_path / "lean"
    plain = {**os.environ, "PATH": _path_without_uv()}
    code, out = run_in_pty([sys.executable, "-m", "gitxp", "env", "@", "--venv", str(dest), "--only-imported"], git_repo, plain)
    assert code == 0, out
    assert "1 of" in out and "were imported: PyYAML" in out
    assert "with pip" in out and "collecting PyYAML" in out  # progress, on a terminal
    assert "failed" not in out
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the tests' PYTHONPATH holds this checkout
    have = subprocess.run([str(dest / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, env=bare).stdout
    names = {ln.split("==")[0].lower() for ln in have.splitlines()}
    assert "pyyaml" in names and "pyarrow" not in names and "gitxp" not in names
    want = next(p["version"] for p in env["packages"] if p["name"] == "PyYAML")
    assert f"PyYAML=={want}" in have
    ran = subprocess.run([str(dest / "bin" / "python"), "uses_yaml.py"], cwd=git_repo, capture_output=True, text=True, env=bare)
    assert ran.returncode == 0 and "loaded {'a': 1}" in ran.stdout, ran.stderr

    # Not a terminal: no progress lines.
    quiet = gitxp(git_repo, "env", "@", "--venv", str(tmp_path / "lean2"), "--only-imported", env={"PATH": plain["PATH"]})
    assert "collecting" not in quiet.stderr and "installing" not in quiet.stderr


def test_only_imported_with_uv(git_repo: Path, tmp_path: Path) -> None:
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed here (pip install uv)")
    (git_repo / "uses_yaml.py").write_text(SCRIPT)
    gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "uses_yaml.py")
    bindir = tmp_path / "uvbin"
    bindir.mkdir()
    (bindir / "uv").symlink_to(uv)
    dest = tmp_path / "lean-uv"
    code, out = run_in_pty([sys.executable, "-m", "gitxp", "env", "@", "--venv", str(dest), "--only-imported"], git_repo,
                            {**os.environ, "PATH": f"{bindir}{os.pathsep}{_path_without_uv()}"})
    assert code == 0, out
    assert "with uv" in out and "installed pyyaml" in out.lower()
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ran = subprocess.run([str(dest / "bin" / "python"), "uses_yaml.py"], cwd=git_repo, capture_output=True, text=True, env=bare)
    assert ran.returncode == 0 and "loaded {'a': 1}" in ran.stdout, ran.stderr


def test_users_sitecustomize_still_runs_and_sys_path_is_untouched(git_repo: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mysite"
    mine.mkdir()
    marker = tmp_path / "marker"
    (mine / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (git_repo / "show_path.py").write_text("import sys, json, yaml\nprint(json.dumps(sys.path))\n")
    r = gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "show_path.py",
              env={"PYTHONPATH": f"{mine}{os.pathsep}{os.environ['PYTHONPATH']}"})
    assert marker.read_text() == "ran"
    import json

    path = json.loads(r.stdout.strip().splitlines()[-1])
    assert not any("gitxp/runs" in p or p.endswith("/site") and ".git" in p for p in path), path
    assert str(mine) in path
    assert "pyyaml" in _imported(_env_of(git_repo))


def test_a_failing_script_keeps_its_exit_code(git_repo: Path) -> None:
    (git_repo / "boom.py").write_text("import yaml, sys\nsys.exit(7)\n")
    r = gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "boom.py", check=False)
    assert r.returncode == 7
    assert "pyyaml" in _imported(_env_of(git_repo))


def test_no_record_of_imports_is_one_error_line(git_repo: Path, tmp_path: Path) -> None:
    gitxp(git_repo, "start", "--no-hardware", "--", "true")  # no Python ran: nothing known about imports
    r = gitxp(git_repo, "env", "@", "--venv", str(tmp_path / "v"), "--only-imported", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error: this experiment's environment records no imported packages")
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "v").exists()
    r = gitxp(git_repo, "env", "@", "--only-imported", check=False)
    assert r.returncode == 2 and "--only-imported selects" in r.stderr


def test_local_path_package_is_skipped_with_why_and_gitxp_comes_from_the_running_one(tmp_path: Path) -> None:
    from gitxp.environment.recreate import recreate_venv

    said: list[str] = []
    env = {
        "python": {"version": ".".join(map(str, sys.version_info[:3]))},
        "packages": [
            {"name": "mylib", "version": "1.0", "source": {"path": "/home/someone/mylib", "editable": True}},
            {"name": "gitxp", "version": "0.0.1", "source": {"path": "/elsewhere/gitxp", "editable": True}},
        ],
    }
    plain = _path_without_uv()
    old = os.environ["PATH"]
    os.environ["PATH"] = plain
    try:
        result = recreate_venv(env, tmp_path / "v", echo=said.append)
    finally:
        os.environ["PATH"] = old
    assert result.failed == ()
    assert any(s.startswith("mylib==1.0: local path") and "recording machine" in s for s in result.skipped), result.skipped
    here = str(Path(api.__file__).resolve().parents[1])
    assert any("installing the running gitxp" in s and here in s for s in said), said
    assert result.installed == (here,)
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ok = subprocess.run([str(tmp_path / "v" / "bin" / "python"), "-c", "import gitxp, yaml, dulwich"], capture_output=True, text=True, cwd=tmp_path, env=bare)
    assert ok.returncode == 0, ok.stderr  # gitxp and its dependencies


def test_api_run_records_its_imports(git_repo: Path) -> None:
    code = "import gitxp, yaml\nwith gitxp.start(name='api', log_hardware=False) as xp:\n    xp.log_metric('x', 1.0)\n"
    subprocess.run([sys.executable, "-c", code], cwd=git_repo, check=True, capture_output=True)
    names = _imported(_env_of(git_repo))
    assert {"gitxp", "pyyaml"} <= names
    assert "selenium" not in names and "pytest" not in names  # installed, never imported by the run
    assert yaml.safe_load  # the test's own import, unrelated to the run's record


def test_storing_a_big_artifact_shows_progress_on_a_terminal_only(git_repo: Path) -> None:
    (git_repo / ".gitignore").write_text("*.bin\n")
    (git_repo / "model.bin").write_bytes(os.urandom(9 * 2**20))
    cmd = [sys.executable, "-m", "gitxp", "start", "--no-hardware", "--artifact", "model.bin", "--", "true"]
    code, out = run_in_pty(cmd, git_repo, dict(os.environ))
    assert code == 0, out
    assert "gitxp: encrypting and storing model.bin: 100%" in out
    r = gitxp(git_repo, "start", "--no-hardware", "--artifact", "model.bin", "--", "true")
    assert "storing" not in r.stderr and "%" not in r.stderr
