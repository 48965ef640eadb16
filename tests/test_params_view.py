"""``xp.params`` can't bypass log_param's checks; tags and summary of any type still commit."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

import gitxp
from gitxp.store import staging
from conftest import fsck


def start(repo: Path, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("log_hardware", False)
    kw.setdefault("capture_env", False)
    return gitxp.start(repo=str(repo), **kw)


def test_params_are_read_only_and_log_param_is_the_way_in(git_repo: Path) -> None:
    with start(git_repo, params={"lr": 0.1, "optim": {"betas": [0.9, 0.99]}}) as xp:
        for write in (
            lambda: xp.params.__setitem__("x", object()),
            lambda: xp.params.update(x=1),
            lambda: xp.params.pop("lr"),
            lambda: xp.params["optim"].__setitem__("eps", object()),
            lambda: xp.params["optim"]["betas"].append(object()),
            lambda: setattr(xp, "params", {"x": 1}),
        ):
            with pytest.raises(gitxp.ParamsReadOnlyError, match=r"xp.params is read-only; set parameters with xp.log_param"):
                write()
        with pytest.raises(TypeError):  # what Python users expect of an immutable mapping
            xp.params["x"] = 1
        assert xp.params == {"lr": 0.1, "optim": {"betas": [0.9, 0.99]}}
        assert json.loads(json.dumps(xp.params)) == xp.params
        plain = copy.deepcopy(xp.params)
        plain["optim"]["betas"].append(1.0)  # a copy is an ordinary dict
        assert type(plain) is dict and type(pickle.loads(pickle.dumps(xp.params))) is dict
        xp.log_param("x", 2)
        assert xp.params["x"] == 2
        with pytest.raises(gitxp.ParamTypeError):
            xp.log_param("y", object())
    assert xp.status == "completed"
    rec = gitxp.open(str(git_repo)).get(xp.id)
    assert rec.params == {"lr": 0.1, "optim": {"betas": [0.9, 0.99]}, "x": 2} and rec.status == "completed"
    fsck(git_repo)


def test_tags_and_summary_of_any_type_do_not_leave_the_run_staged(git_repo: Path) -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    with start(git_repo) as xp:
        xp.summary["best"] = Odd()
        xp.summary["nested"] = {"a": [Odd()]}
        xp.tags["kind"] = Odd()
    store = gitxp.open(str(git_repo))
    rec = store.get(xp.id)
    assert rec.status == "completed" and rec.summary["best"] == "odd" and rec.tags["kind"] == "odd"
    assert staging.list_runs(store.repo.gitxp_dir) == []
