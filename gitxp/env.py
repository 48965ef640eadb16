"""`git config gitxp.*` settings with their defaults, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gitxp.errors import UsageError
DEFAULT_BRANCH = "gitxp"  # the store branch unless `git config gitxp.branch` names another


@dataclass(frozen=True)
class Config:
    branch: str = DEFAULT_BRANCH
    snapshot_max_file_size: int = 10 * 2**20
    output_max_size: int = 10 * 2**20
    flush_interval: float = 1.0


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)(i?[bB]?)?\s*$")


def parse_size(text: str, *, what: str) -> int:
    """git-style sizes: ``10m``, ``512k``, ``1g`` or plain bytes."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"invalid size {text!r} for {what}", "use bytes or a k/m/g suffix, e.g. 10m")
    return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]


def load(repo: object) -> Config:
    get = repo.config  # type: ignore[attr-defined]
    branch = get("gitxp", "branch") or DEFAULT_BRANCH
    if not re.match(r"^[A-Za-z0-9._/-]+$", branch) or ".." in branch:
        raise UsageError(f"invalid gitxp.branch {branch!r}", "set a plain branch name with `git config gitxp.branch NAME`")
    cap = get("gitxp", "snapshotMaxFileSize")
    out = get("gitxp", "outputMaxSize")
    return Config(
        branch=branch,
        snapshot_max_file_size=parse_size(cap, what="gitxp.snapshotMaxFileSize") if cap else Config.snapshot_max_file_size,
        output_max_size=parse_size(out, what="gitxp.outputMaxSize") if out else Config.output_max_size,
    )
