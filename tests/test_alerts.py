"""Alerts: conditions over logged values checked at flush, status alerts at the end, a real alert command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

import gitxp
from conftest import gitxp as run_gitxp, run_git

#: The alert command tests use: it writes the alert's environment to a file named after its text.
DUMP = 'env | grep "^GITXP_" | sort > "$ALERT_DIR/$GITXP_ALERT_TEXT.env"'


def stored(repo: Path, exp_id: str) -> dict:
    return yaml.safe_load(run_git(repo, "show", f"gitxp:experiments/{exp_id[:4]}-{exp_id[4:6]}-{exp_id[6:8]}/{exp_id}/experiment.yaml"))


def last_id(repo: Path) -> str:
    return run_gitxp(repo, "log", "--all", "--format", "{id}", "-n", "1").stdout.strip()


def wait_for(path: Path, timeout: float = 10.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return dict(line.split("=", 1) for line in path.read_text().splitlines())
        time.sleep(0.05)
    raise AssertionError(f"the alert command did not write {path}")


def test_wrapped_script_with_alert_runs_the_command(git_repo: Path, tmp_path: Path) -> None:
    (git_repo / "train.py").write_text(
        "import time, gitxp\n"
        "xp = gitxp.current()\n"
        "for step, loss in enumerate([0.9, 0.7, 0.5, 0.4, 0.3] + [0.28] * 7 + [0.2431]):\n"
        "    xp.log_metric('loss', loss, step=step)\n"
        "time.sleep(2.5)\n"  # a flush sees step 12 as the last value
        "xp.log_metric('loss', 0.2, step=13)\n"  # still holds: no second alert
        "time.sleep(1.5)\n"
    )
    env = {"GITXP_ALERT_COMMAND": DUMP, "ALERT_DIR": str(tmp_path)}
    r = run_gitxp(git_repo, "start", "--alert", "metrics.loss < 0.25: converged", "--", sys.executable, "train.py", env=env)
    exp_id = last_id(git_repo)
    assert "gitxp: alert: converged (metrics.loss < 0.25 at step 12: 0.2431)\n" in r.stderr
    seen = wait_for(tmp_path / "converged.env")
    assert {k: v for k, v in seen.items() if k.startswith(("GITXP_ALERT_", "GITXP_EXPERIMENT")) and k != "GITXP_ALERT_COMMAND"} == {
        "GITXP_ALERT_CONDITION": "metrics.loss < 0.25", "GITXP_ALERT_STEP": "12", "GITXP_ALERT_TEXT": "converged",
        "GITXP_ALERT_VALUE": "0.2431", "GITXP_EXPERIMENT": exp_id,
    }
    alerts = stored(git_repo, exp_id)["alerts"]
    assert len(alerts) == 1
    assert {k: alerts[0][k] for k in ("condition", "text", "step", "value")} == {
        "condition": "metrics.loss < 0.25", "text": "converged", "step": 12, "value": 0.2431}
    assert isinstance(alerts[0]["time"], str)
    assert f"Alert:    converged (metrics.loss < 0.25 at step 12: 0.2431) at {alerts[0]['time']}" in run_gitxp(git_repo, "show", exp_id).stdout


def test_once_false_fires_on_every_transition_and_git_config_command(git_repo: Path, tmp_path: Path) -> None:
    run_git(git_repo, "config", "gitxp.alertCommand", f'echo "$GITXP_ALERT_STEP" >> {tmp_path}/steps')
    with gitxp.start(repo=str(git_repo), name="api", log_hardware=False, capture_env=False, capture_code=False) as xp:
        xp.alert_on("metrics.loss < 0.5 and params.lr > 0", text="low", once=False)
        xp.alert_on("metrics.loss < 0.5", text="low once")
        xp.log_params({"lr": 0.1})
        for step, loss in enumerate([0.9, 0.4, 0.6, 0.3, 0.2]):
            xp.log_metric("loss", loss, step=step)
            xp.flush()  # what the flush thread does within a second
    fired = stored(git_repo, xp.id)["alerts"]
    assert [(a["text"], a["step"]) for a in fired] == [("low", 1), ("low once", 1), ("low", 3)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len((tmp_path / "steps").read_text().split() if (tmp_path / "steps").exists() else []) < 3:
        time.sleep(0.05)
    assert sorted((tmp_path / "steps").read_text().split()) == ["1", "1", "3"]


def test_failed_status_alert(git_repo: Path, tmp_path: Path) -> None:
    env = {"GITXP_ALERT_COMMAND": DUMP, "ALERT_DIR": str(tmp_path)}
    r = run_gitxp(git_repo, "start", "--alert", "status == 'failed': it broke", "--alert", "status == 'completed': fine",
                  "--", sys.executable, "-c", "raise SystemExit(3)", env=env, check=False)
    assert r.returncode == 3
    exp_id = last_id(git_repo)
    assert "gitxp: alert: it broke (status == 'failed')\n" in r.stderr and "fine" not in r.stderr
    seen = wait_for(tmp_path / "it broke.env")
    assert seen["GITXP_ALERT_VALUE"] == "'failed'" and seen["GITXP_EXPERIMENT"] == exp_id
    assert [a["text"] for a in stored(git_repo, exp_id)["alerts"]] == ["it broke"]


def test_crashed_status_alert_fires_at_recover(git_repo: Path, tmp_path: Path) -> None:
    script = (
        "import os, gitxp\n"
        f"xp = gitxp.start(repo={str(git_repo)!r}, name='doomed', log_hardware=False, capture_env=False, capture_code=False)\n"
        "xp.alert_on(\"status == 'crashed'\", text='crashed')\n"
        "xp.log_metric('loss', 1.0)\nxp.flush()\nos._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=git_repo, check=False)
    for beat in (git_repo / ".git" / "gitxp" / "runs").glob("*/heartbeat"):
        os.utime(beat, (time.time() - 60, time.time() - 60))  # the owner died a minute ago
    env = {"GITXP_ALERT_COMMAND": DUMP, "ALERT_DIR": str(tmp_path)}
    r = run_gitxp(git_repo, "recover", env=env)
    assert "gitxp: alert: crashed (status == 'crashed')" in r.stderr
    exp_id = last_id(git_repo)
    assert wait_for(tmp_path / "crashed.env")["GITXP_EXPERIMENT"] == exp_id
    assert stored(git_repo, exp_id)["alerts"][0]["text"] == "crashed"


def test_a_failing_alert_command_is_one_warning(git_repo: Path) -> None:
    (git_repo / "train.py").write_text("import gitxp\ngitxp.current().log_metric('acc', 0.99)\n")
    r = run_gitxp(git_repo, "start", "--alert", "metrics.acc > 0.9: good", "--", sys.executable, "train.py",
                  env={"GITXP_ALERT_COMMAND": "echo no webhook >&2; exit 7"})
    assert r.returncode == 0 and stored(git_repo, last_id(git_repo))["status"] == "completed"
    # the script logged acc, so its process fired the alert: both lines are in its output
    assert r.stderr.count("gitxp: alert: good (metrics.acc > 0.9 at step 0: 0.99)\n") == 1
    assert r.stderr.count("gitxp: warning: alert command exited 7: no webhook\n") == 1
    assert "warning: alert command exited 7" in run_gitxp(git_repo, "show", "@", "--output").stdout


def test_a_bad_condition_runs_nothing(git_repo: Path) -> None:
    r = run_gitxp(git_repo, "start", "--alert", "metrics.loss <<< 1: x", "--", sys.executable, "-c", "open('ran', 'w')", check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error:") and "Traceback" not in r.stderr
    assert not (git_repo / "ran").exists()
    with gitxp.start(repo=str(git_repo), name="api", log_hardware=False, capture_env=False, capture_code=False) as xp:
        try:
            xp.alert_on("loss < 1")
        except gitxp.errors.QueryError as exc:
            assert "unknown field 'loss'" in str(exc)
        else:
            raise AssertionError("a bad condition was accepted")
    assert os.environ.get("GITXP_EXPERIMENT") is None
