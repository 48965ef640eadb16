"""Make the README's screenshots of `gitxp ui` from a real store.

    python docs/screenshots.py

Records the UI tests' store (tests/uistore.py: a baseline, a six-run
learning-rate sweep, a long curve; all through ``gitxp.start``), serves it
with ``gitxp ui`` and photographs, in headless chromium: the runs table
(docs/ui-runs.png), a compare view of three sweep runs (docs/ui-compare.png)
and the sweep's parallel coordinates (docs/ui-sweep.png). Needs chromium,
chromedriver and selenium (the dev extra).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from uistore import make_store, serve, wait_for  # noqa: E402


def main() -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tmp = Path(tempfile.mkdtemp(prefix="gitxp-shots-"))
    try:
        repo = make_store(tmp / "project", xdg=tmp / "xdg", hostile=False, long_points=3000)
        with serve(repo) as (url, _):
            with urllib.request.urlopen(url + "api/experiments", timeout=30) as r:
                exps = json.load(r)["experiments"]
            parent = next(e for e in exps if e["name"] == "lr-sweep" and e["parent"] is None)
            kids = sorted((e for e in exps if e["parent"] == parent["id"]), key=lambda e: e["params"]["lr"])
            opts = webdriver.ChromeOptions()
            for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,720", "--force-device-scale-factor=1"):
                opts.add_argument(arg)
            d = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
            try:
                shots = [
                    ("ui-runs.png", "#/", "#grid .body .row[data-id]", []),
                    ("ui-compare.png", "#/compare/" + ",".join(k["id"] for k in kids[1:4]), "#compare-charts path.series", ["#smoothing"]),
                    ("ui-sweep.png", "#/sweep/" + parent["id"], "#parallel path.pc-line", []),
                ]
                for name, hash_, ready, _ in shots:
                    d.get("about:blank")
                    d.get(url + hash_)
                    wait_for(lambda: d.find_elements("css selector", ready), timeout=30)
                    time.sleep(0.5)
                    out = ROOT / "docs" / name
                    d.save_screenshot(str(out))
                    print(f"wrote {out.relative_to(ROOT)}")
            finally:
                d.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
