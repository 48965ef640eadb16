"""`gitxp ui` against its targets (case 10 of benchmarks/README.md), on a generated store.

    python benchmarks/ui.py [-n 20000] [--points 1000000] [--no-browser]

Builds a store of N experiments (:mod:`make_store`) plus one real experiment
with a 1 M-point metric (``gitxp.start`` + ``log_metric``), starts
``gitxp ui --port 0`` and measures, as the page sees it (HTTP, body read):

* ``/api/experiments`` over every experiment: the first request of a fresh
  server (index cache on disk), then warm (median of 5);
* ``/api/experiments/REF/metrics?name=loss&max_points=2000`` on the 1 M-point
  metric: the first request (blob read from git, Parquet decoded, reduced),
  then warm;
* with headless chromium (selenium), the page at N experiments: from
  navigation start to the table drawn with every experiment counted, and a
  jump to the middle of the table redrawn.

Prints a markdown table; :func:`measure` is what ``benchmarks/run.py`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

LONG = r"""
import math, sys, gitxp
n = int(sys.argv[1])
with gitxp.start(name="long", params={"lr": 0.1}, capture_env=False, log_hardware=False) as xp:
    log = xp.log_metric
    for i in range(n):
        log("loss", math.exp(-i / n) + 0.01 * math.sin(i), step=i)
"""


SERVER_CPU: list[float] = []  # CPU seconds (user + sys) the server spent on each _get, when psutil can tell


def _get(url: str, pid: int | None = None) -> tuple[float, bytes]:
    import psutil

    proc = psutil.Process(pid) if pid else None
    c0 = sum(proc.cpu_times()[:2]) if proc else 0.0
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    wall = time.perf_counter() - t0
    if proc:
        SERVER_CPU.append(sum(proc.cpu_times()[:2]) - c0)
    return wall, body


def _page(url: str, n: int) -> dict[str, float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    try:
        loads = []
        for _ in range(3):
            d.get("about:blank")
            d.get(url)
            deadline = time.monotonic() + 30
            while True:
                done = d.execute_script(
                    "const c = document.getElementById('count');"
                    "return c && document.querySelector('#grid .body .row[data-id]') && c.textContent.startsWith(arguments[0] + ' of ')"
                    " ? performance.now() : null", f"{n}")
                if done or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            loads.append((done or 30_000) / 1000)
        jump = d.execute_script(
            "const b = document.querySelector('#grid .body'); const t0 = performance.now();"
            "b.scrollTop = b.scrollHeight / 2; b.dispatchEvent(new Event('scroll'));"
            "const rows = document.querySelectorAll('#grid .body .row[data-id]').length;"
            "return [performance.now() - t0, rows];")
        return {"load_s": statistics.median(loads), "scroll_ms": jump[0], "rows_in_dom": jump[1]}
    finally:
        d.quit()


def measure(n: int = 20_000, points: int = 1_000_000, *, browser: bool = True, tmp: Path | None = None) -> dict[str, Any]:
    """The UI figures on a fresh store of ``n`` experiments plus one of ``points`` points."""
    sys.path.insert(0, str(HERE))
    from make_store import make_store

    own = tmp is None
    tmp = Path(tempfile.mkdtemp(prefix="gxb-ui-")) if tmp is None else tmp
    try:
        repo = tmp / "store"
        make_store(repo, n, quiet=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com", "XDG_CONFIG_HOME": str(tmp / "xdg")}
        subprocess.run([PY, "-c", LONG, str(points)], cwd=repo, env=env, check=True, capture_output=True)
        subprocess.run([PY, "-m", "gitxp", "log", "-n", "1"], cwd=repo, env=env, check=True, capture_output=True)  # index cache on disk
        p = subprocess.Popen([PY, "-m", "gitxp", "ui", "--port", "0", "--no-open"], cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
        try:
            url = (p.stdout.readline() if p.stdout else "").split(": ", 1)[1].strip()
            first, body = _get(url + "api/experiments")
            total = json.loads(body)["total"]
            time.sleep(1)  # let the server's warm-up end, so CPU figures are the requests' own
            warm = statistics.median(_get(url + "api/experiments", p.pid)[0] for _ in range(5))
            warm_cpu = statistics.median(SERVER_CPU[-5:])
            page = statistics.median(_get(url + "api/experiments?limit=100")[0] for _ in range(5))
            mfirst, mbody = _get(url + "api/experiments/long/metrics?name=loss&max_points=2000", p.pid)
            mfirst_cpu = SERVER_CPU[-1]
            kept = len(json.loads(mbody)["series"][0]["step"])
            mwarm = statistics.median(_get(url + "api/experiments/long/metrics?name=loss&max_points=2000", p.pid)[0] for _ in range(5))
            mwarm_cpu = statistics.median(SERVER_CPU[-5:])
            out: dict[str, Any] = {
                "n": total, "list_first_s": first, "list_warm_s": warm, "list_warm_cpu": warm_cpu, "list_limit100_s": page, "list_bytes": len(body),
                "points": points, "metric_first_s": mfirst, "metric_first_cpu": mfirst_cpu, "metric_warm_s": mwarm, "metric_warm_cpu": mwarm_cpu,
                "metric_kept": kept, "load": os.getloadavg()[0],
            }
            if browser and shutil.which("chromium") and (shutil.which("chromedriver") or Path("/usr/bin/chromedriver").exists()):
                out.update(_page(url, total))
            return out
        finally:
            p.terminate()
            p.wait(10)
    finally:
        if own:
            shutil.rmtree(tmp, ignore_errors=True)


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(case, measured, target, met) for the markdown table."""
    n = f"{r['n']:,}"
    out = [
        (f"/api/experiments, all {n} (first request of a fresh server; index on disk)", f"{r['list_first_s']:.3f} s ({r['list_bytes'] / 2**20:.1f} MiB JSON)", "–", None),
        (f"/api/experiments, all {n}, warm", f"{r['list_warm_s']:.3f} s (server CPU {r['list_warm_cpu']:.3f} s)", "≤ 0.5 s", r["list_warm_s"] <= 0.5),
        (f"/api/experiments?limit=100 over {n}, warm", f"{r['list_limit100_s']:.3f} s", "–", None),
        (f"{r['points']:,}-point metric → {r['metric_kept']:,} points, first request", f"{r['metric_first_s']:.3f} s (server CPU {r['metric_first_cpu']:.3f} s)", "≤ 0.3 s", r["metric_first_s"] <= 0.3),
        (f"{r['points']:,}-point metric → {r['metric_kept']:,} points, warm", f"{r['metric_warm_s']:.3f} s (server CPU {r['metric_warm_cpu']:.3f} s)", "≤ 0.3 s", r["metric_warm_s"] <= 0.3),
    ]
    if "load_s" in r:
        out.append((f"page usable at {n} (navigation → table drawn, headless chromium)", f"{r['load_s']:.2f} s", "≤ 2 s", r["load_s"] <= 2.0))
        out.append((f"jump to the middle of {n} rows (virtualised: {r['rows_in_dom']} rows in the DOM)", f"{r['scroll_ms']:.1f} ms", "–", None))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()
    r = measure(a.n, a.points, browser=not a.no_browser)
    print(f"1-min load average {r['load']:.1f} at the end ({os.cpu_count()} CPUs); 'server CPU' = user+sys seconds of the server process for that request.\n")
    print("| case | gitxp ui | target | met |\n|---|---|---|---|")
    for case, got, target, met in rows(r):
        print(f"| {case} | {got} | {target} | {'–' if met is None else 'yes' if met else '**NO**'} |")
    return 0 if all(m is not False for *_, m in rows(r)) else 1


if __name__ == "__main__":
    sys.exit(main())
