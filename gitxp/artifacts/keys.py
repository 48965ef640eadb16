"""The store's artifact key: find or create it, and record its fingerprint in gitxp.yaml."""

from __future__ import annotations

from typing import Any

from gitxp.artifacts import crypto


def ensure_store_key(store: Any) -> str:
    """Make sure a key exists for this store and its fingerprint is in gitxp.yaml; returns it.

    The key itself lives outside the repository (``GITXP_KEY`` or the user's
    config folder); only the fingerprint is committed.
    """
    key = crypto.ensure_key(store.store_id)
    fp = crypto.fingerprint(key)
    doc = store.document() or {}
    if fp not in (doc.get("keys") or []):
        store.set_keys([fp])
    return fp


def store_key(store: Any) -> bytes:
    """The key for writing encrypted artifacts (created on first use)."""
    ensure_store_key(store)
    key = crypto.load_key(store.store_id)
    assert key is not None
    return key


def key_loader(store: Any):  # type: ignore[no-untyped-def]
    """A function fingerprint → key for reading, with a clear error when missing."""

    def load(fingerprint: str) -> bytes:
        return crypto.require_key(store.store_id, fingerprint)

    return load
