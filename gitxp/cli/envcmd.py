"""`gitxp env REF`: show, export or recreate a recorded environment."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gitxp.environment import describe as environment
from gitxp.environment import recreate
from gitxp.cli import render
from gitxp.errors import GitxpError, UsageError

if TYPE_CHECKING:
    from gitxp.store.record import Record


def run(rec: Record, *, requirements: str | None, venv: str | None, python: str | None, conda_name: str | None, conda_file: str | None,
        allow_urls: bool = False, only_imported: bool = False) -> None:
    env = rec.environment
    if env is None:
        raise GitxpError(f"experiment {rec.id} has no recorded environment", "it ran with environment capture off")
    full = env
    if only_imported:
        if not (requirements or conda_file or conda_name or venv):
            raise UsageError("--only-imported selects what --venv, --conda, --requirements or --conda-file get", "add one of them")
        env = recreate.imported_only(env)
        names = ", ".join(str(p.get("name")) for p in env["packages"])
        click.echo(f"gitxp: {len(env['packages'])} of {len(full.get('packages') or [])} recorded packages were imported: {names}", err=True)
    did = False
    if (requirements or conda_file or conda_name or venv) and not allow_urls:
        _say_left_out(env)
    if requirements:
        Path(requirements).write_text(environment.requirements_txt(env, experiment=rec.id, allow_urls=allow_urls))
        click.echo(f"wrote {requirements}", err=True)
        did = True
    if conda_file:
        Path(conda_file).write_text(environment.conda_environment_yml(env, conda_name or f"gitxp-{rec.id[-12:]}", allow_urls=allow_urls))
        click.echo(f"wrote {conda_file}", err=True)
        did = True
    if conda_name:
        recreate.recreate_conda(env, conda_name, file=Path(conda_file) if conda_file else None, allow_urls=allow_urls, progress=render.isatty(sys.stderr))
        click.echo(f"created conda environment {conda_name}", err=True)
        did = True
    if venv:
        result = recreate.recreate_venv(full, Path(venv), python=python, progress=render.isatty(sys.stderr), echo=lambda m: click.echo(m, err=True),
                                        allow_urls=allow_urls, only_imported=only_imported)
        for w in result.warnings:
            click.echo(render.clean(f"gitxp: warning: {w}"), err=True)
        for s in result.skipped:
            if ": " in s:  # a local-path install, with why (tooling is left to the venv silently)
                click.echo(render.clean(f"gitxp: skipped {s}"), err=True)
        click.echo(f"created {venv}: {len(result.installed)} package(s) installed", err=True)
        if result.failed:
            click.echo(f"{len(result.failed)} pin(s) could not be installed:", err=True)
            for pin, reason in result.failed:
                click.echo(render.clean(f"  {pin}: {reason}"), err=True)
        did = True
    if not did:
        render.page(environment.summary(env))
    if venv and conda_name:
        raise UsageError("choose --venv or --conda, not both", "run twice")


def _say_left_out(env: Any) -> None:
    """Name every package left out for coming from a URL or VCS, and how to include it."""
    left = [p for p in env.get("packages") or () if isinstance(p, dict) and environment.needs_allow_urls(p)]
    if not left:
        return
    click.echo(f"gitxp: {len(left)} package(s) recorded from a URL or VCS left out:", err=True)
    for p in left:
        line = f"  {p.get('name')} {p.get('version') or ''} from {environment.package_source(p)}".replace("  from", " from")
        click.echo("  " + render.clean(line.strip()), err=True)  # a pulled URL is stored text: no escapes reach the terminal
    click.echo(f"  {environment.ALLOW_URLS_HINT}", err=True)
