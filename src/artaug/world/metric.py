"""The world metric: a painting is correct for its prompt only if every requirement holds (GenEval's rule).

Requirements, read from the prompt's spec and checked on the detector's output:

- each object phrase: at least one detection of its shape (and colour, and grid cell, when the prompt names them);
  a counted phrase ("three red circles") exactly that many (GenEval: include ``count``, exclude ``count + 1``);
- a relation ("A to the left of B"): some A and some B whose boxes stand in that relation by GenEval's
  ``relative_position`` (offset of the box centres, shrunk by 0.1 x the summed box sizes, normalised; a component
  beyond 0.5 names the direction).

Objects the prompt does not mention are allowed, as in GenEval. The overall score of a set is the mean of the
per-category accuracies (GenEval's "overall").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from artaug.world.detect import Detection, detect
from artaug.world.grammar import ObjectSpec, SceneSpec, parse_prompt

POSITION_THRESHOLD = 0.1  # GenEval's


@dataclass
class SceneVerdict:
    """How a painting fares against its prompt: requirements ``met`` of ``total``, and why the others failed."""

    met: int
    total: int
    reasons: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.met == self.total


def matches(obj: ObjectSpec, detection: Detection) -> bool:
    """Whether a detection is one of the objects a phrase asks for (shape, and colour and cell when named)."""
    return (
        detection.shape == obj.shape
        and (obj.colour is None or detection.colour == obj.colour)
        and (obj.place is None or detection.place() == obj.place)
    )


def relative_position(a: Detection, b: Detection) -> set[str]:
    """GenEval's relations of box ``a`` to box ``b`` (image y grows downwards)."""
    boxes = np.array([a.box, b.box], dtype=np.float64).reshape(2, 2, 2)
    centre_a, centre_b = boxes.mean(axis=1)
    dim_a, dim_b = boxes[:, 1] - boxes[:, 0]
    offset = centre_a - centre_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    names = [(dx < -0.5, "to the left of"), (dx > 0.5, "to the right of"), (dy < -0.5, "above"), (dy > 0.5, "below")]
    return {name for holds, name in names if holds}


def check(spec: SceneSpec, detections: list[Detection]) -> SceneVerdict:
    """Check every requirement of ``spec`` against ``detections``."""
    verdict = SceneVerdict(0, 0)
    found = [[d for d in detections if matches(o, d)] for o in spec.objects]
    for obj, hits in zip(spec.objects, found, strict=True):
        verdict.total += 1
        ok = len(hits) == obj.count if obj.count > 1 else len(hits) >= 1
        verdict.met += ok
        if not ok:
            verdict.reasons.append(f"{obj.phrase()}: found {len(hits)}")
    if spec.relation is not None:
        verdict.total += 1
        ok = any(spec.relation in relative_position(a, b) for a in found[0] for b in found[1])
        verdict.met += ok
        if not ok:
            verdict.reasons.append(f"relation {spec.relation!r} does not hold")
    if not spec.objects:  # a plain background: nothing may be drawn
        verdict.total += 1
        verdict.met += not detections
        if detections:
            verdict.reasons.append(f"{len(detections)} object(s) on a plain background")
    return verdict


def judge_image(image: Image.Image, prompt: str) -> SceneVerdict:
    """Detect and check one painting against its world prompt."""
    return check(parse_prompt(prompt), detect(image))


def accuracy_by_category(results: Iterable[tuple[str, bool]]) -> dict[str, float]:
    """``(category, correct)`` pairs -> accuracy per category, plus ``overall``: the mean over categories."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for category, correct in results:
        tally[category][0] += bool(correct)
        tally[category][1] += 1
    accuracy = {category: hits / n for category, (hits, n) in sorted(tally.items())}
    if accuracy:
        accuracy["overall"] = sum(accuracy.values()) / len(accuracy)
    return accuracy


@dataclass
class WorldScorer:
    """The world metric behind the judge's ``Scorer`` signature: 1.0 for a correct painting, else 0.0, or with
    ``partial`` the share of requirements met. A prompt outside the world grammar raises ``ValueError``."""

    partial: bool = False
    name: str = "world"

    def score(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        if len(images) != len(prompts):
            raise ValueError(f"score needs one prompt per image, got {len(images)} images and {len(prompts)} prompts")
        verdicts = [judge_image(image, prompt) for image, prompt in zip(images, prompts, strict=True)]
        return [v.met / v.total if self.partial else float(v.correct) for v in verdicts]
