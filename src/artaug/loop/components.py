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
        """Load what ``config`` names. Critics without weights (an endpoint, notes, the world's detector) are built
        first, so a bad URL or notes file is reported before the painter's gigabytes load."""
        from artaug.critic import critic_from_config, is_weightless
        from artaug.judge import Judge
        from artaug.painter import painter_class

        family = painter_class(config.painter.model)  # an unknown model is an error before anything loads
        wanted = with_critic and config.loop.rounds > 0
        weightless = is_weightless(config.critic.model)
        critic = critic_from_config(config.critic) if wanted and weightless else None
        painter = family.from_config(config.painter)
        if wanted and not weightless:
            critic = critic_from_config(config.critic)
        judge = Judge.from_config(config.judge, critic=critic)
        return cls(painter, critic, judge)

    def provenance(self) -> dict[str, Any]:
        """Model ids (and folder fingerprints for local folders) that a trail records."""
        from artaug.provenance import describe_model

        data = {"painter": describe_model(getattr(self.painter, "model_id", ""))}
        editor = getattr(self.painter, "editor", None)
        if editor is not None:
            data["editor"] = describe_model(editor.model_id)
        if self.critic is not None:
            data["critic"] = describe_model(getattr(self.critic, "model_id", ""))
            data["template_version"] = getattr(self.critic, "template_version", "")
        return data
