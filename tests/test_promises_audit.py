"""An attacker's and a careful user's second pass over DESIGN.md "Promises" (issue 10).

Each test here is a variant the first round of tests did not try: another
spelling, another command reading the same data, another place a secret
can sit. Real git, the real CLI, no mocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git
from test_secrets import all_objects, stored


def test_a_copy_of_the_key_file_in_the_work_tree_is_never_snapshotted(git_repo: Path) -> None:
    """`gitxp key export > team.key` to hand it over, or a `cp` of the key file: the bytes stay out of the store."""
    run_gitxp(git_repo, "init")
    exported = run_gitxp(git_repo, "key", "export").stdout
    key_text = exported.strip()
    assert len(key_text) >= 40
    (git_repo / "team.key").write_text(exported)
    (git_repo / "conf").mkdir()
    (git_repo / "conf" / "gitxp.key").write_text(key_text)  # no trailing newline
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    x = gitxp.open(str(git_repo)).get("@")
    for rel in ("team.key", "conf/gitxp.key"):
        assert stored(git_repo, x.id, f"code/{rel}", check=False).returncode != 0, rel
        assert rel in x.source["skipped"]
    assert key_text.encode() not in all_objects(git_repo)
    fsck(git_repo)
