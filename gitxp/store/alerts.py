"""Alerts: a ``--where`` condition over the values being logged, and what happens when it first holds.

Conditions are parsed once (:func:`gitxp.store.query.parse`) and evaluated by the
flush thread over the last value of each metric this process logged, never
on the ``log_metric`` path. ``status == 'failed'`` (or ``'crashed'``, which
``gitxp recover`` sets) is evaluated when the run is committed. When a
condition first holds (``once=False``: on every transition into it), the
alert is recorded under ``alerts:`` in experiment.yaml, one line goes to
stderr, and the user's command (``GITXP_ALERT_COMMAND`` or ``git config
gitxp.alertCommand``) runs through the shell in the background with the
alert in its environment. The command never blocks logging and its failure
is one warning, never a failed run.

Staged files in the run folder: ``alertspec-<pid>.yaml`` (the conditions a
process registered, so the wrapped script and ``gitxp recover`` know them)
and ``alerts-<pid>.yaml`` (the alerts that fired in that process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gitxp.store import layout
from gitxp.errors import UsageError

if TYPE_CHECKING:
    from gitxp.store.staging import RunDir

COMMAND_ENV = "GITXP_ALERT_COMMAND"
SPEC_STEM = "alertspec"
FIRED_STEM = "alerts"


def split_spec(spec: str) -> tuple[str, str]:
    """``"metrics.loss < 0.25: converged"`` → (condition, text); the first ``:`` outside quotes splits.

    Without a ``:`` the text is the condition itself.
    """
    quote = None
    for i, ch in enumerate(spec):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == ":":
            cond, text = spec[:i].strip(), spec[i + 1:].strip()
            return cond, text or cond
    return spec.strip(), spec.strip()


class Alert:
    """One condition and its state in this process."""

    def __init__(self, condition: str, text: str | None = None, *, once: bool = True) -> None:
        from gitxp.store.query import parse

        if not isinstance(condition, str) or not condition.strip():
            raise UsageError("an alert needs a condition", "e.g. xp.alert_on(\"metrics.loss < 0.25\", text=\"converged\")")
        self.query = parse(condition)  # QueryError (exit 2) on a bad one, before anything runs
        self.condition = condition.strip()
        self.text = layout.check_text(str(text if text is not None else self.condition), "alert text")
        self.once = bool(once)
        fields = self.query.fields()
        self.metrics = sorted({f.split(".", 1)[1] for f in fields if f.startswith("metrics.")})
        #: metric names as logged: ``metrics.loss.min`` reads metric ``loss``
        self.names = {m.rsplit(".", 1)[0] if m.rsplit(".", 1)[-1] in ("last", "min", "max", "count", "last_step") else m for m in self.metrics}
        self.at_end = any(f == "status" or f == "exit_code" for f in fields)
        self.holds = False
        self.fired = 0

    def spec(self) -> dict[str, Any]:
        return {"condition": self.condition, "text": self.text, "once": self.once}

    def check(self, record: Mapping[str, Any], last: Mapping[str, tuple[int, float]]) -> dict[str, Any] | None:
        """The alert to fire when the condition has just come to hold, else None."""
        if self.names and not any(n in last for n in self.names):
            return None  # this process logged none of its metrics: nothing to judge yet
        holds = self.query.matches(record)
        rising = holds and not self.holds
        self.holds = holds
        if not rising or (self.once and self.fired):
            return None
        self.fired += 1
        step = value = None
        for name in sorted(self.names):
            if name in last:
                step, value = last[name]
                break
        return {"condition": self.condition, "text": self.text, "step": step, "value": value, "time": layout.isotime()}


def metrics_record(last: Mapping[str, tuple[int, float]], params: Mapping[str, Any], status: str = "running") -> dict[str, Any]:
    """What a condition is evaluated on while running: each metric's last value and step."""
    return {"status": status, "params": dict(params), "metrics": {k: {"last": v, "last_step": s} for k, (s, v) in last.items()}}


def describe(alert: Mapping[str, Any]) -> str:
    """``converged (metrics.loss < 0.25 at step 12: 0.2431)``."""
    where = ""
    if alert.get("step") is not None:
        where = f" at step {alert['step']}: {alert['value']:.4g}" if isinstance(alert.get("value"), float) else f" at step {alert['step']}"
    return f"{alert['text']} ({alert['condition']}{where})"


def command(repo_config: Any = None) -> str | None:
    """The user's alert command: ``GITXP_ALERT_COMMAND``, else ``git config gitxp.alertCommand``."""
    text = os.environ.get(COMMAND_ENV)
    if text is None and repo_config is not None:
        try:
            text = repo_config("gitxp", "alertCommand")
        except Exception:  # an unreadable config: no command, the alert is still recorded
            text = None
    return text if text and text.strip() else None


def fire(alert: Mapping[str, Any], exp_id: str, cmd: str | None) -> None:
    """Say it on stderr and start the command in the background (a thread reports its failure)."""
    print(f"gitxp: alert: {describe(alert)}", file=sys.stderr, flush=True)
    if not cmd:
        return
    env = dict(os.environ)
    env.update(
        GITXP_ALERT_TEXT=str(alert["text"]),
        GITXP_ALERT_CONDITION=str(alert["condition"]),
        GITXP_ALERT_VALUE="" if alert.get("value") is None else repr(alert["value"]),
        GITXP_ALERT_STEP="" if alert.get("step") is None else str(alert["step"]),
        GITXP_EXPERIMENT=exp_id,
    )
    try:
        proc = subprocess.Popen(cmd, shell=True, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        print(f"gitxp: warning: alert command could not start: {exc}", file=sys.stderr)
        return
    watcher = threading.Thread(target=_watch, args=(proc,), name="gitxp-alert", daemon=True)
    watcher.start()
    _watchers.append(watcher)


_watchers: list[threading.Thread] = []


def settle(timeout: float = 2.0) -> None:
    """Before a process ends: wait a little for alert commands, so that a failure is still reported.

    Commands that take longer run on (their own session); only their
    warning is lost.
    """
    import time

    deadline = time.monotonic() + timeout
    while _watchers:
        _watchers.pop().join(max(0.0, deadline - time.monotonic()))


def _watch(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate()
    if proc.returncode:
        last = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
        print(f"gitxp: warning: alert command exited {proc.returncode}{': ' + last[0][:200] if last[0] else ''}", file=sys.stderr)


def stage_specs(run: RunDir, alerts: Sequence[Alert]) -> None:
    run.write_yaml(f"{SPEC_STEM}-{os.getpid()}.yaml", [a.spec() for a in alerts])


def staged_specs(run: RunDir) -> list[dict[str, Any]]:
    """Every condition the run's processes registered, once each (condition and text)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for p in sorted(run.path.glob(f"{SPEC_STEM}-*.yaml")):
        try:
            specs = run.read_yaml(p.name, []) or []
        except Exception:
            continue
        for s in specs if isinstance(specs, list) else []:
            if isinstance(s, dict) and isinstance(s.get("condition"), str):
                out.setdefault((s["condition"], str(s.get("text"))), s)
    return list(out.values())


def stage_fired(run: RunDir, fired: Sequence[Mapping[str, Any]]) -> None:
    run.write_yaml(f"{FIRED_STEM}-{os.getpid()}.yaml", list(fired))


def at_end(run: RunDir, meta: Mapping[str, Any], params: Mapping[str, Any], cmd: str | None) -> list[dict[str, Any]]:
    """All alerts of a run being committed: those fired while it ran, plus the status ones that hold now."""
    fired: list[dict[str, Any]] = []
    for p in sorted(run.path.glob(f"{FIRED_STEM}-*.yaml")):
        try:
            got = run.read_yaml(p.name, []) or []
        except Exception:
            continue
        fired += [a for a in got if isinstance(a, dict)] if isinstance(got, list) else []
    done = {a.get("condition") for a in fired}
    record = {**meta, "params": dict(params)}
    for spec in staged_specs(run):
        try:
            alert = Alert(spec["condition"], spec.get("text"), once=bool(spec.get("once", True)))
        except Exception:
            continue
        if not alert.at_end or alert.condition in done:
            continue
        if alert.query.matches(record):
            new = {"condition": alert.condition, "text": alert.text, "step": None, "value": meta.get("status"), "time": layout.isotime()}
            fired.append(new)
            fire(new, str(meta.get("id")), cmd)
    return sorted(fired, key=lambda a: str(a.get("time")))



def problems(fired: Any) -> list[str]:
    """What is wrong with an ``alerts:`` field of experiment.yaml (pull refuses these)."""
    if fired is None:
        return []
    if not isinstance(fired, list) or not all(isinstance(a, dict) for a in fired):
        return ["field 'alerts' must be a list of mappings"]
    for a in fired:
        for k in ("condition", "text"):
            if not isinstance(a.get(k), str) or layout.text_problem(a[k]):
                return [f"field 'alerts' entry {k!r} must be one line of text"]
    return []
