"""How a round fixes what the critic asked for: regional repaint, or an instruction edit (``loop.fix``).

* ``regional`` -- the painter repaints the critic's boxes with their local prompts (regional attention or blend),
  starting ``loop.strength`` of the way through the schedule from the current best painting;
* ``edit`` -- the edits become one instruction for ``painter.editor`` (FLUX.1-Kontext, Qwen-Image-Edit), and the
  result is composited back outside the boxes (``artaug.painter.editor``);
* ``auto`` -- chosen per round by the edits' kind (``choose_fix``), and the reason is recorded in the trail.

Instruction editors are trained on local changes that leave the rest of the picture alone (replace an object, change
an attribute, fix a hand, write a sign), while a change of light, mood or style, or one that covers much of the
picture, has to blend across the whole image, which a regional repaint from partway through the schedule does. The
judge treats both kinds of revision alike.
"""

from __future__ import annotations

import re

from artaug.config import LoopConfig
from artaug.types import Critique

# Words of a request about the whole picture's look rather than a thing in it.
GLOBAL_LOOK = re.compile(
    r"\b(light|lighting|lit|glow|shadows?|atmosphere|atmospheric|mood|style|palette|tones?|colou?r grading|"
    r"contrast|exposure|haze|fog|sunset light|golden hour)\b",
    re.IGNORECASE,
)


def choose_fix(critique: Critique, loop: LoopConfig) -> tuple[str, str]:
    """``("regional" | "edit", why)`` for a round of ``critique`` under ``loop.fix``."""
    if loop.fix == "regional":
        return "regional", "loop.fix = regional"
    if not critique.edits:  # nothing to composite an edit into
        return (
            "regional",
            f"{loop.fix}: no box, only a rewritten prompt for the whole picture: the painter repaints it",
        )
    if loop.fix == "edit":
        return "edit", "loop.fix = edit"
    largest = max(e.box.area for e in critique.edits)
    if largest > loop.auto_edit_area:
        return "regional", (
            f"auto: the largest box covers {largest:.0%} of the picture (more than loop.auto_edit_area = "
            f"{loop.auto_edit_area:.0%}): a regional repaint blends a change that large"
        )
    looks = [e.prompt for e in critique.edits if GLOBAL_LOOK.search(e.prompt)]
    if looks:
        return "regional", f"auto: {looks[0]!r} asks for light or style, which a regional repaint blends"
    return "edit", (
        f"auto: {len(critique.edits)} local change(s) in boxes of at most {largest:.0%} of the picture: an "
        "instruction edit changes them and keeps the rest exactly"
    )
