"""gitxp/store/safeyaml.py: the one-pass loader reads every document exactly as PyYAML's safe loaders do.

A differential test against the real PyYAML (its C loader and its pure-Python
one): values, their types, shared objects of aliases, and the errors of
hostile or malformed documents.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gitxp.store import layout
from gitxp.store.safeyaml import Loader

CASES = [
    # the scalars YAML 1.1 resolves implicitly, in their many spellings
    "a: 1", "0x1F", "0o17", "017", "1_000", "1:30", "190:20:30", ".inf", "-.Inf", ".nan", "yes", "No", "ON", "off", "~", "null", "Null",
    "''", "", "a: 1e3", "a: 1.0e+3", "a: -0", "a: +12", "a: 0b101", "a: 1,000", "a: 12:30:00", "a: '1'", 'a: "\\t"', "a: 6.8523015e+5",
    "2026-01-01", "2026-01-01T10:00:00Z", "a: 2026-01-01 10:00:00.5 +02:00",
    # what gitxp itself writes
    "id: 20260301-101500-0123456789ab\nname: x\ncommand:\n- python\n- '0.1'\nmetrics:\n  loss: {last: 0.5, count: 3, last_step: 2}\nnotes: null\n",
    "x:\n  - 1\n  - [2, {c: d}]\n  - e", "s: 'é ü \\u2603 😀'", "m: |\n  line1\n  line2\n", "f: >\n  a\n  b\n", "- - - - deep",
    "1: a\n2.5: b\ntrue: c\n~: d", "a: 1\na: 2",
    # anchors, aliases and merge keys
    "a: &x [1, 2]\nb: *x", "a: &x {k: 1}\nb: *x\nc: *x", "- &x 1\n- *x\n- *x", "&a [*a]", "a: &a {b: *a}",
    "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2", "<<: {a: 1}", "a: {<<: [{x: 1}, {y: 2}], z: 3}", "=: 1", "a: {=: 2}",
    # explicit tags, the safe ones and the refused ones
    "!!str 1", "!!int '3'", "!!float '1'", "!!binary aGVsbG8=", "!!set {a, b}", "!!omap [a: 1, b: 2]", "!!pairs [a: 1]",
    "a: !!null ''", "!!timestamp 2026-01-01", "!!python/object:os.system x", "!!python/name:os.system ''", "a: !custom x",
    # keys that are collections
    "[1]: x", "{a: 1}: x", "? [1, 2]\n: x", "? {a: 1}\n: x",
    # malformed
    "[", "a: b: c", "{a: 1", "a: [1, 2,]", "a: *unknown", "&x a", "---\na: 1\n---\nb: 2", "--- 5", "\t- x", "a: 'unterminated",
]


def _outcome(text: str, loader: Any) -> tuple[Any, ...]:
    try:
        value = yaml.load(text, Loader=loader)
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return ("error", type(exc).__name__, str(exc))
    return ("value", repr(value), _types(value))


def _types(value: Any, seen: frozenset[int] = frozenset()) -> Any:
    if id(value) in seen:
        return "<recursive>"
    if isinstance(value, dict):
        return {repr(k): _types(v, seen | {id(value)}) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v, seen | {id(value)}) for v in value]
    return type(value).__name__


@pytest.mark.parametrize("text", CASES)
def test_reads_as_pyyaml_safe_loaders_do(text: str) -> None:
    ours = _outcome(text, Loader)
    assert ours == _outcome(text, yaml.CSafeLoader)
    assert ours[:2] == _outcome(text, yaml.SafeLoader)[:2]  # the pure-Python loader's errors quote the line as well


def test_twice_in_a_row_the_same() -> None:
    """Resolutions are remembered across documents: a value read again resolves as the first time."""
    for text in CASES * 2:
        assert _outcome(text, Loader) == _outcome(text, yaml.CSafeLoader)


def test_aliases_share_one_object_as_in_pyyaml() -> None:
    doc = yaml.load("a: &x {k: [1]}\nb: *x\nc: [*x]", Loader=Loader)
    assert doc["a"] is doc["b"] is doc["c"][0]


def test_the_store_reader_uses_it_within_its_limits() -> None:
    assert layout.load_yaml(b"a: {b: [1, 2.5, yes, ~]}") == {"a": {"b": [1, 2.5, True, None]}}
    deep = "[" * (layout.MAX_YAML_DEPTH + 1) + "]" * (layout.MAX_YAML_DEPTH + 1)
    with pytest.raises(Exception, match="nesting deeper"):
        layout.load_yaml(deep)
    with pytest.raises(Exception, match="recursive alias"):
        layout.load_yaml("a: &a [*a]")


def test_depth_is_known_from_the_build_and_aliases_are_walked() -> None:
    """The store's depth limit holds whether the document was built in one pass, through an alias, or by PyYAML."""
    limit = layout.MAX_YAML_DEPTH
    at_limit = "[" * limit + "]" * limit
    assert layout.load_yaml(at_limit) is not None
    with pytest.raises(Exception, match="nesting deeper"):
        layout.load_yaml("a: " + "[" * limit + "]" * limit)
    # an alias puts a shallow anchor's object one level deeper for each use
    shallow = "[" * (limit - 1) + "]" * (limit - 1)  # at the limit where it is anchored
    assert layout.load_yaml(f"a: &x {shallow}\nb: *x") is not None
    with pytest.raises(Exception, match="nesting deeper"):
        layout.load_yaml(f"a: &x {shallow}\nb: {{c: *x}}")
    with pytest.raises(Exception, match="nesting deeper"):
        layout.load_yaml(f"a: !!set {{x}}\nb: {'[' * limit}{']' * limit}")  # an unusual tag: PyYAML builds it, then the walk


@pytest.mark.parametrize("data", [b"a: \x80\x81", b"\xff\xfe\x00b", b"\xef\xbb\xbfa: 1", b"a: b\x00c", "a: \ud800".encode("utf-8", "surrogatepass")])
def test_bytes_as_pyyaml_reads_them(data: bytes) -> None:
    """Stored files are bytes: encodings, BOMs and invalid UTF-8 read (or fail) as with PyYAML."""
    assert _outcome(data, Loader) == _outcome(data, yaml.CSafeLoader)  # type: ignore[arg-type]
