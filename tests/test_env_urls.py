"""A pulled experiment's environment.yaml pinning packages from URLs, VCS and local paths (issue 10).

The hostile experiment arrives with `gitxp pull` from a real bare remote.
Its URL points at a real sdist served over HTTP on localhost and its VCS
source at a real git repository; both have a setup.py that would create a
marker file if pip ever ran it.
"""

from __future__ import annotations

import http.server
import io
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import gitxp as run_gitxp, run_git
from test_remote import GOOD_ID, _experiment, _push_crafted, record

EVIL_SETUP = "import pathlib\npathlib.Path({marker!r}).write_text('setup.py ran')\nfrom setuptools import setup\nsetup(name={name!r}, version='1.0')\n"


def _sdist(name: str, marker: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, text in (("setup.py", EVIL_SETUP.format(marker=str(marker), name=name)),
                             ("PKG-INFO", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")):
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-1.0/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def evil_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(URL of evil-1.0.tar.gz on localhost, the marker its setup.py writes, the paths requested)."""
    marker = tmp_path / "PWNED-url"
    body = _sdist("evil", marker)
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/evil-1.0.tar.gz", marker, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def pulled(tmp_path: Path, git_repo: Path, evil_server: tuple[str, Path, list[str]]) -> tuple[Path, dict[str, str], list[Path]]:
    """git_repo after pulling an experiment whose environment pins URL, VCS and path packages."""
    url, url_marker, _ = evil_server
    vcs_marker = tmp_path / "PWNED-vcs"
    vcs = tmp_path / "evilvcs"
    run_git(tmp_path, "init", "-q", str(vcs))
    (vcs / "setup.py").write_text(EVIL_SETUP.format(marker=str(vcs_marker), name="evilvcs"))
    run_git(vcs, "add", "setup.py")
    run_git(vcs, "commit", "-q", "-m", "evil")
    commit = run_git(vcs, "rev-parse", "HEAD").strip()
    sources = {"evil": url, "evilvcs": f"git {vcs.as_uri()}@{commit}", "localpkg": "path /abs/path (editable)"}
    env = {
        "python": {"version": f"{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}", "implementation": "CPython"},
        "packages": [
            {"name": "evil", "version": "1.0", "source": {"url": url}},
            {"name": "evilvcs", "version": "1.0", "source": {"vcs": "git", "url": vcs.as_uri(), "commit": commit}},
            {"name": "localpkg", "version": "0.1", "source": {"editable": True, "path": "/abs/path"}},
        ],
    }
    record(git_repo, "mine")
    bare = tmp_path / "evil.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    files = {"environment.yaml": ("100644", yaml.safe_dump(env).encode())}
    _push_crafted(tmp_path, bare, {GOOD_ID: ("040000", _experiment(**files))}, run_git(git_repo, "show", "gitxp:gitxp.yaml").encode())
    run_gitxp(git_repo, "pull", str(bare))
    return git_repo, sources, [url_marker, vcs_marker]


def test_env_shows_each_package_source(pulled: tuple[Path, dict[str, str], list[Path]]) -> None:
    repo, sources, _ = pulled
    out = run_gitxp(repo, "env", GOOD_ID).stdout
    assert "packages  3 (2 from URLs or VCS, 1 local/editable)" in out, out
    assert f"evil 1.0  url {sources['evil']}" in out
    assert f"evilvcs 1.0  {sources['evilvcs']}" in out
    assert "localpkg 0.1  path /abs/path (editable)" in out


def test_requirements_leave_url_packages_out_unless_allowed(pulled: tuple[Path, dict[str, str], list[Path]], tmp_path: Path) -> None:
    repo, sources, _ = pulled
    r = run_gitxp(repo, "env", GOOD_ID, "--requirements", str(tmp_path / "req.txt"), "--conda-file", str(tmp_path / "env.yml"))
    pins = [ln for ln in (tmp_path / "req.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert pins == [], pins
    assert "evil" not in str(yaml.safe_load((tmp_path / "env.yml").read_text()))
    assert "2 package(s) recorded from a URL or VCS left out" in r.stderr and "--allow-urls" in r.stderr, r.stderr
    assert f"evil 1.0 from url {sources['evil']}" in r.stderr
    run_gitxp(repo, "env", GOOD_ID, "--requirements", str(tmp_path / "req2.txt"), "--allow-urls")
    text = (tmp_path / "req2.txt").read_text()
    assert f"evil @ {sources['evil']}" in text and "evilvcs @ git+file://" in text


def test_venv_never_runs_a_pulled_setup_py(pulled: tuple[Path, dict[str, str], list[Path]], evil_server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    repo, _, markers = pulled
    r = run_gitxp(repo, "env", GOOD_ID, "--venv", str(tmp_path / "venv"), timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "venv" / "bin" / "python").exists()
    assert "left out" in r.stderr and "--allow-urls" in r.stderr, r.stderr
    assert not any(m.exists() for m in markers), [m for m in markers if m.exists()]
    assert evil_server[2] == []  # pip never even downloaded it


def test_hostile_package_names_never_reach_pip_as_options() -> None:
    from gitxp.environment.describe import _pin, requirements_txt

    env = {"packages": [
        {"name": "--index-url=http://evil.example/simple", "version": "1.0"},
        {"name": "numpy", "version": "1.0\n--extra-index-url http://evil.example"},
        {"name": "ok", "version": "2.0"},
    ]}
    assert [_pin(p)[0] for p in env["packages"]] == [None, None, "ok==2.0"]
    lines = requirements_txt(env).splitlines()
    assert [ln for ln in lines if not ln.startswith("#")] == ["ok==2.0"]
