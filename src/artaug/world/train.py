"""Training the world painter from rendered scenes: the VAE by reconstruction, the transformer by flow matching.

Both loops are plain AdamW with linear warm-up and cosine decay, deterministic from a ``torch.Generator``:

* ``train_vae`` -- L1 + MSE reconstruction of random crops (a convolutional VAE learns the same filters from a 64 x 64
  crop at a quarter of the cost), plus an MSE between 8 x 8 average-pooled images, which weighs flat colour as much as
  edges (colours are what a small VAE learns last), plus a small KL term (Kingma & Welling 2014) that keeps the
  latent space smooth enough to be generated;
* ``train_transformer`` -- rectified flow (``artaug.train.flow``: ``x_t = (1 - sigma) x0 + sigma noise``, target
  ``noise - x0``) on cached packed latents and cached text embeddings, sigmas logit-normal and shifted like FLUX's
  sampling schedule at this resolution, with an exponential moving average of the weights (the EMA is what is saved);
  10% of captions dropped to the empty prompt (the unconditional model guidance needs), and every 4th batch
  region-conditioned the way the painter's attention mode reads local prompts (measured: without them a local prompt
  in attention mode is text the model has never seen in that place);
* ``distill_guidance`` -- classifier-free guidance distilled into FLUX's guidance input, so that one pass at
  ``guidance_scale`` paints what two passes of guidance would (measured on the quick held-out set: guidance 3.5
  doubles single-object accuracy of the undistilled model, and one pass of the distilled model gets most of it).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from artaug.train.data import image_ids
from artaug.train.flow import add_noise, flow_matching_loss, sample_sigmas

Log = Callable[[str], None]


@dataclass(frozen=True)
class VaeSchedule:
    steps: int = 2500
    full_steps: int = 150  # final steps on whole images: GroupNorm statistics then match inference
    batch: int = 8
    crop: int = 64
    lr: float = 1e-3
    pooled_weight: float = 4.0
    kl_weight: float = 1e-6


@dataclass(frozen=True)
class TransformerSchedule:
    steps: int = 4500
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 200
    ema: float = 0.999
    sigma_shift: float = 1.6  # FLUX's resolution shift exp(mu) for 64 image tokens (calculate_shift(64) = 0.47)
    guidance: tuple[float, float] = (1.0, 5.0)  # guidance inputs drawn uniformly: the scales distillation teaches
    bfloat16: bool = True  # autocast matmuls to bfloat16: ~1.5x faster on CPUs with AVX512-BF16, loss in float32
    region_every: int = 4  # every n-th step trains on region-conditioned examples (0: never)
    caption_dropout: float = 0.1  # share of examples trained with the empty prompt (the unconditional of guidance)


@dataclass
class RegionExamples:
    """One region per training scene, as the painter's attention mode reads it: the local prompt's T5 embeddings
    (N, L, D) and the image tokens its box touches (N, S) bool."""

    embeds: torch.Tensor
    tokens: torch.Tensor


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to zero (Loshchilov & Hutter 2017, SGDR without restarts)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def vae_loss(vae, pixels: torch.Tensor, generator: torch.Generator, schedule: VaeSchedule) -> torch.Tensor:
    """L1 + MSE + ``pooled_weight`` x MSE of 8x8-pooled images + ``kl_weight`` x KL(q(z|x) || N(0, I))."""
    posterior = vae.encode(pixels).latent_dist
    reconstruction = vae.decode(posterior.sample(generator=generator)).sample
    pooled = F.mse_loss(F.avg_pool2d(reconstruction, 8), F.avg_pool2d(pixels, 8))
    pixel = (reconstruction - pixels).abs().mean() + F.mse_loss(reconstruction, pixels)
    return pixel + schedule.pooled_weight * pooled + schedule.kl_weight * posterior.kl().mean()


def train_vae(vae, images: torch.Tensor, schedule: VaeSchedule, generator: torch.Generator, log: Log) -> None:
    """Fit ``vae`` to uint8 ``images`` (N, 3, H, W): crops first, whole images for the last ``full_steps``."""
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=schedule.lr, weight_decay=0.0)
    total = schedule.steps + schedule.full_steps
    started = time.perf_counter()
    for step in range(total):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, total, schedule.lr, warmup=50)
        index = torch.randint(0, len(images), (schedule.batch,), generator=generator)
        batch = to_unit(images[index])
        if step < schedule.steps:
            batch = _crop(batch, schedule.crop, generator)
        loss = vae_loss(vae, batch, generator, schedule)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == total - 1:
            log(f"vae step {step}/{total} loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)")
    vae.eval()


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1], the range diffusers' VAEs work in."""
    return images.float() / 127.5 - 1


def _crop(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random crop per batch, aligned to the VAE's 8-pixel grid."""
    height, width = batch.shape[-2:]
    y = int(torch.randint(0, (height - size) // 8 + 1, (1,), generator=generator)) * 8
    x = int(torch.randint(0, (width - size) // 8 + 1, (1,), generator=generator)) * 8
    return batch[..., y : y + size, x : x + size]


@dataclass
class TrainingData:
    """What the transformer trains on, all cached: packed ``latents`` (N, S, 64), their captions' T5 ``embeds``
    (N, L, D) and CLIP ``pooled`` (N, P); optionally ``regions`` (one per scene) and the ``empty`` prompt's
    (embeds (1, L, D), pooled (1, P)) for caption dropout."""

    latents: torch.Tensor
    embeds: torch.Tensor
    pooled: torch.Tensor
    regions: RegionExamples | None = None
    empty: tuple[torch.Tensor, torch.Tensor] | None = None
    latent_size: tuple[int, int] = (16, 16)


def sample_batch(data: TrainingData, schedule: TransformerSchedule, step: int, generator: torch.Generator):
    """One training batch: the clean latents, the noise, the loss weights and the transformer's keyword arguments
    (noisy latents at logit-normal sigmas, captions with dropout, region text and mask on region steps)."""
    index = torch.randint(0, len(data.latents), (schedule.batch,), generator=generator)
    x0 = data.latents[index]
    noise = torch.randn(x0.shape, generator=generator)
    sigmas, weights = sample_sigmas(schedule.batch, generator, "logit_normal", shift=schedule.sigma_shift)
    low, high = schedule.guidance
    guidance = low + (high - low) * torch.rand(schedule.batch, generator=generator)
    text, pooled, kwargs = data.embeds[index], data.pooled[index], {}
    if data.empty is not None and schedule.caption_dropout > 0:
        drop = torch.rand(schedule.batch, generator=generator) < schedule.caption_dropout
        text = torch.where(drop[:, None, None], data.empty[0], text)
        pooled = torch.where(drop[:, None], data.empty[1], pooled)
    regions = data.regions
    if regions is not None and schedule.region_every and step % schedule.region_every == 0:
        mask = region_attention_mask(text.shape[1], regions.embeds.shape[1], regions.tokens[index])
        text = torch.cat([text, regions.embeds[index]], dim=1)
        kwargs = {"attention_mask": mask}
    inputs = {
        "hidden_states": add_noise(x0, noise, sigmas),
        "timestep": sigmas,
        "guidance": guidance,
        "pooled_projections": pooled,
        "encoder_hidden_states": text,
        "txt_ids": torch.zeros(text.shape[1], 3),
        "img_ids": image_ids(*data.latent_size),
        "joint_attention_kwargs": kwargs,
    }
    return x0, noise, weights, inputs


def predict(transformer, inputs: dict, bfloat16: bool) -> torch.Tensor:
    """The transformer's velocity for a batch (matmuls in bfloat16 when asked)."""
    if not transformer.config.guidance_embeds:
        inputs = inputs | {"guidance": None}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        return transformer(**inputs, return_dict=False)[0]


def train_transformer(transformer, data: TrainingData, schedule: TransformerSchedule, generator, log: Log):
    """Flow matching on ``data``; returns the EMA copy of the transformer (eval mode), which is the one to save.

    On every ``schedule.region_every``-th step the batch is region-conditioned exactly as attention mode paints: each
    scene's local prompt joins the text sequence and ``region_attention_mask`` confines it to its box.
    """
    transformer.train()
    ema = copy.deepcopy(transformer).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=schedule.lr, weight_decay=0.01)
    started = time.perf_counter()
    for step in range(schedule.steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, schedule.steps, schedule.lr, schedule.warmup)
        x0, noise, weights, inputs = sample_batch(data, schedule, step, generator)
        loss = flow_matching_loss(predict(transformer, inputs, schedule.bfloat16), x0, noise, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        _ema_update(ema, transformer, min(schedule.ema, (step + 1) / (step + 10)))
        if step % 250 == 0 or step == schedule.steps - 1:
            seconds = time.perf_counter() - started
            log(f"transformer step {step}/{schedule.steps} loss {loss.item():.4f} ({seconds:.0f} s)")
    return ema


@dataclass(frozen=True)
class DistillSchedule:
    steps: int = 1200  # 0: no distillation; the guidance embedding then stays the no-op it was trained to be
    lr: float = 3e-4
    warmup: int = 50
    ema: float = 0.998


def distill_guidance(
    teacher, data: TrainingData, schedule: TransformerSchedule, distill: DistillSchedule, generator, log
):
    """Guidance distillation (Meng et al. 2023, "On Distillation of Guided Diffusion Models"; how FLUX.1-dev came to
    take ``guidance_scale`` as an input): a student, initialised from ``teacher``, learns to predict in one pass, with
    the scale ``g`` as its guidance input, what classifier-free guidance (Ho & Salimans 2022) computes in two,
    ``v_u + g (v_c - v_u)``, the unconditional pass reading the empty prompt. Returns the student's EMA copy."""
    if data.empty is None:
        raise ValueError("guidance distillation needs the empty prompt's embeddings (TrainingData.empty)")
    teacher.eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=distill.lr, weight_decay=0.01)
    no_dropout = replace(schedule, caption_dropout=0.0)
    started = time.perf_counter()
    for step in range(distill.steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, distill.steps, distill.lr, distill.warmup)
        _, _, _, inputs = sample_batch(data, no_dropout, step, generator)
        with torch.no_grad():
            cond = predict(teacher, inputs, schedule.bfloat16).float()
            uncond = predict(teacher, _unconditional(inputs, data.empty), schedule.bfloat16).float()
            target = uncond + inputs["guidance"].view(-1, 1, 1) * (cond - uncond)
        loss = F.mse_loss(predict(student, inputs, schedule.bfloat16).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        _ema_update(ema, student, min(distill.ema, (step + 1) / (step + 10)))
        if step % 250 == 0 or step == distill.steps - 1:
            seconds = time.perf_counter() - started
            log(f"distillation step {step}/{distill.steps} loss {loss.item():.4f} ({seconds:.0f} s)")
    return ema


def _unconditional(inputs: dict, empty: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """The same batch read with the empty prompt and no regions."""
    batch = inputs["hidden_states"].shape[0]
    embeds, pooled = empty
    return inputs | {
        "encoder_hidden_states": embeds.expand(batch, -1, -1),
        "pooled_projections": pooled.expand(batch, -1),
        "txt_ids": torch.zeros(embeds.shape[1], 3),
        "joint_attention_kwargs": {},
    }


def region_attention_mask(text_len: int, region_len: int, tokens: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) boolean masks (True = may attend) for ``base text | region text | image`` sequences, the rule of
    the painter's attention mode: base text <-> everything, image <-> image, region text <-> itself and the image
    tokens its box touches (``tokens``: (B, S) bool)."""
    batch, image_len = tokens.shape
    total = text_len + region_len + image_len
    region = torch.zeros(batch, total, dtype=torch.bool)
    region[:, text_len : text_len + region_len] = True
    inside = torch.zeros(batch, total, dtype=torch.bool)
    inside[:, total - image_len :] = tokens
    image = torch.zeros(total, dtype=torch.bool)
    image[total - image_len :] = True
    allowed = (image[:, None] & image[None, :]).expand(batch, total, total).clone()
    allowed[:, :text_len, :] = True
    allowed[:, :, :text_len] = True
    allowed |= region[:, :, None] & (region | inside)[:, None, :]
    allowed |= inside[:, :, None] & region[:, None, :]
    return allowed[:, None]


@torch.no_grad()
def _ema_update(ema, model, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model``; the warm-up decay (step+1)/(step+10) forgets the random init."""
    for target, source in zip(ema.parameters(), model.parameters(), strict=True):
        target.lerp_(source.detach(), 1 - decay)
