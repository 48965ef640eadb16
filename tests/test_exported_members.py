"""The public face of ``gitxp`` is exactly ``__all__`` (httpx's test_exported_members, adapted).

Submodules become attributes of a package as soon as anything imports them,
so modules are not counted; ``gitxp.open`` is public but kept out of
``__all__`` so that ``from gitxp import *`` leaves the builtin ``open`` alone.
"""

from __future__ import annotations

import __future__
import builtins
import inspect
import types

import gitxp
from gitxp import errors


def test_all_is_sorted_and_complete() -> None:
    assert gitxp.__all__ == sorted(gitxp.__all__)
    assert len(set(gitxp.__all__)) == len(gitxp.__all__)
    for name in gitxp.__all__:
        assert getattr(gitxp, name) is not None, name
    leaked = {
        name for name, value in vars(gitxp).items()
        if not name.startswith("_")
        and not isinstance(value, (types.ModuleType, __future__._Feature))
        and name not in gitxp.__all__
    }
    assert leaked == {"open"}


def test_every_error_a_user_can_catch_is_exported() -> None:
    tree = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, errors.GitxpError)}
    assert tree <= set(gitxp.__all__), tree - set(gitxp.__all__)
    for name in ("ExperimentStateError", "QueryError", "UnsafeDataError", "NoActiveExperimentError", "MissingDependencyError"):
        assert getattr(gitxp, name) is getattr(errors, name)


def test_star_import_keeps_the_builtin_open() -> None:
    namespace: dict[str, object] = {}
    exec("from gitxp import *", namespace)
    assert "open" not in namespace
    assert {"start", "current", "Store", "Record", "QueryError"} <= namespace.keys()
    exec("x = open", namespace)
    assert namespace["x"] is builtins.open
    assert callable(gitxp.open) and gitxp.open is not builtins.open


def test_sweep_shows_the_implementations_signature() -> None:
    from gitxp.sweeps import runner as sweeps

    assert inspect.signature(gitxp.sweep) == inspect.signature(sweeps.sweep)
    assert list(inspect.signature(gitxp.sweep).parameters)[:6] == ["fn", "grid_or_file", "jobs", "repo", "name", "rerun"]


def test_public_members_have_docstrings() -> None:
    for name in gitxp.__all__:
        value = getattr(gitxp, name)
        if callable(value):
            assert inspect.getdoc(value), name
    for cls in (gitxp.Record, gitxp.Experiment):
        for name, _ in inspect.getmembers(cls):
            if not name.startswith("_"):
                static = inspect.getattr_static(cls, name)
                assert getattr(static, "__doc__", None) or inspect.getdoc(getattr(cls, name)), f"{cls.__name__}.{name}"
