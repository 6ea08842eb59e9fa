"""The painter: text → image, and image + edits → revised image (FLUX through diffusers).

- ``FluxPainter.from_pretrained(hub_id_or_folder)`` / ``FluxPainter.from_config(PainterConfig)``;
  ``painter.paint(request, init=None, progress=None) -> Painting``;
- ``regions``: boxes → masks at pixel, latent and packed-token resolution, blur, attention masks (no model);
- ``attention``: the processors of single-pass regional attention.
"""

from artaug.painter.flux import FluxPainter, check_request, region_masks, start_index

__all__ = ["FluxPainter", "check_request", "region_masks", "start_index"]
