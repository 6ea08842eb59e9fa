"""Command-line options generated from the config's fields, and the parser every command shares.

A command names the settings it offers (``"painter.height"``, ``"loop.strength"``, ...); each becomes a flag whose
name, type, choices, help and default come from the field itself (``artaug.config``), so no help text restates a
default and no table maps flags to fields by hand. Settings resolve in one order: defaults < ``--config FILE`` <
``--set section.key=value`` < flags, and the result is validated before the command loads anything.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from artaug.config import Config, describe, load_config, option_names, parse_set_options
from artaug.settings import ConfigError, default_of, parse_text, unwrap

PREFIX = "cfg:"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with usage errors as one ``error:`` line that says where the usage is."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def add_config_flags(parser: argparse.ArgumentParser, settings: tuple[str, ...], title: str | None = None) -> None:
    """One flag per setting, typed and documented from its field (``--painter`` for ``painter.model`` ...)."""
    group = parser.add_argument_group(title) if title else parser
    names = option_names(settings)
    for dotted in settings:
        f, hint = describe(dotted)
        flags = [f"--{name.replace('_', '-')}" for name, target in names.items() if target == dotted]
        base, _ = unwrap(hint)
        default = default_of(f)
        shown = "none" if default is None else (",".join(default) if isinstance(default, tuple) else repr(default))
        options: dict[str, Any] = {
            "dest": PREFIX + dotted,
            "default": argparse.SUPPRESS,
            # argparse formats help with %-interpolation: a literal % in a field's help must be doubled
            "help": f"{f.metadata['help']} [{dotted}; default: {shown}]".replace("%", "%%"),
        }
        if base is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif f.metadata.get("choices"):
            options["choices"] = f.metadata["choices"]
        else:
            options["type"] = _parser_of(hint, dotted)
            options["metavar"] = {int: "N", float: "X"}.get(base) or flags[0].lstrip("-").upper()
        group.add_argument(*flags, **options)


def add_config_file_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE.toml", help="TOML file with [painter], [loop], ... tables"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override any setting (repeatable)"
    )


def config_from_args(args: argparse.Namespace, presets: dict[str, Any] | None = None) -> Config:
    """The validated config of a command line: defaults < ``presets`` (``--tiny``) < ``--config`` < ``--set`` <
    flags."""
    overrides = parse_set_options(getattr(args, "set", []) or [])
    overrides |= {key[len(PREFIX) :]: value for key, value in vars(args).items() if key.startswith(PREFIX)}
    return load_config(getattr(args, "config", None), overrides, presets)


def _parser_of(hint: Any, dotted: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return parse_text(text, hint, dotted)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = dotted
    return parse


def integer(low: int, high: int | None = None) -> Any:
    """An argparse type: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high if high is not None else '...'}], got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def finite(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused at the door)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def check_output(path: Path, kind: str = "file") -> None:
    """Refuse an output path that cannot be written, before any model loads: its kind (a folder where a file is
    wanted, or the reverse) or a parent folder that is not writable."""
    if path.exists():
        if kind == "file" and path.is_dir():
            raise ValueError(f"output {path} is a folder; give a file name")
        if kind == "folder" and not path.is_dir():
            raise ValueError(f"output {path} is a file; give a folder")
    parent = path if path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: {parent} is not writable")
