"""The world critic: the detector compares a painting with its prompt and answers like Qwen2-VL would.

``plan_fixes(spec, detections)`` decides what to change, one ``Fix`` per region:

- an object phrase with no match: repaint, in place, an object of its shape but the wrong colour, or else a formless
  blob, if there is one (where the prompt allows it), else paint it in its named cell, or in the free cell farthest
  from everything drawn;
- a counted phrase: the missing ones in free cells, the surplus ones cleared (boxes to "a plain background");
- a relation that does not hold: the missing side painted in a cell that satisfies it, or, with both drawn, the
  first object cleared and painted again where the relation holds;
- a plain-background prompt: every object cleared.

Each local prompt is itself a world prompt for one object with its cell ("a red circle at the top left"), so the
painter reads it as it reads any prompt. ``WorldCritic`` writes the fixes in Qwen2-VL's grounding form (0..1000) and
parses them back through ``parse_critique``, like any VLM's answer; a correct painting gets "no changes", so the
critic asks for nothing exactly when the world metric counts the painting correct.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from PIL import Image

from artaug.critic.base import Critic, CriticError
from artaug.types import Critique
from artaug.world.detect import Detection, detect
from artaug.world.grammar import EMPTY_PROMPT, PLACES, ObjectSpec, SceneSpec, parse_prompt
from artaug.world.metric import matches, relative_position
from artaug.world.scenes import SIZE, cell_box, relation_holds

CLEAR_MARGIN = 3  # pixels around a box to clear: painted objects have soft rims the detector's threshold leaves out
_QUOTED = re.compile(r'"([^"\n]{1,400})"')


@dataclass(frozen=True)
class Fix:
    """One region to repaint: pixel box ``(x0, y0, x1, y1)``, the region's desired content, and why."""

    box: tuple[float, float, float, float]
    prompt: str
    reason: str


def plan_fixes(spec: SceneSpec, detections: list[Detection], size: int = SIZE) -> list[Fix]:
    """The fixes that make ``detections`` satisfy ``spec`` (none when they already do)."""
    if not spec.objects:
        return [_clear(d, "nothing belongs on a plain background", size) for d in detections]
    if spec.relation is not None:
        return _fix_relation(spec, detections, size)
    fixes: list[Fix] = []
    taken = {o.place for o in spec.objects if o.place} | {d.place(size) for d in detections}
    used: set[int] = set()
    for obj in spec.objects:
        hits = [i for i, d in enumerate(detections) if matches(obj, d) and i not in used]
        used |= set(hits[: obj.count])
        for i in hits[obj.count :] if obj.count > 1 else []:
            fixes.append(_clear(detections[i], f"one {obj.shape} too many", size))
        for _ in range(obj.count - min(len(hits), obj.count)):
            fix, index = _supply(obj, detections, used, taken, size)
            fixes.append(fix)
            used |= {index} if index is not None else set()
    return fixes


def _supply(obj, detections, used, taken, size) -> tuple[Fix, int | None]:
    """A fix that adds one object of ``obj``: repaint, where the prompt allows, an object of its shape in the wrong
    colour, else a formless blob (a failed attempt at an object), else paint a cell."""
    for wanted in (obj.shape, "blob"):
        for i, d in enumerate(detections):
            if i not in used and d.shape == wanted and (obj.place is None or d.place(size) == obj.place):
                reason = f"it is {d.colour}" if wanted == obj.shape else f"a {d.colour} blob, not a {obj.shape}"
                return _paint(obj, d.place(size), reason, size, around=d), i
    if obj.place is not None:
        inside = [d for d in detections if d.place(size) == obj.place]
        reason = f"a {inside[0].colour} {inside[0].shape} is there instead" if inside else "missing"
        return _paint(obj, obj.place, reason, size, around=inside[0] if inside else None), None
    place = _free_cell(taken, detections, size)
    taken.add(place)
    return _paint(obj, place, "missing", size), None


def _fix_relation(spec: SceneSpec, detections: list[Detection], size: int) -> list[Fix]:
    a, b = spec.objects
    hits_a = [d for d in detections if matches(a, d)]
    hits_b = [d for d in detections if matches(b, d)]
    if any(spec.relation in relative_position(x, y) for x in hits_a for y in hits_b):
        return []
    taken = {d.place(size) for d in detections}
    if hits_b:  # paint (or move) the first object into a cell that stands in the relation to the second
        anchor = hits_b[0].place(size)
        cells = [p for p in PLACES if p not in taken and relation_holds(spec.relation, p, anchor)]
        if cells:
            moved = [_clear(hits_a[0], f"should be {spec.relation} the {b.shape}", size)] if hits_a else []
            return [*moved, _paint(a, cells[0], "missing" if not hits_a else "in the wrong place", size)]
    if hits_a:  # paint the second object into a cell that the first one stands in the relation to
        anchor = hits_a[0].place(size)
        cells = [p for p in PLACES if p not in taken and relation_holds(spec.relation, anchor, p)]
        if cells:
            moved = [_clear(hits_b[0], f"the {a.shape} should be {spec.relation} it", size)] if hits_b else []
            return [*moved, _paint(b, cells[0], "missing" if not hits_b else "in the wrong place", size)]
    pairs = [
        (p, q) for p in PLACES for q in PLACES if {p, q}.isdisjoint(taken) and relation_holds(spec.relation, p, q)
    ]
    if not pairs:
        return [_clear(d, "the canvas is too crowded for the relation", size) for d in detections]
    p, q = pairs[0]
    return [_paint(a, p, "missing", size), _paint(b, q, "missing", size)]


def _free_cell(taken: set[str], detections: list[Detection], size: int) -> str:
    """The free cell farthest from every drawn object (grid order breaks ties): room for a clean new object."""
    free = [p for p in PLACES if p not in taken] or list(PLACES)

    def clearance(place: str) -> float:
        x0, y0, x1, y1 = cell_box(place, size)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return min(((cx - d.centre[0]) ** 2 + (cy - d.centre[1]) ** 2 for d in detections), default=0.0)

    return max(free, key=lambda p: (clearance(p), -list(PLACES).index(p)))


def _paint(obj: ObjectSpec, place: str, reason: str, size: int, around: Detection | None = None) -> Fix:
    """Paint one object of ``obj`` in ``place``: the cell, grown to cover the object it replaces."""
    x0, y0, x1, y1 = cell_box(place, size)
    if around is not None:
        ax0, ay0, ax1, ay1 = _grown(around.box, size)
        x0, y0, x1, y1 = min(x0, ax0), min(y0, ay0), max(x1, ax1), max(y1, ay1)
    return Fix((x0, y0, x1, y1), ObjectSpec(obj.shape, obj.colour, place).phrase(), reason)


def _clear(detection: Detection, reason: str, size: int) -> Fix:
    return Fix(_grown(detection.box, size), EMPTY_PROMPT, reason)


def _grown(box: tuple[int, int, int, int], size: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    m = CLEAR_MARGIN
    return (max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, size), min(y1 + m, size))


def grounding_answer(fixes: list[Fix], width: int, height: int) -> str:
    """Fixes as Qwen2-VL grounding lines (0..1000, origin top-left), or "no changes"."""
    if not fixes:
        return "no changes"
    lines = []
    for fix in fixes:
        x0, y0, x1, y1 = fix.box
        corners = f"({round(1000 * x0 / width)},{round(1000 * y0 / height)}),"
        corners += f"({round(1000 * x1 / width)},{round(1000 * y1 / height)})"
        lines.append(
            f"<|object_ref_start|>{fix.prompt}<|object_ref_end|><|box_start|>{corners}<|box_end|> reason: {fix.reason}"
        )
    return "\n".join(lines)


class WorldCritic(Critic):
    """A critic for world paintings: detector + ``plan_fixes``, answering in Qwen2-VL's grounding format."""

    name = "world"

    def __init__(self, *, max_edits: int = 4, model_id: str = "artaug-world-detector") -> None:
        super().__init__(model_id=model_id, template="grounding", max_edits=max_edits, convention="qwen2-vl")

    def answer(self, image: Image.Image, prompt: str) -> str:
        """The raw answer about one painting; ``ValueError`` if ``prompt`` is outside the world grammar."""
        spec = parse_prompt(prompt)
        width, height = image.size
        if width != height:
            raise ValueError(f"world paintings are square, got {width}x{height}")
        return grounding_answer(plan_fixes(spec, detect(image), width)[: self.max_edits], width, height)

    def ask(self, images: list[Image.Image], text: str, max_new_tokens: int = 256) -> str:
        """Answer a critique instruction (``self.instruction(prompt)``) about one image: the world prompt is the
        quoted line of the instruction. Other questions are beyond a detector and raise ``CriticError``."""
        prompts = []
        for quoted in _QUOTED.findall(text):
            try:
                prompts.append((quoted, parse_prompt(quoted)))
            except ValueError:
                continue
        if len(images) != 1 or len(prompts) != 1:
            raise CriticError("the world critic answers one critique instruction about one image with a world prompt")
        return self.answer(images[0], prompts[0][0])

    def critique_batch(self, images: list[Image.Image], prompts: list[str]) -> list[Critique]:
        self._check_batch(images, prompts)
        out = []
        for image, prompt in zip(images, prompts, strict=True):
            started = time.perf_counter()
            try:
                answer, error = self.answer(image, prompt), None
            except ValueError as err:
                answer, error = "", str(err)
            out.append(self._critique_from(answer, image, None, started, error))
        return out
