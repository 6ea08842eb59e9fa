"""Boxes on screen ↔ edits: the one boundary where what a browser sends becomes ``Edit`` objects.

The box editor (``gradio_image_annotation``) speaks pixel corners of the displayed painting and a free-text label per
box; the studio uses the label as the box's local prompt (what the region should become). Whatever a browser sends
is untrusted, like a VLM's answer: it is bounded (number of boxes, prompt length), every box is clamped into the
image, and every repair is recorded, never silent (STYLE.md, habit 3).
"""

from __future__ import annotations

import json
import math
from typing import Any

from artaug.types import MAX_EDITS, MAX_LOCAL_PROMPT_CHARS, Box, Critique, Edit

# Box colours cycle through these (the editor wants "#rrggbb"); a person's new boxes get the editor's own colours.
COLORS = ("#ff7f0e", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
CORNERS = ("xmin", "ymin", "xmax", "ymax")


def edits_to_boxes(edits: list[Edit] | tuple[Edit, ...], width: int, height: int) -> list[dict[str, Any]]:
    """The editor's boxes for ``edits`` on a ``width`` x ``height`` painting: pixel corners, local prompt as label."""
    boxes = []
    for i, edit in enumerate(edits):
        x0, y0, x1, y1 = edit.box.to_pixels(width, height)
        boxes.append(
            {"xmin": x0, "ymin": y0, "xmax": min(x1, width), "ymax": min(y1, height), "label": edit.prompt,
             "color": COLORS[i % len(COLORS)]}
        )  # fmt: skip
    return boxes


def boxes_to_edits(
    boxes: Any, width: int, height: int, weight: float = 10.0, known: list[Edit] | tuple[Edit, ...] = ()
) -> tuple[list[Edit], list[str]]:
    """Edits from the editor's boxes, and the repairs made on the way (clamped corners).

    A box that still shows one of the ``known`` edits (the critic's, same pixel corners and prompt) is that edit, with
    its exact box and reason: pixels must not round a critic's box that nobody moved.

    Raises ``ValueError`` naming the box for what a person must fix: a box without a local prompt, a box of no area,
    too many boxes, a prompt too long. ``weight`` is each edit's blend weight (``loop.edit_weight``).
    """
    if boxes is None:
        return [], []
    if not isinstance(boxes, list):
        raise ValueError("the boxes must be a list")
    if len(boxes) > MAX_EDITS:
        raise ValueError(f"{len(boxes)} boxes: at most {MAX_EDITS} can be repainted at once; delete some")
    edits, repairs = [], []
    shown = {_key(b): e for b, e in zip(edits_to_boxes(list(known), width, height), known, strict=True)}
    for n, box in enumerate(boxes, start=1):
        corners = _corners(box, n)
        label = box.get("label") if isinstance(box.get("label"), str) else ""
        prompt = " ".join(label.split())
        if not prompt:
            raise ValueError(f"box {n} has no local prompt: type what the region should become as its label")
        if len(prompt) > MAX_LOCAL_PROMPT_CHARS:
            raise ValueError(f"box {n}: a local prompt may have at most {MAX_LOCAL_PROMPT_CHARS} characters")
        x0, x1 = sorted(min(max(v, 0.0), width) for v in (corners[0], corners[2]))
        y0, y1 = sorted(min(max(v, 0.0), height) for v in (corners[1], corners[3]))
        if (x0, y0, x1, y1) != tuple(corners):
            repairs.append(f"box {n}: corners {tuple(corners)} clamped into the {width}x{height} image")
        if (x0, y0, x1, y1, prompt) in shown:
            edits.append(shown[(x0, y0, x1, y1, prompt)])
            continue
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ValueError(f"box {n} ({prompt[:40]!r}) has no area inside the painting; draw it again")
        edits.append(Edit(Box.from_pixels(x0, y0, x1, y1, width, height), prompt, label="box", weight=weight))
    return edits, repairs


def same_edits(a: list[Edit] | tuple[Edit, ...], b: list[Edit] | tuple[Edit, ...], width: int, height: int) -> bool:
    """Whether two lists of edits show as the same boxes and prompts on screen (pixel corners, text)."""
    return edits_to_boxes(list(a), width, height) == edits_to_boxes(list(b), width, height)


def person_critique(
    edits: list[Edit], global_prompt: str | None, person: str, repairs: list[str], edited_from: Critique | None
) -> Critique:
    """The critique of a round a person wrote or edited: ``model`` is the person, ``raw`` what the browser sent
    (boxes in normalised corners), ``repairs`` what was clamped. ``edited_from`` is the critic's answer the person
    started from, if any (its model id is kept in ``raw``)."""
    raw = {
        "by": person,
        "edited_from": edited_from.model if edited_from is not None else None,
        "edits": [{"box": [e.box.x0, e.box.y0, e.box.x1, e.box.y1], "prompt": e.prompt} for e in edits],
        "global_prompt": global_prompt,
    }
    return Critique(
        edits=list(edits),
        global_prompt=global_prompt,
        raw=json.dumps(raw, ensure_ascii=False),
        convention="auto",
        repairs=list(repairs),
        template_version="studio",
        model=person,
    )


def _key(box: dict[str, Any]) -> tuple[float, float, float, float, str]:
    return (float(box["xmin"]), float(box["ymin"]), float(box["xmax"]), float(box["ymax"]), box["label"])


def _corners(box: Any, n: int) -> list[float]:
    if not isinstance(box, dict):
        raise ValueError(f"box {n} is not a box")
    values = [box.get(key) for key in CORNERS]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError(f"box {n} has corners that are not finite numbers")
    return [float(v) for v in values]
