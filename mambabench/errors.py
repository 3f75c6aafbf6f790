"""The one error policy of every command-line tool.

A mistake the user can fix (bad input, a missing file, data set or weights, an unusable store) is a
``UserError``: the command prints one red line naming the problem and its fix and exits 2. Anything else is
a bug of ours: Python's traceback and exit 1, so it can be reported. ``--debug`` anywhere on the command
line, or ``MAMBABENCH_DEBUG=1``, shows the traceback of a ``UserError`` too.

Every CLI is built with ``cli_app`` so the policy holds wherever the app runs: from its console script
(``run_app``) or in process under click's ``CliRunner`` in the tests."""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

import click
import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from mambabench import settings


class UserError(Exception):
    """A mistake the user can fix; its message names the problem and the fix on its first line."""


def message(error: BaseException) -> str:
    """The error's first non-empty line."""
    lines = [line for line in str(error.args[0] if error.args else error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


_debug_requested: ContextVar[bool] = ContextVar("mambabench_debug", default=False)


def request_debug() -> None:
    """``--debug`` was given: the command running now shows the traceback of a ``UserError`` too."""
    _debug_requested.set(True)


def _debug() -> bool:
    return _debug_requested.get() or settings.debug()


class _OneErrorPolicy(TyperGroup):
    """A command group whose commands turn a ``UserError`` into one red line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        outer = _debug_requested.set(_debug_requested.get())  # a --debug of this command ends with it
        try:
            return super().invoke(ctx)
        except UserError as error:
            if _debug():
                raise
            Console(stderr=True, soft_wrap=True).print(Text.assemble(("error: ", "red"), message(error)))
            ctx.exit(2)
        finally:
            _debug_requested.reset(outer)


def cli_app(help: str, **options: Any) -> typer.Typer:
    """A typer app (or sub-app) that follows the error policy."""
    return typer.Typer(cls=_OneErrorPolicy, help=help, no_args_is_help=True, **options)


def run_app(app: typer.Typer) -> None:
    """The console-script entry of an app: ``--debug`` taken off the arguments, Ctrl-C as exit 130."""
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    token = _debug_requested.set(debug or _debug_requested.get())
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        _debug_requested.reset(token)
