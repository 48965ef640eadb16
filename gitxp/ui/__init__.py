"""``gitxp ui``: a local, read-only web UI over the store.

:mod:`gitxp.ui.api` answers the JSON questions (over :class:`gitxp.store.store.Store`,
its listing index, :mod:`gitxp.store.query` and staging, so the CLI and the page
agree); :mod:`gitxp.ui.server` is the HTTP layer (routing, token, headers);
``static/`` holds the page and its charts, served from the package only.
Nothing here is imported by ``import gitxp`` or ``gitxp --help``.
"""
