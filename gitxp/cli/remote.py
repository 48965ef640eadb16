"""``gitxp push``, ``gitxp pull`` and ``gitxp hooks``: thin commands over remote.py and hooks.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from gitxp.errors import RemoteError


def _repo(ctx: click.Context) -> str:
    return (ctx.obj or {}).get("repo", ".")


def _sync_command(hook_help: str) -> Callable[[Callable[..., Any]], click.Command]:
    """`push` and `pull` take the same REMOTE, --force, -q and hidden --hook (whose help differs)."""

    def decorate(f: Callable[..., Any]) -> click.Command:
        decorators: list[Callable[[Any], Any]] = [
            click.command(),
            click.argument("remote", required=False),
            click.option("--force", is_flag=True, help="Merge even a store with a different store id."),
            click.option("-q", "--quiet", is_flag=True, help="Print nothing on success."),
            click.option("--hook", is_flag=True, hidden=True, help=hook_help),
            click.pass_context,
        ]
        for deco in reversed(decorators):
            f = deco(f)
        return f  # type: ignore[return-value]

    return decorate


@_sync_command("Called from the pre-push hook: quiet, no store is fine.")
def push(ctx: click.Context, remote: str | None, force: bool, quiet: bool, hook: bool) -> None:
    """Push the experiment store to REMOTE (default: its upstream, else origin).

    When others pushed meanwhile, their experiments are fetched, checked
    and merged first, then the push is tried again. REMOTE is a remote's
    name, a path, or a file://, ssh or https URL.

    \b
    Example:
      gitxp push
      gitxp push origin
      gitxp push /mnt/shared/experiments.git
    """
    from gitxp.remote import sync as _remote

    try:
        result = _remote.push(_repo(ctx), remote, force=force, quiet=quiet or hook, verify=not hook)
    except RemoteError as exc:
        if hook and "no experiment store" in str(exc):
            return
        raise
    if not (quiet or hook):
        click.echo(result.describe("push"))


@_sync_command("Called from the post-merge hook: quiet, no remote is fine.")
def pull(ctx: click.Context, remote: str | None, force: bool, quiet: bool, hook: bool) -> None:
    """Fetch REMOTE's experiment store, check it, and merge it into yours.

    REMOTE defaults to the store branch's upstream, else origin. The
    fetched store is untrusted: unsafe paths, symlinks, malformed YAML or
    Parquet refuse the whole pull and leave your store unchanged. In a
    fresh clone, the local store branch is created from the remote's.

    \b
    Example:
      gitxp pull
      gitxp pull origin
      gitxp pull --force other-team   # a store with another store id
    """
    from gitxp.remote import sync as _remote

    try:
        result = _remote.pull(_repo(ctx), remote, force=force, quiet=quiet or hook)
    except RemoteError as exc:
        if hook and "no remote named" in str(exc):
            return
        raise
    if not (quiet or hook):
        if result.action == "nothing":
            click.echo(f"{result.remote} has no experiment store yet", err=True)
        else:
            click.echo(result.describe("pull"))


@click.group()
def hooks() -> None:
    """Git hooks that push, pull and cite experiments along with your code.

    \b
    Example:
      gitxp hooks install
      gitxp hooks uninstall
    """


@hooks.command()
@click.pass_context
def install(ctx: click.Context) -> None:
    """Install pre-push, post-merge and prepare-commit-msg hooks.

    Existing hooks are kept and run first (renamed NAME.gitxp-chained);
    core.hooksPath is respected. Installing again updates gitxp's scripts.
    Your pre-push hook runs once per `git push`: the store's own push from
    the hook runs no hook (`gitxp push` by hand runs it once). The
    pre-commit framework may be installed before or after gitxp (it then
    runs gitxp's script as NAME.legacy).

    \b
    Example:
      gitxp hooks install
      git push            # now pushes the store too
    """
    from gitxp.remote import hooks as _hooks

    for line in _hooks.install(_repo(ctx)):
        click.echo(line)


@hooks.command()
@click.pass_context
def uninstall(ctx: click.Context) -> None:
    """Remove gitxp's hooks and restore the hooks that were there before.

    With the pre-commit framework installed after gitxp, your original hook
    goes back to NAME.legacy, where pre-commit runs it.

    \b
    Example:
      gitxp hooks uninstall
    """
    from gitxp.remote import hooks as _hooks

    for line in _hooks.uninstall(_repo(ctx)):
        click.echo(line)


@hooks.command(hidden=True)
@click.argument("message_file")
@click.pass_context
def trailer(ctx: click.Context, message_file: str) -> None:
    """Add the Gitxp-Experiments trailer to MESSAGE_FILE (used by prepare-commit-msg).

    \b
    Example:
      gitxp hooks trailer .git/COMMIT_EDITMSG
    """
    from gitxp.remote import hooks as _hooks

    _hooks.add_trailer(message_file, _repo(ctx))
    sys.stdout.flush()
