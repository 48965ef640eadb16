"""Many objects read in a row: one ``git cat-file --batch`` for a whole walk, not a lookup per object.

Checking a pulled 20,000-experiment store reads some 60,000 objects. One at
a time through dulwich each costs ~50 µs (a pack-index search and an inflate
in Python, and first a miss in the main store when the object sits in a
pull's quarantine); git's own reader streams them at a few µs each. Ids go
to git in groups that fit a pipe's buffer, so writing one group never waits
on git's output. Without git on PATH (``GITXP_ENGINE=dulwich``) the same
interface reads one object at a time through :meth:`Repo.read_raw`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import IO, TYPE_CHECKING, Any

from gitxp.errors import StoreError
from gitxp.plumbing import gitcli

if TYPE_CHECKING:
    from gitxp.plumbing.repo import Repo

#: Ids per write: 41 bytes each stays under the 64 KiB a pipe holds.
GROUP = 1024


class ObjectReader:
    """Reads objects of ``repo`` (its quarantine included) in order; a context manager.

    ``engine`` is ``"git"`` or ``"dulwich"`` (see :func:`gitxp.plumbing.transport.engine`).
    """

    def __init__(self, repo: Repo, engine: str | None = None) -> None:
        from gitxp.plumbing.transport import engine as choose

        self.repo = repo
        self._proc: subprocess.Popen[bytes] | None = None
        self._git = choose(engine) == "git"

    def read(self, shas: Iterable[str], *, limit: int | None = None) -> Iterator[tuple[str, str | None, bytes | None]]:
        """``(id, kind, content)`` for each id, in order.

        kind is None for a missing object; content is None for one over
        ``limit`` bytes (read past, never held: a hostile store's huge file
        costs no memory here).

        Raises:
            StoreError: git stopped answering (killed, or an object it could not read).
        """
        it = iter(shas)
        while group := list(islice(it, GROUP)):
            if not self._git:
                yield from (self._one(sha, limit) for sha in group)
                continue
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            answered = 0
            try:
                proc.stdin.write("".join(f"{sha}\n" for sha in group).encode("ascii"))
                proc.stdin.flush()
                for sha in group:
                    answer = _answer(proc.stdout, sha, limit, self._failed)
                    answered += 1
                    yield sha, *answer
            except OSError as exc:
                raise self._failed(exc) from exc
            finally:
                if answered < len(group) and self._proc is proc:  # left mid-group (an error, the caller stopped): out of step
                    self.close()

    def _one(self, sha: str, limit: int | None) -> tuple[str, str | None, bytes | None]:
        try:
            kind, data = self.repo.read_raw(sha)
        except StoreError:
            return sha, None, None
        return sha, kind, data if limit is None or len(data) <= limit else None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            # the quarantine a pull reads through is an alternate of the repository's store
            extra = [str(a.path) for a in getattr(self.repo.object_store, "alternates", ()) if isinstance(getattr(a, "path", None), str)]
            env = gitcli.environment(git_dir=self.repo.git_dir, extra_env={"GIT_ALTERNATE_OBJECT_DIRECTORIES": gitcli.alternates(extra)} if extra else None)
            try:
                self._proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=str(self.repo.git_dir), env=env,
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            except OSError as exc:
                raise StoreError(f"could not run git to read objects: {exc}", "install git or set GITXP_ENGINE=dulwich") from exc
        return self._proc

    def _failed(self, exc: BaseException | None = None) -> StoreError:
        code = self._proc.poll() if self._proc is not None else None
        why = f"exit {code}" if code is not None else str(exc or "no answer")
        return StoreError(f"git cat-file stopped while reading objects ({why})", "run `git fsck`; fetch the store again with `gitxp pull`")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _answer(out: IO[bytes], sha: str, limit: int | None, failed: Any) -> tuple[str | None, bytes | None]:
    """One reply of ``cat-file --batch``: ``<id> <kind> <size>`` and the content, or ``<id> missing``."""
    parts = out.readline().split()
    if len(parts) == 2 and parts[1] == b"missing" and parts[0].decode("ascii", "replace") == sha:
        return None, None
    if len(parts) != 3 or parts[0].decode("ascii", "replace") != sha or not parts[2].isdigit():
        raise failed()
    kind, size = parts[1].decode("ascii"), int(parts[2])
    if limit is not None and size > limit:
        left = size + 1
        while left:
            got = len(out.read(min(left, 1 << 20)))
            if not got:
                raise failed()
            left -= got
        return kind, None
    data = out.read(size + 1)
    if len(data) != size + 1:
        raise failed()
    return kind, data[:size]
