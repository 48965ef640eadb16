"""Sweep files: expansion order, parents, errors with FILE:LINE, split, scalars, substitution."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from gitxp.errors import ParamError, SweepFileError, UsageError
from gitxp.params import parse_scalar, set_dotted, yaml12_load
from gitxp.sweeps.spec import (
    SweepSpec,
    check_command,
    config_key,
    expand,
    load,
    parse_split,
    placeholders,
    split,
    substitute,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_grid_group_and_parent_expand_in_order(tmp_path: Path) -> None:
    write(tmp_path, "configs/base.yaml", """
        epochs: 10
        optimizer:
          name: sgd
          momentum: 0.9
        grid:
          - seed: [1, 2]
        """)
    sweep = write(tmp_path, "configs/sweep.yaml", """
        parent: base.yaml
        batch: 32
        grid:
          - optimizer.lr: [0.1, 0.01]
            model: [a, b, c]
          - group:
              optimizer.lr: [0.3, 0.4]
              seed: [7, 8]
            depth: [1, 2]
        """)
    spec = load(sweep)
    assert isinstance(spec, SweepSpec)
    assert spec.path == sweep
    assert spec.fixed == {"epochs": 10, "optimizer": {"name": "sgd", "momentum": 0.9}, "batch": 32}

    def cfg(lr: float, **extra: object) -> dict:
        return {"epochs": 10, "batch": 32,
                "optimizer": {"name": "sgd", "momentum": 0.9, "lr": lr}, **extra}

    assert list(spec.configurations) == [
        # block 1: 2 x 3, the first key varies slowest
        cfg(0.1, model="a"), cfg(0.1, model="b"), cfg(0.1, model="c"),
        cfg(0.01, model="a"), cfg(0.01, model="b"), cfg(0.01, model="c"),
        # block 2: the group is one factor at its position, zipped
        cfg(0.3, seed=7, depth=1), cfg(0.3, seed=7, depth=2),
        cfg(0.4, seed=8, depth=1), cfg(0.4, seed=8, depth=2),
    ]
    assert load(sweep) == spec  # stable across loads


def test_group_after_key_varies_fastest(tmp_path: Path) -> None:
    configs = expand({"grid": [{"a": [1, 2], "group": {"b": [3, 4], "c": [5, 6]}}]})
    assert configs == [
        {"a": 1, "b": 3, "c": 5}, {"a": 1, "b": 4, "c": 6},
        {"a": 2, "b": 3, "c": 5}, {"a": 2, "b": 4, "c": 6},
    ]


def test_parent_grid_used_when_child_has_none(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "lr: 0.1\ngrid:\n  seed: [1, 2]\n")
    child = write(tmp_path, "child.yaml", "parent: base.yaml\nlr: 0.5\n")
    assert list(load(child).configurations) == [{"lr": 0.5, "seed": 1}, {"lr": 0.5, "seed": 2}]


def test_child_grid_overrides_inherited_fixed_value(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "lr: 0.1\nepochs: 3\n")
    child = write(tmp_path, "child.yaml", "parent: base.yaml\ngrid:\n  lr: [1, 2]\n")
    assert list(load(child).configurations) == [{"lr": 1, "epochs": 3}, {"lr": 2, "epochs": 3}]


def test_single_mapping_grid_and_dotted_keys(tmp_path: Path) -> None:
    sweep = write(tmp_path, "s.yaml", """
        model.depth: 4
        model:
          width: 8
        grid:
          optimizer.lr: [0.1]
          optimizer.name: [adam, sgd]
        """)
    assert list(load(sweep).configurations) == [
        {"model": {"depth": 4, "width": 8}, "optimizer": {"lr": 0.1, "name": "adam"}},
        {"model": {"depth": 4, "width": 8}, "optimizer": {"lr": 0.1, "name": "sgd"}},
    ]


def test_no_grid_is_one_configuration(tmp_path: Path) -> None:
    sweep = write(tmp_path, "s.yaml", "lr: 0.1\nopt: {name: adam}\n")
    assert list(load(sweep).configurations) == [{"lr": 0.1, "opt": {"name": "adam"}}]


def test_identical_configurations_across_blocks_are_kept_once() -> None:
    configs = expand({"grid": [{"a": [1, 2]}, {"a": [2, 3]}]})
    assert configs == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_yaml_values_are_yaml_1_2_core(tmp_path: Path) -> None:
    sweep = write(tmp_path, "s.yaml", """
        flag: yes
        switch: on
        eps: 1e-3
        day: 2026-11-01
        octal_looking: 010
        hex: 0x1F
        big: .inf
        nothing: ~
        really: true
        """)
    (config,) = load(sweep).configurations
    assert config == {"flag": "yes", "switch": "on", "eps": 0.001, "day": "2026-11-01",
                      "octal_looking": 10, "hex": 31, "big": math.inf, "nothing": None,
                      "really": True}
    assert isinstance(config["eps"], float)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("lr: 0.1\ngrid:\n  - lr: [1, 2]\n", 3, "'lr' is both a fixed parameter and in the grid"),
        ("opt:\n  lr: 0.1\ngrid:\n  - seed: [1]\n    opt.lr: [1, 2]\n", 5, "'opt.lr' is both"),
        ("a: 1\ngrid:\n  - b: []\n", 3, "empty list"),
        ("grid:\n  - group:\n      a: [1, 2]\n      b: [1, 2, 3]\n", 4, "unequal lengths"),
        ("x: 1\ngrid: []\n", 2, "the grid is empty"),
        ("x: 1\ngrid:\n  - a: [1]\n  - {}\n", 4, "grid block 2 is empty"),
        ("grid:\n", 1, "the grid is empty"),
        ("grid:\n  a: [1]\n  b: 2\n", 3, "grid value of 'b' is not a list"),
        ("grid:\n  a: [1]\n  opt: {lr: [1]}\n", 3, "is a mapping, not a list"),
        ("grid: 3\n", 1, "grid: must be a list"),
        ("grid:\n  - a: [1]\n  - 7\n", 3, "grid block 2 is not a mapping"),
        ("grid:\n  - a: [1]\n    group: [1]\n", 3, "group: must be a mapping"),
        ("grid:\n  - a: [1]\n    a.b: [1]\n", 3, "set twice in grid block 1"),
        ("grid:\n  - group: {a: [1]}\n    a: [1]\n", 3, "set twice in grid block 1"),
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a'"),
        ("a: 1\nb: [1\n", 3, "invalid YAML"),
        ("- 1\n- 2\n", 1, "must be a mapping"),
        ("", 1, "empty"),
        ("a..b: 1\n", 1, "bad parameter name"),
        ("1: x\n", 1, "not a string"),
        ("a: !!binary aGk=\n", 1, "unsupported value of type bytes"),
        ("parent: missing.yaml\n", 1, "not found"),
        ("x: 1\nparent: 3\n", 2, "parent: must be a file name"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(SweepFileError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, UsageError)


def test_error_in_parent_names_the_parent(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", "x: 1\ngrid:\n  a: []\n")
    child = write(tmp_path, "sub/child.yaml", "parent: ../base.yaml\n")
    with pytest.raises(SweepFileError) as info:
        load(child)
    assert str(info.value).startswith(f"{child.parent / '../base.yaml'}:3: ")
    assert base.name in str(info.value)


def test_child_fixing_a_key_the_inherited_grid_sweeps_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "grid:\n  lr: [1, 2]\n")
    child = write(tmp_path, "child.yaml", "parent: base.yaml\nepochs: 1\nlr: 0.1\n")
    with pytest.raises(SweepFileError) as info:
        load(child)
    assert str(info.value).startswith(f"{child}:3: 'lr' is both a fixed parameter and in the grid")


def test_parent_cycle_is_an_error(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "x: 1\nparent: b.yaml\n")
    write(tmp_path, "b.yaml", "parent: a.yaml\n")
    with pytest.raises(SweepFileError) as info:
        load(a)
    assert "parent chain loops: a.yaml -> b.yaml -> a.yaml" in str(info.value)
    assert str(info.value).startswith(f"{tmp_path / 'b.yaml'}:1: ")
    self_loop = write(tmp_path, "self.yaml", "parent: self.yaml\n")
    with pytest.raises(SweepFileError, match="loops"):
        load(self_loop)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SweepFileError, match="no such sweep file"):
        load(tmp_path / "nope.yaml")


def test_expand_plain_mapping_errors_without_line() -> None:
    with pytest.raises(SweepFileError) as info:
        expand({"grid": {"a": []}}, source="inline")
    assert str(info.value).startswith("inline: grid value of 'a' is an empty list")


def test_split_partitions_exactly() -> None:
    configs = expand({"grid": {"a": [1, 2, 3], "b": [4, 5]}})
    assert len(configs) == 6
    first, second = split(configs, 0, 2), split(configs, 1, 2)
    assert [i for i, _ in first] == [0, 2, 4]
    assert [i for i, _ in second] == [1, 3, 5]
    assert sorted(first + second, key=lambda pair: pair[0]) == list(enumerate(configs))
    thirds = [split(configs, i, 3) for i in range(3)]
    assert sum(len(t) for t in thirds) == 6
    assert split(configs, 0, 1) == list(enumerate(configs))
    assert split(configs, 5, 10) == [(5, configs[5])]
    assert split(configs, 7, 10) == []


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0), (3, 1)])
def test_split_rejects_bad_slices(index: int, count: int) -> None:
    with pytest.raises(UsageError, match="0-based"):
        split([{}], index, count)


def test_parse_split() -> None:
    assert parse_split("0/4") == (0, 4)
    assert parse_split(" 3 / 4 ") == (3, 4)
    for bad in ("4/4", "1", "a/b", "-1/2", "1/0", "1/2/3", ""):
        with pytest.raises(UsageError):
            parse_split(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-3", 0.001), ("0.1", 0.1), ("-2.5", -2.5), ("1.", 1.0), (".5", 0.5), ("3", 3),
        ("-7", -7), ("+7", 7), ("010", 10), ("0x1F", 31), ("0o17", 15),
        ("true", True), ("True", True), ("FALSE", False),
        ("null", None), ("~", None), ("", None), ("Null", None),
        ("yes", "yes"), ("on", "on"), ("off", "off"), ("no", "no"), ("y", "y"),
        ("2026-11-01", "2026-11-01"), ("adam", "adam"), ("1e", "1e"), ("0x", "0x"),
        ("a: b", "a: b"), ("[1, 2]", "[1, 2]"), ("'0.1'", "0.1"), ('"true"', "true"),
        ("'unterminated", "'unterminated"), ("1_000", "1_000"),
    ],
)
def test_parse_scalar(text: str, expected: object) -> None:
    value = parse_scalar(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_scalar_special_floats() -> None:
    assert parse_scalar(".inf") == math.inf
    assert parse_scalar("-.inf") == -math.inf
    assert math.isnan(parse_scalar(".nan"))


def test_yaml12_load_and_its_errors() -> None:
    assert yaml12_load("a: yes\nb: 1e-3\nc: [on, off]\n") == {"a": "yes", "b": 0.001, "c": ["on", "off"]}
    with pytest.raises(ParamError) as info:
        yaml12_load("a: [1\n", source="params.yaml")
    assert str(info.value).startswith("params.yaml:2: invalid YAML")
    with pytest.raises(ParamError, match="bad bool value 'yes'"):
        yaml12_load("a: !!bool yes\n")
    with pytest.raises(SweepFileError, match="constructor"):
        yaml12_load("a: !!python/object:os.system x\n", error=SweepFileError)


def test_set_dotted() -> None:
    params: dict = {"optim": {"name": "adam"}}
    set_dotted(params, "optim.lr", 0.1)
    set_dotted(params, "seed", 1)
    set_dotted(params, "a.b.c", True)
    assert params == {"optim": {"name": "adam", "lr": 0.1}, "seed": 1, "a": {"b": {"c": True}}}
    set_dotted(params, "seed", 2)  # overriding is allowed
    assert params["seed"] == 2
    with pytest.raises(ParamError, match="'seed' is already 2"):
        set_dotted(params, "seed.x", 1)
    for bad in ("", "a..b", ".a", "a."):
        with pytest.raises(ParamError, match="bad parameter name"):
            set_dotted(params, bad, 1)


def test_substitute_nested_keys_and_formatting() -> None:
    params = {"lr": 0.001, "tiny": 1e-05, "epochs": 3, "amp": True, "off": False, "none": None,
              "optimizer": {"name": "adam", "betas": [0.9, 0.99]}, "name": "run 1"}
    command = ["python", "train.py", "--lr={lr}", "--tiny", "{tiny}", "--epochs", "{epochs}",
               "{amp}/{off}/{none}", "--opt", "{optimizer.name}", "{optimizer.betas}", "{name}",
               "{{literal}}", "awk '{print $1}'", "{}"]
    assert substitute(command, params) == [
        "python", "train.py", "--lr=0.001", "--tiny", "1e-05", "--epochs", "3",
        "true/false/null", "--opt", "adam", "[0.9, 0.99]", "run 1",
        "{literal}", "awk '{print $1}'", "{}",
    ]
    assert placeholders(command) == {"lr", "tiny", "epochs", "amp", "off", "none",
                                     "optimizer.name", "optimizer.betas", "name"}


def test_substitute_unknown_key_lists_known_keys() -> None:
    with pytest.raises(SweepFileError) as info:
        substitute(["train", "--lr", "{learning_rate}"], {"lr": 0.1, "opt": {"name": "adam"}})
    message = str(info.value)
    assert "unknown placeholder {learning_rate}" in message
    assert "known keys: lr, opt.name" in message
    configs = [{"lr": 0.1}, {"lr": 0.2, "seed": 1}]
    check_command(["x", "{lr}"], configs)
    with pytest.raises(SweepFileError, match="{seed}"):
        check_command(["x", "{seed}"], configs)


def test_config_key_is_canonical() -> None:
    a = {"lr": 0.1, "opt": {"name": "adam", "b": [1, 2]}}
    b = {"opt": {"b": [1, 2], "name": "adam"}, "lr": 0.1}
    assert config_key(a) == config_key(b)
    assert len(config_key(a)) == 64
    assert config_key({"x": 1}) != config_key({"x": 1.0})
    assert config_key({"x": 1}) != config_key({"x": True})
    assert config_key({"x": 1}) != config_key({"x": 2})
