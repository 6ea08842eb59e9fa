"""The painter: text → image, and image + edits → revised image, for every family behind one seam.

- ``load_painter(PainterConfig)`` picks the family from the model folder's ``model_index.json`` (or a hub id's
  entry in ``families.HUB_PIPELINES``) and loads it; ``painter.paint(request, init=None, progress=None) -> Painting``;
- ``BasePainter`` (``base.py``): the linear ``paint``, strength, cost, prompt cache; loading, LoRA and ``compile``
  (``loading.py``); the families ``FluxPainter`` (FLUX.1-dev / schnell, ``flux.py``) and ``QwenImagePainter``
  (Qwen-Image, ``qwen.py``); ``editor.py``: revisions by instruction (``loop.fix = "edit"``);
- ``regions``: boxes → masks at pixel, latent and packed-token resolution, blur, attention masks (no model);
- ``attention`` / ``qwen_attention``: the processors of single-pass regional attention; ``lora``: safe LoRA reading.
"""

from artaug.painter.base import BasePainter
from artaug.painter.families import load_painter, painter_class
from artaug.painter.flux import FluxPainter
from artaug.painter.qwen import QwenImagePainter
from artaug.painter.requests import check_request, region_masks, start_index

__all__ = [
    "BasePainter",
    "FluxPainter",
    "QwenImagePainter",
    "check_request",
    "load_painter",
    "painter_class",
    "region_masks",
    "start_index",
]
