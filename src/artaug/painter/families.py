"""Which painter family a model is: read from the folder's ``model_index.json`` (``_class_name``), or for a hub id
from a small table of known models. Decided before any weights load."""

from __future__ import annotations

import os

from artaug.config import PainterConfig
from artaug.painter.base import BasePainter
from artaug.painter.flux import FluxPainter
from artaug.painter.qwen import QwenImagePainter
from artaug.painter.requests import pipeline_class_name

# diffusers pipeline class -> the painter family that paints with it.
PAINTERS: dict[str, type[BasePainter]] = {"FluxPipeline": FluxPainter, "QwenImagePipeline": QwenImagePainter}
# Instruction-editing pipelines: an editor (``painter.editor``), never the painter itself.
EDITORS = ("FluxKontextPipeline", "QwenImageEditPipeline", "QwenImageEditPlusPipeline")
# Hub ids whose pipeline class is known without downloading anything.
HUB_PIPELINES: dict[str, str] = {
    "black-forest-labs/FLUX.1-dev": "FluxPipeline",
    "black-forest-labs/FLUX.1-schnell": "FluxPipeline",
    "black-forest-labs/FLUX.1-Krea-dev": "FluxPipeline",
    "Qwen/Qwen-Image": "QwenImagePipeline",
    "black-forest-labs/FLUX.1-Kontext-dev": "FluxKontextPipeline",
    "Qwen/Qwen-Image-Edit": "QwenImageEditPipeline",
    "Qwen/Qwen-Image-Edit-2509": "QwenImageEditPlusPipeline",
}


def pipeline_name(model: str, what: str = "painter") -> str:
    """The diffusers pipeline class of a local folder or a known hub id; a clear error for anything else."""
    folder = os.path.expanduser(model)
    if os.path.isdir(folder) and os.path.isfile(os.path.join(folder, "model_index.json")):
        return pipeline_class_name(folder)
    if os.path.exists(folder) or model.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"{what} folder {model!r} is not a diffusers pipeline folder (no model_index.json)")
    if model not in HUB_PIPELINES:
        raise ValueError(
            f"{what} {model!r} is not a hub id artaug knows ({', '.join(HUB_PIPELINES)}); download it "
            f"(`hf download {model} --local-dir DIR`) and pass the folder: its model_index.json names the pipeline"
        )
    return HUB_PIPELINES[model]


def painter_class(model: str) -> type[BasePainter]:
    """The painter family (``FluxPainter``, ``QwenImagePainter``) that paints with ``model``."""
    name = pipeline_name(model)
    if name in PAINTERS:
        return PAINTERS[name]
    if name in EDITORS:
        raise ValueError(
            f"painter {model!r} is an instruction-editing model ({name}): set it as painter.editor (with loop.fix "
            "= edit or auto), and a text-to-image model as painter.model"
        )
    raise ValueError(f"painter {model!r} holds a {name}; artaug paints with {', '.join(PAINTERS)}")


def load_painter(config: PainterConfig) -> BasePainter:
    """The painter a ``[painter]`` section names, of the family its model is (LoRA loaded and fused, if any)."""
    return painter_class(config.model).from_config(config)
