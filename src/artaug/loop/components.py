"""Load the painter, the critic and the judge that a config names, once, for many runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from artaug.config import Config


@dataclass
class Components:
    """A loaded painter, critic (or None) and judge."""

    painter: Any
    critic: Any
    judge: Any

    @classmethod
    def load(cls, config: Config, *, with_critic: bool = True) -> Components:
        from artaug.critic import critic_from_config
        from artaug.judge import Judge
        from artaug.painter import FluxPainter

        painter = FluxPainter.from_config(config.painter)
        critic = critic_from_config(config.critic) if with_critic and config.loop.rounds > 0 else None
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
