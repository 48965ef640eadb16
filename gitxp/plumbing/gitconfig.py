"""git's config file format read from bytes (a pulled ``.gitmodules``), through dulwich's reader."""

from __future__ import annotations

from io import BytesIO

Section = tuple[bytes, ...]


def parse_config(data: bytes) -> list[tuple[Section, list[tuple[bytes, bytes]]]] | None:
    """Each section of a git config text with its (key, value) pairs, in file order; None when it does not parse."""
    from dulwich.config import ConfigFile

    try:
        config = ConfigFile.from_file(BytesIO(data))
    except Exception:  # noqa: BLE001 - dulwich raises many types for text it cannot read
        return None
    return [(tuple(section), list(config.items(section))) for section in config.sections()]
