"""Which painter family a model is: read from the folder's ``model_index.json`` (``_class_name``), or for a hub id
from a small table of known models. Decided before any weights load."""

from __future__ import annotations

from artaug.config import PainterConfig
from artaug.painter.base import BasePainter
from artaug.painter.flux import FluxPainter
from artaug.painter.qwen import QwenImagePainter
from artaug.painter.requests import EDITORS, pipeline_name

# diffusers pipeline class -> the painter family that paints with it.
PAINTERS: dict[str, type[BasePainter]] = {"FluxPipeline": FluxPainter, "QwenImagePipeline": QwenImagePainter}


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
