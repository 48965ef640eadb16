"""``gitxp alias``: exclusive names for experiments (see :mod:`gitxp.store.aliases`)."""

from __future__ import annotations

import click

from gitxp.cli._common import store_of as _store


@click.group()
def alias() -> None:
    """Name one experiment each: `production`, `best`, `baseline`.

    An alias names exactly one experiment; setting it again moves it.
    `alias/NAME` is then a ref wherever a ref is taken. Aliases live on the
    store branch (aliases.yaml), travel with push and pull, and two clones
    that changed the same alias agree on the later change.

    \b
    Example:
      gitxp alias set production @
      gitxp show alias/production
      gitxp alias list
    """


@alias.command("set")
@click.argument("name")
@click.argument("ref")
@click.pass_context
def set_(ctx: click.Context, name: str, ref: str) -> None:
    """Point alias NAME at the experiment REF (moving it if it is set).

    \b
    Example:
      gitxp alias set production a3f9
      gitxp alias set best alias/candidate
    """
    from gitxp.store import aliases

    store = _store(ctx)
    new, before = aliases.set_alias(store, name, ref)
    rec = store.get(new)
    moved = f" (was {before})" if before and before != new else ""
    click.echo(f"alias/{name} -> {new} {rec.name}{moved}")


@alias.command("rm")
@click.argument("name")
@click.pass_context
def rm(ctx: click.Context, name: str) -> None:
    """Remove alias NAME (the experiment stays).

    \b
    Example:
      gitxp alias rm production
    """
    from gitxp.store import aliases

    was = aliases.remove_alias(_store(ctx), name)
    click.echo(f"removed alias/{name} (was {was})")


@alias.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """The aliases that are set: name, experiment, when and by whom.

    \b
    Example:
      gitxp alias list
    """
    from gitxp.store import aliases

    store = _store(ctx)
    names = {r.id: r.name for r in store.index()}
    for name, entry in aliases.entries(store).items():
        target = names.get(entry["id"], "(not in the store)")
        click.echo(f"{name}\t{entry['id']}\t{target}\t{entry.get('set_at')}\t{entry.get('set_by') or ''}")
