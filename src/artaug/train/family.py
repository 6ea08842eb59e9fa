"""What training needs to know of a painter family: how its pipeline turns captions into the transformer's text
inputs, how its VAE's latents are normalised, and how one transformer call is made.

FLUX.1 and Qwen-Image share everything else: rectified-flow training on 2x2-packed 16-channel latents
(``artaug.train.flow``), timesteps as sigmas, LoRA on the blocks' linear layers. FLUX's captions are T5 sequences
padded to ``max_sequence_length`` plus a CLIP pooled vector, with all-zero text ids and row-major image ids;
Qwen-Image's are Qwen2.5-VL hidden states at their natural length (padded here to the longest caption, with a mask),
no pooled vector, and ``img_shapes`` instead of ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def image_ids(latent_height: int, latent_width: int) -> torch.Tensor:
    """FLUX's positional ids of the packed image tokens: (S, 3) with (0, row, col)."""
    rows = torch.arange(latent_height // 2).view(-1, 1).expand(-1, latent_width // 2)
    cols = torch.arange(latent_width // 2).view(1, -1).expand(latent_height // 2, -1)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()


def is_qwen_image(model: Any) -> bool:
    """Whether a pipeline or transformer is Qwen-Image's (else FLUX.1's)."""
    return type(model).__name__.startswith("QwenImage")


@torch.no_grad()
def encode_captions(pipe: Any, prompts: Sequence[str], max_sequence_length: int) -> tuple[torch.Tensor, ...]:
    """Sequence embeddings ``(N, L, D)``, pooled embeddings ``(N, P)`` (``P`` = 0 for Qwen-Image) and the text mask
    ``(N, L)`` (1 = a real token), float32 / int64 on the CPU, each caption as the family's pipeline encodes it."""
    embeds, pooled = [], []
    for prompt in prompts:
        if is_qwen_image(pipe):
            e, _ = pipe.encode_prompt(prompt=prompt, max_sequence_length=max_sequence_length)
            p = e.new_zeros(1, 0)
        else:
            e, p, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, max_sequence_length=max_sequence_length)
        embeds.append(e.float().cpu())
        pooled.append(p.float().cpu())
    longest = max(e.shape[1] for e in embeds)
    mask = torch.zeros(len(embeds), longest, dtype=torch.long)
    for i, e in enumerate(embeds):
        mask[i, : e.shape[1]] = 1
    padded = torch.cat([torch.nn.functional.pad(e, (0, 0, 0, longest - e.shape[1])) for e in embeds])
    return padded, torch.cat(pooled), mask


def latent_statistics(vae: Any) -> tuple[Any, Any]:
    """``(shift, scale)`` with ``normalised = (latents - shift) * scale``: FLUX's scalar shift and scaling factor, or
    Qwen-Image's per-channel mean and 1 / standard deviation (shaped for ``(B, C, H, W)`` latents)."""
    config = vae.config
    if config.get("latents_mean") is not None and "z_dim" in config:
        shape = (1, config["z_dim"], 1, 1)
        return torch.tensor(config["latents_mean"]).view(shape), 1.0 / torch.tensor(config["latents_std"]).view(shape)
    return config.get("shift_factor") or 0.0, config["scaling_factor"]


def encode_pixels(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` posterior means of ``(B, 3, H, W)`` pixels in [-1, 1]; Qwen-Image's video VAE sees one
    frame."""
    if vae.config.get("latents_mean") is not None and "z_dim" in vae.config:
        return vae.encode(pixels[:, :, None]).latent_dist.mode()[:, :, 0]
    return vae.encode(pixels).latent_dist.mode()


def transformer_inputs(
    transformer: Any,
    embeds: torch.Tensor,
    pooled: torch.Tensor,
    mask: torch.Tensor | None,
    size: tuple[int, int],
    guidance: float,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """The transformer's keyword arguments besides ``hidden_states`` and ``timestep`` for a batch of captions and
    latents of unpacked ``size`` (height, width), as the family's pipeline passes them."""
    batch = embeds.shape[0]
    if is_qwen_image(transformer):
        if mask is not None:  # only as many tokens as the batch's longest caption; no mask when nothing is padding
            longest = int(mask.sum(1).max())
            embeds, mask = embeds[:, :longest], mask[:, :longest]
            mask = None if bool(mask.all()) else mask.to(device)
        return {
            "encoder_hidden_states": embeds.to(device, dtype),
            "encoder_hidden_states_mask": mask,
            "img_shapes": [[(1, size[0] // 2, size[1] // 2)]] * batch,
            "guidance": None,
        }
    has_guidance = bool(getattr(transformer.config, "guidance_embeds", False))
    return {
        "guidance": torch.full((batch,), guidance, device=device) if has_guidance else None,
        "pooled_projections": pooled.to(device, dtype),
        "encoder_hidden_states": embeds.to(device, dtype),
        "txt_ids": torch.zeros(embeds.shape[1], 3, device=device),
        "img_ids": image_ids(*size).to(device),
    }
