"""Store format version 1: ids, paths, file names, YAML, version gate.

Everything that defines what the files on the store branch look like lives
here, so that a reader of the format has one place to look. Nothing in this
module touches git.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from typing import Any

from gitxp.errors import FormatTooNewError, UnsafeDataError

FORMAT_VERSION = 1
from gitxp.env import DEFAULT_BRANCH  # noqa: E402  (the one default lives with the other settings)
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

# Validation limits: what gitxp reads from a store (pulled data is untrusted)
# and therefore the most it may write. docs/format.md, "Validation limits",
# states each one; keep the two in step.

#: The largest YAML document read from the store.
MAX_YAML_BYTES = 8 * 2**20
#: The deepest nesting of mappings and lists in one YAML document (the top level is 1).
MAX_YAML_DEPTH = 64
#: Nodes that aliases (``*name``, ``<<: *name``) may add to a document in all:
#: a few kilobytes of "billion laughs" otherwise expand to gigabytes. gitxp
#: itself never writes aliases.
MAX_YAML_ALIAS_NODES = 100_000
#: The longest experiment name, tag key, parameter key or metric name.
MAX_NAME_CHARS = 200

# What gitxp accepts when logging, so that what it writes stays within the
# reader's limits above (experiment.yaml holds the metric summary, tags,
# summary and notes; params.yaml the params): the worst case of each is
# refused at logging time, when the user can still act, never at finish.
# 10,000 names of 200 characters make ~3.5 MB of summary, the notes 1 MiB,
# the tags ~1.2 MB, a command line at most 2 MiB (Linux ARG_MAX): under 8 MiB.

#: Distinct metric names in one experiment (each adds its summary to experiment.yaml).
MAX_METRIC_NAMES = 10_000
#: ``params.yaml`` as written (half the reader's limit, for values merged from attached scripts).
MAX_PARAMS_BYTES = MAX_YAML_BYTES // 2
#: The notes of an experiment, all together, in UTF-8 bytes.
MAX_NOTES_BYTES = 2**20
#: Tags in one experiment, and the longest tag value (text).
MAX_TAGS = 1_000
MAX_TAG_VALUE_CHARS = 1_000

_ID_RE = re.compile(r"^(\d{8})-(\d{6})-([0-9a-f]{12,32})$")
_NAME_RE = re.compile(r"^[^/\x00\\]{1,200}$")
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{16}$")


def new_id(now: _dt.datetime | None = None) -> str:
    """A globally unique, time-sortable id: ``YYYYMMDD-HHMMSS-<48 random bits>``.

    48 random bits make a collision among a thousand ids started in the same
    second about one in 10**9; the time prefix keeps ``ls`` and ``sort`` in
    creation order.
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{os.urandom(6).hex()}"  # secrets.token_hex(6), without importing secrets


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
    from gitxp.store.safeyaml import Loader

    return Loader


_DUMPER: Any = None


def _dumper() -> Any:
    """The safe dumper, never writing anchors and aliases (the reader bounds them)."""
    global _DUMPER
    if _DUMPER is None:
        import yaml

        class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
            def ignore_aliases(self, data: Any) -> bool:
                return True

        _DUMPER = _Dumper
    return _DUMPER


def yaml_limits_problem(data: bytes | str, loader: Any, *, scan: bool = False) -> str | None:
    """What makes a YAML text too costly to construct, before anything is constructed.

    Size first; then, when the text may hold aliases (a ``*``) or ``scan``
    is set, one pass over the parser's events bounds nesting depth and the
    nodes aliases add (merge keys ``<<: [*a, *a]`` included), and refuses an
    alias to a node that contains it. Without aliases a document's nodes are
    bounded by its size; its depth is checked after loading by
    :func:`yaml_depth_problem` (cheaper than a second parse). A syntax error
    is left to the loader, which reports it with its line.
    """
    if len(data) > MAX_YAML_BYTES:
        return f"{len(data)} bytes, over the {MAX_YAML_BYTES} byte limit"
    if not scan and ("*" not in data if isinstance(data, str) else b"*" not in data):
        return None
    import yaml

    open_: list[list[Any]] = []  # [anchor, expanded size] of each collection being read
    sizes: dict[str, int] = {}
    added = 0
    try:
        for ev in yaml.parse(data, Loader=loader):
            if isinstance(ev, yaml.CollectionStartEvent):
                if len(open_) >= MAX_YAML_DEPTH:
                    return f"nesting deeper than {MAX_YAML_DEPTH} levels"
                open_.append([ev.anchor, 1])
                continue
            if isinstance(ev, yaml.CollectionEndEvent):
                anchor, size = open_.pop()
            elif isinstance(ev, yaml.ScalarEvent):
                anchor, size = ev.anchor, 1
            elif isinstance(ev, yaml.AliasEvent):
                anchor, size = None, sizes.get(ev.anchor or "", 0)
                if ev.anchor not in sizes and any(f[0] == ev.anchor for f in open_):
                    return f"recursive alias *{ev.anchor}"
                added += size
                if added > MAX_YAML_ALIAS_NODES:
                    return f"aliases expand to more than {MAX_YAML_ALIAS_NODES} nodes"
            else:
                continue
            if anchor is not None:
                sizes[anchor] = size
            if open_:
                open_[-1][1] += size
    except yaml.YAMLError:
        return None
    return None


def yaml_depth_problem(doc: Any) -> str | None:
    """Nesting deeper than :data:`MAX_YAML_DEPTH` in a loaded document (walked without recursion)."""
    stack = [(doc, 1)]
    while stack:
        obj, depth = stack.pop()
        if not isinstance(obj, (dict, list)):
            continue
        children = obj.values() if isinstance(obj, dict) else obj
        if depth > MAX_YAML_DEPTH:
            return f"nesting deeper than {MAX_YAML_DEPTH} levels"
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return None


def load_yaml(data: bytes | str, *, what: str = "YAML") -> Any:
    """Parse YAML from the store: the safe loader, within the limits above.

    The one loader for stored YAML: store data may come from a remote, so
    never the full loader, never unbounded (size, depth, alias expansion).

    Raises:
        UnsafeDataError: over a limit, or not valid YAML.
    """
    import yaml

    problem = yaml_limits_problem(data, _loader())
    if problem is None:
        try:
            loader = _loader()(data)
            try:
                doc = loader.get_single_data()
            finally:
                loader.dispose()
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise UnsafeDataError(f"{what} is not valid YAML{where}", "the store may be damaged; see `git show`") from exc
        except RecursionError:
            problem = f"nesting deeper than {MAX_YAML_DEPTH} levels"
        else:
            # a document built in one pass knows its depth; another is walked
            depth = loader.depth
            problem = yaml_depth_problem(doc) if depth is None or depth > MAX_YAML_DEPTH else None
            if problem is None:
                return doc
    raise UnsafeDataError(f"{what}: {problem}", "the store may be damaged or hostile; see `git show`")


def dump_yaml(obj: Any) -> str:
    """YAML a person reads in a forge's UI: block style, keys in given order, no aliases."""
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
    keys = doc.get("keys", [])
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) and _FINGERPRINT_RE.match(k) for k in keys)):
        raise UnsafeDataError(f"{STORE_FILE}: 'keys' must be a list of 16-hex-digit key fingerprints, not {str(keys)[:60]!r}", "restore it from history with git")
    return doc


# ---------------------------------------------------------------- names and text

# C0 and C1 controls, DEL, the line/paragraph separators and the bidirectional
# overrides: what moves a terminal's cursor, starts an escape sequence, ends
# a line in a commit message or reorders what a reviewer reads.
# Lone surrogates too: bytes that are not UTF-8 in argv or a file name reach
# Python as U+DC80-U+DCFF (surrogateescape) and cannot be stored as text.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
CONTROL_MULTILINE_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
NOT_UTF8_HINT = "gitxp stores text as UTF-8: pass it in UTF-8 (e.g. convert it with iconv)"


def utf8_problem(value: str) -> str | None:
    """``byte 0xE9 that is not valid UTF-8`` when ``value`` came from bytes that are not UTF-8."""
    m = _SURROGATE_RE.search(value)
    if not m:
        return None
    c = ord(m.group())
    return f"byte 0x{c - 0xDC00:02X} that is not valid UTF-8" if 0xDC80 <= c <= 0xDCFF else f"lone surrogate U+{c:04X}, not valid UTF-8"


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """``control character U+001B`` when ``value`` holds one (notes may hold tabs and newlines)."""
    if value.isprintable():
        return None  # the usual case, in C: every character refused here is non-printable
    m = (CONTROL_MULTILINE_RE if multiline else CONTROL_RE).search(value)
    if not m:
        return None
    return utf8_problem(m.group()) or f"control character U+{ord(m.group()):04X}"


def check_text(value: str, what: str, *, multiline: bool = False) -> str:
    """Refuse a name (or a note, with ``multiline``) holding control characters.

    Raises:
        UsageError: one line, the value shown escaped.
    """
    problem = text_problem(value, multiline=multiline)
    if problem:
        from gitxp.errors import UsageError

        if "UTF-8" in problem:
            hint = NOT_UTF8_HINT
        else:
            hint = "notes may hold newlines and tabs, nothing else" if multiline else "use printable characters only, on one line"
        raise UsageError(f"{what} {value[:80]!r} has a {problem}", hint)
    return value


def check_name(name: str) -> str:
    """An experiment name: one line of free text without path separators or NULs."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        from gitxp.errors import UsageError

        raise UsageError(f"invalid experiment name {name!r}", f"use up to {MAX_NAME_CHARS} characters without '/' or '\\'")
    return check_text(name, "experiment name")


def check_tags(tags: Any) -> dict[str, Any]:
    """Tags as stored: one-line string keys, scalar values (strings on one line).

    Raises:
        UsageError: a key or value with a control character, or a value that is not a scalar.
    """
    from gitxp.errors import UsageError

    out: dict[str, Any] = {}
    for k, v in dict(tags or {}).items():
        key = check_text(str(k), "tag name")
        if len(key) > MAX_NAME_CHARS:
            raise UsageError(f"tag name {key[:40]!r}... is longer than {MAX_NAME_CHARS} characters", "use a shorter name")
        if type(v).__module__ == "numpy" and callable(getattr(v, "item", None)):
            v = v.item()
        if isinstance(v, str):
            check_text(v, f"tag {key!r} value")
            if len(v) > MAX_TAG_VALUE_CHARS:
                raise UsageError(f"tag {key!r} value is longer than {MAX_TAG_VALUE_CHARS} characters", "put long text in a note, or log it as an artifact")
        elif v is not None and not isinstance(v, (bool, int, float)):
            raise UsageError(f"tag {key!r} has a {type(v).__name__} value", "tag values are strings, numbers, booleans or null")
        out[key] = v
    return out


def check_tag_count(tags: Any) -> None:
    """Refuse more than :data:`MAX_TAGS` tags (``tags``: all of an experiment's, after a change)."""
    if len(tags) > MAX_TAGS:
        from gitxp.errors import UsageError

        raise UsageError(f"an experiment holds at most {MAX_TAGS} tags; this would make {len(tags)}", "put many values in params, or log a table")


def check_notes(notes: str) -> str:
    """The whole notes of an experiment: text (newlines and tabs allowed) within :data:`MAX_NOTES_BYTES`."""
    check_text(notes, "note", multiline=True)
    size = len(notes.encode("utf-8"))
    if size > MAX_NOTES_BYTES:
        from gitxp.errors import UsageError

        raise UsageError(f"notes would be {size} bytes, over the {MAX_NOTES_BYTES} byte limit", "log long text as an artifact")
    return notes


def params_size_problem(params: Any) -> str | None:
    """``params take N bytes, over the ... limit`` when ``params`` is too big to store.

    Measured as JSON first (C speed, even for millions of values): over the
    limit is refused at once, far under it (YAML is never 64 times longer)
    passes; in between the YAML is written out and measured. So the limit
    holds for whichever of the two is larger.
    """
    import json

    size = len(json.dumps(params, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
    if MAX_PARAMS_BYTES // 64 <= size <= MAX_PARAMS_BYTES:
        size = max(size, len(dump_yaml(params).encode("utf-8")))
    return f"params take {size} bytes, over the {MAX_PARAMS_BYTES} byte limit" if size > MAX_PARAMS_BYTES else None


# ---------------------------------------------------------------- experiment.yaml fields

_OPT_STR = (str, type(None))
_NUMBER = (int, float)


_SCALAR_TYPES = (str, bool, int, float)
#: The exact classes of a stored single value (YAML and JSON give these): tested by ``v.__class__ in``, without a call.
SCALAR_CLASSES = frozenset({str, bool, int, float, type(None)})


def _scalar(v: Any) -> bool:
    return v.__class__ in SCALAR_CLASSES or isinstance(v, _SCALAR_TYPES)


def _key_problems(mapping: dict[Any, Any], what: str) -> list[str]:
    if all(k.__class__ is str and k.isprintable() for k in mapping):
        return []  # the usual case, without a call per key (text_problem passes printable text)
    out = []
    for k in mapping:
        if not isinstance(k, str):
            out.append(f"{what} has a {type(k).__name__} key {k!r}")
        elif text_problem(k):
            out.append(f"{what} key {k[:40]!r} has a {text_problem(k)}")
    return out


def experiment_problems(doc: Any) -> list[str]:
    """What is wrong with the fields of one ``experiment.yaml`` (empty when nothing).

    Checks the type of every field gitxp reads (``metrics:`` a mapping of
    mappings, ``source:`` a mapping, ``tags:`` a mapping of scalars …) and
    control characters in every name; unknown fields are left alone (a
    newer gitxp of the same format may add some). Used on pull, to refuse,
    and when listing, to show an experiment already stored as damaged.
    """
    if not isinstance(doc, dict):
        return [f"not a mapping but a {type(doc).__name__}"]
    out: list[str] = []

    def bad(field: str, want: str) -> None:
        out.append(f"field {field!r} must be {want}, not {type(doc.get(field)).__name__} {str(doc.get(field))[:40]!r}")

    for field in ("id", "parent", "created", "started", "ended", "cwd", "host", "user"):
        if not isinstance(doc.get(field), _OPT_STR):
            bad(field, "text")
    name = doc.get("name")
    if not isinstance(name, _OPT_STR):
        bad("name", "text")
    elif name is not None and text_problem(name):
        out.append(f"field 'name' has a {text_problem(name)}")
    status = doc.get("status")
    if status is not None and status not in STATUSES:
        bad("status", f"one of {', '.join(STATUSES)}")
    for field in ("duration_s", "exit_code"):
        v = doc.get(field)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int if field == "exit_code" else _NUMBER)):
            bad(field, "a number")
    cmd = doc.get("command")
    if cmd is not None and not (isinstance(cmd, list) and all(_scalar(c) for c in cmd)):
        bad("command", "a list of arguments")
    notes = doc.get("notes")
    if not isinstance(notes, _OPT_STR):
        bad("notes", "text")
    elif notes and text_problem(notes, multiline=True):
        out.append(f"field 'notes' has a {text_problem(notes, multiline=True)}")
    tags = doc.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or not all(_scalar(v) for v in tags.values()):
            bad("tags", "a mapping of names to single values")
        else:
            out += _key_problems(tags, "field 'tags'")
            if not all(v.__class__ is not str or v.isprintable() for v in tags.values()):
                out += [f"field 'tags' value of {k!r} has a {text_problem(v)}" for k, v in tags.items() if isinstance(v, str) and text_problem(v)]
    source = doc.get("source")
    if source is not None:
        if not isinstance(source, dict):
            bad("source", "a mapping")
        else:
            for k in ("branch", "commit", "tree", "code_dir"):
                if not isinstance(source.get(k), _OPT_STR):
                    out.append(f"field 'source' entry {k!r} must be text")
            if not isinstance(source.get("dirty"), (bool, type(None))):
                out.append("field 'source' entry 'dirty' must be true or false")
            skipped = source.get("skipped")
            if skipped is not None and not (isinstance(skipped, list) and all(isinstance(p, str) for p in skipped)):
                out.append("field 'source' entry 'skipped' must be a list of paths")
    metrics = doc.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
            bad("metrics", "a mapping of metric names to {last, min, max, count, last_step}")
        else:
            out += _key_problems(metrics, "field 'metrics'")
            for name_, stats in metrics.items():
                for k, v in stats.items():
                    integral = k in ("count", "last_step")
                    if v is None or (v.__class__ is float and not integral):  # the usual values, without isinstance
                        continue
                    if isinstance(v, bool) or not isinstance(v, int if integral else _NUMBER):
                        out.append(f"field 'metrics' entry {str(name_)[:40]!r}.{k} must be a number")
                        break
    summary = doc.get("summary")
    if summary is not None:
        if not isinstance(summary, dict):
            bad("summary", "a mapping")
        else:
            out += _key_problems(summary, "field 'summary'")
    error = doc.get("error")
    if error is not None and not isinstance(error, (str, dict)):
        bad("error", "text or a mapping")
    sessions = doc.get("sessions")
    if sessions is not None and not (isinstance(sessions, list) and all(isinstance(x, dict) for x in sessions)):
        bad("sessions", "a list of mappings")
    if doc.get("inputs") is not None or doc.get("alerts") is not None:
        from gitxp.store.alerts import problems as alert_problems
        from gitxp.store.inputs import problems as input_problems

        out += input_problems(doc.get("inputs")) + alert_problems(doc.get("alerts"))
    return out


def environment_problems(doc: Any) -> list[str]:
    """What is wrong with the types of one ``environment.yaml`` (the fields gitxp reads)."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        return [f"not a mapping but a {type(doc).__name__}"]
    out = [f"field {k!r} must be a mapping" for k in ("python", "platform", "cpu", "cuda", "conda", "env_vars") if not isinstance(doc.get(k), (dict, type(None)))]
    for k in ("gpus", "packages"):
        v = doc.get(k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, dict) for x in v)):
            out.append(f"field {k!r} must be a list of mappings")
    for p in doc.get("packages") or [] if not any("'packages'" in o for o in out) else []:
        if not isinstance(p.get("name"), str) or not isinstance(p.get("version"), _OPT_STR) or not isinstance(p.get("source"), (dict, type(None))):
            out.append(f"field 'packages' entry {str(p.get('name'))[:40]!r} must have a text name and version and a mapping source")
            break
    conda = doc.get("conda")
    if isinstance(conda, dict) and not isinstance(conda.get("packages"), (list, type(None))):
        out.append("field 'conda' entry 'packages' must be a list")
    if not isinstance(doc.get("memory_total_bytes"), (int, float, type(None))):
        out.append("field 'memory_total_bytes' must be a number")
    return out


def _printable_keys(doc: dict[Any, Any]) -> bool:
    """Every key at every depth is printable text: the usual case, walked without building a key's path."""
    stack: list[Any] = [doc]
    while stack:
        obj = stack.pop()
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in items:
            if isinstance(obj, dict) and (k.__class__ is not str or not k.isprintable()):
                return False
            if isinstance(v, (dict, list)):
                stack.append(v)
    return True


def params_problems(doc: Any) -> list[str]:
    """Parameter keys that are not one-line text, anywhere in the nesting."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        return [f"not a mapping but a {type(doc).__name__}"]
    if _printable_keys(doc):
        return []
    out: list[str] = []
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack and len(out) < 5:
        prefix, obj = stack.pop()
        if isinstance(obj, dict):
            out += _key_problems(obj, f"parameter {prefix or 'names'}".rstrip("."))
            stack.extend((f"{prefix}{k}.", v) for k, v in obj.items())
        elif isinstance(obj, list):
            stack.extend((prefix, v) for v in obj)
    return out


# ---------------------------------------------------------------- paths


def safe_relpath(path: str, *, what: str = "path") -> str:
    """Normalise a store-relative path, refusing anything that could escape.

    Used for artifact names, table names and every path read from pulled data.
    """
    if not isinstance(path, str) or not path or "\x00" in path:
        raise UnsafeDataError(f"invalid {what} {path!r}", "use a relative path inside the project")
    if text_problem(path):
        raise UnsafeDataError(f"{what} {path[:80]!r} has a {text_problem(path)}", "use printable characters only")
    p = path.replace("\\", "/")
    if p.startswith("/") or re.match(r"^[A-Za-z]:", p):
        raise UnsafeDataError(f"absolute {what} {path!r} refused", "use a path relative to the project")
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if not parts or any(s == ".." for s in parts) or any(s.lower() == ".git" for s in parts):
        raise UnsafeDataError(f"{what} {path!r} escapes its folder", "use a path without '..' or '.git'")
    return "/".join(parts)


def table_name(name: str) -> str:
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.\-]{1,100}$", name) or name.startswith("."):
        from gitxp.errors import UsageError

        raise UsageError(f"invalid table name {name!r}", "use letters, digits, '_', '-' and '.'")
    return name
