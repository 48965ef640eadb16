"""A temporary object folder that fetched objects go to until they were checked."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

    from gitxp.plumbing.repo import Repo

#: Pack files move in this order, the index last, so a reader never finds an index without its pack.
_PACK_ORDER = {".pack": 0, ".rev": 1, ".bitmap": 2, ".mtimes": 3, ".idx": 4}


class Quarantine:
    """A temporary object folder inside ``objects/`` that fetched objects go to first.

    git's own answer to the same problem (``tmp_objdir``, what receive-pack
    uses): nothing fetched enters the repository's object store until it
    was checked. While open, the repository reads through it (as an
    alternate), so validation and the merge see the fetched commits;
    :meth:`migrate` moves the objects in, :meth:`close` deletes whatever is
    still there. A refused pull therefore leaves not one object behind.
    """

    def __init__(self, repo: Repo) -> None:
        import tempfile

        from dulwich.object_store import DiskObjectStore

        self.repo = repo
        repo.objects_dir.mkdir(parents=True, exist_ok=True)
        self._sweep_stale()
        self.path = Path(tempfile.mkdtemp(prefix="tmp_objdir-gitxp-", dir=repo.objects_dir))
        (self.path / "pack").mkdir()
        self._store = DiskObjectStore(str(self.path))
        repo.object_store.alternates.append(self._store)

    def _sweep_stale(self, age: float = 86400.0) -> None:
        """Remove quarantines a killed pull left behind (a day old: no pull takes that long)."""
        import shutil

        for d in self.repo.objects_dir.glob("tmp_objdir-gitxp-*"):
            try:
                if time.time() - d.stat().st_mtime > age:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass

    def __contains__(self, sha: str) -> bool:
        """True for an object the fetch brought (not one the repository already had)."""
        oid = cast("ObjectID", sha.encode())  # a hex id is what dulwich's ObjectID (a NewType of bytes) holds
        return (self.path / sha[:2] / sha[2:]).exists() or bool(self._store.contains_packed(oid))

    def git_env(self) -> dict[str, str]:
        """Environment for a ``git`` subprocess that must write here and read the repository too."""
        from gitxp.plumbing.gitcli import alternates

        value = alternates([str(self.repo.objects_dir)])
        if os.environ.get("GIT_ALTERNATE_OBJECT_DIRECTORIES"):  # already in git's form
            value += os.pathsep + os.environ["GIT_ALTERNATE_OBJECT_DIRECTORIES"]
        return {"GIT_OBJECT_DIRECTORY": str(self.path), "GIT_ALTERNATE_OBJECT_DIRECTORIES": value}

    def migrate(self) -> None:
        """Move every object into the repository (loose objects first, then packs, index last)."""
        dest = self.repo.objects_dir
        for sub in sorted(self.path.iterdir()):
            if len(sub.name) == 2 and sub.is_dir():
                for f in sub.iterdir():
                    target = dest / sub.name / f.name
                    if not target.exists():
                        target.parent.mkdir(exist_ok=True)
                        os.replace(f, target)
        packs = [f for f in (self.path / "pack").iterdir() if f.suffix in _PACK_ORDER]
        (dest / "pack").mkdir(exist_ok=True)
        for f in sorted(packs, key=lambda f: (_PACK_ORDER[f.suffix], f.name)):
            if not (dest / "pack" / f.name).exists():
                os.replace(f, dest / "pack" / f.name)

    def close(self) -> None:
        import shutil

        alternates = self.repo.object_store.alternates
        if self._store in alternates:
            alternates.remove(self._store)
        self._store.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
