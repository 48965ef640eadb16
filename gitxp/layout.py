"""Store format version 1: ids, paths, file names, YAML, version gate.

Everything that defines what the files on the store branch look like lives
here, so that a reader of the format has one place to look. Nothing in this
module touches git.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import secrets
from typing import Any

from .errors import FormatTooNewError, UnsafeDataError

FORMAT_VERSION = 1
DEFAULT_BRANCH = "gitxp"
STORE_FILE = "gitxp.yaml"
EXPERIMENTS_DIR = "experiments"

EXPERIMENT_FILE = "experiment.yaml"
PARAMS_FILE = "params.yaml"
METRICS_FILE = "metrics.parquet"
HARDWARE_FILE = "hardware.parquet"
ENVIRONMENT_FILE = "environment.yaml"
REQUIREMENTS_FILE = "requirements.txt"
OUTPUT_FILE = "output.log"
ARTIFACTS_FILE = "artifacts.yaml"
TABLES_DIR = "tables"
ARTIFACTS_DIR = "artifacts"
CODE_DIR = "code"

STATUSES = ("running", "completed", "failed", "interrupted", "crashed")
FINAL_STATUSES = ("completed", "failed", "interrupted", "crashed")

#: The largest YAML document read from the store; pulled data is untrusted.
MAX_YAML_BYTES = 8 * 2**20

_ID_RE = re.compile(r"^(\d{8})-(\d{6})-([0-9a-f]{12,32})$")
_NAME_RE = re.compile(r"^[^/\x00\\]{1,200}$")


def new_id(now: _dt.datetime | None = None) -> str:
    """A globally unique, time-sortable id: ``YYYYMMDD-HHMMSS-<48 random bits>``.

    48 random bits make a collision among a thousand ids started in the same
    second about one in 10**9; the time prefix keeps ``ls`` and ``sort`` in
    creation order.
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(6)}"


def is_id(text: str) -> bool:
    return bool(_ID_RE.match(text))


def id_day(exp_id: str) -> str:
    """The day shard (``YYYY-MM-DD``) an experiment's directory lives in."""
    m = _ID_RE.match(exp_id)
    if not m:
        raise UnsafeDataError(f"malformed experiment id {exp_id!r}", "the store may be damaged; run `git fsck`")
    d = m.group(1)
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


def experiment_dir(exp_id: str) -> str:
    """Path of an experiment's directory on the store branch."""
    return f"{EXPERIMENTS_DIR}/{id_day(exp_id)}/{exp_id}"


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def isotime(t: _dt.datetime | float | None = None) -> str:
    """UTC ISO 8601 with a ``Z``, second precision plus microseconds trimmed to ms."""
    if t is None:
        t = utcnow()
    elif isinstance(t, (int, float)):
        t = _dt.datetime.fromtimestamp(t, _dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------- YAML


def _loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _dumper() -> Any:
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return base


def load_yaml(data: bytes | str, *, what: str = "YAML") -> Any:
    """Parse YAML from the store with the safe loader and a size limit.

    Store data may come from a remote: never the full loader, never unbounded.
    """
    import yaml

    if len(data) > MAX_YAML_BYTES:
        raise UnsafeDataError(f"{what} is {len(data)} bytes, over the {MAX_YAML_BYTES} byte limit", "the store may be damaged or hostile")
    try:
        return yaml.load(data, Loader=_loader())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise UnsafeDataError(f"{what} is not valid YAML{where}", "the store may be damaged; see `git show`") from exc


def dump_yaml(obj: Any) -> str:
    """YAML a person reads in a forge's UI: block style, keys in given order."""
    import yaml

    return yaml.dump(obj, Dumper=_dumper(), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)


# ---------------------------------------------------------------- store file


def store_document(store_id: str, keys: list[str] | None = None) -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "store_id": store_id, "keys": list(keys or [])}


def check_store_document(doc: Any) -> dict[str, Any]:
    """Validate ``gitxp.yaml``; refuse a newer format rather than misread it."""
    if not isinstance(doc, dict) or "format" not in doc:
        raise UnsafeDataError(f"{STORE_FILE} on the store branch is malformed", "restore it from history with git")
    fmt = doc.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise UnsafeDataError(f"{STORE_FILE} has a non-integer format {fmt!r}", "restore it from history with git")
    if fmt > FORMAT_VERSION:
        raise FormatTooNewError(fmt, FORMAT_VERSION)
    if not isinstance(doc.get("store_id"), str):
        raise UnsafeDataError(f"{STORE_FILE} has no store_id", "restore it from history with git")
    if not isinstance(doc.get("keys", []), list):
        raise UnsafeDataError(f"{STORE_FILE} has a malformed key list", "restore it from history with git")
    return doc


# ---------------------------------------------------------------- paths


def check_name(name: str) -> str:
    """An experiment name: free text without path separators or NULs."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        from .errors import UsageError

        raise UsageError(f"invalid experiment name {name!r}", "use up to 200 characters without '/' or '\\'")
    return name


def safe_relpath(path: str, *, what: str = "path") -> str:
    """Normalise a store-relative path, refusing anything that could escape.

    Used for artifact names, table names and every path read from pulled data.
    """
    if not isinstance(path, str) or not path or "\x00" in path:
        raise UnsafeDataError(f"invalid {what} {path!r}", "use a relative path inside the project")
    p = path.replace("\\", "/")
    if p.startswith("/") or re.match(r"^[A-Za-z]:", p):
        raise UnsafeDataError(f"absolute {what} {path!r} refused", "use a path relative to the project")
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if not parts or any(s == ".." for s in parts) or any(s.lower() == ".git" for s in parts):
        raise UnsafeDataError(f"{what} {path!r} escapes its folder", "use a path without '..' or '.git'")
    return "/".join(parts)


def table_name(name: str) -> str:
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.\-]{1,100}$", name) or name.startswith("."):
        from .errors import UsageError

        raise UsageError(f"invalid table name {name!r}", "use letters, digits, '_', '-' and '.'")
    return name


def user_name() -> str:
    for var in ("GITXP_USER", "USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    return "unknown"
