"""Environment capture and `gitxp env` / `show --env --hardware` through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

import gitxp
from conftest import gitxp as run_gitxp


def all_objects(repo: Path) -> bytes:
    """Every object's content in the repository, inflated (what a remote would receive)."""
    return subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True, check=True).stdout


def test_secrets_never_reach_the_store(git_repo: Path) -> None:
    secrets = {
        "HF_TOKEN": "hf-secret-value-1111",
        "WANDB_API_KEY": "wandb-secret-value-2222",
        "MY_SERVICE_TOKEN": "svc-secret-value-3333",
        "TORCH_SECRET_THING": "torch-secret-value-4444",
        "DB_PASSWORD": "db-secret-value-5555",
        "GITXP_KEY": "x" * 43,
    }
    env = {**secrets, "OMP_NUM_THREADS": "3", "CUSTOM_SETTING": "kept-by-flag"}
    env.pop("GITXP_KEY")  # a malformed key would be refused; check redaction through --env-var instead
    run_gitxp(git_repo, "start", "--no-hardware", "--env-var", "CUSTOM_SETTING", "--env-var", "DB_PASSWORD", "--", sys.executable, "-c", "pass", env=env)
    rec = gitxp.open(str(git_repo)).get("@")
    recorded = rec.environment["env_vars"]
    assert recorded["OMP_NUM_THREADS"] == "3" and recorded["CUSTOM_SETTING"] == "kept-by-flag"
    assert recorded["HF_TOKEN"] == "<redacted>" and recorded["DB_PASSWORD"] == "<redacted>"
    blob = all_objects(git_repo)
    for name, value in secrets.items():
        if name != "GITXP_KEY":
            assert value.encode() not in blob, name


def test_env_show_requirements_and_conda_file(git_repo: Path, tmp_path: Path) -> None:
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    r = run_gitxp(git_repo, "env", "@")
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in r.stdout and "packages" in r.stdout.lower()
    req = tmp_path / "req.txt"
    run_gitxp(git_repo, "env", "@", "--requirements", str(req))
    import pyarrow

    assert f"pyarrow=={pyarrow.__version__}" in req.read_text().splitlines()
    conda = tmp_path / "environment.yml"
    run_gitxp(git_repo, "env", "@", "--conda-file", str(conda))
    doc = yaml.safe_load(conda.read_text())
    assert set(doc) >= {"name", "channels", "dependencies"}
    assert f"python={sys.version_info.major}.{sys.version_info.minor}" in doc["dependencies"]
    pip = [d for d in doc["dependencies"] if isinstance(d, dict)]
    assert pip and any(p.startswith("pyarrow==") for p in pip[0]["pip"])


def test_conda_without_conda_points_to_conda_file(git_repo: Path) -> None:
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    r = run_gitxp(git_repo, "env", "@", "--conda", "myenv", check=False, env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"})
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "--conda-file" in r.stderr


def test_show_hardware_and_env(git_repo: Path) -> None:
    burn = "import time\nt=time.time()\nwhile time.time()-t<3: pass"
    run_gitxp(git_repo, "start", "--hardware-interval", "0.25", "--", sys.executable, "-c", burn)
    rec = gitxp.open(str(git_repo)).get("@")
    hw = rec.hardware()
    assert str(hw.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    cpu = [v for v in hw.column("proc_cpu_percent").to_pylist() if v == v]
    assert max(cpu) > 20  # the busy loop shows (2 shared cores: stay loose)
    assert not any(c.startswith("gpu") for c in hw.column_names)  # no GPU here, and no crash
    r = run_gitxp(git_repo, "show", "@", "--hardware", "--env")
    assert "proc_cpu_percent" in r.stdout and "samples" in r.stdout
    assert "Environment:" in r.stdout and "Python" in r.stdout


def test_no_hardware_means_no_file(git_repo: Path) -> None:
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    assert gitxp.open(str(git_repo)).get("@").read_file("hardware.parquet") is None


def test_recreate_a_venv_recorded_from_another_interpreter(git_repo: Path, tmp_path: Path) -> None:
    """The acceptance path: run in a fresh venv with two small packages, recreate it elsewhere."""
    src = tmp_path / "src-venv"
    subprocess.run([sys.executable, "-m", "venv", str(src)], check=True)
    py = src / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "six==1.16.0", "idna==3.7"], check=True, timeout=300)
    # gitxp runs from its own interpreter; the script runs in the venv: the venv's packages are recorded
    run_gitxp(git_repo, "start", "--no-hardware", "--", str(py), "-c", "import six, idna")
    rec = gitxp.open(str(git_repo)).get("@")
    pkgs = {p["name"]: p["version"] for p in rec.environment["packages"]}
    assert pkgs.get("six") == "1.16.0" and pkgs.get("idna") == "3.7" and "pyarrow" not in pkgs
    dest = tmp_path / "recreated"
    r = run_gitxp(git_repo, "env", "@", "--venv", str(dest), timeout=600)
    assert "installed" in r.stderr
    out = subprocess.run([str(dest / "bin" / "python"), "-c", "import six, idna; print(six.__version__, idna.__version__)"], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1.16.0", "3.7"]
