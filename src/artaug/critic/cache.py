"""A critique cache on disk: one JSON file per (image, prompt, template version, model, convention, max edits).

Critiques of a real 7B VLM cost seconds each; re-running a synthesis or an experiment over the same paintings should
not pay twice. Failed critiques (``error`` set) are never cached, so a flaky endpoint is retried next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from PIL import Image

from artaug.types import Critique


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

    def get(self, key: str) -> Critique | None:
        path = self._path(key)
        try:
            return Critique.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # a damaged entry is a miss, not a crash; it gets rewritten
            return None

    def put(self, key: str, critique: Critique) -> None:
        if critique.error is not None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(critique.to_dict(), f, ensure_ascii=False, indent=1)
        os.replace(tmp, path)


class CachedCritic:
    """Any critic with a ``CritiqueCache`` in front: the same methods, ``critique`` answered from disk when it can.

    ``ask`` is passed through uncached (the pairwise judge asks about fresh pairs every time).
    """

    def __init__(self, critic, cache: CritiqueCache | str | Path) -> None:
        self.critic = critic
        self.cache = cache if isinstance(cache, CritiqueCache) else CritiqueCache(cache)
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
        found = [self.cache.get(key) for key in keys]
        missing = [i for i, critique in enumerate(found) if critique is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = c.critique_batch([images[i] for i in missing], [prompts[i] for i in missing])
            for i, critique in zip(missing, fresh, strict=True):
                self.cache.put(keys[i], critique)
                found[i] = critique
        return found

    def __getattr__(self, name: str):
        # Everything else (convention, max_edits, template, ...) is the wrapped critic's.
        if name == "critic":
            raise AttributeError(name)
        return getattr(self.critic, name)

    def __repr__(self) -> str:
        return f"CachedCritic({self.critic!r}, cache={str(self.cache.folder)!r})"
