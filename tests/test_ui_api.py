"""`gitxp ui`: the command, the JSON API and its refusals, against a real server and store."""

from __future__ import annotations

import http.client
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from conftest import gitxp
from uistore import HOSTILE_NAMES, git_env, make_store, serve, wait_for


@pytest.fixture(scope="module")
def store_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ui")
    return make_store(base / "repo", xdg=base / "xdg")


@pytest.fixture(scope="module")
def url(store_repo: Path) -> Any:
    with serve(store_repo) as (u, _):
        yield u


def request(url: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw request: the path goes out exactly as written (no client-side normalisation)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(url: str, path: str, **kw: Any) -> tuple[int, Any]:
    status, headers, body = request(url, path, **kw)
    assert headers["content-type"] == "application/json", (path, headers)
    return status, json.loads(body)


# ---------------------------------------------------------------- the command


def test_prints_one_line_and_stops_with_exit_0_on_sigint_and_sigterm(store_repo: Path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        with serve(store_repo) as (u, p):
            assert u.startswith("http://127.0.0.1:") and u.endswith("/") and "token" not in u
            assert request(u, "/")[0] == 200  # accepting once the line is out
            p.send_signal(sig)
            assert p.wait(10) == 0
            assert p.stdout is not None and p.stdout.read() == ""  # exactly one line
            assert p.stderr is not None and p.stderr.read() == ""


def test_stopped_during_its_warm_up_it_still_exits_cleanly(store_repo: Path) -> None:
    """The warm-up thread imports numpy and pyarrow as the server starts: Python exiting under it crashed (SIGSEGV) 1 run in 20-40."""
    for i in range(6):
        with serve(store_repo) as (_, p):
            p.send_signal((signal.SIGTERM, signal.SIGINT)[i % 2])
            assert p.wait(60) == 0
            assert p.stderr is not None and p.stderr.read() == ""


def test_C_after_ui_and_busy_port(store_repo: Path, tmp_path: Path) -> None:
    with serve(store_repo) as (u, _):
        port = str(urlsplit(u).port)
        r = subprocess.run([sys.executable, "-m", "gitxp", "ui", "-C", str(store_repo), "--port", port, "--no-open"],
                           cwd=tmp_path, env=git_env(), capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}") and "--port 0" in r.stderr and r.stderr.count("\n") == 1


def test_help_does_not_import_the_server() -> None:
    code = "import sys\nfrom gitxp.cli import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\nprint(sorted(m for m in sys.modules if m.startswith('gitxp.ui') or m in ('http.server', 'pyarrow')), file=sys.stderr)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=git_env())
    assert "ui" in r.stdout
    assert r.stderr.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- the API


def test_experiments_listing_newest_first_with_every_field(url: str, store_repo: Path) -> None:
    status, data = get_json(url, "/api/experiments")
    assert status == 200
    exps = data["experiments"]
    assert data["total"] == len(exps) == 11
    assert [e["created"] for e in exps] == sorted((e["created"] for e in exps), reverse=True)
    for e in exps:
        assert set(e) == {"id", "name", "status", "created", "duration_s", "parent", "params", "metrics", "summary", "tags"}
    base = next(e for e in exps if e["name"] == "baseline")
    assert base["params"] == {"lr": 0.01, "batch": 64, "model": {"depth": 4, "act": "relu"}}
    assert set(base["metrics"]["loss"]) == {"last", "min", "max", "count", "last_step"} and base["metrics"]["loss"]["count"] == 200
    assert base["tags"] == {"team": "vision"} and base["summary"] == {"best_acc": 0.9}
    parent = next(e for e in exps if e["name"] == "lr-sweep" and e["parent"] is None)
    assert sum(e["parent"] == parent["id"] for e in exps) == 6
    assert {n for n in HOSTILE_NAMES} <= {e["name"] for e in exps}
    # the CLI answers the same question the same way
    table = json.loads(gitxp(store_repo, "table", "--format", "json").stdout)
    assert [r["id"] for r in table] == [e["id"] for e in exps]


def test_limit_offset_and_where(url: str) -> None:
    _, everything = get_json(url, "/api/experiments")
    _, page = get_json(url, "/api/experiments?limit=3&offset=2")
    assert page["total"] == 11 and [e["id"] for e in page["experiments"]] == [e["id"] for e in everything["experiments"][2:5]]
    _, tail = get_json(url, "/api/experiments?offset=10&limit=5")
    assert len(tail["experiments"]) == 1
    where = quote("params.lr < 0.02 and metrics.acc > 0.1")
    _, hits = get_json(url, f"/api/experiments?where={where}")
    assert {(e["name"], e["params"]["lr"]) for e in hits["experiments"]} == {("baseline", 0.01), ("lr-sweep", 0.01), ("lr-sweep", 0.003), ("lr-sweep", 0.001)}
    assert hits["total"] == 4
    status, err = get_json(url, "/api/experiments?where=" + quote("params.lr <"))
    assert status == 400 and set(err) == {"error"} and err["error"].startswith("bad --where expression at column")
    for bad in ("limit=x", "offset=-1", "limit=1.5"):
        status, err = get_json(url, f"/api/experiments?{bad}")
        assert status == 400 and "error" in err


def test_one_experiment_and_bad_refs(url: str) -> None:
    status, d = get_json(url, "/api/experiments/baseline")
    assert status == 200
    for field in ("id", "name", "status", "created", "duration_s", "parent", "params", "metrics", "summary", "tags",
                  "source", "command", "notes", "error", "environment", "artifacts", "inputs", "alerts"):
        assert field in d, field
    assert d["name"] == "baseline" and d["notes"] == "first try" and d["source"]["dirty"] is True
    env = d["environment"]
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3])) and env["package_count"] > 5 and env["platform"]
    assert d["artifacts"] == [] and d["inputs"] == [] and d["alerts"] == []
    assert d["code"]["available"] and [f["path"] for f in d["code"]["files"]] == ["train.py"]
    assert "+print('training, with a change')" in d["code"]["files"][0]["lines"]
    assert d["output_tail"] is None and d["has_hardware"] is True  # the API captures no output; the wrapper does
    short = d["id"].rsplit("-", 1)[1][:8]
    assert get_json(url, f"/api/experiments/{short}")[1]["id"] == d["id"]
    status, err = get_json(url, "/api/experiments/nosuchrun")
    assert status == 404 and "nosuchrun" in err["error"]
    status, err = get_json(url, "/api/experiments/" + d["id"][:4])  # every id starts with the year
    assert status == 400 and "ambiguous" in err["error"]


def test_hostile_strings_come_back_verbatim_as_data(url: str) -> None:
    _, d = get_json(url, "/api/experiments/" + quote(HOSTILE_NAMES[0], safe=""))
    assert d["name"] == HOSTILE_NAMES[0] and d["notes"].startswith("<iframe")
    assert "\x1b" not in d["output_tail"]["text"] and "<script>" in d["output_tail"]["text"]
    assert d["code"]["available"] is False
    assert d["inputs"] == [] and d["alerts"] == []  # wrong types never reach the page as lists


def test_metrics_series_and_downsampling(url: str) -> None:
    status, data = get_json(url, "/api/experiments/baseline/metrics")
    assert status == 200 and [s["name"] for s in data["series"]] == ["acc", "loss"]
    loss = data["series"][1]
    assert set(loss) == {"name", "step", "value", "timestamp"} and loss["step"] == list(range(200))
    assert all(isinstance(t, float) and t > 1.7e9 for t in loss["timestamp"])
    status, data = get_json(url, "/api/experiments/long-curve/metrics?name=loss&max_points=400")
    (s,) = data["series"]
    assert 200 <= len(s["step"]) <= 400 and s["step"] == sorted(s["step"])
    assert s["step"][0] == 0 and s["step"][-1] == 19_999
    n = 20_000  # the one-point spikes survive
    assert max(s["value"]) == pytest.approx(math.sin(n // 3 / 500) + 5) and min(s["value"]) == pytest.approx(math.sin(2 * n // 3 / 500) - 7)
    status, data = get_json(url, "/api/experiments/long-curve/metrics")
    assert len(data["series"][0]["step"]) <= 2000
    status, err = get_json(url, "/api/experiments/baseline/metrics?name=nope")
    assert status == 404 and "has no metric 'nope'" in err["error"] and "acc, loss" in err["error"]
    for bad in ("max_points=0", "max_points=ten"):
        assert get_json(url, f"/api/experiments/baseline/metrics?{bad}")[0] == 400
    assert get_json(url, "/api/experiments/nosuchrun/metrics")[0] == 404


def test_hardware_series(url: str) -> None:
    status, data = get_json(url, "/api/experiments/baseline/hardware?max_points=50")
    assert status == 200
    names = [s["name"] for s in data["series"]]
    assert "memory_used_bytes" in names and "timestamp" not in names
    s = data["series"][names.index("memory_used_bytes")]
    assert 1 <= len(s["value"]) <= 50 and s["step"][0] == 0 and len(s["timestamp"]) == len(s["value"])
    _, none = get_json(url, "/api/experiments/long-curve/hardware")
    assert none["series"] == []


def test_methods_paths_and_headers(url: str) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        status, headers, body = request(url, "/api/experiments", method=method)
        assert status == 405 and headers["content-type"] == "application/json" and "read-only" in json.loads(body)["error"]
    status, headers, body = request(url, "/api/experiments", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 100
    for path in ("/nope", "/api/nope", "/api/experiments/baseline/nope", "/index.html.bak"):
        status, err = get_json(url, path)
        assert status == 404 and "error" in err
    status, headers, body = request(url, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"] and "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert b"<script>" not in body and b"onclick" not in body.lower()  # no inline script or handlers
    for name in ("/app.js", "/charts.js", "/style.css", "/favicon.svg"):
        assert request(url, name)[0] == 200
    assert "content-security-policy" in request(url, "/api/experiments")[1]


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd", "/static/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E%2Fserver.py",
    "/..%2f..%2fetc%2fpasswd", "/app.js%2f..%2f..%2fserver.py", "/..\\..\\server.py", "/%5c..%5cserver.py",
    "//etc/passwd", "/api/experiments/..%2f..%2f", "/api/experiments/%2e%2e", "/./app.js", "/app.js%00.html",
])
def test_path_traversal_is_refused(url: str, path: str) -> None:
    status, headers, body = request(url, path)
    assert status in (400, 404), (path, status)
    assert headers["content-type"] == "application/json"
    assert b"root:" not in body and b"import " not in body and b"def " not in body


def test_dns_rebinding_host_is_refused(url: str) -> None:
    status, err = get_json(url, "/api/experiments", headers={"Host": "evil.example:80"})
    assert status == 403 and "Host" in err["error"]
    assert get_json(url, "/api/experiments", headers={"Host": "localhost:1"})[0] == 200


def test_token_off_loopback(store_repo: Path) -> None:
    with serve(store_repo, "--host", "0.0.0.0") as (u, _):
        base, _, token = u.partition("?token=")
        assert base.startswith("http://0.0.0.0:") and len(token) >= 16
        local = f"http://127.0.0.1:{urlsplit(base).port}/"
        wrong = token[:-1] + ("y" if token.endswith("x") else "x")  # one character off (a token ending in x made this 'wrong' one right: 1 run in 64)
        for path in ("/", "/api/experiments", "/app.js", f"/api/experiments?token={wrong}"):
            status, err = get_json(local, path)
            assert status == 403 and "token" in err["error"]
        status, headers, _ = request(local, f"/?token={token}")
        assert status == 200 and f"gitxp_ui_token={token}" in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"]
        assert get_json(local, f"/api/experiments?token={token}")[0] == 200
        assert get_json(local, "/api/experiments", headers={"Cookie": f"gitxp_ui_token={token}"})[0] == 200
        assert get_json(local, "/api/experiments", headers={"Cookie": "gitxp_ui_token=guess"})[0] == 403


def test_a_running_experiment_appears_then_completes(git_repo: Path) -> None:
    (git_repo / "wait.py").write_text(
        "import os, time, gitxp\n"
        "xp = gitxp.current()\n"
        "for i in range(5):\n"
        "    xp.log_metric('loss', 1.0 / (i + 1), step=i)\n"
        "xp.flush()\n"
        "while not os.path.exists('go'):\n"
        "    time.sleep(0.05)\n"
        "xp.log_metric('loss', 0.1, step=5)\n"
    )
    gitxp(git_repo, "start", "--name", "first", "--no-hardware", "--", sys.executable, "-c", "pass")
    child = subprocess.Popen([sys.executable, "-m", "gitxp", "start", "--name", "live", "-p", "lr=0.5", "--no-hardware", "--", sys.executable, "wait.py"],
                             cwd=git_repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with serve(git_repo, env=None) as (u, _):
            def running() -> Any:
                data = get_json(u, "/api/experiments")[1]
                top = data["experiments"][0] if data["experiments"] else {}
                return data if top.get("status") == "running" and top.get("metrics", {}).get("loss", {}).get("count") == 5 else None

            data = wait_for(running, timeout=60)
            live = data["experiments"][0]
            assert data["total"] == 2 and live["name"] == "live" and live["params"] == {"lr": 0.5}
            assert data["experiments"][1]["name"] == "first"
            status, d = get_json(u, f"/api/experiments/{live['id']}")
            assert status == 200 and d["status"] == "running" and d["running"] is True
            _, m = get_json(u, f"/api/experiments/{live['id']}/metrics?name=loss")
            assert m["series"][0]["step"] == [0, 1, 2, 3, 4]
            hits = get_json(u, "/api/experiments?where=" + quote('status == "running"'))[1]
            assert [e["id"] for e in hits["experiments"]] == [live["id"]]
            (git_repo / "go").write_text("")
            assert child.wait(60) == 0, child.stderr.read() if child.stderr else ""

            def completed() -> Any:
                d = get_json(u, f"/api/experiments/{live['id']}")[1]
                return d if d.get("status") == "completed" else None

            d = wait_for(completed, timeout=30)
            assert d["metrics"]["loss"]["count"] == 6 and d["running"] is False
            data = get_json(u, "/api/experiments")[1]
            assert data["total"] == 2 and data["experiments"][0]["id"] == live["id"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_downsample_keeps_first_last_min_max_of_every_bucket() -> None:
    import numpy as np

    from gitxp.ui.api import downsample

    rng = np.random.default_rng(0)
    v = rng.normal(size=100_003)
    v[[17, 5000, 99_000]] = [50, -60, np.nan]
    idx = downsample(v, 1000)
    assert len(idx) <= 1000 and idx[0] == 0 and idx[-1] == len(v) - 1 and np.all(np.diff(idx) > 0)
    assert {17, 5000} <= set(idx.tolist())
    buckets = 250
    size = -(-len(v) // buckets)
    for b in range(0, buckets, 37):  # every bucket keeps its own extremes
        chunk = v[b * size : (b + 1) * size]
        assert b * size + int(np.nanargmax(chunk)) in idx and b * size + int(np.nanargmin(chunk)) in idx
    assert downsample(v[:10], 1000).tolist() == list(range(10))
    assert downsample(v, 3).tolist() == [0, 50_001, 100_002]


def test_metric_series_matches_a_plain_reference_on_awkward_tables() -> None:
    """Interleaved names (a live run's unmerged rows), unsorted steps, NaN, several chunks, plain string names:
    each series is its rows in stable step order, reduced by downsample, with the kept points' own times."""
    import random

    import numpy as np
    import pyarrow as pa

    from gitxp.store import parquet as metrics
    from gitxp.ui.api import downsample, metric_series

    rng = random.Random(5)
    for trial in range(12):
        n = rng.choice([1, 7, 3000])
        rows = [(rng.choice(["a", "b", "c"]) if trial % 3 else "a", rng.randrange(n) if trial % 2 else k,
                 rng.choice([float("nan"), rng.random()]), 1.7e9 + k * 0.001) for k in range(n)]
        if trial % 4 == 0:
            rows.sort(key=lambda r: (r[0], r[1]))  # as stores keep them: each name one run of rows
        table = metrics.rows_to_table(rows)
        if trial % 5 == 1:
            table = pa.concat_tables([table.slice(0, n // 2), table.slice(n // 2)])  # two chunks, as row groups read
        if trial % 6 == 2:
            table = table.set_column(0, "name", table.column("name").cast(pa.string()))
        got = {s["name"]: s for s in metric_series(table, None, 400)}
        for name in sorted({r[0] for r in rows}):
            mine = sorted((r for r in rows if r[0] == name), key=lambda r: r[1])  # stable: logging order on equal steps
            keep = downsample(np.array([r[2] for r in mine]), 400).tolist()
            s = got[name]
            assert s["step"] == [mine[i][1] for i in keep]
            assert [None if v is None else round(v, 12) for v in s["value"]] == [None if v != v else round(v, 12) for v in (mine[i][2] for i in keep)]
            assert s["timestamp"] == pytest.approx([round(mine[i][3], 3) for i in keep], abs=2e-3)
