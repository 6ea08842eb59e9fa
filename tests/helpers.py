"""Test doubles shared by several test files."""

from PIL import Image

from artaug.types import Box, Critique, Edit


class AlwaysEditsCritic:
    """Always asks for the same regional edit (the tiny VLM rarely writes a parseable one)."""

    model_id = "scripted"
    template_version = "test"

    def critique(self, image: Image.Image, prompt: str) -> Critique:
        return Critique(edits=[Edit(Box(0.0, 0.0, 0.5, 0.5), "a bright red square")], raw="scripted")
