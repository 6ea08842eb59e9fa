"""Conditions: the painters an evaluation compares side by side, each a name plus what differs from the config.

``NAME=SPEC`` on the command line; SPEC is a comma-separated list of

- ``base``: the config's painter as it is, one painting, no critique (the default for an empty SPEC);
- ``lora=FILE``: a LoRA fused into the painter for this condition (repeatable: LoRAs add up);
- ``loop``: the critique loop, ``loop.rounds`` rounds (a condition without it paints once: ``loop.rounds`` = 0);
- ``SECTION.KEY=VALUE``: any other setting for this condition (``loop.strength=0.6``, ``painter.model=DIR``...).

The first condition is the reference every other one is compared with. Without ``--condition`` the evaluation
compares ``base``, then ``lora`` for each ``--lora`` (``lora-<name>`` when there are several), then with
``eval.loop`` also ``loop`` and ``lora+loop``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from artaug.config import Config

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


@dataclass(frozen=True)
class EvalCondition:
    """One painter set-up: its ``name``, LoRA files, whether the loop runs, and setting overrides."""

    name: str
    loras: tuple[str, ...] = ()
    loop: bool = False
    overrides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"condition name {self.name!r} must be 1-64 letters, digits, '.', '_', '+' or '-'")

    def config(self, base: Config) -> Config:
        """The validated config of this condition: ``base`` with its overrides, and ``loop.rounds`` 0 unless it
        runs the loop (then ``loop.rounds`` must be at least 1)."""
        config = base.updated(self.overrides)
        if not self.loop:
            return config.updated({"loop.rounds": 0})
        if config.loop.rounds < 1:
            raise ValueError(f"condition {self.name!r} runs the loop, but loop.rounds is 0: set --set loop.rounds=2")
        return config

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "loras": list(self.loras), "loop": self.loop, "overrides": dict(self.overrides)}


def parse_condition(text: str) -> EvalCondition:
    """``NAME=SPEC`` → an ``EvalCondition`` (see the module docstring); ``ValueError`` saying what is wrong."""
    name, sep, spec = text.partition("=")
    if not sep:
        raise ValueError(f"--condition {text!r} must look like NAME=SPEC, e.g. styled=lora=out/lora,loop")
    loras, loop, overrides = [], False, {}
    for item in (part.strip() for part in spec.split(",")):
        key, has_value, value = item.partition("=")
        if item in ("", "base"):
            continue
        if item == "loop":
            loop = True
        elif key == "lora" and has_value and value:
            loras.append(value)
        elif has_value and "." in key:
            overrides[key] = value
        else:
            raise ValueError(f"--condition {name}: {item!r} is not base, loop, lora=FILE or section.key=value")
    return EvalCondition(name.strip(), tuple(loras), loop, overrides)


def default_conditions(loras: list[str], loop: bool) -> list[EvalCondition]:
    """base, + each LoRA, and with ``loop`` also + loop and + LoRA + loop."""
    named = [("lora" if len(loras) == 1 else f"lora-{Path(path).stem or i}", path) for i, path in enumerate(loras)]
    conditions = [EvalCondition("base")] + [EvalCondition(name, (path,)) for name, path in named]
    if loop:
        conditions += [EvalCondition("loop", loop=True)] + [EvalCondition(f"{n}+loop", (p,), True) for n, p in named]
    return conditions


def check_conditions(conditions: list[EvalCondition], base: Config) -> dict[str, Config]:
    """Every condition's config, validated, and every LoRA file read (safetensors only, finite) before any model
    loads; names must be unique."""
    from artaug.painter.lora import read_lora_tensors

    names = [c.name for c in conditions]
    if not conditions or len(set(names)) != len(names):
        raise ValueError(f"conditions need distinct names, got {', '.join(names) or 'none'}")
    configs = {}
    for condition in conditions:
        configs[condition.name] = condition.config(base)
        for path in condition.loras:
            read_lora_tensors(path)
    return configs
