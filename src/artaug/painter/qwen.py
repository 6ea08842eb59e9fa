"""Qwen-Image through diffusers' ``QwenImagePipeline``: the family's hooks for ``BasePainter``.

Prompts are the last hidden states of a Qwen2.5-VL text encoder over a fixed chat template (its system part
dropped), at their natural length: no padding, no pooled embedding. Latents are a 16-channel video VAE's, normalised
by per-channel mean and standard deviation and packed 2x2 like FLUX's; image positions are ``img_shapes``. Qwen-Image
is not guidance-distilled: ``guidance_scale`` > 1 is true classifier-free guidance (``true_cfg_scale`` of the
pipeline) against ``NEGATIVE_PROMPT``, one unconditional pass more per step, with the pipeline's norm rescaling.
Without edits the image is pixel-identical to ``QwenImagePipeline(prompt, negative_prompt=NEGATIVE_PROMPT,
true_cfg_scale=guidance_scale, ...)`` for the same seed.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from artaug.painter import regions
from artaug.painter.attention import regional_processors
from artaug.painter.base import BasePainter, Prompt
from artaug.painter.qwen_attention import QwenRegionalAttnProcessor, QwenRegionalCall
from artaug.painter.requests import execution_device
from artaug.types import PaintRequest

# Qwen-Image's own examples guide against a single space.
NEGATIVE_PROMPT = " "


class QwenImagePainter(BasePainter):
    """Paints with a ``QwenImagePipeline`` (``Qwen/Qwen-Image`` or a folder of that layout)."""

    pipeline_name = "QwenImagePipeline"
    example_id = "Qwen/Qwen-Image"

    def _encode_prompt(self, prompt: str, max_sequence_length: int, device: torch.device) -> Prompt:
        """Sequence embeddings and their padding mask (None: no padding), as ``QwenImagePipeline.encode_prompt``."""
        embeds, mask = self.pipe.encode_prompt(prompt=prompt, device=device, max_sequence_length=max_sequence_length)
        return embeds, mask

    def local_prompt_length(self, prompt: str, cap: int) -> int:
        """Tokens of ``prompt`` in the chat template after its dropped system part, at most ``cap``."""
        pipe = self.pipe
        drop = pipe.prompt_template_encode_start_idx
        text = pipe.prompt_template_encode.format(prompt)
        ids = pipe.tokenizer(text, truncation=True, max_length=pipe.tokenizer_max_length + drop).input_ids
        return max(1, min(cap, len(ids) - drop))

    def _prepare_noise(self, request: PaintRequest, dtype, device, generator) -> tuple[torch.Tensor, Any]:
        channels = self.pipe.transformer.config.in_channels // 4
        noise = self.pipe.prepare_latents(1, channels, request.height, request.width, dtype, device, generator)
        return noise, self._image_positions(request, device, dtype)

    def _image_positions(self, request: PaintRequest, device, dtype) -> list:
        rows, cols = regions.token_grid(request.height, request.width)
        return [[(1, rows, cols)]]

    def _transformer(self, latents, t, prompt, positions, guidance, kwargs=None, cache: str = "cond"):
        """One transformer call, argument for argument as QwenImagePipeline makes it."""
        embeds, mask = prompt
        timestep = t.expand(latents.shape[0]).to(latents.dtype)
        with self.pipe.transformer.cache_context(cache):
            return self.pipe.transformer(
                hidden_states=latents,
                timestep=timestep / 1000,
                guidance=guidance,
                encoder_hidden_states_mask=mask,
                encoder_hidden_states=embeds,
                img_shapes=positions,
                attention_kwargs=kwargs or {},
                return_dict=False,
            )[0]

    def _guide(self, predict, passes: int, request, positions, device):
        """True classifier-free guidance with the pipeline's rescaling: ``c = u + s (v - u)``, then ``c * |v| / |c|``
        per token (QwenImagePipeline's ``true_cfg_scale``); scale <= 1 means no guidance."""
        scale = request.guidance_scale
        if scale <= 1:
            return predict, passes
        negative = self._encode(NEGATIVE_PROMPT, request.max_sequence_length, device)

        def guided(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            cond = predict(latents, t)
            uncond = self._transformer(latents, t, negative, positions, None, cache="uncond")
            combined = uncond + scale * (cond - uncond)
            return combined * (torch.norm(cond, dim=-1, keepdim=True) / torch.norm(combined, dim=-1, keepdim=True))

        return guided, passes + 1

    def _stack_prompts(self, prompts: list[Prompt]) -> Prompt:
        """Prompts of different lengths as one batch: zero-padded to the longest, with a mask (None if none is)."""
        longest = max(e.shape[1] for e, _ in prompts)
        embeds = torch.cat([torch.nn.functional.pad(e, (0, 0, 0, longest - e.shape[1])) for e, _ in prompts])
        mask = torch.zeros(len(prompts), longest, dtype=torch.long, device=embeds.device)
        for i, (e, _) in enumerate(prompts):
            mask[i, : e.shape[1]] = 1
        return embeds, None if bool(mask.all()) else mask

    def _take_prompts(self, prompts: Prompt, start: int, stop: int) -> Prompt:
        """A chunk of a padded batch, trimmed to its own longest prompt, so a chunk of one prompt is that prompt as
        it is painted alone (no padding, no mask)."""
        embeds, mask = prompts
        if mask is None:
            return embeds[start:stop], None
        mask = mask[start:stop]
        longest = int(mask.sum(1).max())
        mask = mask[:, :longest]
        return embeds[start:stop, :longest], None if bool(mask.all()) else mask

    def _regional_attention(self, layout: regions.RegionalLayout) -> tuple[Any, dict[str, Any]]:
        kwargs = {"regional": QwenRegionalCall.build(self.attention_impl, layout)}
        if self._compiled is not None:
            return contextlib.nullcontext(), kwargs
        return regional_processors(self.pipe.transformer, QwenRegionalAttnProcessor), kwargs

    def _compiled_processor(self) -> QwenRegionalAttnProcessor:
        return QwenRegionalAttnProcessor(next(iter(self.pipe.transformer.attn_processors.values())))

    def encode_image(self, image: Any, height: int, width: int) -> torch.Tensor:
        pipe, vae = self.pipe, self.pipe.vae
        pixels = pipe.image_processor.preprocess(image, height=height, width=width)[:, :, None]  # one video frame
        encoded = vae.encode(pixels.to(execution_device(vae), vae.dtype)).latent_dist.mode()
        mean, std = self._latent_statistics(encoded)
        encoded = ((encoded - mean) * (1.0 / std))[:, :, 0]  # QwenImageImg2ImgPipeline's normalisation
        _, c, h, w = encoded.shape
        return pipe._pack_latents(encoded, 1, c, h, w)

    def _decode(self, latents: torch.Tensor, request: PaintRequest):
        pipe, vae = self.pipe, self.pipe.vae
        unpacked = pipe._unpack_latents(latents, request.height, request.width, pipe.vae_scale_factor).to(vae.dtype)
        mean, std = self._latent_statistics(unpacked)
        # QwenImagePipeline divides by 1/std rather than multiplying by std: the same number up to rounding, so the
        # same expression keeps pixel identity.
        unpacked = unpacked / (1.0 / std) + mean
        pixels = vae.decode(unpacked.to(execution_device(vae)), return_dict=False)[0][:, :, 0]
        return pipe.image_processor.postprocess(pixels, output_type="pil")[0]

    def _latent_statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.pipe.vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(shape).to(like.device, like.dtype)
        std = torch.tensor(config.latents_std).view(shape).to(like.device, like.dtype)
        return mean, std
