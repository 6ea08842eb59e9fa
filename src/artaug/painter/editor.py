"""The second way to fix what the critic asked for: an instruction to an instruction-editing model.

``loop.fix = "edit"`` turns a critique's edits into one instruction ("in the box at the top left, make the sky a
violet dusk") for ``FluxKontextPipeline`` (FLUX.1-Kontext-dev) or ``QwenImageEditPipeline`` (Qwen-Image-Edit),
conditioned on the current best painting, through the pipeline's own ``__call__``. Editors are trained to keep what
the instruction does not mention, but not exactly; so outside the critic's boxes the result is composited back onto
the painting: every pixel farther than ``seam`` pixels from every box is the painting's own, and across the seam the
edit fades in linearly with the distance to the nearest box (``composite``).

Cost: an editor runs the whole schedule (not ``loop.strength`` of it), each pass attending over the conditioning
image's tokens as well as the painting's (``image_tokens`` in the details), and Qwen-Image-Edit's true
classifier-free guidance doubles the passes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from artaug.painter.requests import EDITORS, pipeline_name, resolve_source
from artaug.types import Box, Cost, Edit, Painting, PaintRequest

NEGATIVE_PROMPT = " "  # Qwen-Image-Edit's own examples guide against a single space
KEEP = "Keep everything outside these boxes exactly as it is."


class InstructionEditor:
    """Revises a painting by an instruction with a diffusers instruction-editing pipeline (one of ``EDITORS``).

    ``guidance_scale`` is FLUX.1-Kontext's distilled guidance, or Qwen-Image-Edit's true CFG scale (> 1: two passes
    per step)."""

    def __init__(self, pipe: Any, model_id: str = "", guidance_scale: float = 2.5) -> None:
        if type(pipe).__name__ not in EDITORS:
            raise ValueError(f"an editor is one of {', '.join(EDITORS)}, got a {type(pipe).__name__}")
        if not (math.isfinite(guidance_scale) and guidance_scale >= 0):
            raise ValueError(f"editor guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        self.pipe = pipe
        self.model_id = model_id or getattr(pipe.config, "_name_or_path", "") or type(pipe).__name__
        self.guidance_scale = guidance_scale

    @classmethod
    def from_pretrained(
        cls, id_or_dir: str, *, dtype: Any = "auto", device: str = "auto", offload: str = "none",
        guidance_scale: float = 2.5,
    ) -> InstructionEditor:  # fmt: skip
        """Load an editor from a hub id (``black-forest-labs/FLUX.1-Kontext-dev``, ``Qwen/Qwen-Image-Edit``) or a
        folder; its pipeline class comes from ``model_index.json`` (hub ids: ``families.HUB_PIPELINES``)."""
        import diffusers

        from artaug.devices import resolve_device, resolve_dtype

        name = pipeline_name(id_or_dir, what="editor")
        if name not in EDITORS:
            raise ValueError(f"editor {id_or_dir!r} holds a {name}; an editor is one of {', '.join(EDITORS)}")
        device = resolve_device(device)
        if not isinstance(dtype, torch.dtype):
            dtype = resolve_dtype(dtype, device)
        source = resolve_source(id_or_dir, name)
        try:
            pipe = getattr(diffusers, name).from_pretrained(source, dtype=dtype)
        except OSError as err:
            where = "folder" if os.path.isdir(source) else "the Hugging Face hub (download it and pass the folder)"
            raise OSError(f"could not load the editor {source!r} from {where}: {err}") from err
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, guidance_scale=guidance_scale)

    @torch.no_grad()
    def revise(
        self, init: Painting, request: PaintRequest, seam: int, progress: Callable[[int, int], None] | None = None
    ) -> tuple[Painting, dict[str, Any]]:
        """``init`` revised as ``request.edits`` ask, by instruction; outside the boxes (beyond ``seam`` pixels)
        exactly ``init``. Returns the painting and what the trail records of the fix."""
        started = time.perf_counter()
        steps = request.num_inference_steps

        # 1. The instruction, from the edits (and a rewritten global prompt, if the critic gave one)
        rewritten = request.prompt if request.prompt != init.request.prompt else None
        text = instruction(request.edits, rewritten)

        # 2. The editor's own pipeline, conditioned on the current painting, at the painting's size
        def step(pipe: Any, i: int, t: Any, tensors: dict) -> dict:
            if progress is not None:
                progress(i + 1, steps)
            return {}

        edited = self.pipe(
            image=init.image,
            prompt=text,
            height=request.height,
            width=request.width,
            num_inference_steps=steps,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            max_sequence_length=request.max_sequence_length,
            callback_on_step_end=step,
            **self._guidance(request),
        ).images[0]

        # 3. Everything the critic did not point at comes back exactly
        image = composite(init.image, edited, [e.box for e in request.edits], seam)
        passes = self.passes_per_step()
        cost = Cost(transformer_passes=passes * steps, steps=steps, seconds=time.perf_counter() - started)
        details = {
            "instruction": text,
            "editor": self.model_id,
            "guidance_scale": self.guidance_scale,
            "seam": seam,
            "image_tokens": self.condition_tokens(request),
            "passes_per_step": passes,
        }
        return Painting(image=image, request=request, cost=cost, model=self.model_id), details

    def _guidance(self, request: PaintRequest) -> dict[str, Any]:
        if self._is_qwen():
            return {"true_cfg_scale": self.guidance_scale, "negative_prompt": NEGATIVE_PROMPT}
        # Kontext: no auto-resize and max_area = the painting's, so the edit is painted at the painting's size.
        return {
            "guidance_scale": self.guidance_scale,
            "_auto_resize": False,
            "max_area": request.height * request.width,
        }

    def passes_per_step(self) -> int:
        return 2 if self._is_qwen() and self.guidance_scale > 1 else 1

    def condition_tokens(self, request: PaintRequest) -> int:
        """Image tokens the conditioning image adds to every pass: the painting's own count for Kontext; for
        Qwen-Image-Edit, the ~1024² area it resizes the image to."""
        if self._is_qwen():
            from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

            width, height, _ = calculate_dimensions(1024 * 1024, request.width / request.height)
            return (height // 16) * (width // 16)
        return (request.height // 16) * (request.width // 16)

    def _is_qwen(self) -> bool:
        return type(self.pipe).__name__.startswith("QwenImageEdit")


def instruction(edits: Sequence[Edit], rewritten_prompt: str | None = None) -> str:
    """One instruction for all the critic's edits: where each box is (in a 3x3 grid), what it should become."""
    parts = [f"make the whole picture match: {rewritten_prompt}"] if rewritten_prompt else []
    for edit in edits:
        what = f"make {edit.label} {edit.prompt}" if edit.label else f"paint {edit.prompt}"
        parts.append(f"in the box at the {where(edit.box)}, {what}")
    text = "; ".join(parts) or "improve the picture"
    return f"{text[0].upper()}{text[1:]}. {KEEP if edits else ''}".strip()


def where(box: Box) -> str:
    """A box's place in words: its centre in a 3x3 grid ("top left", "top", "center", "bottom right", ...)."""
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    column = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    return " ".join(part for part in (row, column) if part) or "center"


def seam_alpha(boxes: Sequence[Box], height: int, width: int, seam: int) -> np.ndarray:
    """``(height, width)`` weights of the edit: 1 inside any box, falling linearly to 0 at ``seam`` pixels from the
    nearest box (distance from each pixel's centre), 0 beyond. ``seam`` 0: a hard edge."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    alpha = np.zeros((height, width))
    for box in boxes:
        x0, y0, x1, y1 = box.to_pixels(width, height)
        distance = np.hypot(
            np.maximum.reduce([x0 - xs, xs - x1, 0 * xs]), np.maximum.reduce([y0 - ys, ys - y1, 0 * ys])
        )
        alpha = np.maximum(alpha, (distance == 0) if seam == 0 else np.clip(1 - distance / seam, 0, 1))
    return alpha


def composite(before: Image.Image, after: Image.Image, boxes: Sequence[Box], seam: int) -> Image.Image:
    """``before + alpha (after - before)`` with ``seam_alpha``: pixels where alpha is 0 are ``before``'s exactly."""
    before = before.convert("RGB")
    if after.size != before.size:
        after = after.resize(before.size, Image.Resampling.LANCZOS)
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after.convert("RGB"), dtype=np.float64)
    alpha = seam_alpha(boxes, before.height, before.width, seam)[..., None]
    return Image.fromarray(np.rint(b + alpha * (a - b)).clip(0, 255).astype(np.uint8))
