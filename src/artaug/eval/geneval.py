"""GenEval's scoring rules (Ghosh et al. 2023, "GenEval: An Object-Focused Framework for Evaluating Text-to-Image
Alignment"), applied to detections that an external detector job wrote.

**Prompt metadata** is GenEval's ``evaluation_metadata.jsonl``, one object per prompt, read as a prompt file (its
extra keys land in each record's ``meta``)::

    {"tag": "position", "prompt": "a photo of a dog right of a cat",
     "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}]}
    {"tag": "counting", "prompt": "a photo of three apples",
     "include": [{"class": "apple", "count": 3}], "exclude": [{"class": "apple", "count": 4}]}

``include`` clauses hold together (AND), ``exclude`` clauses fail the image if any holds (OR); a clause may ask for a
``color`` (one of :data:`COLORS`) and a ``position`` (a relation to the objects matched by an earlier clause).

**Detections** come from the detector job (GenEval's Mask2Former on a CUDA machine, with its CLIP colour classifier
on each box), one JSON object per image, keyed by the image's path relative to the evaluation folder::

    {"image": "images/base/p1a2b3c-s0.png",
     "objects": [{"class": "dog", "box": [x0, y0, x1, y1], "score": 0.93, "color": "brown"}, ...]}

**The rules**, as GenEval's ``evaluate_images.py`` applies them: a detection counts when its score is above 0.3 (0.9
for ``counting`` prompts); per class at most 16, most confident first; a clause is met by its ``count`` most
confident detections; colour and position are judged on those only; position by the offset of box centres shrunk by
0.1 x the summed box sizes (a component beyond half the offset's length names the direction). An image is correct
when every clause holds; a set's score is the mean over its tags of each tag's share of correct images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artaug.eval.metrics import Result, Sample
from artaug.files import loads_json

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS = ("left of", "right of", "above", "below")
THRESHOLD, COUNTING_THRESHOLD = 0.3, 0.9  # GenEval's defaults
MAX_OBJECTS = 16
POSITION_THRESHOLD = 0.1
MAX_DETECTIONS_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Detected:
    """One detection: ``box`` in pixels (x0, y0, x1, y1), the detector's ``score``, and its colour if classified."""

    box: tuple[float, float, float, float]
    score: float
    color: str | None = None


def relative_position(a: Detected, b: Detected) -> set[str]:
    """GenEval's relations of box ``a`` to box ``b`` (image y grows downwards)."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
    offset = ((ax0 + ax1) / 2 - (bx0 + bx1) / 2, (ay0 + ay1) / 2 - (by0 + by1) / 2)
    sizes = (ax1 - ax0 + bx1 - bx0, ay1 - ay0 + by1 - by0)
    revised = [math.copysign(max(abs(o) - POSITION_THRESHOLD * s, 0.0), o) for o, s in zip(offset, sizes, strict=True)]
    if all(abs(r) < 1e-3 for r in revised):
        return set()
    norm = math.hypot(*offset)
    dx, dy = revised[0] / norm, revised[1] / norm
    return {name for holds, name in ((dx < -0.5, "left of"), (dx > 0.5, "right of"), (dy < -0.5, "above"),
                                     (dy > 0.5, "below")) if holds}  # fmt: skip


def kept_detections(objects: dict[str, list[Detected]], tag: str) -> dict[str, list[Detected]]:
    """Per class, the detections GenEval keeps: above the tag's threshold, most confident first, at most 16."""
    threshold = COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    kept = {}
    for name, found in objects.items():
        ranked = sorted((d for d in found if d.score > threshold), key=lambda d: -d.score)[:MAX_OBJECTS]
        if ranked:
            kept[name] = ranked
    return kept


def evaluate(objects: dict[str, list[Detected]], metadata: dict[str, Any]) -> tuple[bool, list[str]]:
    """GenEval's verdict on one image: ``(correct, reasons)`` for the kept ``objects`` and the prompt's metadata."""
    correct, reasons = True, []
    matched: list[list[Detected] | None] = []
    for clause in metadata.get("include", []):
        name, count = clause["class"], clause["count"]
        found = objects.get(name, [])[:count]
        ok = len(found) >= count
        if not ok:
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        elif "color" in clause:
            colors = [_color_of(d, name) for d in found]
            if colors.count(clause["color"]) < count:
                ok = False
                reasons.append(f"expected {clause['color']} {name}>={count}, found {', '.join(colors)}")
        if ok and "position" in clause:
            relation, target = clause["position"]
            if matched[target] is None:
                ok = False
                reasons.append(f"no target for {name} to be {relation}")
            elif not all(relation in relative_position(d, t) for d in found for t in matched[target]):
                ok = False
                reasons.append(f"expected {name} {relation} target")
        correct &= ok
        matched.append(found if ok else None)
    for clause in metadata.get("exclude", []):
        if len(objects.get(clause["class"], [])) >= clause["count"]:
            correct = False
            reasons.append(f"expected {clause['class']}<{clause['count']}, found {len(objects[clause['class']])}")
    return correct, reasons


def _color_of(detection: Detected, name: str) -> str:
    if detection.color is None:
        raise ValueError(f"the prompt asks for a colour but the detections give no 'color' for a {name}")
    return detection.color


def check_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """GenEval metadata as the rules need it (``tag``, ``include``, ``exclude``); ``ValueError`` naming what is wrong.
    Metadata comes from a user's prompt file, so every clause is checked before it is used."""
    if not isinstance(meta.get("tag"), str) or not isinstance(meta.get("include"), list):
        raise ValueError("the prompt has no GenEval metadata (a 'tag' and an 'include' list)")
    include, exclude = meta["include"], meta.get("exclude", [])
    if not isinstance(exclude, list):
        raise ValueError("GenEval metadata: 'exclude' must be a list")
    for index, clause in enumerate(include + exclude):
        if not (isinstance(clause, dict) and isinstance(clause.get("class"), str)):
            raise ValueError(f"GenEval clause {index} needs a 'class' name")
        if isinstance(clause.get("count"), bool) or not isinstance(clause.get("count"), int) or clause["count"] < 1:
            raise ValueError(f"GenEval clause {index} needs a positive integer 'count'")
        if "color" in clause and clause["color"] not in COLORS:
            raise ValueError(f"GenEval clause {index}: colour {clause['color']!r} is not one of {', '.join(COLORS)}")
    for index, clause in enumerate(include):
        if "position" in clause:
            position = clause["position"]
            if not (isinstance(position, list | tuple) and len(position) == 2 and position[0] in RELATIONS
                    and isinstance(position[1], int) and 0 <= position[1] < index):  # fmt: skip
                raise ValueError(f"GenEval clause {index}: position must be [relation, index of an earlier clause]")
    return {"tag": meta["tag"], "include": include, "exclude": exclude}


def read_detections(path: str | Path) -> dict[str, dict[str, list[Detected]]]:
    """``{image path: {class: [Detected, ...]}}`` from the detector job's JSONL (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GenEval detections file {path} does not exist; run the detector job first")
    if path.stat().st_size > MAX_DETECTIONS_BYTES:
        raise ValueError(f"GenEval detections file {path} is larger than {MAX_DETECTIONS_BYTES:,} bytes")
    table: dict[str, dict[str, list[Detected]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            image, objects = _detection_line(loads_json(line, where=f"{path}:{number}"), f"{path}:{number}")
            table[image] = objects
    return table


def _detection_line(row: Any, where: str) -> tuple[str, dict[str, list[Detected]]]:
    if not (isinstance(row, dict) and isinstance(row.get("image"), str) and isinstance(row.get("objects"), list)):
        raise ValueError(f'{where}: expected {{"image": PATH, "objects": [...]}}')
    objects: dict[str, list[Detected]] = {}
    for obj in row["objects"]:
        try:
            box = tuple(float(v) for v in obj["box"])
            detection = Detected(box, float(obj["score"]), obj.get("color"))  # type: ignore[arg-type]
            if (
                len(box) != 4
                or not all(map(math.isfinite, (*box, detection.score)))
                or not isinstance(obj["class"], str)
            ):
                raise ValueError
            if detection.color is not None and detection.color not in COLORS:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: an object needs a class, a box of 4 numbers, a score and an optional colour "
                             f"of {', '.join(COLORS)}; got {str(obj)[:120]}") from None  # fmt: skip
        objects.setdefault(obj["class"], []).append(detection)
    return row["image"], objects


class GenEvalMetric:
    """GenEval as a metric: 1.0 for a correct image, 0.0 otherwise; ``detail`` holds the tag and the reasons."""

    name = "geneval"

    def __init__(self, detections: dict[str, dict[str, list[Detected]]], source: str = "") -> None:
        self.detections, self.source = detections, source

    @classmethod
    def from_file(cls, path: str | Path) -> GenEvalMetric:
        if not str(path):
            raise ValueError("the geneval metric reads the detector job's output: set eval.geneval_detections")
        return cls(read_detections(path), str(path))

    def score(self, samples: list[Sample]) -> list[Result]:
        results = []
        for sample in samples:
            metadata = check_metadata(sample.meta)
            if sample.name not in self.detections:
                raise ValueError(f"{self.source or 'the detections'} has no line for image {sample.name!r}")
            objects = kept_detections(self.detections[sample.name], metadata["tag"])
            correct, reasons = evaluate(objects, metadata)
            results.append(Result(float(correct), {"tag": metadata["tag"], "reasons": reasons}))
        return results
