"""FLUX.1 (dev, schnell, Krea) through diffusers' ``FluxPipeline``: the family's hooks for ``BasePainter``.

Prompts are T5 sequence embeddings plus a CLIP pooled embedding; text position ids are all zero, image ids row-major;
FLUX.1-dev's guidance is a distilled embedding (schnell has none and ignores ``guidance_scale``, as ``FluxPipeline``
does). Regional attention replaces the transformer's processors for one painting (``artaug.painter.attention``) and
restores them after; a compiled transformer keeps one processor and is handed the call's layout instead. Without
edits the image is pixel-identical to ``FluxPipeline(...)`` with
``generator=torch.Generator("cpu").manual_seed(seed)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from artaug.config import ATTENTION_IMPLS
from artaug.painter import regions
from artaug.painter.attention import (
    GroupedRegionalAttnProcessor,
    LseRegionalAttnProcessor,
    RegionalAttnProcessor,
    regional_processors,
)
from artaug.painter.base import BasePainter, Prompt
from artaug.painter.requests import execution_device, region_bucket
from artaug.types import PaintRequest

__all__ = ["FluxPainter", "region_bucket"]


class FluxPainter(BasePainter):
    """Paints with a ``FluxPipeline`` (FLUX.1-dev, FLUX.1-schnell or any folder of that layout)."""

    pipeline_name = "FluxPipeline"
    example_id = "black-forest-labs/FLUX.1-dev"

    def _encode_prompt(self, prompt: str, max_sequence_length: int, device: torch.device) -> Prompt:
        """T5 sequence embeddings and CLIP pooled embedding, as ``FluxPipeline.encode_prompt`` makes them."""
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, device=device, max_sequence_length=max_sequence_length
        )
        return embeds, pooled

    def local_prompt_length(self, prompt: str, cap: int) -> int:
        """T5 tokens of ``prompt`` (end-of-sequence included), at most ``cap``: the length it is encoded at."""
        ids = self.pipe.tokenizer_2(prompt, truncation=True, max_length=cap, add_special_tokens=True).input_ids
        return max(1, len(ids))

    def _prepare_noise(self, request: PaintRequest, dtype, device, generator) -> tuple[torch.Tensor, torch.Tensor]:
        channels = self.pipe.transformer.config.in_channels // 4
        return self.pipe.prepare_latents(1, channels, request.height, request.width, dtype, device, generator)

    def _image_positions(self, request: PaintRequest, device, dtype) -> torch.Tensor:
        rows, cols = regions.token_grid(request.height, request.width)
        return self.pipe._prepare_latent_image_ids(1, rows, cols, device, dtype)

    def _text_ids(self, length: int, device: torch.device) -> torch.Tensor:
        # FluxPipeline.encode_prompt: all-zero text position ids, in the CLIP encoder's dtype.
        pipe = self.pipe
        dtype = pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.transformer.dtype
        return torch.zeros(length, 3, device=device, dtype=dtype)

    def _transformer(self, latents, t, prompt, positions, guidance, kwargs=None) -> torch.Tensor:
        """One transformer call, argument for argument as FluxPipeline makes it."""
        embeds, pooled = prompt
        batch = latents.shape[0]
        timestep = t.expand(batch).to(latents.dtype)
        transformer = self.pipe.transformer
        # FluxPipeline runs the conditional pass in a "cond" cache context (used by diffusers' step caches).
        cache = getattr(transformer, "cache_context", None)
        with cache("cond") if cache is not None else contextlib.nullcontext():
            return transformer(
                hidden_states=latents,
                timestep=timestep / 1000,
                guidance=guidance.expand(batch) if guidance is not None else None,
                pooled_projections=pooled,
                encoder_hidden_states=embeds,
                txt_ids=self._text_ids(embeds.shape[1], latents.device),
                img_ids=positions,
                joint_attention_kwargs=kwargs or {},
                return_dict=False,
            )[0]

    def _stack_prompts(self, prompts: list[Prompt]) -> Prompt:
        # T5 pads every prompt to max_sequence_length, so prompts stack as they are.
        return torch.cat([e for e, _ in prompts]), torch.cat([p for _, p in prompts])

    def _regional_attention(self, layout: regions.RegionalLayout) -> tuple[Any, dict[str, Any]]:
        if self._compiled is not None:
            return self._layout_context(layout), {}
        return regional_processors(self.pipe.transformer, self._processor_factory(layout)), {}

    @contextlib.contextmanager
    def _layout_context(self, layout: regions.RegionalLayout | None) -> Iterator[None]:
        """A compiled transformer keeps its processor: the call's regional layout is set on it, and cleared after."""
        self._compiled.layout = layout
        try:
            yield
        finally:
            self._compiled.layout = None

    def _processor_factory(self, layout: regions.RegionalLayout) -> Callable[[Any], Any]:
        """original processor -> the regional processor that replaces it for one call, per ``attention_impl``.

        Masks and index tensors are built once per request, on the model's device (``layout`` already is)."""
        if self.attention_impl == "lse":
            return lambda inner: LseRegionalAttnProcessor(layout, getattr(inner, "_attention_backend", None))
        if self.attention_impl == "mask":
            bias = layout.bias()
            return lambda inner: RegionalAttnProcessor(inner, bias[None, None])
        if self.attention_impl == "grouped":
            shared = GroupedRegionalAttnProcessor(regions.attention_groups(layout.allowed(), layout.bias()))
            return lambda inner: shared
        raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")

    def _compiled_processor(self) -> LseRegionalAttnProcessor:
        backend_of = {getattr(p, "_attention_backend", None) for p in self.pipe.transformer.attn_processors.values()}
        return LseRegionalAttnProcessor(None, backend_of.pop() if len(backend_of) == 1 else None)

    def encode_image(self, image: Any, height: int, width: int) -> torch.Tensor:
        pipe = self.pipe
        pixels = pipe.image_processor.preprocess(image, height=height, width=width)
        encoded = pipe.vae.encode(pixels.to(execution_device(pipe.vae), pipe.vae.dtype)).latent_dist.mode()
        encoded = (encoded - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
        _, c, h, w = encoded.shape
        return pipe._pack_latents(encoded, 1, c, h, w)

    def _decode(self, latents: torch.Tensor, request: PaintRequest):
        pipe = self.pipe
        unpacked = pipe._unpack_latents(latents, request.height, request.width, pipe.vae_scale_factor)
        unpacked = (unpacked / pipe.vae.config.scaling_factor) + pipe.vae.config.shift_factor
        pixels = pipe.vae.decode(unpacked.to(execution_device(pipe.vae)), return_dict=False)[0]
        return pipe.image_processor.postprocess(pixels, output_type="pil")[0]
