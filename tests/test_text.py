"""Text for terminals: the aligned table every listing prints, checked against its plain definition."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from gitxp import text


def _reference(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The table as specified, one cell at a time: fmt_value, widest cell, numbers (or '-') right-aligned."""
    body = [[text.fmt_value(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    numeric = [bool(body) and all(text._is_num(r[i]) or r[i] == "-" for r in body) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(list(headers))] + [line(r) for r in body])


ROWS = [
    ["20260301-000000-aaa", 0.5, 3, None, True, "3.5", "x\x1b]0;pwned\x07y", math.nan, "{0}", ""],
    ["20260301-000001-bbb", -math.inf, None, 2.0, False, "abc", "tab\there", 1e300, "}{", ""],
    ["20260301-000002-ccc", 1234567.0, 10**20, None, None, "-", "ünïcødé", -0.0, "{:>9}", ""],
]
HEADERS = ["id", "params.lr", "params.n", "metrics.acc", "tags.ok", "tags.v", "name", "summary.x", "braces", "params.empty"]


@pytest.mark.parametrize("rows", [ROWS, ROWS[:1], []])
def test_text_table_is_the_plain_definition(rows: list[list[Any]]) -> None:
    assert text.text_table(HEADERS, rows) == _reference(HEADERS, rows)
    columns = [[r[i] for r in rows] for i in range(len(HEADERS))]  # how `gitxp table` builds a big one
    assert text.text_columns(HEADERS, columns) == _reference(HEADERS, rows)


@pytest.mark.parametrize("column", [
    [0.5, None, 1e-9], [3, None, -7], ["1", "2.5", None], ["a", None, "b\x1b[2Jc"], [None, None, None], [True, 1, 2.0],
])
def test_a_column_of_one_type_formats_as_cell_by_cell(column: list[Any]) -> None:
    rows = [["x", v] for v in column]
    assert text.text_columns(["id", "v"], [["x"] * len(column), column]) == _reference(["id", "v"], rows)


def test_text_table_keeps_the_columns_that_fit_and_at_least_two() -> None:
    rows = [["a", 1.5, "xyz"], ["bb", None, "w"]]
    assert text.text_table(["id", "lr", "name"], rows, max_width=12) == "id   lr\na   1.5\nbb    -"
    assert text.text_table(["id", "lr", "name"], rows, max_width=14) == "id   lr  name\na   1.5  xyz\nbb    -  w"
    assert text.text_table(["id", "lr", "name"], rows, max_width=3) == "id   lr\na   1.5\nbb    -"


def test_stored_escapes_never_reach_the_terminal() -> None:
    table = text.text_table(HEADERS, ROWS)
    assert "\x1b" not in table and "\x07" not in table and "\t" not in table
    assert "xy" in table  # the title-setting sequence is gone, the text around it kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\nb\n", "a\nb\n"),  # clean lines: returned as they are (the fast path)
        ("a\tb\nc", "a\tb\nc"),  # tabs kept in multi-line text
        ("a\r\nb\rc", "a\nb\nc"),  # carriage returns become newlines, never overwrite a line
        ("ok\n\x1b]0;owned\x07title\n", "ok\ntitle\n"),  # an escape sequence in one line of a page
        ("x\u2028y\nz\x00", "xy\nz"),  # a line separator and a NUL
    ],
)
def test_clean_pages_keep_their_lines_and_lose_every_control(text: str, expected: str) -> None:
    from gitxp.text import clean

    assert clean(text, multiline=True) == expected
