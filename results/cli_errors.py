"""How every command-line tool of the harness fails: one line naming the problem and its fix, a non-zero
exit code, never a traceback (``--debug`` anywhere on the command line, or ``MAMBABENCH_DEBUG=1``, shows
it). Expected failures (bad input, missing files, an unusable store) exit 2; anything else is a bug of
ours and exits 1 with a line saying so."""

from __future__ import annotations

import sqlite3
import sys

import typer

from results.store import StoreError
from zoo import settings

EXPECTED = (ValueError, LookupError, OSError, sqlite3.Error, StoreError)


def message(error: BaseException) -> str:
    """The error's first line (a KeyError's repr quotes are dropped)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    if isinstance(error, OSError) and error.filename and str(error.filename) not in str(text):
        text = f"{error.filename}: {error.strerror or text}"
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def run_app(app: typer.Typer) -> None:
    """Run ``app`` and turn any exception into a one-line error (exit 2, or 1 for an unexpected one)."""
    debug = "--debug" in sys.argv[1:] or settings.debug()
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        if debug:
            raise
        expected = isinstance(error, EXPECTED)
        prefix = "error" if expected else f"internal error ({type(error).__name__}; please report it)"
        hint = "" if expected else " (--debug shows the traceback)"
        print(f"{prefix}: {message(error)}{hint}", file=sys.stderr)
        raise SystemExit(2 if expected else 1) from None
