"""Secret-safe: keys and encrypted files never reach the store in clear.

Each case is what a careful user (or an attacker reading a public remote)
would try: encrypted artifacts left in the work tree, the key folder inside
the repository, GITXP_KEY printed by the wrapped script, secrets in
environment variables and on the command line. Every test scans what a
clone would receive (every object, inflated) for the secret bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git
from gitxp.artifacts import keys
from gitxp.store import layout
from gitxp.artifacts.manifest import read_manifest
from gitxp.environment.capture import capture as capture_environment
from gitxp.errors import KeyMissingError
from gitxp.redact import StreamMasker, looks_secret, mask_argv, mask_url
from gitxp.plumbing.snapshot import Withhold, capture as capture_snapshot

PNG = b"\x89PNG\r\n\x1a\n" + b"secret-figure-pixels-" * 200 + b"\x00\x01\x02"


def all_objects(repo: Path) -> bytes:
    """Every object's content, inflated: what a clone could read."""
    return subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo,
                          capture_output=True, check=True).stdout


def clone(repo: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--no-local", str(repo), str(dest)], check=True, capture_output=True)
    run_git(dest, "fetch", "-q", "origin", "gitxp:gitxp")
    return dest


def stored(repo: Path, exp_id: str, path: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run(["git", "show", f"gitxp:{layout.experiment_dir(exp_id)}/{path}"], cwd=repo, capture_output=True)
    assert not check or r.returncode == 0, r.stderr
    return r


# ------------------------------------------------------------------ names


@pytest.mark.parametrize("name", [
    "HF_TOKEN", "WANDB_API_KEY", "DS_API_PW", "DB_PASS", "SMTP_PASS", "HF_ACCESS_PAT", "TF_VAR_db_pass",
    "MY_PASSWORD", "DB_PWD", "AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "HF_AUTH",
    "api-key", "apiKey", "--api_key", "hfToken", "db.password", "OPENAI_APIKEY", "GITHUB_AUTHTOKEN", "passphrase",
])
def test_secret_looking_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", [
    "PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "KEYBOARD", "MONKEY_PATCH", "PASSES",
    "max_tokens", "--pad-token", "eos_token", "tokenizer", "lr", "OMP_NUM_THREADS", "HF_HOME", "COMPAT",
])
def test_ordinary_names(name: str) -> None:
    assert not looks_secret(name)


def test_urls_lose_their_credentials() -> None:
    assert mask_url("https://user:tok3n@host.example/x?y=1") == "https://<redacted>@host.example/x?y=1"
    assert mask_url("http://tok3n@10.0.0.1:5000") == "http://<redacted>@10.0.0.1:5000"
    assert mask_url("https://h/x?access_token=abc&page=2") == "https://h/x?access_token=<redacted>&page=2"
    assert mask_url("user@example.com and git@github.com:a/b") == "user@example.com and git@github.com:a/b"


def test_stream_masker_catches_a_secret_split_across_chunks() -> None:
    secret = "Zx9" + "k" * 40
    masker = StreamMasker([secret])
    text = ("line one\nkey=" + secret + "\nend Z").encode()
    out = b""
    for i in range(0, len(text), 5):
        out += masker.feed(text[i:i + 5])
    out += masker.flush()
    assert out == b"line one\nkey=<redacted>\nend Z"
    assert StreamMasker([]).feed(b"abc") == b"abc"


# ------------------------------------------------------------------ environment.yaml


def test_redaction_gaps_in_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "MLFLOW_TRACKING_URI": "https://alice:mlflow-tok-1@mlflow.example",
        "HF_ENDPOINT": "https://hf-tok-2@hub.example/api",
        "DS_API_PW": "ds-pw-3",
        "HF_DB_PASS": "hf-pass-4",
        "HF_ACCESS_PAT": "hf-pat-5",
        "TF_VAR_db_pass": "tf-var-6",
        "TF_VAR_db_conn": "postgres://x:tf-conn-7@db",
        "TF_CLI_CONFIG_FILE": "/home/u/.terraformrc-8",
        "TF_TOKEN_app_terraform_io": "tf-token-9",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("PYTHONPATH", "/srv/lib")
    ev = capture_environment()["env_vars"]
    assert ev["MLFLOW_TRACKING_URI"] == "https://<redacted>@mlflow.example"
    assert ev["HF_ENDPOINT"] == "https://<redacted>@hub.example/api"
    for name in ("DS_API_PW", "HF_DB_PASS", "HF_ACCESS_PAT"):
        assert ev[name] == "<redacted>", name
    for name in ("TF_VAR_db_pass", "TF_VAR_db_conn", "TF_CLI_CONFIG_FILE", "TF_TOKEN_app_terraform_io"):
        assert name not in ev, name
    assert ev["TF_CPP_MIN_LOG_LEVEL"] == "2" and ev["PYTHONPATH"].startswith("/srv/lib")
    text = repr(ev)
    for v in values.values():
        assert v.split("@")[0].rsplit(":", 1)[-1].removeprefix("//") not in text, v


# ------------------------------------------------------------------ command lines


def test_mask_argv_masks_values_of_secret_options() -> None:
    argv = ["python", "train.py", "--api-key", "K1", "--password=P2", "-token", "T3", "--lr", "0.1",
            "db.password=P4", "--no-auth", "data.csv", "--uri", "https://u:P5@h", "--token", "--verbose"]
    assert mask_argv(argv) == [
        "python", "train.py", "--api-key", "<redacted>", "--password=<redacted>", "-token", "<redacted>",
        "--lr", "0.1", "db.password=<redacted>", "--no-auth", "data.csv", "--uri", "https://<redacted>@h",
        "--token", "--verbose"]


def test_secret_options_never_reach_the_store(git_repo: Path) -> None:
    script = "import sys; assert sys.argv[1:] == ['--api-key', 'sk-' + 'AAAA1111', '--password=hunter2-' + 'BBBB', '--lr', '0.1']"
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", script,
              "--api-key", "sk-AAAA1111", "--password=hunter2-BBBB", "--lr", "0.1")
    x = gitxp.open(str(git_repo)).get("@")
    assert x.status == "completed"  # the command itself got the real values
    assert x.meta["command"][-5:] == ["--api-key", "<redacted>", "--password=<redacted>", "--lr", "0.1"]
    log = run_git(git_repo, "log", "--format=%B", "gitxp")
    assert "--api-key <redacted>" in log
    r = run_gitxp(git_repo, "log", "--format", "json")
    cache = b"".join(p.read_bytes() for p in (git_repo / ".git" / "gitxp" / "cache").rglob("*") if p.is_file())
    blobs = all_objects(git_repo)
    for secret in ("sk-AAAA1111", "hunter2-BBBB"):
        assert secret not in log and secret not in r.stdout and secret.encode() not in cache
        assert secret.encode() not in blobs


def test_secret_options_are_masked_in_sweep_commands(git_repo: Path) -> None:
    (git_repo / "grid.yaml").write_text("grid:\n  lr: [0.1, 0.2]\n")
    run_gitxp(git_repo, "sweep", "grid.yaml", "--", sys.executable, "-c", "pass", "--lr", "{lr}", "--hf-token", "hf_SWEEPSECRET")
    store = gitxp.open(str(git_repo))
    exps = store.experiments()
    assert len(exps) == 3
    for x in exps:
        assert "hf_SWEEPSECRET" not in " ".join(map(str, x.meta["command"])), x.meta["command"]
        assert "<redacted>" in x.meta["command"]
    assert b"hf_SWEEPSECRET" not in all_objects(git_repo)


# ------------------------------------------------------------------ the artifact key


def test_gitxp_key_never_reaches_output_or_the_record(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_text = keys.encode_key(keys.generate_key())
    monkeypatch.setenv("GITXP_KEY", key_text)
    script = (
        "import os, sys, gitxp\n"
        "print(dict(os.environ))\n"
        "print('GITXP_KEY' in os.environ, flush=True)\n"
        "path = os.environ.get('GITXP_KEY_FILE')\n"
        "text = open(path).read().strip() if path else ''\n"
        "sys.stdout.write('key file says ' + text + '\\n')\n"
        "sys.stderr.write('split ' + text[:20]); sys.stderr.flush()\n"
        "sys.stderr.write(text[20:] + '\\n')\n"
        "open('secret.txt', 'w').write('from the child')\n"
        "gitxp.current().log_artifact('secret.txt')\n"
        "gitxp.current().log_param('leaked', text)\n"
    )
    (git_repo / "show_env.py").write_text(script)
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "show_env.py")
    assert "False" in r.stdout  # the child's environment has no GITXP_KEY
    x = gitxp.open(str(git_repo)).get("@")
    assert x.status == "completed"
    out = x.output()
    assert "key file says <redacted>" in out and "split <redacted>" in out and key_text not in out
    assert x.params["leaked"] == "<redacted>"
    assert x.read_artifact("secret.txt") == b"from the child"
    runs = git_repo / ".git" / "gitxp" / "runs"
    assert not runs.exists() or not any(runs.rglob("key*"))  # the per-run key file is gone
    assert key_text.encode() not in all_objects(git_repo)
    fsck(git_repo)


def test_key_file_contents_are_masked_too(git_repo: Path) -> None:
    run_gitxp(git_repo, "init")
    store = gitxp.open(str(git_repo))
    key_text = keys.key_path(store.store_id).read_text().strip()
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c",
              f"import sys; print('{key_text[:30]}' + '{key_text[30:]}')")
    x = gitxp.open(str(git_repo)).get("@")
    assert x.output() == "<redacted>\n"
    assert key_text.encode() not in all_objects(git_repo)


def test_key_folder_inside_the_repository_is_never_snapshotted(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`export HOME=$PWD; unset XDG_CONFIG_HOME`: the key lands in .config/gitxp/keys/ of the work tree."""
    monkeypatch.delenv("XDG_CONFIG_HOME")
    env = {"HOME": str(git_repo)}
    run_gitxp(git_repo, "init", env=env)
    key_file = next((git_repo / ".config" / "gitxp" / "keys").glob("*.key"))
    key_text = key_file.read_text().strip()
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass", env=env)
    x = gitxp.open(str(git_repo)).get("@")
    rel = key_file.relative_to(git_repo).as_posix()
    assert stored(git_repo, x.id, f"code/{rel}", check=False).returncode != 0
    assert rel in x.source["skipped"]
    assert key_text.encode() not in all_objects(git_repo)
    # even when someone committed it by mistake, the snapshot leaves it out
    run_git(git_repo, "add", "-f", ".config")
    run_git(git_repo, "commit", "-qm", "oops")
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass", env=env)
    x = gitxp.open(str(git_repo)).get("@")
    assert stored(git_repo, x.id, f"code/{rel}", check=False).returncode != 0


# ------------------------------------------------------------------ encrypted artifacts in the work tree


PLOT = (
    "import sys\n"
    "data = open(sys.argv[1], 'rb').read()\n"
    "open('fig1.png', 'wb').write(data)\n"
    "open('fig2.png', 'wb').write(data[::-1])\n"
)


def test_encrypted_artifacts_never_enter_a_later_snapshot(git_repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "pixels.bin"
    src.write_bytes(PNG)
    (git_repo / "plot.py").write_text(PLOT)
    run_gitxp(git_repo, "start", "--no-hardware", "--artifact", "fig*.png", "--", sys.executable, "plot.py", str(src))
    first = gitxp.open(str(git_repo)).get("@")
    assert sorted(a["path"] for a in read_manifest(first)) == ["fig1.png", "fig2.png"]
    # a copy elsewhere in the tree is the same bytes: left out as well
    (git_repo / "report").mkdir()
    (git_repo / "report" / "copy.png").write_bytes(PNG)
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    second = gitxp.open(str(git_repo)).get("@")
    assert second.id != first.id
    for path in ("fig1.png", "fig2.png", "report/copy.png"):
        assert stored(git_repo, second.id, f"code/{path}", check=False).returncode != 0, path
        assert path in second.source["skipped"]
    assert stored(git_repo, second.id, "code/plot.py").stdout == PLOT.encode()
    assert "fig1.png" not in r.stderr  # not named as an untracked file the snapshot includes
    fsck(git_repo)
    other = clone(git_repo, tmp_path / "clone")
    for repo in (git_repo, other):
        blobs = all_objects(repo)
        assert PNG[8:200] not in blobs and PNG[::-1][:200] not in blobs


def test_files_matching_artifact_globs_are_left_out_of_this_runs_snapshot(git_repo: Path, tmp_path: Path) -> None:
    """A figure left over from a run outside gitxp is about to be logged encrypted: never in clear."""
    src = tmp_path / "pixels.bin"
    src.write_bytes(PNG)
    (git_repo / "plot.py").write_text(PLOT)
    subprocess.run([sys.executable, "plot.py", str(src)], cwd=git_repo, check=True)
    run_gitxp(git_repo, "start", "--no-hardware", "--artifact", "fig*.png", "--", sys.executable, "plot.py", str(src))
    x = gitxp.open(str(git_repo)).get("@")
    assert "fig1.png" in x.source["skipped"]
    assert PNG[8:200] not in all_objects(git_repo)


def test_api_log_artifact_is_remembered(git_repo: Path) -> None:
    with gitxp.start(repo=str(git_repo), log_hardware=False, capture_env=False) as xp:
        (git_repo / "model.pt").write_bytes(b"weights-" * 100)  # written by the run, as a checkpoint is
        xp.log_artifact(git_repo / "model.pt")
        xp.log_artifact(git_repo / "model.pt", name="again.pt")
    with gitxp.start(repo=str(git_repo), log_hardware=False, capture_env=False) as xp2:
        pass
    x = gitxp.open(str(git_repo)).get(xp2.id)
    assert "model.pt" in x.source["skipped"]
    assert b"weights-" * 100 not in all_objects(git_repo)


def test_registry_grows_with_distinct_files_only(git_repo: Path) -> None:
    for _ in range(3):
        with gitxp.start(repo=str(git_repo), log_hardware=False, capture_env=False, capture_code=False) as xp:
            (git_repo / "ckpt.bin").write_bytes(b"same bytes")
            xp.log_artifact(git_repo / "ckpt.bin")
    lines = (git_repo / ".git" / "gitxp" / "withheld.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"path":"ckpt.bin"' in lines[0]


def test_artifact_folder_glob_withholds_its_untracked_files_only(git_repo: Path) -> None:
    (git_repo / "out").mkdir()
    (git_repo / "out" / "README.md").write_text("committed\n")
    run_git(git_repo, "add", "out/README.md")
    run_git(git_repo, "commit", "-qm", "out")
    (git_repo / "out" / "old.bin").write_bytes(b"\0left over from an earlier run")
    run_gitxp(git_repo, "start", "--no-hardware", "--artifact", "out", "--", sys.executable, "-c", "pass")
    x = gitxp.open(str(git_repo)).get("@")
    assert stored(git_repo, x.id, "code/out/README.md").stdout == b"committed\n"
    assert stored(git_repo, x.id, "code/out/old.bin", check=False).returncode != 0
    assert x.source["skipped"] == ["out/old.bin"]


def test_unencrypted_artifacts_stay_in_the_snapshot(git_repo: Path) -> None:
    (git_repo / "table.csv").write_text("a,b\n1,2\n")
    with gitxp.start(repo=str(git_repo), log_hardware=False, capture_env=False) as xp:
        xp.log_artifact(git_repo / "table.csv", encrypt=False)
    with gitxp.start(repo=str(git_repo), log_hardware=False, capture_env=False) as xp2:
        pass
    assert stored(git_repo, xp2.id, "code/table.csv").stdout == b"a,b\n1,2\n"


@pytest.mark.parametrize("engine", ["git", "dulwich"])
def test_withhold_in_both_snapshot_engines(git_repo: Path, engine: str) -> None:
    (git_repo / "keys").mkdir()
    (git_repo / "keys" / "s.key").write_text("k\n")
    (git_repo / "out.bin").write_bytes(b"\0logged")
    (git_repo / "copy.bin").write_bytes(b"\0logged")
    (git_repo / "other.bin").write_bytes(b"\0other!")
    import hashlib

    blob = hashlib.sha1(b"blob 7\0\0logged").hexdigest()
    rules = Withhold(always=("keys",), paths=frozenset({"out.bin"}), blobs={7: frozenset({blob})})
    snap = capture_snapshot(git_repo, git_repo / ".git", engine=engine, withhold=rules)
    names = run_git(git_repo, "ls-tree", "-r", "--name-only", snap.tree).split()
    assert "other.bin" in names and "train.py" in names
    assert not {"out.bin", "copy.bin", "keys/s.key"} & set(names)
    assert set(snap.skipped) >= {"out.bin", "copy.bin", "keys/s.key"}
    # a tracked file that is HEAD's content stays, even if logged
    rules = Withhold(paths=frozenset({"train.py"}))
    snap = capture_snapshot(git_repo, git_repo / ".git", engine=engine, withhold=rules)
    assert "train.py" in run_git(git_repo, "ls-tree", "-r", "--name-only", snap.tree).split()


# ------------------------------------------------------------------ untracked outputs


def test_start_names_the_largest_untracked_files_it_includes(git_repo: Path) -> None:
    (git_repo / "model.pt").write_bytes(os.urandom(3 * 10**6))
    (git_repo / "small.bin").write_bytes(b"\0\1\2")
    (git_repo / "notes.md").write_text("text\n")
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    lines = [line for line in r.stderr.splitlines() if "snapshot includes untracked" in line]
    assert len(lines) == 1, r.stderr
    assert lines[0] == ("gitxp: snapshot includes untracked model.pt (2.9 MiB), small.bin (3 B); "
                        "add them to .gitxpignore to leave them out")
    (git_repo / ".gitxpignore").write_text("model.pt\nsmall.bin\n")
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    assert "snapshot includes" not in r.stderr


def test_start_help_documents_the_size_cap_and_gitxpignore(git_repo: Path) -> None:
    r = run_gitxp(git_repo, "start", "--help")
    text = " ".join(r.stdout.split())
    assert "gitxp.snapshotMaxFileSize" in text and ".gitxpignore" in text and "10 MiB" in text


def test_readme_has_a_security_paragraph() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Security", 1)[1].split("\n## ", 1)[0]
    for word in ("artifacts", "params", "metrics", "output", "code", "GITXP_KEY", "gitxp.snapshotMaxFileSize",
                 ".gitxpignore", "<redacted>"):
        assert word in section, word


def test_gitxp_key_file_is_read_and_a_missing_one_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = keys.generate_key()
    path = keys.write_key_file(tmp_path / "k", key)
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("GITXP_KEY_FILE", str(path))
    assert keys.load_key("store-a") == key and keys.key_source("store-a") == str(path)
    assert keys.known_key_texts("store-a") == [keys.encode_key(key)]
    path.unlink()
    with pytest.raises(KeyMissingError, match="GITXP_KEY_FILE"):
        keys.ensure_key("store-a")
    assert not keys.key_path("store-a").exists()
