"""Load the painter, the critic and the judge that a config names, once, for many runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from artaug.config import Config, CriticConfig, PainterConfig


def resolve_dtype(name: str, device: str | None) -> Any:
    """``auto`` means bfloat16 on a GPU and float32 on the CPU (CPU bfloat16 matmuls are slow and inexact)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if (device or "").startswith("cuda") else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}: use auto, bfloat16, float16 or float32")
    return dtype


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


@dataclass
class Components:
    """A loaded painter, critic (or None) and judge."""

    painter: Any
    critic: Any
    judge: Any

    @classmethod
    def load(cls, config: Config, *, with_critic: bool = True) -> Components:
        from artaug.judge import Judge

        painter = load_painter(config.painter)
        critic = load_configured_critic(config.critic) if with_critic and config.loop.rounds > 0 else None
        judge = Judge.from_config(config.judge, critic=critic)
        return cls(painter, critic, judge)

    def provenance(self) -> dict[str, Any]:
        """Model ids (and folder fingerprints for local folders) that a trail records."""
        from artaug.provenance import describe_model

        data = {"painter": describe_model(getattr(self.painter, "model_id", ""))}
        if self.critic is not None:
            data["critic"] = describe_model(getattr(self.critic, "model_id", ""))
            data["template_version"] = getattr(self.critic, "template_version", "")
        return data


def load_painter(config: PainterConfig) -> Any:
    """The ``FluxPainter`` a ``[painter]`` section names, with its LoRA (if any) loaded and fused."""
    from artaug.painter import FluxPainter

    device = resolve_device(config.device)
    painter = FluxPainter.from_pretrained(
        config.model, dtype=resolve_dtype(config.dtype, device), device=device, offload=config.offload
    )
    if config.lora:
        painter.load_lora(config.lora)
        painter.fuse_lora()
    return painter


def load_configured_critic(config: CriticConfig) -> Any:
    from artaug.critic import is_url, load_critic

    options: dict[str, Any] = {
        "max_edits": config.max_edits,
        "convention": config.convention,
        "max_new_tokens": config.max_new_tokens,
    }
    if config.template != "auto":
        options["template"] = config.template
    if is_url(config.model):
        options.update(
            model=config.served_model or None,
            api_key_env=config.api_key_env,
            timeout=config.timeout,
            max_retries=config.max_retries,
        )
    else:
        device = resolve_device(config.device)
        options.update(dtype=resolve_dtype(config.dtype, device), device=device)
    critic = load_critic(config.model, **options)
    if config.cache_dir:
        from artaug.critic import CachedCritic

        critic = CachedCritic(critic, config.cache_dir)
    return critic
