"""How one run is recorded: the option list shared by ``gitxp start``, ``gitxp sweep``'s children and ``gitxp.start()``.

One frozen :class:`RunOptions` travels cli → :func:`gitxp.run.wrapper.run_wrapped`
→ :func:`gitxp.run.begin.begin`, and ``gitxp sweep`` → :mod:`gitxp.sweeps.runner`
(as JSON into each child process), so a new option is added once, here, and
not in five keyword lists. The public ``gitxp.start(...)`` keeps its keyword
arguments and builds one. What a run *is* (name, params, repository, command)
stays outside: it differs from run to run where these options do not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Fields held as tuples (JSON gives lists back; click gives tuples; callers may pass lists).
_SEQUENCES = ("artifact_globs", "env_vars", "scalar_patterns", "inputs", "alert_specs")


@dataclass(frozen=True)
class RunOptions:
    """The options that say how one run is recorded (defaults: what ``gitxp start`` does with no option)."""

    tags: Mapping[str, Any] = field(default_factory=dict)
    """Tags set at start (``--tag``); a sweep adds ``sweep``/``sweep_index``/``sweep_key`` to each child's."""
    notes: str | None = None
    """Free text (``--note``); on a resumed run it is appended to the stored notes."""
    parent: str | None = None
    """The parent experiment (``--parent``; a sweep's children point at the sweep): a stored or still running ref."""
    resume: str | None = None
    """Reopen this stored experiment instead of creating one (``--resume``, after preemption)."""
    artifact_globs: tuple[str, ...] = ()
    """Files stored encrypted when the command ends (``--artifact``); what they match now is left out of the snapshot."""
    log_hardware: bool = True
    """Sample CPU/GPU/memory use (off with ``--no-hardware``: the sampler costs a thread)."""
    hardware_interval: float = 1.0
    """Seconds between hardware samples; must be positive."""
    capture_code: bool = True
    """Snapshot the work tree (off with ``--no-code``: then only the HEAD commit is recorded)."""
    code_dir: str | os.PathLike[str] | None = None
    """Snapshot only this folder inside the repository (``--code-dir``); None is the whole work tree."""
    capture_env: bool = True
    """Record interpreter, packages and environment variables; off for imported runs, which ran elsewhere."""
    env_vars: tuple[str, ...] = ()
    """Environment variables to record besides the default ones (``--env-var``)."""
    capture_output: bool = True
    """Tee the command's output into ``output.log`` (off with ``--no-capture``). Wrapped commands only."""
    scalars: bool = False
    """Read metrics from ``KEY=NUMBER`` tokens in the output (``--scalars``). Wrapped commands only."""
    scalar_patterns: tuple[str, ...] = ()
    """``NAME=REGEX`` metrics read from output lines (``--scalar``); checked before anything runs."""
    sync: str | None = None
    """Live sync: push the running experiment to this remote (``""``: the default remote); None: no live sync."""
    sync_interval: float = 60.0
    """Seconds between live-sync pushes."""
    inputs: tuple[str, ...] = ()
    """``[NAME=]PATH`` data the run reads (``--input``), hashed before the command can change it."""
    alert_specs: tuple[str, ...] = ()
    """``'COND: TEXT'`` alerts (``--alert``), parsed before anything runs."""

    def __post_init__(self) -> None:
        for name in _SEQUENCES:
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (a sweep hands it to each child process); :meth:`from_json` reads it back."""
        out = asdict(self)
        if out["code_dir"] is not None:
            out["code_dir"] = os.fspath(out["code_dir"])
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunOptions:
        """The options :meth:`to_json` wrote (unknown keys refused, missing ones defaulted)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TypeError(f"unknown run options: {', '.join(sorted(unknown))}")
        return cls(**dict(data))
