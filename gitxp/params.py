"""Parameter values from text: YAML 1.2 core scalars and dotted keys.

Parameters arrive as text in three places: ``gitxp start -p KEY=VALUE``,
``--params-file`` and sweep files. All three must read a value the same way
(``1e-3`` is a float, ``yes``/``on`` stay strings, no implicit dates), so the
reading lives here, apart from :mod:`gitxp.sweeps.spec`, which uses it but is
about expanding grids. pyyaml is imported only when YAML is actually read.
"""

from __future__ import annotations

import math
import re
from typing import Any

from gitxp.errors import GitxpError, ParamError

__all__ = ["FrozenDict", "FrozenList", "frozen", "parse_scalar", "set_dotted", "thaw", "yaml12_load"]

# --------------------------------------------------------------------------- YAML 1.2 core

# The YAML 1.2 core schema's implicit scalars. PyYAML implements 1.1, where
# `yes`/`on` are booleans, `1e-3` is a string, `010` is octal and `2026-11-01`
# is a date; parameters must not change meaning that way.
_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_BOOL = re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")
_INT = re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")
_FLOAT = re.compile(
    r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
)
_TAG = "tag:yaml.org,2002:"


def _to_null(text: str) -> None:
    return None


def _to_bool(text: str) -> bool:
    if not _BOOL.match(text):  # an explicit `!!bool yes`: not a 1.2 boolean
        raise ValueError(text)
    return text.lower() == "true"


def _to_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _to_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)


# Order matters only where patterns overlap: none of these do.
_SCALARS = (("null", _NULL, _to_null), ("bool", _BOOL, _to_bool),
            ("int", _INT, _to_int), ("float", _FLOAT, _to_float))


def _loader_class() -> type:
    """Build (once) a SafeLoader subclass that resolves plain scalars as YAML 1.2 core."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class Yaml12Loader(yaml.SafeLoader):
        """SafeLoader with YAML 1.2 core implicit scalars (and no implicit dates)."""

    dropped = {_TAG + t for t in ("bool", "int", "float", "null", "timestamp", "value")}
    Yaml12Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in dropped]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    first_chars = {
        "null": ["~", "n", "N", ""],
        "bool": list("tTfF"),
        "int": list("-+0123456789"),
        "float": list("-+.0123456789"),
    }
    for name, regex, convert in _SCALARS:
        Yaml12Loader.add_implicit_resolver(_TAG + name, regex, first_chars[name])

        def construct(loader: Any, node: Any, _convert: Any = convert, _name: str = name) -> Any:
            text = loader.construct_scalar(node)
            try:
                return _convert(text.strip())
            except ValueError as exc:  # an explicit tag on a bad value: `!!int abc`
                raise yaml.constructor.ConstructorError(
                    None, None, f"bad {_name} value {text!r}", node.start_mark
                ) from exc

        Yaml12Loader.add_constructor(_TAG + name, construct)
    _LOADER = Yaml12Loader
    return Yaml12Loader


_LOADER: type | None = None


def yaml12_load(text: str, *, source: str = "<yaml>", error: type[GitxpError] = ParamError) -> Any:
    """Load one YAML document, reading plain scalars as YAML 1.2 core.

    Used for ``--params-file`` and sweep files: ``1e-3`` is a float,
    ``yes``/``on``/``off`` stay strings, ``2026-11-01`` stays a string.

    The same limits as YAML read from the store (size, nesting, alias
    expansion: :func:`gitxp.store.layout.yaml_limits_problem`), so an alias bomb
    in a sweep file is refused, not expanded.

    Raises:
        ParamError (or ``error``): the text is not valid YAML or is over a
            limit; the message starts with ``SOURCE:LINE:`` or ``SOURCE:``.
    """
    import yaml

    from gitxp.store.layout import yaml_depth_problem, yaml_limits_problem

    problem = yaml_limits_problem(text, _loader_class(), scan=True)  # the pure-Python composer recurses
    if problem is None:
        try:
            value = yaml.load(text, Loader=_loader_class())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, source, error) from exc
        problem = yaml_depth_problem(value)
        if problem is None:
            return value
    raise error(f"{source}: {problem}", "simplify the YAML there")


def _yaml_error(exc: Any, source: str, error: type[GitxpError]) -> GitxpError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return error(f"{source}{line}: invalid YAML: {problem}", "fix the YAML syntax there")


def parse_scalar(text: str) -> Any:
    """Read one ``-p KEY=VALUE`` value as a YAML 1.2 core scalar.

    ``1e-3`` → 0.001, ``true`` → True, ``null``/``~``/empty → None,
    ``0x1F`` → 31, ``.inf`` → inf; ``yes``/``on``/``off`` and anything else
    stay the string given. A quoted value (``'0.1'``) is the string inside
    the quotes: that is how a number is forced to be a string.
    """
    stripped = text.strip()
    for _name, regex, convert in _SCALARS:
        if regex.match(stripped):
            return convert(stripped)
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        try:
            value = yaml12_load(stripped)
        except ParamError:
            return text
        if isinstance(value, str):
            return value
    return text


# --------------------------------------------------------------------------- dotted keys


def set_dotted(params: dict[str, Any], key: str, value: Any) -> None:
    """Set ``params["a"]["b"] = value`` for ``key == "a.b"``, creating mappings on the way.

    An existing value at the key is replaced (``-p`` overrides
    ``--params-file``).

    Raises:
        ParamError: an empty key or part (``a..b``), or a part of the path
            already holds a value that is not a mapping (``a.b`` when ``a`` is 3).
    """
    parts = key.split(".")
    if not key or "" in parts:
        raise ParamError(f"bad parameter name {key!r}", "use names like lr or optim.lr")
    target = params
    for i, part in enumerate(parts[:-1]):
        nxt = target.setdefault(part, {})
        if not isinstance(nxt, dict):
            prefix = ".".join(parts[: i + 1])
            raise ParamError(
                f"cannot set {key!r}: {prefix!r} is already {nxt!r}, not a mapping",
                f"set {prefix!r} only once, as a mapping or as a value",
            )
        target = nxt
    target[parts[-1]] = value


# --------------------------------------------------------------------------- the live view


def _refuse(*_args: Any, **_kwargs: Any) -> Any:
    from gitxp.errors import ParamsReadOnlyError

    raise ParamsReadOnlyError()


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of a :func:`frozen` value (what copy, deepcopy and pickle give)."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value


class FrozenDict(dict):  # type: ignore[type-arg]
    """``xp.params`` and the mappings inside it: a dict that refuses changes.

    Parameters are checked when they are logged (``log_param``/``log_params``);
    a value written straight into the dict would skip that check and fail
    only when the run is committed, leaving it staged. ``copy.copy``,
    ``copy.deepcopy`` and pickling give plain dicts.
    """

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __copy__(self) -> dict[str, Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __deepcopy__(self, memo: Any) -> dict[str, Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (thaw(self),))


class FrozenList(list):  # type: ignore[type-arg]
    """A list inside ``xp.params``: read-only for the same reason as :class:`FrozenDict`."""

    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = extend = insert = pop = remove = clear = sort = reverse = _refuse  # type: ignore[assignment]

    def __copy__(self) -> list[Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __deepcopy__(self, memo: Any) -> list[Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (thaw(self),))


def frozen(value: Any) -> Any:
    """``value`` (checked parameters: dicts, lists, scalars) as read-only :class:`FrozenDict`/:class:`FrozenList`."""
    if isinstance(value, dict):
        return FrozenDict({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList([frozen(v) for v in value])
    return value
