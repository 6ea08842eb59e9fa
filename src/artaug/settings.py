"""The mechanism behind artaug's configuration: sections that are typed, documented and validated where they are born.

A section is a frozen dataclass whose fields are declared with :func:`setting`: default, help text, and the rules a
value must follow (choices, range, finiteness, a custom check). Creating a section validates every field (type,
finite numbers, ranges, lengths) and the section's own cross-field rules, and raises one ``ConfigError`` that names
every bad ``section.key``, so an invalid value can never reach a model load or a file write. Sections are frozen:
a changed config is a new, validated one (:meth:`Section.replace`).

The help text and default of each field are the one source of truth for the CLI (``artaug.cli.options`` generates
flags from them) and for the TOML files. No torch here: ``import artaug.config`` stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

MAX_TEXT = 4096  # no string setting (a model id, a path, a name) is longer than this
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
NONE_WORDS = ("none", "off", "null")


class ConfigError(ValueError):
    """One or more settings are invalid; the message names each ``section.key`` and what is allowed."""


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    check: Callable[[Any], str | None] | None = None,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
) -> Any:
    """A documented config field. ``min``/``max`` are inclusive bounds, ``above`` an exclusive lower bound;
    ``check(value)`` returns why a value is bad (or None). ``flag`` names the CLI flag when the field name is not it
    (``painter.model`` is ``--painter``); ``aliases`` are extra flag names."""
    metadata = {"help": help, "choices": choices, "min": min, "max": max, "above": above, "check": check}
    metadata |= {"flag": flag, "aliases": aliases}
    if isinstance(default, (list, dict, set)) or (isinstance(default, type) and is_dataclass(default)):
        factory = default if isinstance(default, type) else (lambda: type(default)(default))
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Section:
    """Base of every config section; see the module docstring."""

    name: ClassVar[str] = "section"

    def __post_init__(self) -> None:
        problems = []
        hints = _hints(type(self))
        for f in fields(self):
            value, problem = _normalise(getattr(self, f.name), hints[f.name], f, f"{self.name}.{f.name}")
            if problem:
                problems.append(problem)
            else:
                object.__setattr__(self, f.name, value)
        if not problems:
            problems += [f"{self.name}: {p}" for p in self.check()]
        if problems:
            raise ConfigError("; ".join(problems))

    def check(self) -> list[str]:
        """Cross-field rules of the section (override); each string says what is wrong."""
        return []

    # -- building and changing ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> Any:
        """A section from a TOML table (typed values) or CLI strings; unknown keys are an error, never ignored."""
        where = where or cls.name
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"[{where}] must be a table of settings, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting {where}.{unknown[0]}; [{where}] knows: {', '.join(known)}")
        hints = _hints(cls)
        values = {}
        for key, value in data.items():
            hint = hints[key]
            if _section_type(hint) is not None:
                values[key] = _section_type(hint).from_dict(value, key if where == "config" else f"{where}.{key}")
            else:
                values[key] = parse_text(value, hint, f"{where}.{key}") if isinstance(value, str) else value
        return cls(**values)

    def replace(self, **changes: Any) -> Any:
        """A validated copy with ``changes`` (typed values or CLI strings)."""
        merged = {**self.to_dict(nested=False), **changes}
        return type(self).from_dict(merged)

    def to_dict(self, nested: bool = True) -> dict[str, Any]:
        """Plain TOML-able values (``None`` left out: TOML has no null, and absent means the default ``None``)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Section):
                value = value.to_dict() if nested else value
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                out[f.name] = value
        return out

    @classmethod
    def settings(cls) -> Iterator[tuple[str, dataclasses.Field, Any]]:
        """``(dotted name, field, type hint)`` of every leaf setting, nested sections included."""
        hints = _hints(cls)
        for f in fields(cls):
            sub = _section_type(hints[f.name])
            if sub is not None:
                for name, leaf, hint in sub.settings():
                    yield f"{f.name}.{name}", leaf, hint
            else:
                yield f.name, f, hints[f.name]


# ---------------------------------------------------------------------------------------------------- values


def parse_text(text: str, hint: Any, where: str) -> Any:
    """A command-line string as the setting's type (``--set painter.height=512``); ``ConfigError`` if it is not."""
    base, optional = unwrap(hint)
    word = text.strip().lower()
    if optional and word in NONE_WORDS + ("",):
        return None
    try:
        if base is bool:
            if word not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError
            return word in TRUE_WORDS
        if base is int:
            return int(text.strip())
        if base is float:
            return float(text.strip())
        if typing.get_origin(base) is tuple:
            return tuple(v.strip() for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{where}: cannot read {text!r} as {_type_name(base)}") from None
    return text


def _normalise(value: Any, hint: Any, f: dataclasses.Field, where: str) -> tuple[Any, str | None]:
    """The value in its canonical type (int → float, list → tuple) and why it is invalid, if it is."""
    base, optional = unwrap(hint)
    meta = f.metadata
    if value is None:
        return value, None if optional else f"{where} must be set (got nothing)"
    if _section_type(base) is not None:
        return value, None if isinstance(value, _section_type(base)) else f"{where} must be a [{where}] table"
    if base is bool:
        if not isinstance(value, bool):
            return value, f"{where} must be true or false, got {value!r}"
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"{where} must be an integer, got {value!r}"
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"{where} must be a number, got {value!r}"
        value = float(value)
        if not math.isfinite(value):
            return value, f"{where} must be a finite number, got {value!r}"
    elif base is str:
        if not isinstance(value, str):
            return value, f"{where} must be text, got {value!r}"
        if len(value) > MAX_TEXT or "\x00" in value:
            return value, f"{where} must be text of at most {MAX_TEXT} characters without NUL bytes"
    elif typing.get_origin(base) is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return value, f"{where} must be a list of names, got {value!r}"
        if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value) or len(value) > 256:
            return value, f"{where} must be a list of at most 256 non-empty names"
        value = tuple(value)
    if meta.get("choices") is not None and value not in meta["choices"]:
        return value, f"{where} must be one of {', '.join(map(str, meta['choices']))}; got {value!r}"
    if (low := meta.get("min")) is not None and value < low:
        return value, f"{where} must be >= {low}, got {value}"
    if (high := meta.get("max")) is not None and value > high:
        return value, f"{where} must be <= {high}, got {value}"
    if (floor := meta.get("above")) is not None and value <= floor:
        return value, f"{where} must be > {floor}, got {value}"
    if meta.get("check") is not None and (problem := meta["check"](value)):
        return value, f"{where}: {problem}"
    return value, None


def unwrap(hint: Any) -> tuple[Any, bool]:
    """``(base type, optional)`` of ``X`` or ``X | None``; a ``Literal`` counts as its values' type."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = len(args) < len(typing.get_args(hint)), args[0]
    if typing.get_origin(hint) is typing.Literal:
        hint = type(typing.get_args(hint)[0])
    return hint, optional


def _section_type(hint: Any) -> type[Section] | None:
    base, _ = unwrap(hint)
    return base if isinstance(base, type) and issubclass(base, Section) else None


def _type_name(base: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number"}.get(base, getattr(base, "__name__", str(base)))


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default
