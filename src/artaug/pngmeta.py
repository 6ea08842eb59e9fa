"""PNG files that say how they were made.

Two text chunks: ``parameters`` in AUTOMATIC1111's format (so image browsers, Civitai and ComfyUI loaders show the
prompt and settings), and ``artaug``, a JSON provenance record (request, edits, model, library versions). Files are
written atomically: a reader never sees half a PNG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, PngImagePlugin

from artaug.files import atomic_write, loads_json
from artaug.provenance import versions

if TYPE_CHECKING:
    from artaug.types import Painting, PaintRequest

PARAMETERS_KEY = "parameters"
PROVENANCE_KEY = "artaug"
SAMPLER = "Euler (flow match)"


def a1111_parameters(request: PaintRequest, model: str) -> str:
    """The A1111 ``parameters`` text: the prompt, then one line of ``Key: value`` settings.

    FLUX.1-dev's guidance is distilled (one pass, no negative prompt), so ``CFG scale`` carries ``guidance_scale``.
    Regional settings follow the standard keys, only when edits exist.
    """
    settings = [
        f"Steps: {request.num_inference_steps}",
        f"Sampler: {SAMPLER}",
        f"CFG scale: {_number(request.guidance_scale)}",
        f"Seed: {request.seed}",
        f"Size: {request.width}x{request.height}",
        f"Model: {_quote(model)}",
    ]
    if request.edits:
        settings.append(f"Regional: {request.regional}")
        settings.append(f"Edits: {len(request.edits)}")
    if request.strength < 1.0:
        settings.append(f"Denoising strength: {_number(request.strength)}")
    return f"{request.prompt}\n{', '.join(settings)}"


def painting_provenance(painting: Painting, **extra: Any) -> dict[str, Any]:
    """The JSON record for a painting: what was asked, by which model, with which libraries, at what cost."""
    request = painting.request
    record = {
        "prompt": request.prompt,
        "seed": request.seed,
        "steps": request.num_inference_steps,
        "size": [request.width, request.height],
        "guidance_scale": request.guidance_scale,
        "model": painting.model,
        "edits": [edit.to_dict() for edit in request.edits],
        "regional": request.regional if request.edits else None,
        "request": request.to_dict(),
        "cost": painting.cost.to_dict(),
        "versions": versions(),
    }
    record.update(extra)
    return record


def save_png(image: Image.Image, path: str | os.PathLike, parameters: str, provenance: dict[str, Any]) -> Path:
    """Write ``image`` as a PNG carrying ``parameters`` and the JSON ``provenance``; atomic (temp file + rename)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, parameters)
    info.add_text(PROVENANCE_KEY, json.dumps(provenance, ensure_ascii=False, sort_keys=True))
    return atomic_write(path, lambda file: image.save(file, format="PNG", pnginfo=info))


def read_png_metadata(path: str | os.PathLike) -> tuple[str | None, dict[str, Any] | None]:
    """``(parameters, provenance)`` of a PNG; either is None when the chunk is absent."""
    with Image.open(path) as image:
        text = dict(getattr(image, "text", {}) or {})
    raw = text.get(PROVENANCE_KEY)
    return text.get(PARAMETERS_KEY), loads_json(raw, where=f"{path} provenance") if raw is not None else None


def _number(value: float) -> str:
    return f"{value:g}"


def _quote(value: str) -> str:
    # A1111 quotes values that contain its separators, so parsers do not split them.
    return json.dumps(value) if any(c in value for c in ',:"\n') else value
