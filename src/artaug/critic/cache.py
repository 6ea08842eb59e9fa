"""A critique cache on disk: one JSON file per (image, prompt, template version, model, convention, max edits).

Critiques of a real 7B VLM cost seconds each; re-running a synthesis or an experiment over the same paintings should
not pay twice. Failed critiques (``error`` set) are never cached, so a flaky endpoint is retried next time.

A cache folder may be shared or edited by others, so an entry is untrusted on the way back in: it is read with
bounded JSON, every field is checked for its type and size, and its edits must respect the critic's ``max_edits``.
An entry that fails is a miss: the critic is asked again, the entry rewritten, and the repair recorded on the fresh
critique (``repairs``), never silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from PIL import Image

from artaug.files import loads_json, write_json
from artaug.types import CONVENTIONS, MAX_EDITS, MAX_PROMPT_CHARS, Critique

log = logging.getLogger(__name__)
MAX_ENTRY_BYTES = 1024 * 1024


def image_hash(image: Image.Image) -> str:
    """SHA-256 of the decoded pixels (mode, size and bytes): the same picture hashes the same from any file format."""
    digest = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class CritiqueCache:
    """Critiques stored as ``<folder>/<key[:2]>/<key>.json``; writes are atomic (temp file + rename)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(
        image: Image.Image, prompt: str, template_version: str, model: str, convention: str, max_edits: int
    ) -> str:
        parts = [image_hash(image), prompt, template_version, model, convention, max_edits]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str, max_edits: int = MAX_EDITS) -> Critique | None:
        """The cached critique, ``None`` on a miss; raises ``ValueError`` for an entry that is not a valid one."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            if path.stat().st_size > MAX_ENTRY_BYTES:
                raise ValueError(f"{path.stat().st_size:,} bytes")
            data = loads_json(path.read_bytes(), where="entry", max_bytes=MAX_ENTRY_BYTES)
            critique = Critique.from_dict(data) if isinstance(data, dict) else None
            if critique is None:
                raise ValueError("not a JSON object")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"critique cache entry {path} is damaged ({error})") from None
        if problem := _invalid(critique, max_edits):
            raise ValueError(f"critique cache entry {path} is invalid ({problem})")
        return critique

    def put(self, key: str, critique: Critique) -> None:
        if critique.error is not None:
            return
        write_json(self._path(key), critique.to_dict(), indent=1)


class CachedCritic:
    """Any critic with a ``CritiqueCache`` in front: the same methods, ``critique`` answered from disk when it can.

    ``ask`` is passed through uncached (the pairwise judge asks about fresh pairs every time).
    """

    def __init__(self, critic, cache: CritiqueCache | str | Path, max_edits: int | None = None) -> None:
        self.critic = critic
        self.cache = cache if isinstance(cache, CritiqueCache) else CritiqueCache(cache)
        self.limit = max_edits or getattr(critic, "max_edits", MAX_EDITS)
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.critic.name

    @property
    def model_id(self) -> str:
        return self.critic.model_id

    @property
    def template_version(self) -> str:
        return self.critic.template_version

    def ask(self, images: list[Image.Image], text: str, max_new_tokens: int = 256) -> str:
        return self.critic.ask(images, text, max_new_tokens=max_new_tokens)

    def critique(self, image: Image.Image, prompt: str) -> Critique:
        return self.critique_batch([image], [prompt])[0]

    def critique_batch(self, images: list[Image.Image], prompts: list[str]) -> list[Critique]:
        c = self.critic
        keys = [
            CritiqueCache.key(image, prompt, c.template_version, c.model_id, c.convention, c.max_edits)
            for image, prompt in zip(images, prompts, strict=True)
        ]
        found: list[Critique | None] = []
        repairs: dict[int, str] = {}
        for i, key in enumerate(keys):
            try:
                found.append(self.cache.get(key, self.limit))
            except ValueError as error:  # a damaged or tampered entry: ask again and say so
                log.warning("%s; asking the critic again", error)
                repairs[i] = f"{error}: ignored, critique asked again and the entry rewritten"
                found.append(None)
        missing = [i for i, critique in enumerate(found) if critique is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = c.critique_batch([images[i] for i in missing], [prompts[i] for i in missing])
            for i, critique in zip(missing, fresh, strict=True):
                self.cache.put(keys[i], critique)
                if i in repairs:
                    critique.repairs.append(repairs[i])
                found[i] = critique
        return found

    def __getattr__(self, name: str):
        # Everything else (convention, max_edits, template, ...) is the wrapped critic's.
        if name == "critic":
            raise AttributeError(name)
        return getattr(self.critic, name)

    def __repr__(self) -> str:
        return f"CachedCritic({self.critic!r}, cache={str(self.cache.folder)!r})"


def _invalid(critique: Critique, max_edits: int) -> str | None:
    """Why a critique read from elsewhere is not one a critic could have produced, or None."""
    text_fields = ("raw", "convention", "template_version", "model")
    if not all(isinstance(getattr(critique, name), str) for name in text_fields):
        return "a text field holds something else"
    if critique.convention not in CONVENTIONS:
        return f"unknown convention {critique.convention!r}"
    if critique.global_prompt is not None and not (
        isinstance(critique.global_prompt, str) and 0 < len(critique.global_prompt) <= MAX_PROMPT_CHARS
    ):
        return "global_prompt is not a prompt"
    if not isinstance(critique.repairs, list) or not all(isinstance(r, str) for r in critique.repairs):
        return "repairs is not a list of text"
    if critique.error is not None:
        return "failed critiques are never cached"
    if len(critique.edits) > max_edits:
        return f"{len(critique.edits)} edits, more than max_edits {max_edits}"
    if not isinstance(critique.seconds, (int, float)):
        return "seconds is not a number"
    for size in (critique.image_size, critique.processed_size):
        if size is not None and not (len(size) == 2 and all(isinstance(v, int) and 0 < v < 1 << 20 for v in size)):
            return "an image size is not two positive integers"
    return None
