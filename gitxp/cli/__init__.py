"""The ``gitxp`` command: parse arguments, make one library call, render.

This module is the single error boundary: a :class:`GitxpError` becomes one
``Error: …`` line on stderr (exit 2 for usage errors, 1 otherwise); anything
else is a bug and keeps its traceback. Heavy modules are imported inside the
commands, so ``gitxp --help`` starts in tens of milliseconds.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from gitxp import __version__
from gitxp.errors import GitxpError


#: Commands defined in their own modules, imported only when used or listed.
LAZY_COMMANDS = {
    "diff": "gitxp.cli.review:diff",
    "report": "gitxp.cli.review:report",
    "plot": "gitxp.cli.review:plot",
    "checkout": "gitxp.cli.review:checkout",
    "sweep": "gitxp.cli.sweep:sweep",
    "push": "gitxp.cli.remote:push",
    "pull": "gitxp.cli.remote:pull",
    "hooks": "gitxp.cli.remote:hooks",
    "ui": "gitxp.cli.ui:ui",
    "import": "gitxp.cli.importers:import_",
    "alias": "gitxp.cli.alias:alias",
    "start": "gitxp.cli.start:start",
    "recover": "gitxp.cli.start:recover",
    "log": "gitxp.cli.browse:log",
    "show": "gitxp.cli.browse:show",
    "table": "gitxp.cli.browse:table",
    "metrics": "gitxp.cli.browse:metrics_cmd",
    "init": "gitxp.cli.store_cmds:init",
    "tag": "gitxp.cli.store_cmds:tag",
    "note": "gitxp.cli.store_cmds:note",
    "rm": "gitxp.cli.store_cmds:rm",
    "artifacts": "gitxp.cli.store_cmds:artifacts",
    "get": "gitxp.cli.store_cmds:get",
    "key": "gitxp.cli.store_cmds:key",
    "env": "gitxp.cli.store_cmds:env",
}


#: Commands that read the store, print and exit. They run without Python's cyclic garbage
#: collector, as Mercurial's ``nogc`` does for its bulk reads: a table of 20,000 experiments
#: builds over a million long-lived objects, and each full collection (four of them, as the
#: heap grows) walks them all to free nothing, 15-20 % of the command. Their objects form no
#: cycles worth collecting before the process ends; long-running commands keep the collector.
GC_PAUSED = frozenset({"log", "table", "show", "diff", "metrics"})


class GitxpGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if self._lazy(n) is not None)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._lazy(cmd_name)

    def _lazy(self, name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(name)
        if target is None:
            return None
        import importlib

        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr, None)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if name in GC_PAUSED and ctx.parent is None:
            import gc

            gc.disable()
        return name, cmd, rest

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        extra["standalone_mode"] = False
        try:
            rv = super().main(args=args, prog_name=prog_name or "gitxp", **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx else "gitxp"
            click.echo(f"Error: {exc.format_message()} (see `{path} --help`)", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except GitxpError as exc:
            click.echo(f"Error: {exc}", err=True)
            if getattr(exc, "candidates", None):
                for c in exc.candidates:  # type: ignore[attr-defined]
                    click.echo(f"  {c}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=GitxpGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="gitxp")
@click.option("-C", "repo", default=".", metavar="PATH", help="Run as if started in PATH.")
@click.pass_context
def cli(ctx: click.Context, repo: str) -> None:
    """gitxp: experiments stored on a branch of your own git repository.

    \b
    Example:
      gitxp start -- python train.py --lr 0.1
      gitxp log
      gitxp show @
    """
    ctx.obj = {"repo": repo}




def main() -> None:
    """Console-script entry point: runs one command, then the process exits."""
    try:
        cli.main(prog_name="gitxp")
    finally:
        # Python's exit ends with a full cyclic collection over every object still alive: 20 ms
        # after `gitxp start`, more after a large table, to free memory the process is giving back
        # anyway. Frozen objects are skipped by it (exit handlers, ``with`` blocks and objects
        # freed by their last reference still run and close as before).
        import gc

        gc.freeze()
