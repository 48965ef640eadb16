"""Issue 16: what a new user stumbled on in the first hour, each driven through the real CLI in real repos."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gitxp
from conftest import ROOT, fsck, gitxp as run_gitxp, run_git

FAST = ("--no-hardware",)
POLY_LOSS = r"loss=^(?P<step>\d+) ([-+.\deE]+)$"


def rec(repo: Path, ref: str = "@") -> gitxp.Record:
    return gitxp.open(str(repo)).get(ref)


def commit_all(repo: Path, message: str = "scripts") -> None:
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", message)


# --- 1. a sweep file without `grid:` ------------------------------------------


def test_top_level_lists_used_by_the_command_warn_and_suggest_grid(git_repo: Path) -> None:
    (git_repo / "s.py").write_text("import sys\nprint(sys.argv[1:])\n")
    (git_repo / "sweep.yaml").write_text("lr: [0.01, 0.1]\nseed: [1, 2]\nlayers: [64, 64]\n")
    commit_all(git_repo)
    r = run_gitxp(git_repo, "sweep", "sweep.yaml", "--dry-run", "--", "python", "s.py", "--lr", "{lr}", "--seed", "{seed}")
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 2, r.stderr  # one per key the command uses; `layers` is a legitimate list value
    assert "'lr'" in warnings[0] and "grid: {lr: [0.01, 0.1]}" in warnings[0]
    assert "'seed'" in warnings[1] and "grid:" in warnings[1]
    assert r.stdout.count("#") == 1  # still what the file says: one configuration

    (git_repo / "grid.yaml").write_text("grid:\n  lr: [0.01, 0.1]\n  seed: [1, 2]\n")
    r = run_gitxp(git_repo, "sweep", "grid.yaml", "--dry-run", "--", "python", "s.py", "--lr", "{lr}", "--seed", "{seed}")
    assert "warning" not in r.stderr and r.stdout.count("#") == 4


def test_sweep_help_and_readme_show_the_file_format() -> None:
    out = subprocess.run([sys.executable, "-m", "gitxp", "sweep", "--help"], capture_output=True, text=True, check=True).stdout
    assert "grid:" in out and "lr: [0.1, 0.01]" in out and "4 configurations" in out
    flat = " ".join(out.split())
    assert "also the children's name" in flat and "named after the sweep (--name, else FILE's stem)" in flat
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"```yaml\n(?:#.*\n)?epochs: 3\ngrid:\n  lr: \[0\.1, 0\.01\]\n  batch: \[16, 32\]\n```", readme)


# --- 2. --scalars and --scalar -------------------------------------------------

ISSUE_LINES = """
print("==> Learned function: y = -13.59 x^1 + 0.81 x^2 - 1.2 x^3")
print("Classification report for classifier SVC(gamma=0.001):")
print("Result: y = 0.049 x + 1.2")
print("step=3 loss=0.25 acc: 0.9")
"""


def test_scalars_read_whole_tokens_never_prose_or_equations(git_repo: Path) -> None:
    (git_repo / "s.py").write_text(ISSUE_LINES)
    run_gitxp(git_repo, "start", *FAST, "--scalars", "--", sys.executable, "s.py")
    ms = rec(git_repo).metric_summary
    assert set(ms) == {"loss", "acc"}
    assert ms["loss"]["last"] == 0.25 and ms["loss"]["last_step"] == 3
    assert ms["acc"]["last"] == 0.9 and ms["acc"]["last_step"] == 3
    assert "gamma" not in run_gitxp(git_repo, "table").stdout


def test_scalar_regex_reads_step_and_value(git_repo: Path) -> None:
    # The NumPy polynomial tutorial prints `t loss` every 100 steps.
    (git_repo / "poly.py").write_text(
        "for t in range(500):\n"
        "    if t % 100 == 99:\n"
        "        print(t, round(6543.69 / (t + 1), 2))\n"
        "print('Result: y = 0.049 + 0.85 x - 0.01 x^2')\n"
    )
    r = run_gitxp(git_repo, "start", *FAST, "--scalars", "--scalar", POLY_LOSS, "--", sys.executable, "poly.py")
    assert r.returncode == 0
    x = rec(git_repo)
    assert set(x.metric_summary) == {"loss"}
    t = x.metrics()
    assert t.column("step").to_pylist() == [99, 199, 299, 399, 499]
    assert t.column("value").to_pylist()[0] == 65.44


def test_scalar_regex_without_step_and_help_example(git_repo: Path) -> None:
    (git_repo / "s.py").write_text("print('best accuracy 91.5 %')\nprint('best accuracy 93.0 %')\n")
    run_gitxp(git_repo, "start", *FAST, "--scalar", r"acc=best accuracy (\S+) %", "--", sys.executable, "s.py")
    t = rec(git_repo).metrics()
    assert t.column("value").to_pylist() == [91.5, 93.0]
    help_text = run_gitxp(git_repo, "start", "--help").stdout
    assert "--scalar 'loss=^(?P<step>\\d+)" in help_text and "99 6543.69" in help_text


@pytest.mark.parametrize("spec, words", [
    ("loss=([0-9.]+", "invalid regex"),
    ("loss=^\\d+ [0-9.]+$", "no group"),
    ("=(\\d+)", "NAME=REGEX"),
])
def test_bad_scalar_is_one_line_error_and_runs_nothing(git_repo: Path, spec: str, words: str) -> None:
    r = run_gitxp(git_repo, "start", *FAST, "--scalar", spec, "--", sys.executable, "-c", "print('ran')", check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], r.stderr
    assert "ran" not in r.stdout and "Traceback" not in r.stderr
    assert run_git(git_repo, "branch", "--list", "gitxp") == ""
    (git_repo / "g.yaml").write_text("grid:\n  lr: [1, 2]\n")
    r = run_gitxp(git_repo, "sweep", "g.yaml", "--scalar", spec, "--", "echo", "{lr}", check=False)
    assert r.returncode == 2 and words in r.stderr


# --- 3. a fresh clone -------------------------------------------------------------


def test_fresh_clone_says_what_pull_brings_and_log_shows_it_after_pull(git_repo: Path, tmp_path: Path) -> None:
    for lr in ("0.1", "0.2"):
        run_gitxp(git_repo, "start", *FAST, "-p", f"lr={lr}", "--", "true")
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", str(git_repo), str(clone))
    for args in (("log",), ("table",), ("show", "@")):
        r = run_gitxp(clone, *args, check=False)
        hints = [ln for ln in r.stderr.splitlines() if "gitxp pull" in ln]
        assert hints == ["gitxp: no local store yet; `gitxp pull` brings 2 experiment(s) from origin"], (args, r.stderr)

    run_git(clone, "checkout", "-q", "--orphan", "fresh")  # a current branch with no commit yet
    run_gitxp(clone, "pull")
    r = run_gitxp(clone, "log", "--oneline")
    assert len(r.stdout.splitlines()) == 2 and "gitxp pull" not in r.stderr
    run_git(clone, "checkout", "-q", "main")
    assert len(run_gitxp(clone, "log", "--oneline").stdout.splitlines()) == 2
    run_git(clone, "checkout", "-q", "-b", "other")
    run_git(clone, "commit", "-q", "--allow-empty", "-m", "other work")
    r = run_gitxp(clone, "log")
    assert r.stdout == "" and "2 from other branches (`gitxp log --all`)" in r.stderr
    fsck(clone)


# --- 4. a param the script sets itself ---------------------------------------------


def test_script_param_wins_over_command_line_with_a_notice(git_repo: Path) -> None:
    (git_repo / "s.py").write_text("import gitxp\nwith gitxp.start(params={'lr': 0.1, 'epochs': 3}) as xp:\n    pass\n")
    r = run_gitxp(git_repo, "start", *FAST, "-p", "lr=0.5", "-p", "epochs=3", "--", sys.executable, "s.py")
    notes = [ln for ln in r.stderr.splitlines() if "param" in ln]
    assert len(notes) == 1 and "lr" in notes[0] and "0.1" in notes[0] and "0.5" in notes[0], r.stderr
    assert dict(rec(git_repo).params) == {"lr": 0.1, "epochs": 3}
    r = run_gitxp(git_repo, "start", *FAST, "-p", "lr=0.1", "--", sys.executable, "s.py")
    assert "param" not in r.stderr  # the same value: nothing to say


# --- 5. diff and report show commands ----------------------------------------------


def test_diff_and_report_show_differing_commands_and_diff_defaults_to_the_last_two(git_repo: Path) -> None:
    (git_repo / "a.py").write_text("print('a')\n")
    (git_repo / "b.py").write_text("print('b')\n")
    commit_all(git_repo)
    run_gitxp(git_repo, "start", *FAST, "-p", "lr=0.1", "--", sys.executable, "a.py")
    (git_repo / "b.py").write_text("print('b, edited')\n")
    run_gitxp(git_repo, "start", *FAST, "-p", "lr=0.1", "--", sys.executable, "b.py", "--fast")
    a, b = rec(git_repo, "@~1"), rec(git_repo, "@")
    out = run_gitxp(git_repo, "diff", a.id, b.id).stdout
    assert f"  - {sys.executable} a.py" in out and f"  + {sys.executable} b.py --fast" in out
    assert "(identical, 1 params)" in out

    r = run_gitxp(git_repo, "diff", "--code")
    assert r.stdout == run_gitxp(git_repo, "diff", "@~1", "@", "--code").stdout
    assert "b, edited" in r.stdout
    assert run_gitxp(git_repo, "diff", a.id).stdout == run_gitxp(git_repo, "diff", a.id, "@").stdout

    md = run_gitxp(git_repo, "report", b.id, "--baseline", a.id).stdout
    row = next(ln for ln in md.splitlines() if ln.startswith("| command |"))
    assert "a.py" in row and "**" in row and "b.py --fast" in row


# --- 6. charts ----------------------------------------------------------------------

CURVE = """
import sys, gitxp
n = int(sys.argv[1])
xp = gitxp.current()
for i in range(n):
    xp.log_metric("loss", 14.0 * 0.97 ** i, step=i)
xp.log_metric("acc", 0.5 + n / 1000)
"""


@pytest.fixture
def curves(git_repo: Path) -> Path:
    (git_repo / "curve.py").write_text(CURVE)
    commit_all(git_repo)
    run_gitxp(git_repo, "start", *FAST, "--", sys.executable, "curve.py", "457")
    run_gitxp(git_repo, "start", *FAST, "--", sys.executable, "curve.py", "327")
    return git_repo


def test_single_point_metric_is_drawn_as_a_marker(curves: Path, tmp_path: Path) -> None:
    svg = tmp_path / "acc.svg"
    run_gitxp(curves, "plot", "@~1", "@", "-m", "acc", "-o", str(svg))
    text = svg.read_text()
    assert text.count('<circle class="marker"') == 2 and "<polyline" not in text
    html = run_gitxp(curves, "report", "@~1", "@", "-m", "acc", "--format", "html").stdout
    assert html.count('<circle class="marker"') == 2
    md = run_gitxp(curves, "report", "@~1", "@", "-m", "acc").stdout
    block = re.search(r"```mermaid\n(.*?)\n```", md, re.S).group(1)  # type: ignore[union-attr]
    assert "bar [" in block and "line [" not in block


def test_markdown_report_keeps_each_run_to_its_own_steps(curves: Path) -> None:
    md = run_gitxp(curves, "report", "@~1", "@", "-m", "loss").stdout
    blocks = re.findall(r"```mermaid\n(.*?)\n```", md, re.S)
    axes = sorted(re.search(r'x-axis "step" (.*)', b).group(1) for b in blocks)  # type: ignore[union-attr]
    assert axes == ["0 --> 326", "0 --> 456"]
    for b in blocks:
        values = [float(v) for v in re.search(r"line \[(.*)\]", b).group(1).split(", ")]  # type: ignore[union-attr]
        assert values[-1] < values[-2] < values[0]  # still falling at its end: not padded flat
        assert re.search(r'y-axis "loss" [\d.e+-]+ --> [\d.e+-]+', b)  # one y range: the charts compare


def test_log_y_on_plot_and_report(curves: Path, tmp_path: Path) -> None:
    svg = tmp_path / "loss.svg"
    run_gitxp(curves, "plot", "@~1", "@", "-m", "loss", "--log-y", "-o", str(svg))
    text = svg.read_text()
    assert "loss (log scale)" in text
    labels = set(re.findall(r'text-anchor="end" fill="#444">([^<]+)<', text))
    assert {"0.001", "0.01", "0.1", "1", "10"} <= labels, labels  # decades from 14 down to ~1e-5
    assert "log scale" not in run_gitxp(curves, "report", "@", "-m", "loss", "--format", "html").stdout
    assert "log scale" in run_gitxp(curves, "report", "@", "-m", "loss", "--format", "html", "--log-y").stdout
    md = run_gitxp(curves, "report", "@~1", "@", "-m", "loss", "--log-y").stdout
    assert 'y-axis "log10(loss)"' in md


# --- 7. gitxp table -------------------------------------------------------------------


def test_table_groups_columns_drops_empty_ones_and_shortens_digests(git_repo: Path) -> None:
    (git_repo / "s.py").write_text("import sys\nprint(f'step=1 loss={sys.argv[1]}')\nprint(f'step=2 loss={float(sys.argv[1]) / 2}')\n")
    (git_repo / "grid.yaml").write_text("grid:\n  lr: [0.5, 0.25]\n")
    commit_all(git_repo)
    run_gitxp(git_repo, "sweep", "grid.yaml", *FAST, "--scalars", "--", sys.executable, "s.py", "{lr}")
    run_gitxp(git_repo, "start", *FAST, "--", "true")  # no params, metrics, summary or tags
    text = run_gitxp(git_repo, "table").stdout
    header = text.splitlines()[0].split()
    assert not {"params", "summary", "tags", "metrics"} & set(header)
    groups = [h.split(".")[0] for h in header if "." in h]
    assert groups == sorted(groups, key=["params", "metrics", "summary", "tags"].index), header
    key = rec(git_repo, "@~1").tags["sweep_key"]
    assert len(key) == 64 and key not in text and f"{key[:12]}…" in text
    rows = list(csv.DictReader(io.StringIO(run_gitxp(git_repo, "table", "--format", "csv").stdout)))
    assert key in {r["tags.sweep_key"] for r in rows}
    assert key in {r.get("tags.sweep_key") for r in json.loads(run_gitxp(git_repo, "table", "--format", "json").stdout)}


def test_table_columns_take_metric_statistics_and_refuse_unknown_names(git_repo: Path) -> None:
    (git_repo / "s.py").write_text("for i, v in enumerate([0.9, 0.2, 0.4]):\n    print(f'step={i} loss={v}')\n")
    run_gitxp(git_repo, "start", *FAST, "--scalars", "--", sys.executable, "s.py")
    rows = json.loads(run_gitxp(git_repo, "table", "--columns", "metrics.loss.min,metrics.loss,metrics.loss.last_step", "--format", "json").stdout)
    assert rows[0]["metrics.loss.min"] == 0.2 and rows[0]["metrics.loss"] == 0.4 and rows[0]["metrics.loss.last_step"] == 2
    for bad in ("metrics.los", "param.lr", "metric.*"):
        r = run_gitxp(git_repo, "table", "--columns", bad, check=False)
        assert r.returncode == 2 and r.stderr.startswith(f"Error: no column '{bad}'") and len(r.stderr.splitlines()) == 1
    assert run_gitxp(git_repo, "table", "--columns", "tags.*").returncode == 0  # a group that is just empty here


# --- 8. sweep children's names and the parent's counts -----------------------------------


def test_sweep_children_are_named_after_the_file_and_rerun_counts_are_truthful(git_repo: Path) -> None:
    (git_repo / "s.py").write_text("print('ok')\n")
    (git_repo / "lr_search.yaml").write_text("grid:\n  lr: [1, 2]\n")
    commit_all(git_repo)
    run_gitxp(git_repo, "sweep", "lr_search.yaml", *FAST, "--", sys.executable, "s.py", "{lr}")
    out = run_gitxp(git_repo, "log", "--oneline").stdout
    assert [ln.split()[1] for ln in out.splitlines()] == ["lr_search"] * 3
    run_gitxp(git_repo, "sweep", "lr_search.yaml", *FAST, "--", sys.executable, "s.py", "{lr}")
    show = run_gitxp(git_repo, "show", "@~2").stdout
    summary = dict(ln.split() for ln in show.split("Summary:\n", 1)[1].split("\n\n", 1)[0].splitlines())
    assert summary == {"configurations": "2", "completed": "2", "failed": "0", "ran": "0", "skipped": "2"}


# --- 9. small things ----------------------------------------------------------------------


def test_one_duration_and_signal_exit_shown_as_the_shell_saw_it(git_repo: Path) -> None:
    r = run_gitxp(git_repo, "start", *FAST, "--", sys.executable, "-c", "import time; time.sleep(0.3)")
    said = re.search(r"completed in (\S+) ", r.stderr).group(1)  # type: ignore[union-attr]
    assert f"Duration: {said}\n" in run_gitxp(git_repo, "show", "@").stdout

    r = run_gitxp(git_repo, "start", *FAST, "--", "sh", "-c", "kill -INT $$", check=False)
    assert r.returncode == 130
    assert "Status:   interrupted, exit 130 (SIGINT)" in run_gitxp(git_repo, "show", "@").stdout
    assert "interrupted, exit 130 (SIGINT)" in run_gitxp(git_repo, "log", "-n", "1").stdout


def test_show_hardware_in_binary_units_and_artifact_sizes_aligned(git_repo: Path) -> None:
    (git_repo / "small.txt").write_text("hi\n")
    (git_repo / "big.bin").write_bytes(b"\0" * 150_000)
    run_gitxp(git_repo, "start", "--hardware-interval", "0.2", "--artifact", "small.txt", "--artifact", "big.bin",
              "--", sys.executable, "-c", "import time; time.sleep(0.8)")
    out = run_gitxp(git_repo, "show", "@", "--hardware").stdout
    hw = out.split("Hardware:", 1)[1]
    assert "e+0" not in hw
    mem = next(ln for ln in hw.splitlines() if ln.strip().startswith("memory_used_bytes"))
    assert re.search(r"\d (KiB|MiB|GiB)\s", mem + " "), mem
    arts = out.split("Artifacts:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    ends = {ln.index("B  encrypted") for ln in arts}
    assert len(arts) == 2 and len(ends) == 1, arts  # sizes end in one column


# --- the README walkthrough's example --------------------------------------------------------


def test_quickstart_example_records_scalars_and_regex_scalars(tmp_path: Path) -> None:
    work = tmp_path / "qs"
    r = subprocess.run(["bash", str(ROOT / "examples" / "quickstart.sh"), str(work)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    trains = [x for x in gitxp.open(str(work)).experiments() if x.name == "train"]
    assert len(trains) == 2
    for x in trains:
        ms = x.metric_summary
        assert set(ms) == {"loss", "val_loss", "val_acc"}  # nothing from `Result: y = …`
        assert ms["loss"]["count"] == 10 and ms["loss"]["last_step"] == 99
    assert "- python train.py --lr 0.1" in r.stdout and "+ python train.py --lr 0.5" in r.stdout
