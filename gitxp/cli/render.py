"""The terminal side of output: the pager and the terminal's width (formatting is in gitxp.text)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from gitxp.text import (  # noqa: F401  (the CLI modules format through render)
    clean,
    fmt_duration,
    fmt_size,
    fmt_value,
    isatty,
    sparkline,
    status_colour,
    style,
    text_columns,
    text_table,
    use_colour,
    SPARK,
)


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def page(text: str) -> None:
    """Through ``$GIT_PAGER``/``$PAGER`` (default ``less -FRX``) on a terminal, like git; plain otherwise."""
    text = clean(text, multiline=True, keep_style=True)
    if not text.endswith("\n"):
        text += "\n"
    if not isatty(sys.stdout) or os.environ.get("GITXP_NO_PAGER"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    pager = os.environ.get("GITXP_PAGER") or os.environ.get("GIT_PAGER") or os.environ.get("PAGER") or "less"
    if pager in ("cat", ""):
        sys.stdout.write(text)
        return
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    try:
        proc = subprocess.Popen(pager, shell=True, stdin=subprocess.PIPE, env=env)
        assert proc.stdin is not None
        try:
            proc.stdin.write(text.encode("utf-8", "replace"))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        proc.wait()
    except OSError:
        sys.stdout.write(text)
