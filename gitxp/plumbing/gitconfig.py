"""git's config format: a pulled ``.gitmodules`` read from bytes, and a repository's settings, through dulwich's reader."""

from __future__ import annotations

import os
import sys
from io import BytesIO
from pathlib import Path
from typing import Any

Section = tuple[bytes, ...]


def parse_config(data: bytes) -> list[tuple[Section, list[tuple[bytes, bytes]]]] | None:
    """Each section of a git config text with its (key, value) pairs, in file order; None when it does not parse."""
    from dulwich.config import ConfigFile

    try:
        config = ConfigFile.from_file(BytesIO(data))
    except Exception:  # noqa: BLE001 - dulwich raises many types for text it cannot read
        return None
    return [(tuple(section), list(config.items(section))) for section in config.sections()]


class ConfigStack:
    """``git config`` values for one repository: its config file, then the user's and the system's.

    dulwich's parser (~8 ms to import) reads them only when one of them
    names the section asked for, or includes another file: every command
    asks for ``gitxp.*``, which few files name, and reading a few small
    files is cheaper. Every file git or dulwich may read is looked at,
    whatever the environment says; settings given in the environment
    (``git -c``) always take the parser.
    """

    def __init__(self, repo_config: Path) -> None:
        self.repo_config = repo_config
        self._texts: bytes | None = None
        self._stack: Any = None

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        if self._stack is None and not self._mentions(section):
            return default
        if self._stack is None:
            from dulwich.config import ConfigFile, StackedConfig

            backends = []
            try:
                backends.append(ConfigFile.from_path(str(self.repo_config)))
            except (OSError, ValueError):
                pass
            backends.extend(StackedConfig.default_backends())
            self._stack = StackedConfig(backends)
        try:
            value = self._stack.get((section.encode(),), key.encode())
        except KeyError:
            return default
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    def _mentions(self, section: str) -> bool:
        if sys.platform == "win32" or "GIT_CONFIG_PARAMETERS" in os.environ or "GIT_CONFIG_COUNT" in os.environ:
            return True
        if self._texts is None:
            home = os.path.expanduser("~")
            xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
            paths = [str(self.repo_config), os.path.join(home, ".gitconfig"), os.path.join(xdg, "git", "config"), "/etc/gitconfig",
                     os.environ.get("GIT_CONFIG_GLOBAL") or "", os.environ.get("GIT_CONFIG_SYSTEM") or ""]
            texts = []
            for path in filter(None, paths):
                try:
                    with open(path, "rb") as f:
                        texts.append(f.read().lower())
                except OSError:  # absent or unreadable
                    pass
            self._texts = b"\n".join(texts)
        return section.lower().encode() in self._texts or b"include" in self._texts
