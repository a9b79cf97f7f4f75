"""One convention over the whole `pcd` command tree: every option and argument has help, one
flag name per concept, no type printed beside flags."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from service.cli import app

# The one name of each concept; the other spellings may stay only as hidden aliases.
RETIRED = {"--root": "--data-root", "--progress": "--quiet", "--study-dir": "--out"}


def commands() -> Iterator[tuple[list[str], typer.core.TyperCommand]]:
    """(path, command) of every command of the tree, groups included."""
    stack = [([], typer.main.get_command(app))]
    while stack:
        path, command = stack.pop()
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            stack.append(([*path, name], sub))


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"pcd {' '.join(path)} {param.name}"
        for path, command in commands()
        for param in command.params
        if not getattr(param, "hidden", False) and not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, missing


def test_one_flag_name_per_concept() -> None:
    visible = {
        opt: " ".join(path)
        for path, command in commands()
        for param in command.params
        if not getattr(param, "hidden", False)
        for opt in [*param.opts, *getattr(param, "secondary_opts", [])]
    }
    for old, new in RETIRED.items():
        assert old not in visible, f"pcd {visible[old]} shows {old}; the name is {new}"


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=lambda p: " ".join(p) or "pcd")
def test_help_shows_no_bool_type_beside_flags(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout, result.stdout


def test_retired_spellings_still_work_hidden() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "info", "digits", "--root", "unused"])
    assert result.exit_code == 0, result.output
    assert "digits train" in result.stdout
    # accepted (the errors are about the space and the missing folder, not the option)
    result = runner.invoke(app, ["study", "run", "no-such-space", "--study-dir", "x"])
    assert result.exit_code == 2 and "no search space named 'no-such-space'" in result.stderr
    result = runner.invoke(app, ["data", "download", "cifar100", "--no-progress"])
    assert result.exit_code == 2 and "--data-root is required" in result.stderr
