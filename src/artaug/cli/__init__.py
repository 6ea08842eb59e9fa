"""The ``artaug`` command line. Thin: every command calls the Python API and holds no logic of its own.

Every failure ends as one ``error:`` line on stderr that names the file or the setting and what to do, and a
non-zero exit (2 for bad input, 1 when the work itself failed); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import sys

from artaug import __version__
from artaug.cli import critique, demo, eval, paint, replay, studio, synth, tiny, train, world
from artaug.cli.options import ArgumentParser

# Errors that mean "the input was wrong" (exit 2); anything else is a failure of the work itself (exit 1).
INPUT_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, ImportError)
OOM_HINT = (
    "out of GPU memory: try --memory 24gb (FLUX.1-dev on a 24 GB card), then --memory 16gb; an endpoint critic "
    "(--critic http://...) leaves the whole card to the painter"
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="artaug", description=__doc__)
    parser.add_argument("--version", action="version", version=f"artaug {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each command module exposes ``register(subparsers)``; listed here so the wiring reads in one place.
    for module in (paint, critique, replay, demo, synth, train, eval, tiny, studio, world):
        module.register(subparsers)
    for command in subparsers.choices.values():
        for sub in _subparsers(command):
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the one place an exception becomes the user's error line
        if args.debug:
            raise
        code, message = describe(error)
        print(f"error: {message}", file=sys.stderr)
        return code


def describe(error: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an exception that reached the command line."""
    if type(error).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
        return 1, str(error) if "--memory" in str(error) else OOM_HINT
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
        where = f" {error.filename}" if error.filename else ""
        return 1, f"could not write{where}: {error.strerror}; free some space or choose another output"
    if isinstance(error, PermissionError):
        return 2, f"permission denied: {error.filename or error}"
    text = " ".join(str(error).split()) or type(error).__name__
    if type(error).__module__ == "sqlite3":  # a ledger that the store's own checks did not already explain
        return 1, f"the synth store's ledger failed ({type(error).__name__}: {text}); see `artaug synth stats`"
    if isinstance(error, INPUT_ERRORS):
        return 2, text
    if isinstance(error, OSError):
        return 1, text
    return 1, f"{type(error).__name__}: {text} (an unexpected failure: run again with --debug and report it)"


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _subparsers(sub)
    return found


if __name__ == "__main__":
    sys.exit(main())
