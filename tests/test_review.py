"""Review commands on a real store: diff, report (markdown, HTML in Chromium), plot, checkout.

One repository with four experiments is built once for the module (with the
Python API, in-process: fast); each test then drives the real CLI in a
subprocess and checks files, refs and git's own view of them.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import GIT_ENV, fsck, gitxp, run_git, state

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def xps(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A repository and four experiments.

    a: clean tree; b: train.py edited and a binary file added (environment
    recorded); c: like b, 5,000 loss points; d: only src/ snapshotted
    (--code-dir) with src/model.py edited.
    """
    import gitxp as gx

    base = tmp_path_factory.mktemp("review")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in GIT_ENV.items():
            mp.setenv(k, v)
        mp.setenv("XDG_CONFIG_HOME", str(base / "xdg"))
        for var in ("GITXP_EXPERIMENT", "GITXP_RUN_DIR", "GITXP_KEY", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            mp.delenv(var, raising=False)
        repo = base / "repo"
        repo.mkdir()
        run_git(repo, "init", "-q", "-b", "main")
        (repo / "train.py").write_text("print('training')\n")
        (repo / ".gitignore").write_text("*.log\n")
        (repo / "src").mkdir()
        (repo / "src" / "model.py").write_text("LAYERS = 2\n")
        run_git(repo, "add", "-A")
        run_git(repo, "commit", "-q", "-m", "initial")
        head = run_git(repo, "rev-parse", "HEAD").strip()

        def run(name: str, params: dict, loss_scale: float, n: int = 50, **kw: object) -> str:
            with gx.start(repo=str(repo), log_hardware=False, capture_env=kw.pop("capture_env", False), name=name, params=params, **kw) as xp:
                for i in range(n):
                    xp.log_metric("loss", loss_scale / (i + 1), step=i)
                    xp.log_metric("acc", (i / n) ** (1 / loss_scale), step=i)
            return xp.id

        a = run("base", {"lr": 0.1, "optim": {"momentum": 0.9}, "epochs": 3}, 1.0)
        (repo / "train.py").write_text("print('edited')\n")
        (repo / "weights.bin").write_bytes(bytes(range(256)))
        b = run("tuned", {"lr": 0.01, "optim": {"momentum": 0.9}, "epochs": 3, "wd": 1e-4}, 0.5, capture_env=True)
        c = run("long", {"lr": 0.02}, 0.7, n=5000)
        (repo / "src" / "model.py").write_text("LAYERS = 4\n")
        d = run("subdir", {"lr": 0.03}, 0.9, code_dir=str(repo / "src"))
        store = gx.open(str(repo))
        recs = {k: store.get(v) for k, v in dict(a=a, b=b, c=c, d=d).items()}
        store.close()
    return SimpleNamespace(repo=repo, head=head, a=a, b=b, c=c, d=d, recs=recs)


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# ---------------------------------------------------------------- help


def test_every_review_command_has_help_with_an_example(xps: SimpleNamespace) -> None:
    from click.testing import CliRunner

    from gitxp.cli import cli

    for cmd in ("diff", "report", "plot", "checkout"):
        r = CliRunner().invoke(cli, [cmd, "--help"])
        assert r.exit_code == 0, r.output
        assert "Example" in r.output and f"gitxp {cmd}" in r.output


# ---------------------------------------------------------------- diff


def test_diff_shows_param_changes_and_metric_deltas(xps: SimpleNamespace) -> None:
    out = gitxp(xps.repo, "diff", xps.a, xps.b).stdout
    assert xps.a in out and xps.b in out
    assert "~ lr: 0.1 -> 0.01" in out
    assert "+ wd: 0.0001" in out
    assert "(2 unchanged)" in out  # optim.momentum, epochs
    loss = next(line for line in out.splitlines() if line.strip().startswith("loss"))
    # last: 1/50 = 0.02 -> 0.5/50 = 0.01
    assert re.search(r"last\s+0\.02\s+0\.01\s+-0\.01\s+-50\.0%", loss), loss
    assert "status" in out and "completed" in out and "duration" in out
    assert xps.head[:10] in out and "+dirty" in out


def test_diff_code_shows_a_unified_diff_of_the_edited_file(xps: SimpleNamespace) -> None:
    out = gitxp(xps.repo, "diff", xps.a, xps.b, "--code").stdout
    assert "2 files changed, 1 insertion(+), 1 deletion(-)" in out
    i = out.index("diff --git a/train.py b/train.py")
    body = out[i:].splitlines()
    assert body[1:5] == ["--- a/train.py", "+++ b/train.py", "@@ -1 +1 @@", "-print('training')"]
    assert body[5] == "+print('edited')"
    assert "diff --git a/weights.bin b/weights.bin" in out
    assert "new file mode 100644" in out
    assert "Binary files /dev/null and b/weights.bin differ" in out
    assert "\x1b[" not in out  # no colour when not a terminal


def test_diff_code_is_coloured_when_forced(xps: SimpleNamespace) -> None:
    out = gitxp(xps.repo, "diff", xps.a, xps.b, "--code", env={"CLICOLOR_FORCE": "1"}).stdout
    assert "\x1b[32m+print('edited')\x1b[0m" in out
    assert "\x1b[31m-print('training')\x1b[0m" in out


def test_diff_env_says_when_an_environment_was_not_recorded(xps: SimpleNamespace) -> None:
    out = gitxp(xps.repo, "diff", xps.a, xps.b, "--env").stdout
    assert "Environment:" in out
    assert f"(environment not recorded for {xps.a.rsplit('-', 1)[1][:8]} base)" in out


def test_environment_diff_lists_changed_packages(xps: SimpleNamespace) -> None:
    from gitxp.review import diff as review

    rec = xps.recs["b"]
    env = dict(rec.environment)
    assert env.get("packages"), "b recorded its environment"
    changed = dict(env, packages=[dict(p, version="0.0.0") if p["name"].lower() == "pyyaml" else p for p in env["packages"]])
    other = SimpleNamespace(id="x-1", name="other", environment=changed)
    text = review.env_diff_text(rec, other)
    assert re.search(r"^~ (?i:pyyaml) \S+ -> 0\.0\.0$", text, re.M), text
    assert review.env_diff_text(rec, rec) == "(identical)"


def test_unknown_ref_is_one_line_usage_error(xps: SimpleNamespace) -> None:
    for args in (("diff", "nosuchexp", xps.a), ("report", xps.a, "nosuchexp"), ("checkout", "nosuchexp", "-b", "x"), ("plot", "nosuchexp", "-m", "loss", "-o", "x.svg")):
        r = gitxp(xps.repo, *args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert "nosuchexp" in one_error_line(r)
        assert r.stdout == ""


# ---------------------------------------------------------------- report


def md_tables(text: str) -> list[list[list[str]]]:
    """Markdown tables as rows of cells; asserts each is well formed (header, separator, equal widths)."""
    tables: list[list[str]] = []
    cur: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    out = []
    for t in tables:
        rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in t]
        assert len(rows) >= 2 and all(re.fullmatch(r"-+:?|:?-+:?", c) for c in rows[1]), t
        assert len({len(r) for r in rows}) == 1, t
        out.append(rows)
    return out


def test_report_markdown_has_tables_deltas_mermaid_and_code_stat(xps: SimpleNamespace) -> None:
    out = gitxp(xps.repo, "report", xps.b, "--baseline", xps.a, "-m", "loss").stdout
    assert out.startswith("## ")
    tables = md_tables(out)
    assert len(tables) == 3  # overview, metrics, params
    for t in tables:
        header = " ".join(t[0])
        assert f"`{xps.a}` (baseline)" in header and f"`{xps.b}`" in header
        assert header.index(xps.a) < header.index(xps.b)  # the baseline is the first column
    metrics = {r[0]: r for r in tables[1][2:]}
    assert metrics["loss"][1:] == ["0.02", "0.01 (-0.01, -50.0%)"]
    params = {r[0]: r for r in tables[2][2:]}
    assert params["lr"][1:] == ["0.1", "**0.01**"]
    assert params["optim.momentum"][1:] == ["0.9", "0.9"]
    m = re.search(r"```mermaid\n(.*?)\n```", out, re.S)
    assert m, out
    block = m.group(1).splitlines()
    assert "xychart-beta" in block
    assert sum(1 for ln in block if ln.strip().startswith("line [")) == 2
    assert any(ln.strip().startswith('title "loss"') for ln in block)
    assert "2 files changed, 1 insertion(+), 1 deletion(-)" in out
    assert "`train.py` modified +1 -1" in out


def test_report_default_baseline_is_first_ref_and_writes_file(xps: SimpleNamespace, tmp_path: Path) -> None:
    dest = tmp_path / "r.md"
    r = gitxp(xps.repo, "report", xps.c, xps.a, xps.b, "-o", str(dest))
    assert r.stdout == ""
    text = dest.read_text()
    header = md_tables(text)[0][0]
    assert header[1] == f"`{xps.c}` (baseline)" and header[2:] == [f"`{xps.a}`", f"`{xps.b}`"]
    assert sum(1 for ln in text.splitlines() if ln.strip().startswith("line [")) == 3


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG into rows of RGBA-or-RGB bytes (pure Python)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert ihdr is not None
    width, height, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def count_colour(rows: list[bytes], bpp: int, rgb: tuple[int, int, int], tol: int = 24) -> int:
    r0, g0, b0 = rgb
    n = 0
    for row in rows:
        for i in range(0, len(row), bpp):
            if abs(row[i] - r0) <= tol and abs(row[i + 1] - g0) <= tol and abs(row[i + 2] - b0) <= tol:
                n += 1
    return n


def test_report_html_is_self_contained_and_chromium_shows_the_chart(xps: SimpleNamespace, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    gitxp(xps.repo, "report", xps.b, "--baseline", xps.a, "--format", "html", "-o", str(html))
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") and xps.a in text and xps.b in text
    assert "<svg" in text and text.count("<polyline") == 4  # loss and acc, two experiments each
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text) and "<script" not in text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1000,800", f"file://{html}"],
        capture_output=True, timeout=120, check=False,
    )
    assert shot.exists(), "chromium wrote no screenshot"
    width, bpp, rows = read_png(shot)
    assert width >= 900 and len(rows) >= 700
    red = count_colour(rows, bpp, (0xD6, 0x27, 0x28))  # the baseline's line (PALETTE[0])
    blue = count_colour(rows, bpp, (0x1F, 0x77, 0xB4))  # the other experiment's line
    assert red >= 300 and blue >= 300, (red, blue)


# ---------------------------------------------------------------- plot


def test_plot_svg_has_one_polyline_per_experiment(xps: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "loss.svg"
    gitxp(xps.repo, "plot", xps.a, xps.b, xps.c, "-m", "loss", "-o", str(out))
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f".//{SVG}polyline")
    assert len(lines) == 3
    assert len({ln.get("stroke") for ln in lines}) == 3
    assert lines[0].get("stroke") == "#d62728"
    counts = [len(ln.get("points", "").split()) for ln in lines]
    assert counts[:2] == [50, 50] and 1000 <= counts[2] <= 2000  # c's 5,000 points downsampled
    vb = [float(v) for v in root.get("viewBox", "").split()]
    for ln in lines:
        for pt in ln.get("points", "").split():
            x, y = map(float, pt.split(","))
            assert 0 <= x <= vb[2] and 0 <= y <= vb[3]
    legend = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for exp_id in (xps.a, xps.b, xps.c):
        assert exp_id.rsplit("-", 1)[1][:8] in legend


def test_plot_two_metrics_gives_two_panels(xps: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "both.svg"
    gitxp(xps.repo, "plot", xps.a, xps.b, "-m", "loss", "-m", "acc", "-o", str(out))
    root = ET.parse(out).getroot()
    panels = [g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"]
    assert [p.get("data-metric") for p in panels] == ["loss", "acc"]
    assert all(len(p.findall(f"{SVG}polyline")) == 2 for p in panels)


def test_plot_png_needs_matplotlib_and_refuses_other_formats(xps: SimpleNamespace, tmp_path: Path) -> None:
    png = tmp_path / "loss.png"
    r = gitxp(xps.repo, "plot", xps.a, "-m", "loss", "-o", str(png), check=False)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert r.returncode == 1, r.stderr
        assert "matplotlib" in one_error_line(r) and ".svg" in r.stderr
        assert not png.exists()
    else:
        assert r.returncode == 0, r.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = gitxp(xps.repo, "plot", xps.a, "-m", "loss", "-o", str(tmp_path / "x.pdf"), check=False)
    assert r.returncode == 2 and ".svg" in one_error_line(r)
    r = gitxp(xps.repo, "plot", xps.a, "-m", "nosuchmetric", "-o", str(tmp_path / "x.svg"), check=False)
    assert r.returncode == 2 and "loss" in one_error_line(r)


# ---------------------------------------------------------------- checkout


def test_checkout_clean_experiment_points_branch_at_source_commit(xps: SimpleNamespace) -> None:
    before = state(xps.repo)
    r = gitxp(xps.repo, "checkout", xps.a, "-b", "xp/clean")
    assert run_git(xps.repo, "rev-parse", "xp/clean").strip() == xps.head
    assert r.stdout.startswith(f"branch xp/clean → {xps.head[:7]} (code of {xps.a}")
    assert state(xps.repo) == before
    r = gitxp(xps.repo, "checkout", xps.b, "-b", "xp/clean", check=False)
    assert r.returncode == 2 and "already exists" in one_error_line(r)
    assert run_git(xps.repo, "rev-parse", "xp/clean").strip() == xps.head
    r = gitxp(xps.repo, "checkout", xps.a, "-b", "bad..name", check=False)
    assert r.returncode == 2 and "invalid branch name" in one_error_line(r)
    fsck(xps.repo)


def test_checkout_dirty_experiment_commits_snapshot_into_branch_and_worktree(xps: SimpleNamespace, tmp_path: Path) -> None:
    before = state(xps.repo)
    wt = tmp_path / "wt"
    r = gitxp(xps.repo, "checkout", xps.b, "-b", "xp/dirty", "--worktree", str(wt))
    tip = run_git(xps.repo, "rev-parse", "xp/dirty").strip()
    assert run_git(xps.repo, "rev-parse", "xp/dirty^").strip() == xps.head
    assert run_git(xps.repo, "rev-parse", "xp/dirty^{tree}").strip() == xps.recs["b"].code_tree
    msg = run_git(xps.repo, "log", "-1", "--format=%B", "xp/dirty")
    assert msg.startswith(f"gitxp: code of experiment {xps.b} tuned")
    assert r.stdout.splitlines()[0].startswith(f"branch xp/dirty → {tip[:7]}")
    assert (wt / "train.py").read_text() == "print('edited')\n"
    assert (wt / "weights.bin").read_bytes() == bytes(range(256))
    assert run_git(wt, "rev-parse", "--abbrev-ref", "HEAD").strip() == "xp/dirty"
    assert run_git(wt, "status", "--porcelain") == ""
    assert state(xps.repo) == before
    fsck(xps.repo)

    # Without -b: a detached worktree at the same (deterministic) commit.
    wt2 = tmp_path / "wt2"
    gitxp(xps.repo, "checkout", xps.b, "--worktree", str(wt2))
    assert run_git(wt2, "rev-parse", "HEAD").strip() == tip
    assert run_git(wt2, "symbolic-ref", "-q", "HEAD", check=False) == ""
    assert (wt2 / "train.py").read_text() == "print('edited')\n"
    r = gitxp(xps.repo, "checkout", xps.b, "--worktree", str(wt2), check=False)
    assert r.returncode == 2 and "not an empty folder" in one_error_line(r)
    assert state(xps.repo) == before


def test_checkout_code_dir_snapshot_overlays_the_folder_on_the_source_commit(xps: SimpleNamespace) -> None:
    before = state(xps.repo)
    rec = xps.recs["d"]
    assert rec.source.get("code_dir") == "src"
    r = gitxp(xps.repo, "checkout", xps.d, "-b", "xp/subdir")
    assert "--code-dir" in r.stdout
    assert run_git(xps.repo, "rev-parse", "xp/subdir^").strip() == xps.head
    assert run_git(xps.repo, "show", "xp/subdir:src/model.py") == "LAYERS = 4\n"
    assert run_git(xps.repo, "show", "xp/subdir:train.py") == "print('training')\n"  # the source commit's
    assert run_git(xps.repo, "diff", "--name-only", "xp/subdir^", "xp/subdir").split() == ["src/model.py"]
    assert state(xps.repo) == before
    fsck(xps.repo)
