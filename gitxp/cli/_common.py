"""Helpers the command modules share: the store, pull/recover hints, KEY=VALUE options, ``-o`` files."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from gitxp.errors import UsageError

if TYPE_CHECKING:
    from gitxp.store.record import Record
    from gitxp.store.store import Store


class OutputFile(click.Path):
    """A file a command writes (``-o``): refused up front when its folder is missing.

    Otherwise the command does its work and then fails with a traceback.
    """

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        folder = os.path.dirname(os.fsdecode(path))
        if folder and not os.path.isdir(folder):
            problem = f"{folder!r} is a file, not a folder" if os.path.exists(folder) else f"the folder {folder!r} does not exist; create it first"
            self.fail(f"{os.fsdecode(path)!r}: {problem}", param, ctx)
        return path


def store_of(ctx: click.Context) -> Store:
    from gitxp.store.store import Store

    return Store.open(ctx.find_root().obj["repo"])


def warn_unrecovered(store: Store) -> None:
    dead = store.unrecovered()
    if dead:
        click.echo(f"gitxp: {len(dead)} experiment(s) died without finishing ({', '.join(d[-12:] for d in dead[:3])}); run `gitxp recover`", err=True)


def hint_pull(store: Store) -> None:
    """A fresh clone looks empty until `gitxp pull`: say so, with the count, in one line."""
    if store.exists():
        return  # the usual case, without importing the remote machinery on every listing
    from gitxp.remote.sync import pull_hint

    hint = pull_hint(store)
    if hint:
        click.echo(hint, err=True)


def kv(values: tuple[str, ...], what: str) -> dict[str, Any]:
    from gitxp.params import parse_scalar, set_dotted

    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad {what} {item!r}", f"write {what} KEY=VALUE, e.g. {what} lr=0.1")
        set_dotted(out, key.strip(), parse_scalar(value))
    return out



def gather(store: Store, refs: tuple[str, ...], where: str | None) -> list[Record]:
    """The experiments REFs name, then every other one matching --where (each once, in that order)."""
    from gitxp.review import diff as review

    recs = review.get_all(store, refs) if refs else []
    if where is not None:
        seen = {r.id for r in recs}
        recs += [r for r in store.experiments(where=where) if r.id not in seen]
    return recs


def reject_unknown_option(ctx: click.Context, command: tuple[str, ...]) -> None:
    """A command line's first word that looks like an option is one gitxp does not know, not the command to run.

    ``start`` and ``sweep`` pass unknown options through so that ``gitxp start
    python train.py --lr 1`` needs no ``--``; without this check
    ``gitxp start -q -- cmd`` tried to run a program called ``-q``.
    """
    if command and command[0].startswith("-") and command[0] != "-":
        import difflib

        known = [o for p in ctx.command.params for o in getattr(p, "opts", []) if o.startswith("-")]
        raise click.NoSuchOption(command[0].split("=", 1)[0], possibilities=difflib.get_close_matches(command[0], known), ctx=ctx)
