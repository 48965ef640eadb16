"""Sweep files: loading, validation and expansion into configurations (no running).

A sweep file is YAML::

    parent: base.yaml            # optional; merged under this file
    epochs: 10                   # top-level keys are fixed parameters
    model.depth: 4               # dotted keys nest: {"model": {"depth": 4}}
    grid:                        # a list of blocks (or one mapping: one block)
      - optimizer.lr: [0.1, 0.01]          # the first key varies slowest
        group:                             # zipped: moves in lockstep, one factor
          seed: [1, 2, 3]
          tag: [a, b, c]
      - optimizer.lr: [0.5]                # blocks are a union

Decisions this module makes (the README's sweep section and ``gitxp sweep --help`` leave them open):

* ``parent:`` paths are relative to the file that names them. The parent's
  fixed parameters are deep-merged under the child's (the child wins key by
  key). The child's ``grid:`` *replaces* the parent's when given; otherwise
  the parent's grid is used. A grid value overrides a fixed value inherited
  from an ancestor above the grid's own file (that is how a base config is
  swept), but a key fixed in the grid's own file, or in a file below it, and
  also gridded is an error: one of the two would be silently ignored.
* Identical configurations (possible across blocks of the union) are kept
  once, at their first position, so ``--split`` slices stay disjoint.
* Values are read as YAML 1.2 core scalars (``1e-3`` float, ``yes``/``on``
  strings, no dates), see :func:`gitxp.params.yaml12_load` and
  :func:`gitxp.params.parse_scalar`.
* In commands, only ``{identifier}`` or ``{dotted.path}`` is a placeholder;
  ``{{`` and ``}}`` are literal braces and any other brace is left as is
  (``awk '{print $1}'`` keeps working). Values are written as YAML would:
  ``true``/``false``, ``null``, floats by ``repr`` (``0.001``, ``1e-05``),
  lists and mappings as JSON.

Every error is a :class:`~gitxp.errors.SweepFileError` whose message starts
with ``FILE:LINE:`` so that an editor can jump to the offending key.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitxp.errors import SweepFileError, UsageError
from gitxp.params import _loader_class, _yaml_error

__all__ = [
    "SweepSpec", "check_command", "config_key", "expand", "list_warnings", "load", "parse_split",
    "placeholders", "split", "substitute",
]

_RESERVED = ("grid", "parent")

# --------------------------------------------------------------------------- merging


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it; mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``path`` in ``target``, replacing whatever stands in the way (grid over inherited)."""
    for part in path[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[path[-1]] = copy.deepcopy(value)


def _occupied(fixed: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    """Whether setting ``path`` would clash with a value in ``fixed``."""
    node: Any = fixed
    for part in path:
        if not isinstance(node, Mapping):
            return True  # a scalar sits on the way: `a: 1` vs `a.b`
        if part not in node:
            return False
        node = node[part]
    return True


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Doc:
    """One sweep document and the line of each key (paths like ("grid", 0, "lr"))."""

    source: str
    data: dict[str, Any]
    base_dir: Path
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def error(self, path: tuple[Any, ...], problem: str, hint: str) -> SweepFileError:
        """A ``FILE:LINE: problem`` error at the nearest key of ``path`` with a known line."""
        for k in range(len(path), 0, -1):
            if path[:k] in self.lines:
                return SweepFileError(f"{self.source}:{self.lines[path[:k]]}: {problem}", hint)
        return SweepFileError(f"{self.source}: {problem}", hint)


def _read(path: Path) -> _Doc:
    """Compose ``path`` and record the line of every key the checks may point at."""
    import yaml

    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepFileError(f"{source}: no such sweep file", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepFileError(f"{source}: cannot read: {exc}", "check the file") from exc
    loader = _loader_class()(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise SweepFileError(
                f"{source}:1: the sweep file is empty",
                "write fixed parameters and a grid:, e.g. `grid: {lr: [0.1, 0.01]}`",
            )
        doc = _Doc(source, {}, path.parent)
        if not isinstance(root, yaml.MappingNode):
            raise _node_error(doc, root, "a sweep file must be a mapping of parameters")
        doc.data.update(_mapping(loader, doc, root, ()))
        return doc
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, SweepFileError) from exc
    finally:
        loader.dispose()


def _node_error(doc: _Doc, node: Any, problem: str) -> SweepFileError:
    return SweepFileError(
        f"{doc.source}:{node.start_mark.line + 1}: {problem}",
        "see `gitxp sweep --help` for the file format",
    )


def _mapping(loader: Any, doc: _Doc, node: Any, path: tuple[Any, ...]) -> dict[str, Any]:
    """Construct a mapping node, noting key lines and refusing duplicate or non-string keys.

    Recurses into ``grid`` (a list of blocks or one block) and ``group`` so
    that every key a check may complain about has its line.
    """
    import yaml

    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise _node_error(doc, key_node, f"key {key!r} is not a string; quote it")
        if key in out:
            raise _node_error(doc, key_node, f"duplicate key {key!r}")
        doc.lines[path + (key,)] = key_node.start_mark.line + 1
        nested: Any = None
        if path == () and key == "grid":
            if isinstance(value_node, yaml.SequenceNode):
                nested = []
                for i, item in enumerate(value_node.value):
                    doc.lines[("grid", i)] = item.start_mark.line + 1
                    if isinstance(item, yaml.MappingNode):
                        nested.append(_mapping(loader, doc, item, ("grid", i)))
                    else:
                        nested.append(loader.construct_object(item, deep=True))
            elif isinstance(value_node, yaml.MappingNode):
                nested = _mapping(loader, doc, value_node, ("grid", 0))
        elif len(path) == 2 and path[0] == "grid" and key == "group":
            if isinstance(value_node, yaml.MappingNode):
                nested = _mapping(loader, doc, value_node, path + ("group",))
        out[key] = nested if nested is not None else loader.construct_object(value_node, deep=True)
    return out


# --------------------------------------------------------------------------- expansion


_Choice = list[tuple[tuple[str, ...], Any]]  # the (path, value) pairs one choice sets


@dataclass(frozen=True)
class _Grid:
    """A validated grid: per block its factors (each a list of choices) and where each key is."""

    doc: _Doc
    blocks: list[list[list[_Choice]]]
    keys: list[tuple[tuple[str, ...], tuple[Any, ...]]]  # (parameter path, key path in doc.lines)


@dataclass(frozen=True)
class _Resolved:
    fixed: dict[str, Any]
    grid: _Grid | None


@dataclass(frozen=True)
class SweepSpec:
    """A loaded sweep: its fixed parameters and every configuration, in run order.

    ``configurations[i]`` is the i-th configuration (the index ``--split``
    and the claims use): the fixed parameters deep-merged with one grid
    choice, dotted keys already nested. ``fixed`` is the merged fixed
    parameters of the file and its parents, as written.
    """

    path: Path
    fixed: dict[str, Any]
    configurations: tuple[dict[str, Any], ...]


def load(path: Path) -> SweepSpec:
    """Read and expand the sweep file at ``path`` (following ``parent:`` files).

    Raises:
        SweepFileError: the file or one of its parents is unreadable or
            malformed; the message starts with ``FILE:LINE:``.
    """
    path = Path(path)
    resolved = _resolve(_read(path), (path.resolve(),))
    return SweepSpec(path, resolved.fixed, tuple(_configurations(resolved)))


def expand(doc: Mapping[str, Any], *, source: str = "<sweep>") -> list[dict[str, Any]]:
    """Expand an already-loaded sweep mapping into its configurations.

    A ``parent:`` in ``doc`` is read relative to ``source``'s folder (the
    current folder for ``<sweep>``). Errors carry no line number.

    Raises:
        SweepFileError: as :func:`load`.
    """
    base = Path(source).parent if not source.startswith("<") else Path(".")
    return _configurations(_resolve(_Doc(source, dict(doc), base), ()))


def _resolve(doc: _Doc, chain: tuple[Path, ...]) -> _Resolved:
    """Merge ``doc`` over its parent chain; refuse a key both fixed here and gridded."""
    parent = _Resolved({}, None)
    if "parent" in doc.data:
        parent_path = _parent_path(doc, chain)
        parent = _resolve(_read(parent_path), chain + (parent_path.resolve(),))
    own = _fixed(doc)
    grid = _grid(doc) if "grid" in doc.data else parent.grid
    for path, where in grid.keys if grid else ():
        if _occupied(own, path):
            problem = f"{'.'.join(path)!r} is both a fixed parameter and in the grid"
            hint = "keep it in one place: remove the fixed value or the grid entry"
            if grid is not None and grid.doc is not doc:  # fixed here, gridded by a parent
                raise doc.error(_fixed_key(doc, path), f"{problem} of {grid.doc.source}", hint)
            raise doc.error(where, problem, hint)
    return _Resolved(_deep_merge(parent.fixed, own), grid)


def _fixed_key(doc: _Doc, path: tuple[str, ...]) -> tuple[Any, ...]:
    """The top-level key of ``doc`` that fixes ``path`` or a prefix or extension of it."""
    for key in doc.data:
        parts = tuple(key.split("."))
        if key not in _RESERVED and parts[: len(path)] == path[: len(parts)]:
            return (key,)
    return ()


def _parent_path(doc: _Doc, chain: tuple[Path, ...]) -> Path:
    """The file ``parent:`` names, relative to ``doc``'s folder; ``chain`` is the files so far."""
    value = doc.data["parent"]
    if not isinstance(value, str) or not value:
        raise doc.error(("parent",), "parent: must be a file name", "write `parent: base.yaml`")
    path = doc.base_dir / value
    if path.resolve() in chain:
        names = " -> ".join(p.name for p in chain + (path.resolve(),))
        raise doc.error(("parent",), f"parent chain loops: {names}", "remove one parent: line")
    if not path.is_file():
        raise doc.error(("parent",), f"parent file {str(path)!r} not found",
                        "parent: paths are relative to the file that names them")
    return path


def _fixed(doc: _Doc) -> dict[str, Any]:
    """This file's own fixed parameters, dotted keys nested (``a.b: 1`` and ``a: {c: 2}`` merge)."""
    fixed: dict[str, Any] = {}
    for key, value in doc.data.items():
        if key in _RESERVED:
            continue
        _check_value(doc, (key,), value)
        parts = _split_key(doc, (key,), key)
        current = _get(fixed, parts)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            value = _deep_merge(current, value)
        elif _occupied(fixed, parts):
            raise doc.error((key,), f"parameter {key!r} is set twice", "set each parameter once")
        _put(fixed, parts, value)
    return fixed


def _get(mapping: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = mapping
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _split_key(doc: _Doc, where: tuple[Any, ...], key: str) -> tuple[str, ...]:
    parts = tuple(key.split("."))
    if "" in parts:
        raise doc.error(where, f"bad parameter name {key!r}", "use names like lr or optimizer.lr")
    return parts


def _check_value(doc: _Doc, where: tuple[Any, ...], value: Any) -> None:
    """Refuse values a parameter cannot hold (``!!binary``, ``!!set``, explicit dates)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise doc.error(where, f"key {k!r} is not a string", "quote it")
            _check_value(doc, where, v)
    elif isinstance(value, list):
        for v in value:
            _check_value(doc, where, v)
    elif not isinstance(value, (str, int, float, bool, type(None))):
        raise doc.error(where, f"unsupported value of type {type(value).__name__}",
                        "use strings, numbers, booleans, null, lists or mappings")


def _grid(doc: _Doc) -> _Grid:
    """Validate ``grid:`` (a list of blocks or one mapping) into blocks of factors."""
    grid = doc.data["grid"]
    hint = "write `grid:` followed by `- key: [value, ...]` blocks"
    if grid is None or grid == []:
        raise doc.error(("grid",), "the grid is empty", hint)
    if isinstance(grid, Mapping):
        grid = [grid]
    if not isinstance(grid, list):
        raise doc.error(("grid",), "grid: must be a list of blocks or one mapping", hint)
    result = _Grid(doc, [], [])
    for i, block in enumerate(grid):
        if not isinstance(block, Mapping) or not block:
            problem = "is empty" if isinstance(block, Mapping) else "is not a mapping"
            raise doc.error(("grid", i), f"grid block {i + 1} {problem}", hint)
        result.blocks.append(_block(doc, i, block, result.keys))
    return result


def _block(doc: _Doc, index: int, block: Mapping[str, Any],
           keys: list[tuple[tuple[str, ...], tuple[Any, ...]]]) -> list[list[_Choice]]:
    """One block's factors in written order; a ``group:`` is one zipped factor at its place."""
    mine: list[tuple[str, ...]] = []

    def claim(key: str, where: tuple[Any, ...], values: Any) -> tuple[str, ...]:
        parts = _split_key(doc, where, key)
        if any(other[: len(parts)] == parts[: len(other)] for other in mine):
            raise doc.error(where, f"{key!r} is set twice in grid block {index + 1}",
                            "set each parameter once per block")
        _check_list(doc, where, key, values)
        mine.append(parts)
        keys.append((parts, where))
        return parts

    factors: list[list[_Choice]] = []
    for key, values in block.items():
        where = ("grid", index, key)
        if key != "group":
            parts = claim(key, where, values)
            factors.append([[(parts, v)] for v in values])
            continue
        if not isinstance(values, Mapping) or not values:
            raise doc.error(where, "group: must be a mapping of key: [values] with equal lengths",
                            "write `group: {lr: [0.1, 0.01], warmup: [100, 10]}`")
        columns = [(claim(k, where + (k,), v), v) for k, v in values.items()]
        lengths = {k: len(v) for k, v in values.items()}
        if len(set(lengths.values())) > 1:
            first, *_ = lengths
            odd = next(k for k in lengths if lengths[k] != lengths[first])
            raise doc.error(where + (odd,), f"group lists have unequal lengths: {first!r} has "
                            f"{lengths[first]}, {odd!r} has {lengths[odd]}",
                            "give every list in a group the same length")
        factors.append([[(p, v[i]) for p, v in columns] for i in range(len(columns[0][1]))])
    return factors


def _check_list(doc: _Doc, where: tuple[Any, ...], key: str, values: Any) -> None:
    if isinstance(values, Mapping):
        raise doc.error(where, f"grid value of {key!r} is a mapping, not a list",
                        f"use dotted keys for nested parameters: `{key}.name: [...]`")
    if not isinstance(values, list):
        raise doc.error(where, f"grid value of {key!r} is not a list",
                        f"write `{key}: [{values!r}]` or move it to the fixed parameters")
    if not values:
        raise doc.error(where, f"grid value of {key!r} is an empty list", "give at least one value")
    _check_value(doc, where, values)


def _configurations(resolved: _Resolved) -> list[dict[str, Any]]:
    """Every configuration in order: blocks in turn, each an itertools.product of its factors."""
    if resolved.grid is None:
        return [copy.deepcopy(resolved.fixed)]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for block in resolved.grid.blocks:
        for choice in itertools.product(*block):
            config = copy.deepcopy(resolved.fixed)
            for assignments in choice:
                for path, value in assignments:
                    _put(config, path, value)
            key = config_key(config)
            if key not in seen:
                seen.add(key)
                out.append(config)
    return out


# --------------------------------------------------------------------------- running helpers


def config_key(params: Mapping[str, Any]) -> str:
    """A stable hash of a configuration, to recognise one already completed in the store.

    sha256 of canonical JSON (sorted keys, no spaces); key order never
    matters, types do (``1`` and ``1.0`` and ``true`` differ).
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_split(text: str) -> tuple[int, int]:
    """Read ``--split I/N`` (0-based ``I``, as array-job task ids are).

    Raises:
        UsageError: not two integers with 0 <= I < N.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"bad --split {text!r}", "write I/N with 0 <= I < N, e.g. --split 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    _check_split(index, count)
    return index, count


def _check_split(index: int, count: int) -> None:
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"bad --split {index}/{count}",
                         "I is 0-based: use 0 <= I < N, e.g. --split 0/4 ... 3/4")


def split(configs: Sequence[dict[str, Any]], index: int, count: int) -> list[tuple[int, dict[str, Any]]]:
    """The configurations of slice ``index`` of ``count``: those whose position i has i % count == index.

    Returns (i, configuration) pairs, i being the position in the whole sweep.

    Raises:
        UsageError: unless 0 <= index < count.
    """
    _check_split(index, count)
    return [(i, config) for i, config in enumerate(configs) if i % count == index]


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][\w\-]*(?:\.[\w\-]+)*)\}")


def placeholders(command: Sequence[str]) -> set[str]:
    """The ``{key}`` names used in ``command`` (``{{``/``}}`` escapes excluded)."""
    return {m.group(1) for arg in command for m in _PLACEHOLDER.finditer(arg) if m.group(1)}


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


_ABSENT: Any = object()


def _lookup(params: Mapping[str, Any], name: str) -> Any:
    """``params[name]``, else the nested value at the dotted ``name``, else ``_ABSENT``."""
    if name in params:
        return params[name]
    node: Any = params
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _flat_keys(params: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in params.items():
        if isinstance(value, Mapping) and value:
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def substitute(command: Sequence[str], params: Mapping[str, Any]) -> list[str]:
    """Replace ``{key}`` / ``{a.b}`` in each argument with the parameter's value.

    Raises:
        SweepFileError: a placeholder names no parameter; lists the known keys.
    """
    missing = sorted(name for name in placeholders(command) if _lookup(params, name) is _ABSENT)
    if missing:
        known = ", ".join(_flat_keys(params)) or "none"
        raise SweepFileError(
            f"unknown placeholder {{{missing[0]}}} in the command; known keys: {known}",
            "use a key of the sweep file, or write {{ and }} for literal braces",
        )

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)[0]
        return _format(_lookup(params, match.group(1)))

    return [_PLACEHOLDER.sub(replace, arg) for arg in command]


def list_warnings(spec: SweepSpec, command: Sequence[str]) -> list[str]:
    """One warning per fixed list the command uses: most likely a grid written without ``grid:``.

    ``lr: [0.01, 0.1]`` at the top level is one fixed value, so the command
    gets ``--lr '[0.01, 0.1]'`` in a single configuration; a list meant as
    a value (``layers: [64, 64]``) is allowed, hence a warning, not an error.
    """
    out = []
    first = spec.configurations[0] if spec.configurations else {}
    for name in sorted(placeholders(command)):
        value = _lookup(spec.fixed, name)
        if isinstance(value, list) and _lookup(first, name) == value:
            flow = json.dumps(value)
            out.append(f"{spec.path}: {name!r} is a fixed list {flow}, passed whole as {{{name}}} in every configuration; "
                       f"to run one configuration per value, put it under `grid:` (grid: {{{name}: {flow}}})")
    return out


def check_command(command: Sequence[str], configurations: Sequence[Mapping[str, Any]]) -> None:
    """Substitute into ``command`` for every configuration, so a bad placeholder stops a sweep before it starts.

    Raises:
        SweepFileError: as :func:`substitute`.
    """
    for config in configurations:
        substitute(command, config)
