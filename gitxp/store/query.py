"""The ``--where`` language: a tokenizer and a recursive-descent parser (the evaluator is :mod:`gitxp.store.query_eval`).

Expressions read like Python comparisons over an experiment's fields::

    params.lr < 0.01 and metrics.acc >= 0.9
    status in ['failed', 'crashed'] or not (tags.team == 'vision')
    metrics.loss.min <= 0.2 and created >= '2026-11-01'

They come from the command line, so they are parsed, never handed to
``eval``: anything outside the grammar below is a :class:`~gitxp.errors.QueryError`
that points at the offending column (1-based)::

    expr       := or
    or         := and ('or' and)*
    and        := not ('and' not)*
    not        := 'not' not | atom
    atom       := '(' expr ')' | comparison
    comparison := operand OP operand
                | operand ['not'] 'in' '[' literal (',' literal)* [','] ']'
    OP         := '==' | '=' | '!=' | '<' | '<=' | '>' | '>='
    operand    := field | literal
    literal    := number | 'string' | "string" | true | false | null  (True/False/None too)

Fields are ``params.<key>`` (dots walk nested mappings), ``metrics.<name>``
(the last value) or ``metrics.<name>.<last|min|max|count|last_step>``,
``summary.<key>``, ``tags.<key>``, ``source.<key>``,
``inputs.<name>.<digest|size|files|path>`` and the scalars ``id``,
``name``, ``status``, ``created``, ``started``, ``ended``, ``duration_s``,
``exit_code``, ``parent``, ``host``, ``user``.

Semantics, chosen for what a user filtering a list expects:

* A missing field equals ``null`` and nothing else, so ``params.lr == 0.1``
  and ``params.lr < 1`` are False for an experiment without ``lr``, while
  ``params.lr != 0.1`` and ``params.lr == null`` are True. ``!=`` and
  ``not in`` are always the exact negation of ``==`` and ``in``.
* Numbers compare numerically (``1 == 1.0``); booleans are not numbers
  (``true != 1``). Values of different kinds are never equal and never
  ordered: ``params.lr < 'x'`` is False rather than an error.
* Strings order lexicographically, which is why ISO 8601 timestamps work:
  ``created >= '2026-11-01'``.
* Keywords (``and``, ``or``, ``not``, ``in``) are also accepted in upper case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitxp.errors import QueryError
from gitxp.store.query_eval import METRIC_STATS, And, Compare, Field, In, Literal, Node, Not, Operand, Or

__all__ = ["Query", "compile_filter", "parse", "FIELD_ROOTS", "SCALAR_FIELDS", "METRIC_STATS"]

#: Fields that are one value and take no sub-path.
SCALAR_FIELDS = frozenset(
    {"id", "name", "status", "created", "started", "ended", "duration_s", "exit_code",
     "parent", "host", "user"}
)
#: Fields that are mappings and need a key after a dot (``params.lr``).
FIELD_ROOTS = frozenset({"params", "metrics", "summary", "tags", "source", "inputs"})

_KEYWORDS = frozenset({"and", "or", "not", "in"})
_CONSTANTS: dict[str, Any] = {
    "true": True, "True": True, "false": False, "False": False, "null": None, "None": None,
}
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "=")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# A field path: an identifier, then dot-separated parts that may also hold
# digits, '-' and '/' (metric names like ``train/loss``). There is no
# arithmetic in the language, so '-' inside a path is never ambiguous.
_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[\w/\-]*)*")
_WORD_CHAR = re.compile(r"[\w.]")


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    """One lexeme; ``column`` is 1-based so errors can point at it."""

    kind: str  # name, number, string, const, kw, op, (, ), [, ], ",", end
    text: str
    column: int
    value: Any = None


def _tokenize(expression: str) -> list[_Token]:
    """Split ``expression`` into tokens, rejecting any character the grammar has no use for.

    A lexical error becomes a final ``error`` token rather than being raised
    here, so that the parser reports whichever problem comes first from the
    left: ``__import__('os')`` is an unknown field at column 1, not a bad
    character further on.
    """
    tokens: list[_Token] = []
    try:
        _scan(expression, tokens)
    except QueryError as exc:
        tokens.append(_Token("error", "", exc.column or len(expression) + 1, exc))
        return tokens
    tokens.append(_Token("end", "", len(expression) + 1))
    return tokens


def _scan(expression: str, tokens: list[_Token]) -> None:
    """Append the tokens of ``expression`` to ``tokens``; raise at the first bad character."""
    i, n = 0, len(expression)
    value: Any
    while i < n:
        ch = expression[i]
        column = i + 1
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"":
            text, value, i = _scan_string(expression, i)
            tokens.append(_Token("string", text, column, value))
            continue
        number = _NUMBER.match(expression, i) if (ch.isdigit() or ch in "+-.") else None
        if number:
            end = number.end()
            if end < n and _WORD_CHAR.match(expression, end):
                raise QueryError(
                    f"malformed number {expression[i:end + 1]!r}", expression, column
                )
            text = number.group()
            value = float(text) if any(c in text for c in ".eE") else int(text)
            tokens.append(_Token("number", text, column, value))
            i = end
            continue
        name = _NAME.match(expression, i)
        if name:
            text = name.group()
            i = name.end()
            if text.lower() in _KEYWORDS:
                tokens.append(_Token("kw", text.lower(), column))
            elif text in _CONSTANTS:
                tokens.append(_Token("const", text, column, _CONSTANTS[text]))
            else:
                tokens.append(_Token("name", text, column))
            continue
        op = next((o for o in _OPERATORS if expression.startswith(o, i)), None)
        if op:
            tokens.append(_Token("op", op, column))
            i += len(op)
            continue
        if ch in "()[],":
            tokens.append(_Token(ch, ch, column))
            i += 1
            continue
        hint = " (use 'and', 'or', 'not')" if ch in "&|!" else ""
        raise QueryError(f"unexpected character {ch!r}{hint}", expression, column)


def _scan_string(expression: str, start: int) -> tuple[str, str, int]:
    """Read a quoted string at ``start``; returns (source text, value, next index)."""
    quote = expression[start]
    out: list[str] = []
    i = start + 1
    while i < len(expression):
        ch = expression[i]
        if ch == quote:
            return expression[start:i + 1], "".join(out), i + 1
        if ch == "\\" and i + 1 < len(expression):
            nxt = expression[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    raise QueryError(f"unterminated string starting with {quote}", expression, start + 1)


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the token list; each method is one grammar rule."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.pos = 0

    # helpers
    def peek(self, offset: int = 0) -> _Token:
        token = self.tokens[min(self.pos + offset, len(self.tokens) - 1)]
        if token.kind == "error":
            raise token.value
        return token

    def advance(self) -> _Token:
        token = self.peek()
        self.pos += 1
        return token

    def is_kw(self, word: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind == "kw" and token.text == word

    def fail(self, message: str, token: _Token) -> QueryError:
        return QueryError(message, self.expression, token.column)

    @staticmethod
    def describe(token: _Token) -> str:
        return "the end" if token.kind == "end" else repr(token.text)

    # rules
    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("empty expression", self.peek())
        node = self.or_()
        token = self.peek()
        if token.kind != "end":
            if token.kind == ")":
                raise self.fail("unmatched ')'", token)
            raise self.fail(f"unexpected {self.describe(token)}; join comparisons with 'and'/'or'", token)
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.is_kw("or"):
            self.advance()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Node:
        items = [self.not_()]
        while self.is_kw("and"):
            self.advance()
            items.append(self.not_())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_(self) -> Node:
        if self.is_kw("not"):
            self.advance()
            return Not(self.not_())
        return self.atom()

    def atom(self) -> Node:
        token = self.peek()
        if token.kind == "(":
            self.advance()
            node = self.or_()
            closing = self.peek()
            if closing.kind != ")":
                raise self.fail(
                    f"expected ')' to close the '(' at column {token.column}, "
                    f"got {self.describe(closing)}",
                    closing,
                )
            self.advance()
            return node
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand(None)
        token = self.peek()
        if token.kind == "op":
            self.advance()
            op = "==" if token.text == "=" else token.text
            return Compare(op, left, self.operand((left, token.text)))
        if self.is_kw("in"):
            self.advance()
            return In(left, self.choices(), negate=False)
        if self.is_kw("not") and self.is_kw("in", 1):
            self.advance()
            self.advance()
            return In(left, self.choices(), negate=True)
        if self.is_kw("not"):
            raise self.fail("expected 'in' after 'not'", self.peek(1))
        what = left.path if isinstance(left, Field) else self.tokens[self.pos - 1].text
        if token.kind == "(":
            raise self.fail(f"unexpected '(' after {what!r}: there are no function calls", token)
        raise self.fail(
            f"expected a comparison (==, !=, <, <=, >, >=, in) after {what!r}, "
            f"got {self.describe(token)}",
            token,
        )

    def operand(self, context: tuple[Operand, str] | None) -> Operand:
        token = self.advance()
        if token.kind in ("number", "string", "const"):
            return Literal(token.value)
        if token.kind == "name":
            return self.field(token, context)
        after = f" after {context[1]!r}" if context else ""
        raise self.fail(
            f"expected a field or a value{after}, got {self.describe(token)}", token
        )

    def field(self, token: _Token, context: tuple[Operand, str] | None) -> Field:
        parts = tuple(token.text.split("."))
        root = parts[0]
        if root in SCALAR_FIELDS:
            if len(parts) > 1:
                raise self.fail(f"field {root!r} has no sub-fields (in {token.text!r})", token)
        elif root in FIELD_ROOTS:
            if len(parts) == 1:
                raise self.fail(f"{root!r} needs a key, e.g. {root}.{_EXAMPLE_KEYS[root]}", token)
            if "" in parts[1:]:
                raise self.fail(f"empty part in field {token.text!r}", token)
        elif context is not None and isinstance(context[0], Field):
            raise self.fail(
                f"unknown field {token.text!r}; quote strings: "
                f"{context[0].path} {context[1]} {token.text!r}",
                token,
            )
        else:
            known = ", ".join(f"{r}.<key>" for r in sorted(FIELD_ROOTS))
            raise self.fail(
                f"unknown field {token.text!r}; fields are {known}, "
                f"{', '.join(sorted(SCALAR_FIELDS))}; quote strings: status == 'completed'",
                token,
            )
        return Field(token.text, parts)

    def choices(self) -> tuple[Any, ...]:
        token = self.advance()
        if token.kind != "[":
            raise self.fail(f"expected '[' after 'in', got {self.describe(token)}", token)
        values: list[Any] = []
        while True:
            token = self.advance()
            if token.kind == "]" and values:
                return tuple(values)
            if token.kind not in ("number", "string", "const"):
                if token.kind == "]":
                    raise self.fail("empty list after 'in'", token)
                raise self.fail(
                    f"expected a value in the list, got {self.describe(token)} "
                    "(list items are numbers, quoted strings, true, false or null)",
                    token,
                )
            values.append(token.value)
            token = self.advance()
            if token.kind == "]":
                return tuple(values)
            if token.kind != ",":
                raise self.fail(f"expected ',' or ']' in the list, got {self.describe(token)}", token)
            if self.peek().kind == "]":  # a trailing comma, as Python allows
                self.advance()
                return tuple(values)


_EXAMPLE_KEYS = {"params": "lr", "metrics": "acc", "summary": "best", "tags": "team", "source": "branch", "inputs": "train.digest"}


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Query:
    """A parsed ``--where`` expression: test records with :meth:`matches`.

    Immutable and cheap to share between threads; parsing happens once in
    :func:`parse`, evaluation never raises.
    """

    expression: str
    root: Node = field(repr=False, compare=False)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` satisfies the expression.

        Args:
            record: a plain mapping shaped like experiment.yaml plus params:
                ``{"id", "name", "status", "created", ..., "params": {...},
                "metrics": {"acc": {"last", "min", "max", "count", "last_step"}},
                "summary": {...}, "tags": {...}}``.
        """
        return self.root.evaluate(record)

    __call__ = matches

    def fields(self) -> set[str]:
        """The field paths the expression reads, as written (``{"params.lr", "metrics.acc"}``).

        Lets a listing load only the columns a filter needs.
        """
        return self.root.field_paths()


def parse(expression: str) -> Query:
    """Parse a ``--where`` expression.

    Raises:
        QueryError: the expression does not fit the grammar; ``column`` is the
            1-based position of the offending token (one past the end when
            the expression stops early).
    """
    return Query(expression, _Parser(expression).parse())


def compile_filter(expression: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate for ``expression``; ``None`` (no ``--where`` given) accepts everything.

    Raises:
        QueryError: as :func:`parse`.
    """
    if expression is None:
        return _accept_all
    return parse(expression).matches


def _accept_all(record: Mapping[str, Any]) -> bool:
    return True
