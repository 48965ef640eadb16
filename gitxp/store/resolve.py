"""Turn what a user types (``@``, ``@~2``, ``a3f9``, a name, an id) into one experiment."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

from gitxp.errors import AmbiguousRefError, RefError

T = TypeVar("T")

_REL = re.compile(r"^@(?:~(\d+))?$")


ALIAS_PREFIX = "alias/"


def resolve(records: Sequence[T], ref: str, aliases: Mapping[str, str] | None = None) -> T:
    """Resolve ``ref`` against ``records`` (newest first; each has ``.id`` and ``.name``).

    Order: ``alias/NAME`` (through ``aliases``, name to id); ``@``/``@~N``;
    an exact id; a name (its newest experiment); a prefix of the id; a
    prefix of the id's random part. A prefix matching several experiments
    is an error listing them — never a guess.
    """
    ref = ref.strip()
    if not ref:
        raise RefError(ref)
    if ref.startswith(ALIAS_PREFIX):
        target = (aliases or {}).get(ref[len(ALIAS_PREFIX):])
        if target is None:
            raise RefError(ref, "see `gitxp alias list` for the aliases that are set")
        for r in records:
            if r.id == target:  # type: ignore[attr-defined]
                return r
        raise RefError(ref, f"it names {target}, which is not in the store (removed?); move it with `gitxp alias set`")
    m = _REL.match(ref)
    if m:
        n = int(m.group(1) or 0)
        if n >= len(records):
            raise RefError(ref, f"the store holds {len(records)} experiment(s)")
        return records[n]
    for r in records:
        if r.id == ref:  # type: ignore[attr-defined]
            return r
    for r in records:
        if r.name == ref:  # type: ignore[attr-defined]
            return r
    if len(ref) >= 4 or "-" in ref:
        hits = [r for r in records if r.id.startswith(ref)]  # type: ignore[attr-defined]
        if not hits:
            low = ref.lower()
            hits = [r for r in records if r.id.rsplit("-", 1)[-1].startswith(low)]  # type: ignore[attr-defined]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise AmbiguousRefError(ref, [f"{r.id} {r.name}" for r in hits])  # type: ignore[attr-defined]
    elif ref and all(c in "0123456789abcdef" for c in ref.lower()):
        raise RefError(ref, "use at least 4 characters of the id")
    raise RefError(ref)
