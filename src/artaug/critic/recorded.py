"""A critic whose answers were written in advance: by a person (an art director's notes), or saved from a VLM.

The answers go through the same parser as a model's, in order, one per critique; after the last one the critic
answers "no changes". A file holds one answer per block, blocks separated by a line containing only ``---``.
``load_critic("notes.txt")`` (any existing file) gives this critic, so ``artaug paint --critic notes.txt`` works.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from PIL import Image

from artaug.config import CriticConfig
from artaug.critic.base import Critic, CriticError
from artaug.types import Critique

SEPARATOR = "---"
MAX_NOTES_BYTES = 1024 * 1024


class RecordedCritic(Critic):
    name = "recorded"

    def __init__(
        self,
        answers: list[str],
        *,
        model_id: str = "recorded",
        max_edits: int = CriticConfig().max_edits,
        convention: str = "auto",
    ):
        super().__init__(model_id=model_id, template="json", max_edits=max_edits, convention=convention)
        self.answers = list(answers)
        self.digest = hashlib.sha256("\n---\n".join(self.answers).encode()).hexdigest()[:8]
        self.position = 0

    @classmethod
    def from_file(cls, path: str | Path, **options) -> RecordedCritic:
        path = Path(path)
        if path.stat().st_size > MAX_NOTES_BYTES:
            raise ValueError(f"critic notes {path} are larger than {MAX_NOTES_BYTES:,} bytes; is it the right file?")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"critic notes {path} are not UTF-8 text (a notes file holds answers as text)") from None
        blocks, current = [], []
        for line in text.splitlines():
            if line.strip() == SEPARATOR:
                blocks.append("\n".join(current).strip())
                current = []
            else:
                current.append(line)
        blocks.append("\n".join(current).strip())
        answers = [b for b in blocks if b]
        if not answers:
            raise ValueError(f"{path} holds no critic answers (blocks separated by '---' lines)")
        return cls(answers, model_id=str(path), **options)

    @property
    def template_version(self) -> str:
        return f"recorded@{self.digest}"

    def ask(self, images: list[Image.Image], text: str, max_new_tokens: int = 256) -> str:
        raise CriticError("a recorded critic holds critiques only; it cannot answer other questions")

    def critique_batch(self, images: list[Image.Image], prompts: list[str]) -> list[Critique]:
        self._check_batch(images, prompts)
        out = []
        for image in images:
            started = time.perf_counter()
            answer = self.answers[self.position] if self.position < len(self.answers) else "no changes"
            self.position += 1
            out.append(self._critique_from(answer, image, None, started))
        return out
