"""``gitxp ui``: parse options, call :func:`gitxp.ui.server.serve`.

Imported lazily by :mod:`gitxp.cli` (``LAZY_COMMANDS``); the server itself is
imported only when the command runs, so ``gitxp --help`` stays cheap.
"""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, metavar="HOST", help="Address to listen on; anything but loopback requires the printed token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, metavar="PORT", help="Port to listen on; 0 picks a free one.")
@click.option("--no-open", is_flag=True, help="Do not open a browser; just print the URL.")
@click.option("-C", "repo", default=None, metavar="PATH", help="Serve the store of the repository at PATH.")
@click.pass_context
def ui(ctx: click.Context, host: str, port: int, no_open: bool, repo: str | None) -> None:
    """Browse, compare and review experiments in a local, read-only web page.

    Prints one line, `gitxp ui: http://HOST:PORT/`, once it accepts requests;
    Ctrl-C stops it. Everything is served from the installed package: it
    works offline. Off loopback (`--host 0.0.0.0`) the URL carries a token
    that every request needs.

    \b
    Example:
      gitxp ui
      gitxp ui --port 0 --no-open
      gitxp ui -C ../other-project --host 0.0.0.0
    """
    from gitxp.ui.server import serve

    serve(repo or ctx.find_root().obj["repo"], host=host, port=port, open_browser=not no_open)
