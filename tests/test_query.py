"""The --where language: grammar, semantics and error columns."""

from __future__ import annotations

import datetime as dt

import pytest

from gitxp.errors import QueryError, UsageError
from gitxp.store.query import Query, compile_filter, parse

RECORD = {
    "id": "20261122-110512-a3f9c2d81b7e",
    "name": "train",
    "status": "completed",
    "created": "2026-11-22T11:05:12Z",
    "duration_s": 12.5,
    "exit_code": 0,
    "params": {"lr": 0.01, "epochs": 10, "optim": {"name": "adam", "lr": 0.001}, "amp": True,
               "layers": [64, 32]},
    "metrics": {
        "acc": {"last": 0.93, "min": 0.5, "max": 0.95, "count": 10, "last_step": 9},
        "loss": {"last": 0.3, "min": 0.2, "max": 2.0, "count": 10, "last_step": 9},
        "train/loss": {"last": 0.25},
    },
    "summary": {"best": 0.95},
    "tags": {"team": "vision"},
}


def match(expression: str, record: dict = RECORD) -> bool:
    return parse(expression).matches(record)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("params.lr == 0.01", True),
        ("params.lr = 0.01", True),
        ("params.lr != 0.01", False),
        ("params.lr < 0.1", True),
        ("params.lr <= 0.01", True),
        ("params.lr > 0.01", False),
        ("params.lr >= 0.01", True),
        ("params.epochs == 10.0", True),  # int vs float compare numerically
        ("params.lr < 1e-1", True),
        ("params.lr > -1", True),
        ("0.1 > params.lr", True),  # a literal on the left is fine
        ("status == 'completed'", True),
        ('status == "completed"', True),
        ("name != 'train'", False),
        ("exit_code == 0", True),
        ("duration_s > 10", True),
        ("id == '20261122-110512-a3f9c2d81b7e'", True),
        ("params.amp == true", True),
        ("params.amp == True", True),
        ("params.amp == 1", False),  # booleans are not numbers
        ("tags.team == 'vision'", True),
        ("summary.best > 0.9", True),
    ],
)
def test_comparison_operators(expression: str, expected: bool) -> None:
    assert match(expression) is expected


def test_nested_params_and_list_index() -> None:
    assert match("params.optim.lr == 0.001")
    assert match("params.optim.name == 'adam'")
    assert match("params.layers.0 == 64")
    assert not match("params.layers.5 == 64")
    assert match("params.optim.lr == 0.1", {"params": {"optim.lr": 0.1}})  # literal dotted key


def test_metrics_last_value_and_statistics() -> None:
    assert match("metrics.acc == 0.93")
    assert match("metrics.acc.last == 0.93")
    assert match("metrics.loss.min == 0.2")
    assert match("metrics.loss.max == 2.0")
    assert match("metrics.loss.count == 10")
    assert match("metrics.acc.last_step == 9")
    assert match("metrics.train/loss < 0.3")
    assert match("metrics.acc > metrics.loss")  # field against field


def test_precedence_and_over_or_not_over_and() -> None:
    # and binds tighter than or: False or (True and True)
    assert match("params.lr > 1 or params.lr < 1 and status == 'completed'")
    # with parentheses: (False or True) and False
    assert not match("(params.lr > 1 or params.lr < 1) and status == 'failed'")
    # not binds tighter than and: (not False) and True
    assert match("not status == 'failed' and params.lr < 1")
    assert not match("not (status == 'completed' and params.lr < 1)")
    assert match("not not status == 'completed'")
    assert match("params.lr < 1 AND status == 'completed'")  # keywords in upper case too


def test_in_and_not_in() -> None:
    assert match("status in ['completed', 'failed']")
    assert not match("status in ['failed', 'crashed']")
    assert match("status not in ['failed', 'crashed']")
    assert match("params.epochs in [5, 10.0,]")  # trailing comma, numeric equality
    assert match("params.missing in [null]")
    assert not match("params.missing in [1, 2]")
    assert match("params.missing not in [1, 2]")


def test_missing_fields() -> None:
    assert not match("params.missing == 1")
    assert not match("params.missing < 1")
    assert not match("params.missing > 1")
    assert match("params.missing != 1")  # != is the exact negation of ==
    assert match("params.missing == null")
    assert not match("params.missing != null")
    assert not match("params.lr == null")
    assert not match("metrics.nope > 0")
    assert not match("metrics.acc.nope > 0")
    assert not match("tags.team == 'vision'", {"status": "completed"})
    assert not match("params.lr.x == 1")  # walking through a number


def test_string_vs_number_never_raises() -> None:
    assert not match("params.lr < 'abc'")
    assert not match("params.lr == '0.01'")
    assert match("params.lr != '0.01'")
    assert not match("status > 5")


def test_created_compares_as_iso_string() -> None:
    assert match("created >= '2026-11-01'")
    assert not match("created < '2026-11-22T00:00:00Z'")
    aware = dict(RECORD, created=dt.datetime(2026, 11, 22, 11, 5, 12, tzinfo=dt.timezone.utc))
    assert match("created == '2026-11-22T11:05:12Z'", aware)


def test_string_escapes() -> None:
    assert match(r"name == 'it\'s'", {"name": "it's"})
    assert match("name == \"a'b\"", {"name": "a'b"})


def test_fields_lists_referenced_paths() -> None:
    query = parse("params.lr < 0.1 and (metrics.loss.min < 1 or status in ['x']) "
                  "and not tags.team == 'a' and 1 == 1")
    assert query.fields() == {"params.lr", "metrics.loss.min", "status", "tags.team"}
    assert parse("metrics.acc > metrics.loss").fields() == {"metrics.acc", "metrics.loss"}


def test_query_is_frozen_and_callable() -> None:
    query = parse("status == 'completed'")
    assert isinstance(query, Query)
    assert query(RECORD) is True
    with pytest.raises(AttributeError):
        query.expression = "x"  # type: ignore[misc]


def test_compile_filter() -> None:
    keep_all = compile_filter(None)
    assert keep_all({}) is True
    only_done = compile_filter("status == 'completed'")
    assert only_done(RECORD) is True
    assert only_done({"status": "failed"}) is False
    with pytest.raises(QueryError):
        compile_filter("status ==")


@pytest.mark.parametrize(
    ("expression", "column", "fragment"),
    [
        ("params.lr <", 12, "got the end"),
        ("params.lr << 1", 12, "got '<'"),
        ("status == 'completed", 11, "unterminated string"),
        ("__import__('os').system('x')", 1, "unknown field '__import__'"),
        ("params.lr(1) == 1", 10, "unexpected '('"),
        ("status == completed", 11, "unknown field 'completed'; quote strings: status == 'completed'"),
        ("", 1, "empty expression"),
        ("params.lr", 10, "expected a comparison"),
        ("params.lr < 1 && status == 'x'", 15, "unexpected character '&'"),
        ("params.lr < 1 status == 'x'", 15, "unexpected 'status'"),
        ("(params.lr < 1", 15, "expected ')'"),
        ("params.lr < 1)", 14, "unmatched ')'"),
        ("params == 1", 1, "'params' needs a key"),
        ("status.code == 1", 1, "no sub-fields"),
        ("params. == 1", 1, "empty part"),
        ("status in 'x'", 11, "expected '['"),
        ("status in []", 12, "empty list"),
        ("status in [1 2]", 14, "expected ',' or ']'"),
        ("status in [params.lr]", 12, "expected a value in the list"),
        ("status not 'x'", 12, "expected 'in' after 'not'"),
        ("params.lr == 1.2.3", 14, "malformed number"),
        ("params.lr == $x", 14, "unexpected character '$'"),
        ("params.lr == 1 and", 19, "got the end"),
        ("not", 4, "got the end"),
    ],
)
def test_errors_point_at_the_offending_column(expression: str, column: int, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(expression)
    assert info.value.column == column
    assert info.value.expression == expression
    assert fragment in str(info.value)
    assert f"at column {column}:" in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, UsageError)
