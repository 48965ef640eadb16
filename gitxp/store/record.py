"""A stored experiment as readers see it: :class:`Record`, and :class:`Records`, a listing of them.

Listings build thousands of records from the index cache, so a record's
metadata stays encoded until someone reads it (the store decodes it,
:meth:`gitxp.store.store.Store._record_data`); heavy files load on demand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp.errors import StoreError, UnsafeDataError
from gitxp.plumbing.repo import Entry
from gitxp.store import layout

if TYPE_CHECKING:
    from gitxp.store.store import Store


class Record:
    """A stored experiment, read-only. Heavy files load on demand.

    Listings build thousands of these from the index cache, so the metadata
    stays an encoded blob until someone reads ``meta`` or ``params``.
    """

    __slots__ = {
        "store": "The :class:`Store` this record was read from.",
        "id": "The experiment id, ``YYYYMMDD-HHMMSS-<12 hex>``: unique, sortable by start time.",
        "tree": "The git tree id of the experiment's folder at the store tip it was read from.",
        "_meta": None, "_params": None, "_where": None,
    }

    def __init__(self, store: Store, id: str, tree: str, meta: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None, *, where: tuple[int, int] | None = None) -> None:
        self.store = store
        self.id = id
        self.tree = tree
        self._meta = meta
        self._params = params
        self._where = where

    @property
    def decoded(self) -> bool:
        """Whether ``meta`` and ``params`` are decoded (a listing leaves them encoded until read)."""
        return self._meta is not None and self._params is not None

    def decode(self, data: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None) -> None:
        """Decode ``meta`` and ``params`` now, or take ``data`` (them, decoded elsewhere: :meth:`Store.load`'s child)."""
        meta, params = self.store._record_data(self.id, self.tree, self._where) if data is None else data
        self._meta = self._meta if self._meta is not None else meta
        self._params = self._params if self._params is not None else params

    def cached(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(meta, params)`` decoded from the store's cache only (no git object read), or None."""
        return self.store._cached_data(self.id, self.tree, self._where)

    @property
    def unchecked(self) -> bool:
        """Whether the cache holds this record's metadata as a row of the store's listing index still to parse and check."""
        return self._meta is None and self.store._unchecked(self.id, self._where)

    @property
    def meta(self) -> Mapping[str, Any]:
        """``experiment.yaml`` as a mapping (status, times, command, source, summary, tags, metrics, error…); docs/format.md lists the fields."""
        if self._meta is None:
            self.decode()
        return self._meta  # type: ignore[return-value]

    @property
    def params(self) -> Mapping[str, Any]:
        """``params.yaml``: the parameters as logged (nested mappings kept)."""
        if self._params is None:
            self.decode()
        return self._params  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<Record {self.id} {self.name} {self.status}>"

    def _repr_html_(self) -> str:
        """How Jupyter shows a record: its fields as a table, escaped."""
        from gitxp.run.notebook import record_html

        return record_html(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and (self.id, self.tree) == (other.id, other.tree)

    def __hash__(self) -> int:
        return hash((self.id, self.tree))

    @property
    def name(self) -> str:
        """The experiment's name (the script's, or ``name=``/``--name``); names repeat, ids don't."""
        return str(self.meta.get("name", ""))

    @property
    def status(self) -> str:
        """``running`` (a live run pushed with --sync), ``completed``, ``failed``, ``interrupted`` or ``crashed``."""
        return str(self.meta.get("status", ""))

    @property
    def summary(self) -> Mapping[str, Any]:
        """What the script put in ``xp.summary`` (final values it chose to report); ``{}`` when nothing."""
        return self.meta.get("summary") or {}

    @property
    def tags(self) -> Mapping[str, Any]:
        """Tags set at start, by ``set_tag(s)`` or by ``gitxp tag``; ``{}`` when none."""
        return self.meta.get("tags") or {}

    @property
    def source(self) -> Mapping[str, Any]:
        """Where the code came from: ``branch``, ``commit`` and ``dirty`` (uncommitted edits recorded in :attr:`code_tree`)."""
        return self.meta.get("source") or {}

    @property
    def metric_summary(self) -> Mapping[str, Mapping[str, Any]]:
        """Per metric: ``last``, ``min``, ``max``, ``count``, ``last_step``, computed at commit, so listings need not read Parquet."""
        return self.meta.get("metrics") or {}

    @property
    def created(self) -> str:
        """When the run started, ISO 8601 in UTC (``2026-11-22T11:05:12.345Z``)."""
        return str(self.meta.get("created", ""))

    @property
    def environment(self) -> Mapping[str, Any] | None:
        """``environment.yaml``, or None when not recorded.

        Raises:
            UnsafeDataError: the file does not parse or has mistyped fields.
        """
        data = self.read_file(layout.ENVIRONMENT_FILE)
        if data is None:
            return None
        doc = layout.load_yaml(data, what=f"{self.id}/{layout.ENVIRONMENT_FILE}")
        problems = layout.environment_problems(doc)
        if problems:
            raise UnsafeDataError(f"{self.id}/{layout.ENVIRONMENT_FILE}: {problems[0]}", "the store may be damaged or hostile; see `git show`")
        return doc

    def read_file(self, path: str) -> bytes | None:
        """The bytes of ``path`` inside the experiment's folder (``metrics.parquet``, ``output.log``…), or None."""
        return self.store.repo.read_path(self.tree, path)

    def entry(self, path: str) -> Entry | None:
        """The git tree entry (mode, sha) of ``path`` inside the experiment's folder, or None."""
        return self.store.repo.lookup(self.tree, path)

    def metrics(self) -> Any:
        """The metric log as a pyarrow Table (empty with the schema when none)."""
        from gitxp.store import parquet as _metrics
        from gitxp.store.parquet_checks import from_parquet_bytes

        data = self.read_file(layout.METRICS_FILE)
        if data is None:
            return _metrics.schema().empty_table()
        return from_parquet_bytes(data)

    def hardware(self) -> Any:
        """The hardware samples (CPU, memory, GPU, disk, network per time) as a pyarrow Table, or None when not sampled."""
        from gitxp.store.parquet_checks import from_parquet_bytes

        data = self.read_file(layout.HARDWARE_FILE)
        return None if data is None else from_parquet_bytes(data, what=layout.HARDWARE_FILE)

    def table(self, name: str) -> Any:
        """A table logged with ``log_table`` as a pyarrow Table; StoreError when there is none by that name."""
        from gitxp.store.parquet_checks import from_parquet_bytes

        data = self.read_file(f"{layout.TABLES_DIR}/{layout.table_name(name)}.parquet")
        if data is None:
            raise StoreError(f"experiment {self.id} has no table {name!r}", f"see `gitxp show {self.id}`")
        return from_parquet_bytes(data, what=f"table {name}")

    def tables(self) -> list[str]:
        """The names of the tables logged with ``log_table``, sorted."""
        e = self.entry(layout.TABLES_DIR)
        if e is None or not e.is_tree:
            return []
        return sorted(x.name[: -len(".parquet")] for x in self.store.repo.read_tree(e.sha) if x.name.endswith(".parquet"))

    def output(self) -> str | None:
        """What the wrapped command printed (stdout and stderr, capped), or None when not captured."""
        data = self.read_file(layout.OUTPUT_FILE)
        return None if data is None else data.decode("utf-8", "replace")

    @property
    def code_tree(self) -> str | None:
        """The git tree id of the code as it ran (uncommitted edits included), or None without a snapshot."""
        e = self.entry(layout.CODE_DIR)
        return e.sha if e is not None and e.is_tree else None

    def read_artifact(self, path: str) -> bytes:
        """An artifact's verified, decrypted content (for small files; see extract_artifact)."""
        from gitxp.artifacts import keys
        from gitxp.artifacts import read as artifacts

        key = keys.load_key(self.store.store_id)
        return artifacts.read_bytes(self, path, key=key)

    def extract_artifact(self, path: str | None = None, dest: str | os.PathLike[str] | None = None) -> list[Path]:
        """Write an artifact (or a folder of them, or all) to ``dest``; see ``gitxp get``."""
        from gitxp.artifacts import keys
        from gitxp.artifacts import read as artifacts

        return artifacts.extract(self, path, dest, key_loader=keys.key_loader(self.store))

    def as_dict(self) -> dict[str, Any]:
        """The shape queries and tables work on."""
        d = dict(self.meta)
        d["params"] = dict(self.params)
        return d


class Records(list):  # type: ignore[type-arg]
    """A listing of records (what :meth:`Store.experiments` returns); a table in Jupyter."""

    def _repr_html_(self) -> str:
        from gitxp.run.notebook import records_html

        return records_html(self)
