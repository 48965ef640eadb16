"""`gitxp ui` in a real browser: Debian's headless chromium driven by selenium + chromedriver.

Checks what a user sees: the table lists the store, a click opens a run whose
charts really draw (SVG path geometry, not just tags), two selected runs
overlay in compare, hostile names stay text, the sweep view filters by
brushing, and nothing errors in the console or leaves the UI's origin.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from uistore import HOSTILE_NAMES, make_store, serve, wait_for

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
    reason="chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def store_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("uib")
    return make_store(base / "repo", xdg=base / "xdg", long_points=5000)


@pytest.fixture(scope="module")
def url(store_repo: Path) -> Iterator[str]:
    with serve(store_repo) as (u, _):
        yield u


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    pytest.importorskip("selenium", reason="selenium is in the dev extra")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    if CHROMIUM:
        opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()


def api(url: str, path: str) -> Any:
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=30) as r:
        return json.load(r)


def css(d: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return d.find_elements(By.CSS_SELECTOR, selector)


def open_page(d: Any, url: str, hash_: str, ready: str, n: int = 1) -> list[Any]:
    """A fresh load of the page at ``hash_`` (not a same-document hash change), once ``ready`` shows."""
    d.get("about:blank")
    d.get(url + hash_)
    return wait_for(lambda: (els := css(d, ready)) and len(els) >= n and els, timeout=20)


def path_geometry(d: Any, selector: str) -> list[dict[str, Any]]:
    """Each matching SVG path's box, length, point count and computed stroke colour."""
    return d.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(p => { const b = p.getBBox();"
        " return {w: b.width, h: b.height, len: p.getTotalLength(), points: (p.getAttribute('d').match(/[ML]/g) || []).length,"
        " stroke: getComputedStyle(p).stroke, d: p.getAttribute('d')}; })", selector)


# ---------------------------------------------------------------- tests (the log check reads the logs of all before it)


def test_table_lists_experiments_and_a_click_opens_a_run_whose_charts_draw(driver: Any, url: str) -> None:
    open_page(driver, url, "#/", "#grid .body .row[data-id]", n=11)
    names = [a.text for a in css(driver, '#grid .body .row a[href^="#/run/"]')]
    assert names.count("lr-sweep") == 7 and "baseline" in names and "long-curve" in names
    assert "11 of 11 experiments" in css(driver, "#count")[0].text
    assert "sweep lr-sweep · 6 runs" in css(driver, "#grid .row.group")[0].text
    link = next(a for a in css(driver, '#grid .body .row a[href^="#/run/"]') if a.text == "baseline")
    link.click()
    wait_for(lambda: len(css(driver, "#metric-charts path.series")) == 2, timeout=20)
    assert driver.execute_script("return location.hash").startswith("#/run/")
    assert css(driver, ".run-name")[0].text == "baseline"
    for g in path_geometry(driver, "#metric-charts path.series"):
        assert g["points"] == 200 and g["w"] > 200 and g["h"] > 50 and g["len"] > 300
    hw = path_geometry(driver, "#hardware-charts path.series")
    assert hw and all(g["points"] >= 1 for g in hw)
    body = driver.find_element("tag name", "body").text
    assert "+print('training, with a change')" in body and "first try" in body and "team" in body
    assert "+dirty" in body and "packages" in body


def test_select_two_runs_and_compare_overlays_both_curves(driver: Any, url: str) -> None:
    open_page(driver, url, "#/", "#grid .body .row[data-id]", n=11)
    children = [r for r in css(driver, "#grid .body .row[data-id]") if r.find_elements("css selector", ".cell.child")]
    assert len(children) == 6
    for row in children[:2]:
        row.find_element("css selector", "input[type=checkbox]").click()
    button = css(driver, "#compare-btn")[0]
    assert button.text == "Compare (2)"
    button.click()
    wait_for(lambda: len(css(driver, "#compare-charts path.series")) == 4, timeout=20)
    figures = css(driver, "#compare-charts figure")
    assert [f.find_element("css selector", "figcaption").text for f in figures] == ["acc", "loss"]
    for fig in ("#compare-charts figure:nth-of-type(1)", "#compare-charts figure:nth-of-type(2)"):
        a, b = path_geometry(driver, fig + " path.series")
        assert a["points"] == b["points"] == 300 and a["w"] > 200 and b["w"] > 200 and a["h"] > 20 and b["h"] > 20
        assert a["d"] != b["d"] and a["stroke"] != b["stroke"]  # two curves, two colours
    assert len(css(driver, "#params-compare tr.differs")) == 2  # lr and batch differ between neighbours
    css(driver, "#log-y")[0].click()
    wait_for(lambda: len(css(driver, "#compare-charts path.series")) == 4, timeout=10)
    from selenium.webdriver.support.ui import Select

    Select(css(driver, "#x-axis")[0]).select_by_value("relative")
    wait_for(lambda: len(css(driver, "#compare-charts path.series")) == 4, timeout=10)
    assert css(driver, "#x-axis")[0].get_attribute("value") == "relative"


def test_hostile_markup_shows_as_text_and_runs_nothing(driver: Any, url: str) -> None:
    open_page(driver, url, "#/", "#grid .body .row[data-id]", n=11)
    names = [a.text for a in css(driver, '#grid .body .row a[href^="#/run/"]')]
    for hostile in HOSTILE_NAMES:
        assert hostile in names
    column_titles = [b.text for b in css(driver, "#grid .head button.sort")]
    assert any(t.startswith("<svg onload=") for t in column_titles)

    def clean() -> None:
        assert driver.execute_script("return window.__pwned") is None
        assert driver.execute_script("return document.querySelectorAll('img, iframe, svg[onload], a[href^=\"javascript\"], script:not([src])').length") == 0
        assert driver.execute_script("return [...document.scripts].map(s => new URL(s.src).pathname)") == ["/charts.js", "/app.js"]

    clean()
    for hostile in HOSTILE_NAMES:
        next(a for a in css(driver, '#grid .body .row a[href^="#/run/"]') if a.text == hostile).click()
        wait_for(lambda: css(driver, ".run-name") and css(driver, ".run-name")[0].text == hostile, timeout=20)
        body = driver.find_element("tag name", "body").text
        assert "<script>window.__pwned=3</script>" in body and '<iframe src="https://evil.example/"></iframe>' in body
        assert "<script>window.__pwned=7</script>" in body and "<a href='javascript:window.__pwned=5'>x</a>" in body
        clean()
        driver.back()
        wait_for(lambda: len(css(driver, "#grid .body .row[data-id]")) >= 11, timeout=20)


def test_where_filter_shows_errors_inline_and_filters(driver: Any, url: str) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(driver, url, "#/", "#grid .body .row[data-id]", n=11)
    box = css(driver, "#where")[0]
    box.send_keys("params.lr <", Keys.ENTER)
    err = wait_for(lambda: (e := css(driver, "#where-error")) and e[0].is_displayed() and e[0], timeout=10)
    assert err.text.startswith("bad --where expression at column")
    box = css(driver, "#where")[0]
    box.clear()
    box.send_keys("params.lr < 0.002 and params.batch == 64", Keys.ENTER)
    wait_for(lambda: "1 of 1 experiments" in css(driver, "#count")[0].text, timeout=10)
    assert not css(driver, "#where-error")[0].is_displayed()
    box = css(driver, "#where")[0]
    box.clear()
    box.send_keys(Keys.ENTER)
    wait_for(lambda: "11 of 11" in css(driver, "#count")[0].text, timeout=10)


def test_column_chooser_adds_metric_min_and_tags(driver: Any, url: str) -> None:
    open_page(driver, url, "#/", "#grid .body .row[data-id]", n=11)
    driver.execute_script("localStorage.removeItem('gitxp.columns')")
    css(driver, "#columns-btn")[0].click()
    chooser = css(driver, "#columns")[0]
    assert chooser.is_displayed()
    keys = [c.get_attribute("data-key") for c in css(driver, "#columns input[type=checkbox]")]
    for key in ("params.model.depth", "metrics.loss.last", "metrics.loss.min", "metrics.loss.max", "summary.best_acc", "tags.team"):
        assert key in keys, key
    for key in ("metrics.loss.min", "tags.team"):
        css(driver, f'#columns input[data-key="{key}"]')[0].click()
    heads = [b.get_attribute("title") for b in css(driver, "#grid .head button.sort")]
    assert "sort by metric loss.min" in heads and "sort by tags.team" in heads
    baseline = next(r for r in css(driver, "#grid .body .row[data-id]") if r.find_elements("css selector", "a") and r.find_element("css selector", "a").text == "baseline")
    cells = {c.get_attribute("title"): c.text for c in baseline.find_elements("css selector", ".cell[title]")}
    assert cells["tags.team"] == "vision" and float(cells["metric loss.min"]) < float(cells["metric loss.last"])
    driver.execute_script("localStorage.removeItem('gitxp.columns')")


def test_dark_and_light_themes_follow_the_system(driver: Any, url: str) -> None:
    open_page(driver, url, "#/", "#grid .body .row[data-id]", n=11)
    colours = {}
    for scheme in ("light", "dark"):
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        colours[scheme] = driver.execute_script("const s = getComputedStyle(document.body); return [s.backgroundColor, s.color]")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert colours["light"] == ["rgb(255, 255, 255)", "rgb(29, 35, 48)"]
    assert colours["dark"] == ["rgb(18, 21, 27)", "rgb(227, 231, 238)"]


def test_keyboard_moves_and_opens_and_sorts(driver: Any, url: str) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(driver, url, "#/", "#grid .body .row[data-id]", n=11)
    name_header = next(b for b in css(driver, "#grid .head button.sort") if b.text.startswith("name"))
    name_header.send_keys(Keys.ENTER)  # buttons: sortable from the keyboard
    wait_for(lambda: css(driver, '#grid .head [aria-sort="descending"], #grid .head [aria-sort="ascending"]') and "name" in css(driver, '#grid .head [aria-sort]:not([aria-sort="none"])')[0].text, timeout=10)
    body = css(driver, "#grid .body")[0]
    driver.execute_script("arguments[0].focus()", body)
    body.send_keys(Keys.END)
    body.send_keys(Keys.ENTER)
    wait_for(lambda: driver.execute_script("return location.hash").startswith(("#/run/", "#/sweep/")), timeout=10)


def test_sweep_view_brushing_filters_the_table(driver: Any, url: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    parent = next(e for e in api(url, "/api/experiments")["experiments"] if e["name"] == "lr-sweep" and e["parent"] is None)
    open_page(driver, url, f"#/sweep/{parent['id']}", "#parallel path.pc-line", n=6)
    assert len(css(driver, "#parallel path.pc-line")) == 6
    assert [t.get_attribute("textContent") for t in css(driver, "#parallel .pc-label")] == ["batch", "lr", "acc"]
    assert css(driver, "#sweep-count")[0].text == "6 of 6 runs shown"
    # drag along the metric axis over its upper part: only the best runs stay
    hit = css(driver, '#parallel .pc-axis[data-key="metric"] .pc-hit')[0]
    size = hit.size
    ActionChains(driver).move_to_element_with_offset(hit, 0, -size["height"] // 2 + 2).click_and_hold().move_by_offset(0, size["height"] // 3).release().perform()
    shown = wait_for(lambda: (t := css(driver, "#sweep-count")[0].text) != "6 of 6 runs shown" and t, timeout=10)
    kept = int(shown.split()[0])
    assert 1 <= kept < 6 and len(css(driver, "#sweep-table tbody tr")) == kept
    assert len(css(driver, "#parallel path.pc-line.dim")) == 6 - kept
    # keyboard: Delete on the focused axis clears its brush
    axis = css(driver, '#parallel .pc-axis[data-key="metric"]')[0]
    driver.execute_script("arguments[0].focus()", axis)
    ActionChains(driver).send_keys(Keys.DELETE).perform()
    wait_for(lambda: css(driver, "#sweep-count")[0].text == "6 of 6 runs shown", timeout=10)


def test_no_console_errors_and_no_request_leaves_the_origin(driver: Any, url: str) -> None:
    """Reads the browser and network logs of this whole module's session."""
    ids = [e["id"] for e in api(url, "/api/experiments")["experiments"]]
    for hash_, ready in (("#/", "#grid .body .row[data-id]"), (f"#/run/{ids[0]}", ".run-name"), (f"#/compare/{ids[3]},{ids[4]}", "#compare-charts figure")):
        open_page(driver, url, hash_, ready)
    logs = driver.get_log("browser")
    # the one expected: the deliberately bad --where of the filter test, answered 400 (the page shows it inline)
    expected = [e for e in logs if e["source"] == "network" and "/api/experiments?where=params.lr%20%3C " in e["message"] + " " and "400" in e["message"]]
    assert len(expected) <= 1  # 1 when the filter test ran before this one
    severe = [e for e in logs if e["level"] in ("SEVERE", "ERROR", "WARNING") and e not in expected]
    assert severe == []
    origin = url.rstrip("/")
    requested = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            requested.append(msg["params"]["request"]["url"])
    assert len(requested) > 20  # the pages, scripts and API calls of this module were seen
    foreign = [u for u in requested if not (u == origin or u.startswith(origin + "/") or u.startswith(("data:", "about:blank")))]
    assert foreign == []


def test_running_experiments_refresh_by_themselves(driver: Any, git_repo: Path) -> None:
    """A wrapped run waiting on a file: its row and its page update without a reload."""
    import subprocess
    import sys

    (git_repo / "wait.py").write_text(
        "import os, time, gitxp\n"
        "xp = gitxp.current()\n"
        "i = 0\n"
        "while not os.path.exists('go'):\n"
        "    xp.log_metric('loss', 1.0 / (i + 1), step=i)\n"
        "    i += 1\n"
        "    time.sleep(0.1)\n"
    )
    child = subprocess.Popen([sys.executable, "-m", "gitxp", "start", "--name", "live", "--no-hardware", "--", sys.executable, "wait.py"],
                             cwd=git_repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with serve(git_repo) as (u, _):
            wait_for(lambda: api(u, "/api/experiments")["total"] == 1, timeout=30)
            open_page(driver, u, "#/", "#grid .body .row.running[data-id]")
            run_id = css(driver, "#grid .body .row[data-id]")[0].get_attribute("data-id")
            assert "running" in css(driver, "#live")[0].text
            open_page(driver, u, f"#/run/{run_id}", "#metric-charts path.series")
            first = path_geometry(driver, "#metric-charts path.series")[0]["points"]
            wait_for(lambda: path_geometry(driver, "#metric-charts path.series")[0]["points"] >= first + 10, timeout=10)  # the curve grows in place
            driver.execute_script("location.hash = '#/'")
            wait_for(lambda: css(driver, "#grid .body .row.running[data-id]"), timeout=10)
            (git_repo / "go").write_text("")
            assert child.wait(60) == 0
            # no reload; the refreshed grid draws its rows a frame after it replaces the old one, so it may be empty when asked
            wait_for(lambda: (rows := css(driver, "#grid .body .row[data-id] .status")) and rows[0].text == "completed", timeout=10)
            assert not css(driver, "#grid .body .row.running")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
