"""Which notebook a Jupyter kernel runs, for naming the experiment after it.

A kernel's ``__main__`` has no ``__file__`` and ``sys.argv[0]`` is
``ipykernel_launcher``, so the notebook is found from what the front ends
document instead, cheapest first and without talking to any server:

* VS Code's Jupyter extension puts ``__vsc_ipynb_file__`` (the absolute
  path) in the notebook's global namespace;
* jupyter-server ≥ 2 starts every kernel of a session with
  ``JPY_SESSION_NAME`` set to the notebook's path (absolute, or relative to
  the server's root when the session has no name), which JupyterLab,
  Notebook 7 and JupyterHub all go through.

A kernel neither of them started (plain ``jupyter console``, an old server)
gives no path; the experiment is then named ``notebook``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitxp.store.record import Record

__all__ = ["in_kernel", "notebook_path"]


def in_kernel() -> bool:
    """True inside a Jupyter (ipykernel) kernel."""
    return "ipykernel" in sys.modules and getattr(sys.modules.get("__main__"), "__file__", None) is None


def notebook_path() -> Path | None:
    """The ``.ipynb`` the running kernel executes, when a front end said so."""
    main = sys.modules.get("__main__")
    vsc = getattr(main, "__vsc_ipynb_file__", None)
    if isinstance(vsc, str) and vsc:
        return Path(vsc)
    if not in_kernel():
        return None
    session = os.environ.get("JPY_SESSION_NAME", "")
    if not session.endswith(".ipynb"):
        return None
    path = Path(session)
    if path.is_absolute():
        return path
    # relative to the server's root; the kernel runs in the notebook's folder
    for candidate in (Path.cwd() / path, Path.cwd() / path.name):
        if candidate.is_file():
            return candidate
    return path


# ---------------------------------------------------------------------- HTML

#: A listing shows this many rows in a notebook; the rest are counted.
HTML_MAX_ROWS = 200


def _cell(value: object) -> str:
    import html

    if value is None:
        return ""
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    return html.escape(str(value))


def record_html(record: Record) -> str:
    """One experiment as a two-column table (field, value); every value escaped."""
    from gitxp.store.tables import row

    cells = "".join(f"<tr><th style=\"text-align:left\">{_cell(k)}</th><td style=\"text-align:left\">{_cell(v)}</td></tr>" for k, v in row(record).items())
    return f"<table class=\"gitxp-record\">{cells}</table>"


def records_html(records: Sequence[Record]) -> str:
    """A listing as a table, one row per experiment, columns as in ``gitxp table``; every value escaped."""
    from gitxp.store.tables import BASE_COLUMNS, row, select

    rows = [row(r) for r in records[:HTML_MAX_ROWS]]
    columns = select(rows, None) if rows else list(BASE_COLUMNS)
    head = "".join(f"<th>{_cell(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    more = len(records) - len(rows)
    tail = f"<p>… and {more} more</p>" if more > 0 else ""
    return f"<table class=\"gitxp-records\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{tail}"
