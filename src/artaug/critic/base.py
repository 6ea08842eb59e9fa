"""What every critic backend shares: the template, the parse at the one boundary, and the provenance fields.

A backend implements two things: ``ask(images, text, max_new_tokens)`` (one conversation, raw text back) and
``critique_batch(images, prompts)``. ``critique(image, prompt)`` is the batch of one.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from PIL import Image

from artaug.critic.parse import CONVENTIONS, PIXEL_CONVENTIONS, parse_critique
from artaug.critic.prompts import Template, load_template
from artaug.types import Critique


class CriticError(RuntimeError):
    """A critic could not answer at all (endpoint down, timeout, HTTP errors after all retries)."""


class Critic(ABC):
    """Base class of the critic backends: ``critique(image, prompt) -> Critique`` and friends."""

    name = "critic"

    def __init__(self, *, model_id: str, template: str | Template, max_edits: int, convention: str) -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        if isinstance(max_edits, bool) or not isinstance(max_edits, int) or max_edits < 1:
            raise ValueError(f"max_edits must be a positive int, got {max_edits!r}")
        self.model_id = model_id
        self.template = load_template(template)
        self.max_edits = max_edits
        self.convention = convention

    @property
    def template_version(self) -> str:
        return self.template.version

    @property
    def pixels(self) -> bool:
        """Whether the model answers in pixels of the image it saw (Qwen2.5-VL) rather than 0..1000."""
        return self.convention in PIXEL_CONVENTIONS

    def instruction(self, prompt: str) -> str:
        return self.template.render(prompt, self.max_edits, pixels=self.pixels)

    @abstractmethod
    def ask(self, images: list[Image.Image], text: str, max_new_tokens: int = 256) -> str:
        """One conversation: the images, then ``text``; the model's raw answer. Raises ``CriticError`` on failure."""

    def critique(self, image: Image.Image, prompt: str) -> Critique:
        return self.critique_batch([image], [prompt])[0]

    @abstractmethod
    def critique_batch(self, images: list[Image.Image], prompts: list[str]) -> list[Critique]:
        """One ``Critique`` per (image, prompt), in order; transport failures are recorded on it, never raised."""

    def _check_batch(self, images: list[Image.Image], prompts: list[str]) -> None:
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        for image in images:
            if not isinstance(image, Image.Image):
                raise TypeError(f"critics take PIL images, got {type(image).__name__}")

    def _critique_from(
        self,
        answer: str,
        image: Image.Image,
        processed_size: tuple[int, int] | None,
        started: float,
        error: str | None = None,
    ) -> Critique:
        """Parse an answer (or record a failure) and fill in the provenance fields."""
        if error is None:
            critique = parse_critique(answer, image.size, self.convention, processed_size, self.max_edits)
        else:
            critique = Critique(convention=self.convention, image_size=image.size, processed_size=processed_size)
            critique.error = error
        critique.template_version = self.template_version
        critique.model = self.model_id
        critique.seconds = time.perf_counter() - started
        return critique
