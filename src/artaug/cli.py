"""The ``artaug`` command line. Thin: every command calls the Python API and holds no logic of its own."""

from __future__ import annotations

import argparse
import sys

from artaug import __version__


def build_parser() -> argparse.ArgumentParser:
    # Each command module exposes ``register(subparsers)``; listed explicitly so the wiring reads in one place.
    from artaug.commands import critique, demo, paint, replay, synth, tiny, train

    parser = argparse.ArgumentParser(prog="artaug", description=__doc__)
    parser.add_argument("--version", action="version", version=f"artaug {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (paint, critique, replay, demo, synth, train, tiny):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
