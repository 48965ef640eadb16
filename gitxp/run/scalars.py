"""Metrics read out of a wrapped command's output lines.

:func:`parse_scalars` reads ``key=value`` / ``key: value`` scalars for
``gitxp start --scalars``; :class:`ScalarPattern` is one ``--scalar
NAME=REGEX``. :mod:`gitxp.run.process` hands the lines over; nothing here
knows about processes or experiments.
"""

from __future__ import annotations

import re

from gitxp.errors import UsageError

__all__ = ["ScalarPattern", "parse_scalars"]

_KEY = r"[A-Za-z_][A-Za-z0-9_]*(?:[./\-][A-Za-z0-9_]+)*"
_NUMBER = r"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|(?i:nan|inf(?:inity)?))"
#: A whole ``KEY=NUMBER`` token; a logger's ``LEVEL:name:`` prefix may come first.
_PAIR_TOKEN = re.compile(rf"(?:[A-Za-z_][\w.]*:)*(?P<key>{_KEY})=(?P<value>{_NUMBER})")
#: A ``KEY:`` token (its value is what follows, up to the next key or separator).
_KEY_TOKEN = re.compile(rf"(?P<q>['\"]?)(?P<key>{_KEY})(?P=q):")
_NUMBER_TOKEN = re.compile(_NUMBER)
#: What may end a token without belonging to it: list separators, a printed dict's or tqdm's closing bracket.
_TRAILING = ",;]}"


def _token(raw: str) -> tuple[str, bool]:
    """A token without the punctuation around it, and whether it ended a value (``0.5,``)."""
    text = raw[1:] if raw.startswith("{") else raw
    stripped = text.rstrip(_TRAILING)
    return stripped, stripped != text


def parse_scalars(line: str) -> dict[str, float]:
    """Read ``KEY=NUMBER`` / ``KEY: NUMBER`` scalars from one output line.

    The rule (``gitxp start --help``, ``--scalars``): a scalar is a whole
    whitespace-separated token ``KEY=NUMBER``, or a token ``KEY:`` whose
    value -- everything up to the next key, a separator token such as ``-``
    or ``|``, a ``,`` or the end of the line -- is one number, or a decimal
    number followed by plain words (``Loss: 0.000953 after 395 batches``,
    as PyTorch's regression example prints). So a number is never taken
    out of prose or an equation: ``Learned function: y = -13.59 x^1``
    (``y = …`` is three tokens), ``classifier SVC(gamma=0.001):`` (the
    token starts with ``SVC(``), ``Note: 3 files skipped`` (a count in a
    sentence) and ``Epoch: 1 [0/600]`` give nothing, while
    ``Train Epoch: 1 [0/600]  Loss: 2.30`` gives ``Loss``.
    ::

        KEY    := [A-Za-z_] \\w* ( ("/" | "." | "-") \\w+ )*   (quoted '' or "" before a colon)
        NUMBER := 3, -0.25, 1e-3, .5, +2., nan, inf, -Infinity

    ``--lr=0.1`` (a key starts with a letter or ``_``), ``3s``, ``91%``,
    ``1,000``, ``3/10``, times (``12:30:01``) and ports (``localhost:8080``)
    give nothing: a wrong metric is worse than a missing one. A token may
    end in ``,``, ``;``, ``]`` or ``}`` and start with ``{`` (printed dicts,
    tqdm postfixes); a ``KEY=NUMBER`` token may carry a logger's
    ``INFO:root:`` prefix. The last of a repeated key wins. ``step`` comes
    back like any key; the caller uses it as the step of the other values.

    >>> parse_scalars("step=3 loss=0.25 acc: 0.9")
    {'step': 3.0, 'loss': 0.25, 'acc': 0.9}
    """
    found: dict[str, float] = {}
    tokens = line.split()
    i, n = 0, len(tokens)
    while i < n:
        text, _ = _token(tokens[i])
        i += 1
        pair = _PAIR_TOKEN.fullmatch(text)
        if pair:
            found[pair.group("key")] = float(pair.group("value"))
            continue
        key = _KEY_TOKEN.fullmatch(text)
        if not key:
            continue
        value: list[str] = []
        while i < n:
            nxt, ends = _token(tokens[i])
            if _KEY_TOKEN.fullmatch(nxt) or _PAIR_TOKEN.fullmatch(nxt) or not any(c.isalnum() for c in nxt):
                break
            value.append(nxt)
            i += 1
            if ends:
                break
        if value and _NUMBER_TOKEN.fullmatch(value[0]) and (len(value) == 1 or _measurement_then_words(value)):
            found[key.group("key")] = float(value[0])
    return found


_WORD = re.compile(r"[A-Za-z]+|[0-9]+")


def _measurement_then_words(value: list[str]) -> bool:
    """``0.000953 after 395 batches``: a decimal, then plain words (never ``3 files`` or ``-13.59 x^1``)."""
    return (any(c in value[0] for c in ".eE") and value[1].isalpha()
            and all(_WORD.fullmatch(t) for t in value[1:]))


class ScalarPattern:
    """One ``--scalar NAME=REGEX``: a metric read from output lines the regex matches.

    The regex is searched in each line (anchor it with ``^``/``$`` to match
    whole lines). The value is its first group that is not named ``step``;
    a group named ``step``, when present and matched, is the step (an
    integer). A line whose value is not a number is skipped.
    """

    def __init__(self, spec: str) -> None:
        name, sep, pattern = spec.partition("=")
        name = name.strip()
        example = "e.g. --scalar 'loss=^(?P<step>\\d+) ([-+.\\deE]+)$'"
        if not sep or not name or not pattern:
            raise UsageError(f"bad --scalar {spec!r}", f"write --scalar NAME=REGEX, {example}")
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"--scalar {name}: invalid regex {pattern!r}: {exc}", f"fix the regex, {example}") from None
        step_group = self.regex.groupindex.get("step")
        groups = [g for g in range(1, self.regex.groups + 1) if g != step_group]
        if not groups:
            raise UsageError(f"--scalar {name}: the regex {pattern!r} has no group around the value",
                             f"put ( ) around the number, {example}")
        self.name, self.value_group, self.step_group = name, groups[0], step_group

    def match(self, line: str) -> tuple[float, int | None] | None:
        """``(value, step)`` from one line, or None when it does not hold this metric."""
        m = self.regex.search(line)
        if m is None or m.group(self.value_group) is None:
            return None
        try:
            value = float(m.group(self.value_group).strip())
        except ValueError:
            return None
        step = None
        if self.step_group is not None and m.group(self.step_group) is not None:
            try:
                step = int(m.group(self.step_group))
            except ValueError:
                step = None
        return value, step if step is None or step >= 0 else None
