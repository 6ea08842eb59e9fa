"""One typed configuration for painter, critic, judge and loop.

Defaults are documented on each field (``help`` metadata) and are the real-use defaults: FLUX.1-dev and
Qwen2-VL-7B-Instruct on a GPU. A TOML file overrides them section by section; ``--set section.field=value`` style
overrides come last. The resolved config is dumped as TOML next to every output, so a run can be repeated.
"""

from __future__ import annotations

import copy
import tomllib
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import tomli_w

from artaug.judge import JudgeConfig


def _help(text: str, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class PainterConfig:
    model: str = _help("hub id or local folder of a FLUX pipeline", "black-forest-labs/FLUX.1-dev")
    dtype: str = _help("torch dtype: auto (bfloat16 on GPU, float32 on CPU), bfloat16, float16, float32", "auto")
    device: str = _help("torch device: auto (cuda when available), cuda, cuda:1, cpu", "auto")
    offload: str = _help("none, model (enable_model_cpu_offload: fits 24 GB cards) or sequential (slowest)", "none")
    lora: str = _help("optional LoRA (file, folder or hub id) loaded and fused before painting", "")
    height: int = _help("image height in pixels (multiple of 16)", 1024)
    width: int = _help("image width in pixels (multiple of 16)", 1024)
    num_inference_steps: int = _help("denoising steps of the first painting", 28)
    guidance_scale: float = _help("FLUX distilled guidance", 3.5)
    max_sequence_length: int = _help("T5 tokens of the global prompt", 512)


@dataclass
class CriticConfig:
    model: str = _help(
        "hub id or local folder of a Qwen-family VLM, or the base URL of an OpenAI-compatible endpoint",
        "Qwen/Qwen2-VL-7B-Instruct",
    )
    served_model: str = _help("model name to send to an OpenAI-compatible endpoint (URL critics only)", "")
    api_key_env: str = _help("environment variable that holds the endpoint's API key (never stored)", "OPENAI_API_KEY")
    template: str = _help(
        "instruction template: auto (grounding tokens in-process, JSON for URLs), grounding, json", "auto"
    )
    convention: str = _help(
        "box convention of the answers: auto, qwen2-vl, qwen2.5-vl, qwen3-vl, json-1000, json-pixels", "auto"
    )
    max_edits: int = _help("at most this many regional edits per critique", 4)
    max_new_tokens: int = _help("tokens the critic may write", 512)
    dtype: str = _help("torch dtype of an in-process critic (auto, bfloat16, float32)", "auto")
    device: str = _help("torch device of an in-process critic", "auto")
    timeout: float = _help("seconds before an endpoint request is abandoned", 120.0)
    max_retries: int = _help("retries on 429/5xx/connection errors, with backoff", 3)
    cache_dir: str = _help("critique cache folder (keyed by image hash, prompt, template, model); empty: off", "")


@dataclass
class LoopConfig:
    rounds: int = _help("critique → repaint → judge rounds after the first painting", 2)
    regional: str = _help(
        "how edits are painted: attention (one transformer pass per step, default) or blend (1+N passes)", "attention"
    )
    strength: float = _help(
        "fraction of the schedule a revision re-runs from the current best painting; 1.0 re-denoises from the seed's"
        " noise as published ArtAug did (about 5x dearer per round at 4 edits in blend mode)",
        0.4,
    )
    edit_strength: float = _help("s_i of the partition formula for every edit (blend mode)", 10.0)
    blur_sigma: float = _help("Gaussian blur of blend masks in latent pixels; 0 = hard masks", 0.0)
    region_max_sequence_length: int = _help("T5 tokens per regional prompt (attention mode budget)", 64)
    use_global_prompt: bool = _help("repaint with the critic's rewritten global prompt when it gives one", True)
    max_rerolls: int = _help("a broken first painting is re-rolled with the next seed at most this often", 3)


@dataclass
class Config:
    painter: PainterConfig = field(default_factory=PainterConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _section_to_dict(getattr(self, f.name)) for f in fields(self)}

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(tomli_w.dumps(self.to_dict()))


def _section_to_dict(section: Any) -> dict[str, Any]:
    data = {}
    for f in fields(section):
        value = getattr(section, f.name)
        if is_dataclass(value):
            value = _section_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        if value is not None:
            data[f.name] = value
    return data


def _apply(section: Any, values: dict[str, Any], where: str) -> None:
    hints = typing.get_type_hints(type(section))
    known = {f.name for f in fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown config key {where}.{key}; known keys: {', '.join(sorted(known))}")
        current = getattr(section, key)
        if is_dataclass(current):
            _apply(current, value, f"{where}.{key}")
        else:
            setattr(section, key, _coerce(value, hints[key], f"{where}.{key}"))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert TOML values and ``--set`` strings to the field's declared type, or say why not."""
    base = typing.get_args(hint)[0] if typing.get_origin(hint) in (typing.Union, type(int | None)) else hint
    if value is None or base is Any:
        return value
    try:
        if base is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if base in (int, float, str, bool):
            return base(value)
        if typing.get_origin(base) is tuple and isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if typing.get_origin(base) is tuple:
            return tuple(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: cannot read {value!r} as {getattr(base, '__name__', base)}") from error
    return value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the TOML file at ``path``, then ``overrides`` (``{"loop.rounds": 3, ...}``)."""
    config = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        with path.open("rb") as handle:
            try:
                data = tomllib.load(handle)
            except tomllib.TOMLDecodeError as error:
                raise ValueError(f"{path} is not valid TOML: {error}") from error
        _apply(config, data, str(path))
    return apply_overrides(config, overrides or {})


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``config`` with ``{"section.key": value}`` overrides applied (values may be CLI strings)."""
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if not key or section not in {f.name for f in fields(config)}:
            raise ValueError(
                f"override {dotted!r} must look like section.key with section in painter/critic/judge/loop"
            )
        for part in reversed(key.split(".")[1:]):  # judge.broken.dark_level=... reaches nested sections
            value = {part: value}
        _apply(getattr(config, section), {key.split(".")[0]: value}, section)
    return config


def parse_set_options(items: list[str]) -> dict[str, str]:
    """``["loop.rounds=3", ...]`` from repeated ``--set`` flags."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected section.key=value")
        out[key.strip()] = value.strip()
    return out
