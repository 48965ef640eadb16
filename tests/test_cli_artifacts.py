"""Artifacts and keys through the real CLI: --artifact, artifacts, get, key show/export/import."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import gitxp
from conftest import PEAK_RSS, fsck, gitxp as run_gitxp, run_git


@pytest.fixture
def with_artifacts(git_repo: Path) -> Path:
    out = git_repo / "out"
    (git_repo / ".gitxpignore").write_text("out/\n")  # outputs stay out of the code snapshot
    (out / "sub").mkdir(parents=True)
    (out / "model.pt").write_bytes(os.urandom(300_000))
    (out / "sub" / "notes.txt").write_text("epoch 3 was best\n")
    run_gitxp(git_repo, "start", "--no-hardware", "--artifact", "out/**/*", "--", sys.executable, "-c", "pass")
    return git_repo


def test_artifact_globs_list_and_get(with_artifacts: Path, tmp_path: Path) -> None:
    repo = with_artifacts
    r = run_gitxp(repo, "artifacts", "@")
    assert "out/model.pt" in r.stdout and "out/sub/notes.txt" in r.stdout and "yes" in r.stdout
    dest = tmp_path / "m.pt"
    run_gitxp(repo, "get", "@", "out/model.pt", "-o", str(dest))
    assert dest.read_bytes() == (repo / "out" / "model.pt").read_bytes()
    everything = tmp_path / "all"
    run_gitxp(repo, "get", "@", "-o", str(everything))
    assert (everything / "out" / "sub" / "notes.txt").read_text() == "epoch 3 was best\n"
    rec = gitxp.open(str(repo)).get("@")
    assert rec.read_artifact("out/sub/notes.txt") == b"epoch 3 was best\n"
    # nothing readable in the repository: the plaintext is not in any object
    blob = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True).stdout
    assert b"epoch 3 was best" not in blob
    fsck(repo)


def test_missing_key_names_fingerprint_and_import(with_artifacts: Path, tmp_path: Path) -> None:
    repo = with_artifacts
    exported = run_gitxp(repo, "key", "export").stdout.strip()
    assert len(exported) == 43  # 32 bytes, unpadded base64url
    elsewhere = {"XDG_CONFIG_HOME": str(tmp_path / "other-home")}
    r = run_gitxp(repo, "get", "@", "out/model.pt", "-o", str(tmp_path / "x"), env=elsewhere, check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    fp = run_gitxp(repo, "key", "show").stdout
    assert "gitxp key import" in r.stderr and fp.split("your key:")[1].split()[0] in r.stderr
    assert not (tmp_path / "x").exists()
    run_gitxp(repo, "key", "import", "-", env=elsewhere, input=exported + "\n")
    run_gitxp(repo, "get", "@", "out/model.pt", "-o", str(tmp_path / "x"), env=elsewhere)
    assert (tmp_path / "x").read_bytes() == (repo / "out" / "model.pt").read_bytes()
    # GITXP_KEY works too, and the key is nowhere in the repository
    env = {"XDG_CONFIG_HOME": str(tmp_path / "third"), "GITXP_KEY": exported}
    run_gitxp(repo, "get", "@", "out/sub/notes.txt", "-o", str(tmp_path / "n.txt"), env=env)
    blob = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True).stdout
    assert exported.encode() not in blob
    assert exported not in "".join(p.read_text(errors="replace") for p in (repo / ".git").rglob("*") if p.is_file() and p.stat().st_size < 1_000_000)


def test_bad_key_import_is_one_line(git_repo: Path) -> None:
    r = run_gitxp(git_repo, "key", "import", "not-a-key", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_init_creates_repo_store_and_key(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    r = run_gitxp(tmp_path, "-C", str(folder), "init")
    assert "store" in r.stdout and (folder / ".git").is_dir()
    doc = run_git(folder, "show", "gitxp:gitxp.yaml")
    assert "format: 1" in doc and "store_id:" in doc and len(doc.split("keys:")[1].strip()) > 0
    again = run_gitxp(tmp_path, "-C", str(folder), "init")
    assert again.stdout == r.stdout  # idempotent
    assert len(run_git(folder, "log", "--oneline", "gitxp").splitlines()) == 2  # init + key fingerprint
    fsck(folder)


BIG = PEAK_RSS + """
import os, sys, gitxp
path = sys.argv[2]
block = os.urandom(1 << 20)
with open(path, "wb") as f:
    for _ in range(int(sys.argv[3])):
        f.write(block)
with gitxp.start(repo=sys.argv[1], name="big", log_hardware=False, capture_env=False) as xp:
    xp.log_artifact(path, "big.bin")
os.remove(path)
print(peak_rss_kib() // 1024)
"""


@pytest.mark.slow
def test_4gib_artifact_in_bounded_memory(git_repo: Path, tmp_path: Path) -> None:
    mib = int(os.environ.get("GITXP_TEST_BIG_MIB", "4096"))
    r = subprocess.run([sys.executable, "-c", BIG, str(git_repo), str(tmp_path / "big.bin"), str(mib)], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr
    peak_mib = int(r.stdout.strip().splitlines()[-1])
    assert peak_mib < 300, f"peak RSS {peak_mib} MiB"
    rec = gitxp.open(str(git_repo)).get("big")
    (entry,) = [a for a in __import__("gitxp.artifacts.manifest").artifacts.manifest.read_manifest(rec)]
    assert entry["size"] == mib << 20 and entry["parts"] == -(-((mib << 20) + 16 * mib + 49) // (50 << 20))
