"""The error convention of every ``pcd`` command: one line ``error: <message>`` on stderr, no
traceback, and an exit code that says whose fault it was.

``fail`` is the one way a command reports an expected failure; :class:`OneLineErrors` (the
root command group) gives click's own usage errors the same shape.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup

RUNTIME_ERROR = 1  # the run failed (missing data, a corrupt checkpoint, a server error, ...)
USAGE_ERROR = 2  # bad arguments
INTERRUPTED = 130  # Ctrl-C


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def fail(message: object, code: int = RUNTIME_ERROR) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with ``code``."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


class OneLineErrors(TyperGroup):
    """The root group: usage errors (a missing option, a value of the wrong type, an unknown
    command) are printed as one ``error:`` line instead of a usage panel."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:  # the help has been printed
            message = exc.format_message().strip()
            if message:
                typer.echo(message, err=True)
            sys.exit(exc.exit_code)
        except ClickException as exc:
            message = one_line(exc.format_message())
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                message += f" (see `{ctx.command_path} --help`)"
            typer.echo(f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(RUNTIME_ERROR)
        sys.exit(rv if isinstance(rv, int) else 0)
