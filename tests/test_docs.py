"""Docs are part of the feature: every command has help with an example; startup stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gitxp.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def all_commands() -> list[tuple[str, click.Command]]:
    out = []
    ctx = click.Context(cli)

    def walk(group: click.Group, prefix: str) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None
            out.append((f"{prefix}{name}", cmd))
            if isinstance(cmd, click.Group):
                walk(cmd, f"{prefix}{name} ")

    walk(cli, "")
    return out


@pytest.mark.parametrize(("name", "cmd"), all_commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_command_has_help_with_an_example(name: str, cmd: click.Command) -> None:
    r = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert r.exit_code == 0, r.output
    assert "Example" in r.output and "gitxp " in r.output.split("Example", 1)[1]


def test_version() -> None:
    r = subprocess.run([sys.executable, "-m", "gitxp", "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.startswith("gitxp, version ")


def test_help_does_not_import_heavy_modules() -> None:
    code = "import sys\nfrom gitxp.cli import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\nprint([m for m in ('pyarrow','dulwich','cryptography','psutil','pynvml') if m in sys.modules], file=sys.stderr)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stderr.strip().splitlines()[-1] == "[]"


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "bash examples/quickstart.sh" in text and "python -m pytest" in text
