"""What every metric shares: the ``Sample`` it scores, the ``Result`` it gives, the one ``Metric`` signature
(``score(samples) -> list[Result]``, higher is better), and :func:`score_safely`, which makes one bad image cost only
its own score. The metrics themselves are listed, with their models and papers, in ``artaug.eval.registry``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL import Image

    from artaug.judge.scorers import ClipBundle


@dataclass
class Sample:
    """What a metric sees of one painting: the image, its prompt, the prompt record's metadata, and the image's
    ``name`` (its path relative to the folder it lies in: GenEval's detections are keyed by it)."""

    image: Image.Image
    prompt: str
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class Result:
    """One score; ``detail`` says how it was reached when that matters (VQAScore's method, GenEval's reason)."""

    value: float
    detail: dict[str, Any] = field(default_factory=dict)


class Metric(Protocol):
    """Scores samples, one ``Result`` per sample in order; higher is better. Raises on failure."""

    name: str

    def score(self, samples: list[Sample]) -> list[Result]: ...


class ScorerMetric:
    """A judge ``Scorer`` (``score(images, prompts) -> list[float]``) as a metric."""

    def __init__(self, name: str, scorer: Any) -> None:
        self.name, self.scorer = name, scorer

    def score(self, samples: list[Sample]) -> list[Result]:
        values = self.scorer.score([s.image for s in samples], [s.prompt for s in samples])
        return [Result(float(v)) for v in values]


class PickScore:
    """PickScore: ``exp(logit_scale) * cos(image embedding, text embedding)`` of a CLIP fine-tuned on Pick-a-Pic
    preferences (about 18-23 for real images); the model's ``logit_scale`` is part of the checkpoint."""

    name = "pickscore"

    def __init__(self, clip: ClipBundle, batch_size: int = 8) -> None:
        self.clip, self.batch_size = clip, batch_size

    @classmethod
    def from_pretrained(cls, model: str, processor: str, device: str = "auto", batch_size: int = 8) -> PickScore:
        """``model``: the fine-tuned ``CLIPModel``; ``processor``: the processor it was trained with (PickScore ships
        none of its own)."""
        return cls(load_clip(model, processor, device), batch_size)

    def score(self, samples: list[Sample]) -> list[Result]:
        import torch

        results: list[Result] = []
        scale = float(self.clip.model.logit_scale.detach().float().exp())
        for start in range(0, len(samples), self.batch_size):
            batch = samples[start : start + self.batch_size]
            with torch.no_grad():
                images = self.clip.image_embeddings([s.image for s in batch])
                texts = self.clip.text_embeddings([s.prompt for s in batch])
            results += [Result(scale * float(c)) for c in (images * texts).sum(-1)]
        return results


def load_clip(model: str, processor: str, device: str = "auto") -> ClipBundle:
    """A ``ClipBundle`` whose model and processor may come from different places (PickScore's do)."""
    import torch
    from transformers import AutoProcessor, CLIPModel

    from artaug.devices import resolve_device
    from artaug.judge.scorers import ClipBundle

    if model == processor:
        return ClipBundle.from_pretrained(model, device=device)
    where = torch.device(resolve_device(device))
    dtype = torch.float16 if where.type == "cuda" else torch.float32
    clip = CLIPModel.from_pretrained(model, dtype=dtype).to(where).eval()
    return ClipBundle(model=clip, processor=AutoProcessor.from_pretrained(processor), source=model)


def score_safely(metric: Metric, samples: list[Sample]) -> list[Result | str]:
    """``metric.score(samples)``, where a failure costs only the failing images: a batch that raises (or answers
    the wrong number of results) is retried one image at a time, and each image that still fails, or scores a
    non-finite number, gets the error text instead of a ``Result``."""
    try:
        results: list[Result | str] = list(metric.score(samples))
        if len(results) != len(samples):
            raise ValueError(f"{metric.name} returned {len(results)} scores for {len(samples)} images")
    except Exception as error:  # a metric's failure must not end a long evaluation
        if len(samples) == 1:
            return [f"{type(error).__name__}: {error}"]
        return [result for sample in samples for result in score_safely(metric, [sample])]
    return [_finite(r, metric.name) for r in results]


def _finite(result: Result | str, name: str) -> Result | str:
    if isinstance(result, Result) and isinstance(result.value, (int, float)) and math.isfinite(result.value):
        return result
    return f"{name} gave {getattr(result, 'value', result)!r}, not a finite score"
