"""The pair filters (the paper's "aesthetic and semantic checks"), each answering with a recorded ``FilterVerdict``.

A pair is kept only when every enabled filter passes. A filter whose input is missing (the judge did not produce
that score, no similarity could be computed) answers ``not_scored``: recorded, counted by ``artaug synth stats``, and
treated as a drop unless ``keep_not_scored`` says otherwise, never as a silent pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from artaug.config import FilterConfig

if TYPE_CHECKING:
    from PIL import Image

Status = Literal["pass", "fail", "not_scored", "off"]


@dataclass
class FilterVerdict:
    """One filter's answer about one pair: pass, fail, not_scored (its input is missing) or off."""

    name: str
    status: Status
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PairEvidence:
    """What the filters look at for one pair; ``None`` where it was not measured."""

    revised: bool
    before_scores: dict[str, float]
    after_scores: dict[str, float]
    before_problems: list[str] | None = None
    after_problems: list[str] | None = None
    similarity: float | None = None


def evaluate(evidence: PairEvidence, config: FilterConfig) -> tuple[bool, list[FilterVerdict]]:
    """Run every filter; returns (kept, verdicts in a fixed order)."""
    verdicts = [
        _revised(evidence, config),
        _broken(evidence, config),
        _threshold(
            "aesthetic_gain",
            _delta(evidence, config.aesthetic_score),
            config.min_aesthetic_gain,
            lambda v, t: v >= t,
            f"score '{config.aesthetic_score}'",
        ),
        _threshold(
            "alignment_kept",
            _neg(_delta(evidence, config.alignment_score)),
            config.max_alignment_drop,
            lambda v, t: v <= t,
            f"score '{config.alignment_score}' drop",
        ),
        _threshold(
            "same_scene",
            evidence.similarity,
            config.min_similarity,
            lambda v, t: v >= t,
            f"{config.similarity} similarity",
        ),
    ]
    allowed = {"pass", "off"} | ({"not_scored"} if config.keep_not_scored else set())
    return all(v.status in allowed for v in verdicts), verdicts


def drop_reasons(verdicts: list[dict[str, Any]] | list[FilterVerdict]) -> list[str]:
    """``name: status`` of every verdict that is neither pass nor off (what ``stats`` counts)."""
    out = []
    for v in verdicts:
        d = v.to_dict() if isinstance(v, FilterVerdict) else v
        if d["status"] not in ("pass", "off"):
            out.append(f"{d['name']}: {d['status'].replace('_', ' ')}")
    return out


def _revised(e: PairEvidence, config: FilterConfig) -> FilterVerdict:
    if not config.revised:
        return FilterVerdict("revised", "off")
    return FilterVerdict(
        "revised", "pass" if e.revised else "fail", detail="" if e.revised else "no revision accepted"
    )


def _broken(e: PairEvidence, config: FilterConfig) -> FilterVerdict:
    if not config.broken_gate:
        return FilterVerdict("not_broken", "off")
    if e.before_problems is None or e.after_problems is None:
        return FilterVerdict("not_broken", "not_scored", detail="the broken-image gate did not run")
    problems = [f"before: {p}" for p in e.before_problems] + [f"after: {p}" for p in e.after_problems]
    return FilterVerdict("not_broken", "fail" if problems else "pass", detail="; ".join(problems))


def _threshold(name: str, value: float | None, threshold: float | None, ok: Any, what: str) -> FilterVerdict:
    if threshold is None:
        return FilterVerdict(name, "off")
    if value is None or not np.isfinite(value):
        return FilterVerdict(name, "not_scored", threshold=threshold, detail=f"no {what}")
    return FilterVerdict(name, "pass" if ok(value, threshold) else "fail", value=float(value), threshold=threshold)


def _delta(e: PairEvidence, key: str) -> float | None:
    if key in e.before_scores and key in e.after_scores:
        return float(e.after_scores[key]) - float(e.before_scores[key])
    return None


def _neg(value: float | None) -> float | None:
    return None if value is None else -value


# -- image-image similarity -------------------------------------------------------------------------------------------


def ssim(a: Image.Image, b: Image.Image, *, size: int = 128, window: int = 7) -> float:
    """Mean structural similarity (Wang et al. 2004) of the grayscale images, uniform ``window`` x ``window``.

    Both images are resized to ``size`` on the long side first: the question is "same scene?", not pixel detail.
    """
    x, y = _gray(a, size), _gray(b, size)
    if x.shape != y.shape:
        y = _gray(b.resize(a.size), size)
    c1, c2 = 0.01**2, 0.03**2
    mx, my = _box_mean(x, window), _box_mean(y, window)
    vx = _box_mean(x * x, window) - mx * mx
    vy = _box_mean(y * y, window) - my * my
    cov = _box_mean(x * y, window) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def pixel_correlation(a: Image.Image, b: Image.Image, *, size: int = 32) -> float:
    """Pearson correlation of the two images' RGB pixels at ``size`` x ``size`` (1 = same picture)."""
    x = np.asarray(a.convert("RGB").resize((size, size)), dtype=np.float64).ravel()
    y = np.asarray(b.convert("RGB").resize((size, size)), dtype=np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    # Two flat images: identical if equal, otherwise unrelated.
    return float((x * y).sum() / denom) if denom > 0 else float(np.array_equal(x, y))


class ClipSimilarity:
    """Cosine similarity of CLIP image embeddings (any ``CLIPModel`` checkpoint: hub id or folder), through the
    judge's ``ClipBundle`` (the one way artaug loads CLIP)."""

    def __init__(self, model: str, device: str = "auto") -> None:
        from artaug.judge import ClipBundle

        self.clip = ClipBundle.from_pretrained(model, device=device)

    def __call__(self, a: Image.Image, b: Image.Image) -> float:
        emb = self.clip.image_embeddings([a, b])
        return float((emb[0] * emb[1]).sum())


def similarity_function(config: FilterConfig) -> Any:
    """The configured ``(image, image) -> float`` (loads the CLIP model once when one is configured)."""
    if config.similarity == "clip":
        return ClipSimilarity(config.clip_model)
    return ssim if config.similarity == "ssim" else pixel_correlation


def _gray(image: Image.Image, size: int) -> np.ndarray:
    image = image.convert("L")
    scale = size / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return np.asarray(image, dtype=np.float64) / 255.0


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    # Mean over every k x k window ("valid" positions) from a summed-area table.
    k = min(k, *x.shape)
    s = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]) / (k * k)
