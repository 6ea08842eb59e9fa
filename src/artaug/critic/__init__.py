"""The critic: image + prompt -> ``Critique``. Prompts (templates), parsing and transport are separate modules."""

from artaug.critic.parse import CONVENTIONS, parse_critique

__all__ = ["CONVENTIONS", "parse_critique"]
