"""The one exception tree of gitxp.

Every error a user can cause or fix is a :class:`GitxpError`; its message is a
single line that says what is wrong and then what to do about it. The CLI
turns these into ``Error: …`` on stderr (exit 1), or exit 2 for
:class:`UsageError` subclasses. Anything else escaping is a bug and keeps its
traceback.

::

    GitxpError
    ├── UsageError                  the user typed something wrong (exit 2)
    │   ├── RefError                unknown ref
    │   │   └── AmbiguousRefError   several experiments match; lists them
    │   ├── ParamError              bad -p KEY=VALUE / params file
    │   │   ├── ParamTypeError      (also TypeError) unsupported value type
    │   │   └── ParamsReadOnlyError (also TypeError) xp.params[...] = value; use log_param
    │   ├── MetricValueError        (also ValueError / TypeError) bad log_metric input
    │   ├── QueryError              a --where expression that does not parse
    │   └── SweepFileError          a malformed sweep file
    ├── NotARepositoryError         no git repository here
    ├── StoreError                  the store branch is unreadable or inconsistent
    │   ├── StaleLockError          a ref lock left by a killed git (or gitxp)
    │   ├── FormatTooNewError       store written by a newer gitxp
    │   ├── ForeignStoreError       different store_id (merge refused)
    │   └── UnsafeDataError         hostile/invalid data (paths, YAML, Parquet)
    ├── ExperimentStateError        e.g. logging to a finished experiment
    │   └── NoActiveExperimentError gitxp.log_metric() etc. with no experiment running
    ├── RunNotStoredError           a finished run could not be committed; it stays staged
    ├── KeyMissingError             no key for an encrypted artifact
    ├── DecryptionError             wrong key, tampering or truncation
    ├── EnvironmentRecreateError    venv/conda recreation failed
    ├── MissingDependencyError      (also ImportError) an optional extra is not installed
    ├── RemoteError                 push/pull failed
    └── SchedulerError              sbatch missing or refused a job
"""

from __future__ import annotations


class GitxpError(Exception):
    """Base of every error gitxp raises on purpose.

    ``hint`` is the "what to do" half of the message; it is appended after
    the description so that ``str(exc)`` is always one actionable line.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


class UsageError(GitxpError):
    """Something the user typed is wrong: exit status 2."""

    exit_code = 2


class RefError(UsageError):
    """A ref names no experiment."""

    def __init__(self, ref: str, hint: str | None = None) -> None:
        self.ref = ref
        super().__init__(
            f"unknown experiment {ref!r}",
            hint or "see `gitxp log --all` for the experiments in the store",
        )


class AmbiguousRefError(RefError):
    """A ref matches several experiments; ``candidates`` lists their ids."""

    def __init__(self, ref: str, candidates: list[str]) -> None:
        self.candidates = candidates
        UsageError.__init__(
            self,
            f"ambiguous ref {ref!r} matches {len(candidates)} experiments",
            "use a longer prefix or the full id",
        )
        self.ref = ref


class ParamError(UsageError):
    """A parameter given on the command line or in a file is malformed."""


class ParamTypeError(ParamError, TypeError):
    """A parameter value of a type the store cannot hold."""

    def __init__(self, key: str, value: object) -> None:
        self.key = key
        self.value = value
        super().__init__(
            f"parameter {key!r} has unsupported type {type(value).__name__}",
            "use str, int, float, bool, None, lists or mappings of those",
        )


class ParamsReadOnlyError(ParamError, TypeError):
    """``xp.params[...] = value``: parameters change only through ``log_param``, which checks them."""

    def __init__(self) -> None:
        super().__init__(
            "xp.params is read-only",
            "set parameters with xp.log_param('key', value) or xp.log_params({...}), which check that the store can hold them",
        )


class MetricValueError(UsageError, ValueError, TypeError):
    """``log_metric`` got a bad name, value or step."""


class QueryError(UsageError):
    """A ``--where`` expression does not parse; ``column`` is 1-based."""

    def __init__(self, message: str, expression: str = "", column: int | None = None) -> None:
        self.expression = expression
        self.column = column
        where = f" at column {column}" if column is not None else ""
        super().__init__(
            f"bad --where expression{where}: {message}",
            "write comparisons like `params.lr < 0.01 and metrics.acc >= 0.9`",
        )


class SweepFileError(UsageError):
    """A sweep file is malformed."""


class NotARepositoryError(GitxpError):
    """No git repository at or above the given path."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"not a git repository: {path}",
            "run `gitxp init` or `git init` there first",
        )


class StoreError(GitxpError):
    """The store branch cannot be read or written as expected."""


class FormatTooNewError(StoreError):
    """The store was written by a newer gitxp with a format this one can't read."""

    def __init__(self, found: object, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"the store has format {found}, this gitxp understands up to {supported}",
            "upgrade gitxp (pip install -U gitxp)",
        )


class ForeignStoreError(StoreError):
    """Two stores with different ids would be merged."""


class UnsafeDataError(StoreError):
    """Data in the store (often pulled from elsewhere) is invalid or hostile."""


class StaleLockError(StoreError):
    """A ``<ref>.lock`` file that no live writer holds: a git (or gitxp) was killed.

    Waiting would never end, so this is reported at once, as git does, with
    the file to remove.
    """

    def __init__(self, lock: object) -> None:
        self.lock = lock
        super().__init__(
            f"Unable to create '{lock}': File exists (left by a git or gitxp process killed while updating the store branch)",
            f"if no git process is running in this repository, remove the file manually to continue: rm '{lock}'",
        )


class RunNotStoredError(GitxpError):
    """A run ended but could not be committed (full disk, stale lock); it stays staged.

    ``exit_code`` is what ``gitxp start`` exits with: the wrapped command's
    status, or 1 when the command succeeded.
    """

    def __init__(self, exp_id: str, reason: str, exit_status: int = 1) -> None:
        self.exp_id = exp_id
        self.exit_code = exit_status or 1
        super().__init__(
            f"could not store experiment {exp_id}: {reason}",
            "the run stays staged; once that is fixed, `gitxp recover` commits it",
        )


def describe_failure(exc: BaseException) -> str:
    """One line for a failure while recording: a GitxpError's message, an OSError's reason and file."""
    if isinstance(exc, OSError) and not isinstance(exc, GitxpError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return " ".join(str(exc).split()) or type(exc).__name__


class ExperimentStateError(GitxpError):
    """An operation that the experiment's state does not allow."""


class NoActiveExperimentError(ExperimentStateError):
    """A module-level ``gitxp.log_*`` call found no experiment to log into."""

    def __init__(self) -> None:
        super().__init__("no active experiment", "start one with gitxp.start() or run under gitxp start")


class KeyMissingError(GitxpError):
    """The artifact key needed to read or write is not available."""


class DecryptionError(GitxpError):
    """An encrypted artifact failed authentication (wrong key, tampering, truncation)."""


class EnvironmentRecreateError(GitxpError):
    """Recreating a recorded environment failed."""


class MissingDependencyError(GitxpError, ImportError):
    """A feature needs a package from an optional extra that is not installed."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"{feature} needs {package}, which is not installed", f"pip install 'gitxp[{extra}]'")


class RemoteError(GitxpError):
    """Talking to a git remote failed."""


class SchedulerError(GitxpError):
    """The cluster scheduler (Slurm's ``sbatch``) is missing or refused a job."""
