"""Commands over the store and one experiment: ``init``, ``tag``, ``note``, ``rm``,
``artifacts``, ``get``, ``key`` and ``env``.

Registered lazily by :mod:`gitxp.cli` (``LAZY_COMMANDS``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gitxp.cli._common import OutputFile, kv, store_of
from gitxp.errors import UsageError


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the experiment store (and a repository, if there is none).

    Idempotent. Also creates the artifact key outside the repository.

    \b
    Example:
      gitxp init
    """
    from gitxp.plumbing.repo import discover, init_repository
    from gitxp.errors import NotARepositoryError

    path = Path(ctx.obj["repo"])
    try:
        discover(path)
    except NotARepositoryError:
        git_dir = init_repository(path)
        click.echo(f"Initialized empty git repository in {git_dir}", err=True)
    from gitxp.artifacts import keys

    store = store_of(ctx)
    store.ensure()
    fp = keys.ensure_store_key(store)
    click.echo(f"gitxp store on branch '{store.branch}' (store {store.store_id}, key {fp})")


@click.command()
@click.argument("ref")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.pass_context
def tag(ctx: click.Context, ref: str, pairs: tuple[str, ...]) -> None:
    """Add or change tags of an experiment (a new store commit).

    \b
    Example:
      gitxp tag @ reviewed=yes baseline=true
    """
    rec = store_of(ctx).amend(ref, tags=kv(pairs, "tag"))
    click.echo(f"tagged {rec.id}")


@click.command()
@click.argument("ref")
@click.argument("text")
@click.pass_context
def note(ctx: click.Context, ref: str, text: str) -> None:
    """Append a note to an experiment (a new store commit).

    \b
    Example:
      gitxp note @ "diverged after epoch 3: lr too high"
    """
    rec = store_of(ctx).amend(ref, note=text)
    click.echo(f"noted {rec.id}")


@click.command()
@click.argument("ref")
@click.pass_context
def rm(ctx: click.Context, ref: str) -> None:
    """Remove an experiment from listings (history keeps it).

    \b
    Example:
      gitxp rm a3f9
    """
    rec = store_of(ctx).amend(ref, remove=True)
    click.echo(f"removed {rec.id} {rec.name}")


@click.command()
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: {id, name, artifacts: [{path, size, encrypted, parts, digest}]}.")
@click.pass_context
def artifacts(ctx: click.Context, ref: str, fmt: str) -> None:
    """List an experiment's artifacts: path, size, encryption, digest.

    \b
    Example:
      gitxp artifacts @
      gitxp artifacts @ --format json
    """
    from gitxp.artifacts.manifest import read_manifest
    from gitxp.cli import render
    from gitxp.cli import views

    rec = store_of(ctx).get(ref)
    if fmt == "json":
        from gitxp.review import jsonview

        views.emit(jsonview.dumps({"id": rec.id, "name": rec.name, "artifacts": jsonview.artifact_list(rec, full=True)}), None)
        return
    rows = [[a["path"], views._size(a["size"]), "yes" if a.get("encrypted") else "no", a.get("parts"), str(a.get("digest", ""))[:24]] for a in read_manifest(rec)]
    if not rows:
        click.echo(f"experiment {rec.id} has no artifacts", err=True)
        return
    width = max(len(r[1]) for r in rows)
    for r in rows:  # sizes with units, right-aligned like numbers
        r[1] = r[1].rjust(width)
    click.echo(render.text_table(["path", "size", "encrypted", "parts", "digest"], rows))


@click.command()
@click.argument("ref")
@click.argument("path", required=False)
@click.option("-o", "--output", "dest", type=click.Path(), help="Destination file or folder.")
@click.pass_context
def get(ctx: click.Context, ref: str, path: str | None, dest: str | None) -> None:
    """Decrypt, verify and write an artifact, a folder of artifacts, or all of them.

    One file goes to DEST (default: its name in the current folder); a
    folder or everything goes into the folder DEST (default ./<id>/).
    Nothing is written unless every byte verified.

    \b
    Example:
      gitxp get @ model.pt -o best.pt
      gitxp get a3f9 outputs/ -o ./a3f9-outputs
    """
    from gitxp.artifacts import keys
    from gitxp.artifacts import read as _artifacts
    from gitxp.cli import render

    store = store_of(ctx)
    rec = store.get(ref)
    written = _artifacts.extract(rec, path, dest, key_loader=keys.key_loader(store), progress=render.isatty(sys.stderr))
    for p in written:
        click.echo(str(p))


@click.group()
def key() -> None:
    """The artifact key: show its fingerprint, export it, import a colleague's.

    The key never enters the repository: it lives in your config folder
    (or GITXP_KEY). Share it over a secure channel.

    \b
    Example:
      gitxp key show
      gitxp key export | ssh colleague gitxp -C project key import -
    """


@key.command("show")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: {store, store_keys, key, key_source}.")
@click.pass_context
def key_show(ctx: click.Context, fmt: str) -> None:
    """Fingerprint and location of this store's key, and the fingerprints the store expects.

    \b
    Example:
      gitxp key show
      gitxp key show --format json
    """
    from gitxp.artifacts import keys

    store = store_of(ctx)
    store_id = store.store_id
    k = keys.load_key(store_id)
    where = keys.key_source(store_id)
    if fmt == "json":
        from gitxp.review import jsonview
        from gitxp.cli import views

        doc = {"store": store_id, "store_keys": list((store.document() or {}).get("keys") or []),
               "key": None if k is None else keys.fingerprint(k), "key_source": str(where)}
        views.emit(jsonview.dumps(doc), None)
        return
    click.echo(f"store:       {store_id}")
    click.echo(f"store keys:  {', '.join((store.document() or {}).get('keys') or []) or '(none yet)'}")
    if k is None:
        click.echo(f"your key:    none (it would be created at {where})")
    else:
        click.echo(f"your key:    {keys.fingerprint(k)} ({where})")


@key.command("export")
@click.pass_context
def key_export(ctx: click.Context) -> None:
    """Print the key (unpadded base64url) for a colleague or a CI secret.

    \b
    Example:
      gitxp key export > key.txt   # then: gitxp key import - < key.txt
    """
    from gitxp.artifacts import keys

    store = store_of(ctx)
    keys.ensure_store_key(store)
    k = keys.load_key(store.store_id)
    assert k is not None
    click.echo(keys.encode_key(k))


@key.command("import")
@click.argument("value", required=False, default="-", metavar="[KEY|-]")
@click.pass_context
def key_import(ctx: click.Context, value: str) -> None:
    """Store a key (argument, or `-` for stdin) for this store; a different old key is kept as a backup.

    \b
    Example:
      gitxp key import "$GITXP_SHARED_KEY"
      gitxp key import - < key.txt
    """
    from gitxp.artifacts import keys

    text = sys.stdin.read() if value == "-" else value
    k = keys.decode_key(text)
    store = store_of(ctx)
    path = keys.save_key(store.store_id, k)
    fp = keys.fingerprint(k)
    known = (store.document() or {}).get("keys") or []
    if known and fp not in known:
        click.echo(f"gitxp: warning: key {fp} is not one this store's artifacts use ({', '.join(known)})", err=True)
    click.echo(f"imported key {fp} into {path}")


# ---------------------------------------------------------------- environment


@click.command()
@click.argument("ref")
@click.option("--requirements", type=OutputFile(), help="Write pip pins to FILE.")
@click.option("--venv", type=click.Path(file_okay=False), help="Create a virtual environment in DIR with the pins.")
@click.option("--python", "python_exe", metavar="EXE", help="Interpreter for --venv (default: this one).")
@click.option("--conda", "conda_name", metavar="NAME", help="Create a conda environment NAME (conda, mamba or micromamba).")
@click.option("--conda-file", type=OutputFile(), help="Write a conda environment.yml to FILE.")
@click.option("--allow-urls", is_flag=True, help="Also install (or write) packages recorded from a URL or VCS; their setup code runs.")
@click.option("--only-imported", is_flag=True, help="Only the packages the run imported (with their dependencies, at the recorded versions where recorded).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: {id, name, environment (summary), recorded (everything)}.")
@click.pass_context
def env(ctx: click.Context, ref: str, requirements: str | None, venv: str | None, python_exe: str | None, conda_name: str | None, conda_file: str | None, allow_urls: bool, only_imported: bool, fmt: str) -> None:
    """Show, export or recreate the environment an experiment ran in.

    --venv and --conda show the installer's progress on a terminal and use
    uv when it is installed (pip otherwise). gitxp itself is installed from
    the running gitxp; other packages installed from a local path are
    skipped, saying so. --only-imported rebuilds just what the run imported
    (`imported: true`, recorded for API runs and wrapped Python commands).

    Packages recorded from a URL, VCS or local path are listed with their
    source. A recorded experiment may come from anyone's store, so those
    from a URL or VCS are left out of --venv, --conda, --requirements and
    --conda-file unless --allow-urls is given.

    \b
    Example:
      gitxp env a3f9
      gitxp env a3f9 --venv .venv-a3f9
      gitxp env a3f9 --requirements requirements.txt --conda-file environment.yml
      gitxp env a3f9 --venv .venv-a3f9 --allow-urls   # trusted: include git+https:// pins
      gitxp env a3f9 --venv .venv-a3f9 --only-imported   # just what the run imported
      gitxp env a3f9 --format json | jq .recorded.packages
    """
    from gitxp.cli import envcmd

    if fmt == "json":
        from gitxp.review import jsonview
        from gitxp.cli import views

        if requirements or venv or conda_name or conda_file:
            raise UsageError("--format json only describes the environment", "drop --format json to export or recreate it")
        views.emit(jsonview.dumps(jsonview.environment_doc(store_of(ctx).get(ref))), None)
        return
    envcmd.run(store_of(ctx).get(ref), requirements=requirements, venv=venv, python=python_exe, conda_name=conda_name, conda_file=conda_file,
               allow_urls=allow_urls, only_imported=only_imported)

