"""Training data: image pairs in, cached VAE latents and text embeddings out.

Latents and text embeddings are computed once per run (the VAE and both text encoders never run inside the training
loop) and kept on disk next to the run, keyed by a hash of everything that determines them, so a resumed or repeated
run skips the encoders entirely.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image


@dataclass(frozen=True)
class TrainPair:
    """One training example pair: the caption and the before / after image files."""

    prompt: str
    before: Path
    after: Path

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("a training pair needs a non-empty prompt")
        object.__setattr__(self, "before", Path(self.before))
        object.__setattr__(self, "after", Path(self.after))


def as_pairs(records: Iterable[Any]) -> list[TrainPair]:
    """Accept ``TrainPair``s, ``(prompt, before, after)`` tuples or objects with those attributes."""
    pairs = []
    for r in records:
        if isinstance(r, TrainPair):
            pairs.append(r)
        elif isinstance(r, (tuple, list)):
            pairs.append(TrainPair(*r))
        else:
            pairs.append(TrainPair(r.prompt, r.before, r.after))
    if not pairs:
        raise ValueError("no training pairs given")
    missing = [str(p) for pair in pairs for p in (pair.before, pair.after) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} training image(s) missing, e.g. {missing[:3]}")
    return pairs


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dataset_hash(pairs: Sequence[TrainPair]) -> str:
    """A content hash of the pairs (captions and image bytes, order-independent): the dataset's provenance id."""
    items = sorted(f"{p.prompt}\x00{file_digest(p.before)}\x00{file_digest(p.after)}" for p in pairs)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def center_crop_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """Resize the shorter side to ``resolution``, crop the center square, map to [-1, 1] as (3, H, W)."""
    image = image.convert("RGB")
    w, h = image.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(resolution, resolution, 3)
    return data.permute(2, 0, 1).float() / 127.5 - 1.0


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, C*4): FLUX's 2x2 patch packing, row-major over patches."""
    b, c, h, w = latents.shape
    latents = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return latents.reshape(b, (h // 2) * (w // 2), c * 4)


def image_ids(latent_height: int, latent_width: int) -> torch.Tensor:
    """FLUX's positional ids of the packed image tokens: (S, 3) with (0, row, col)."""
    rows = torch.arange(latent_height // 2).view(-1, 1).expand(-1, latent_width // 2)
    cols = torch.arange(latent_width // 2).view(1, -1).expand(latent_height // 2, -1)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()


@torch.no_grad()
def encode_images(vae, paths: Sequence[Path], resolution: int, batch_size: int = 4) -> torch.Tensor:
    """Packed, normalised latents ``(N, S, 64)`` in float32; the posterior mean, so the cache is deterministic."""
    device, dtype = vae.device, vae.dtype
    shift, scale = vae.config.shift_factor or 0.0, vae.config.scaling_factor
    out = []
    for i in range(0, len(paths), batch_size):
        pixels = torch.stack([center_crop_tensor(Image.open(p), resolution) for p in paths[i : i + batch_size]])
        latents = vae.encode(pixels.to(device, dtype)).latent_dist.mode()
        out.append(pack_latents(((latents - shift) * scale).float().cpu()))
    return torch.cat(out)


@torch.no_grad()
def encode_prompts(pipe, prompts: Sequence[str], max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 sequence embeddings ``(N, L, D)`` and CLIP pooled embeddings ``(N, P)``, float32 on the CPU."""
    embeds, pooled = [], []
    for prompt in prompts:
        e, p, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, max_sequence_length=max_sequence_length)
        embeds.append(e.float().cpu())
        pooled.append(p.float().cpu())
    return torch.cat(embeds), torch.cat(pooled)


@dataclass
class CachedData:
    """Everything the training loop reads: per-example packed latents and their caption's embeddings."""

    latents: torch.Tensor  # (N, S, 64)
    prompt_embeds: torch.Tensor  # (N, L, D)
    pooled_embeds: torch.Tensor  # (N, P)
    latent_size: tuple[int, int]  # unpacked latent (height, width), for the image ids

    def __len__(self) -> int:
        return self.latents.shape[0]

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {"latents": self.latents, "prompt_embeds": self.prompt_embeds, "pooled_embeds": self.pooled_embeds}
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            path,
            metadata={"latent_size": json.dumps(self.latent_size)},
        )

    @classmethod
    def load(cls, path: Path) -> CachedData:
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = f.metadata()
            t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        return cls(t["latents"], t["prompt_embeds"], t["pooled_embeds"], tuple(json.loads(meta["latent_size"])))


def _fingerprint(module) -> str:
    """A cheap hash of a model's weights (a strided sample of every tensor), so other weights miss the cache."""
    if module is None:
        return ""
    digest = hashlib.sha256()
    for p in module.parameters():
        digest.update(p.detach().flatten()[:: max(1, p.numel() // 64)].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def cache_pairs(
    pipe, pairs: Sequence[TrainPair], resolution: int, max_sequence_length: int, cache_dir: Path | None = None
) -> tuple[CachedData, CachedData]:
    """Encode every pair once: ``(before, after)`` data sharing the caption embeddings.

    With ``cache_dir`` the result is stored under a key hashing the images, captions, resolution, sequence length
    and the encoders' configs, and reused on the next call.
    """
    key = None
    if cache_dir is not None:
        ident = {
            "data": dataset_hash(pairs),
            "order": [(p.prompt, file_digest(p.before), file_digest(p.after)) for p in pairs],
            "resolution": resolution,
            "max_sequence_length": max_sequence_length,
            "vae": dict(pipe.vae.config),
            "t5": pipe.text_encoder_2.config.to_dict() if pipe.text_encoder_2 is not None else None,
            "weights": [_fingerprint(m) for m in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2)],
        }
        key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
        paths = [Path(cache_dir) / f"{name}-{key}.safetensors" for name in ("before", "after")]
        if all(p.is_file() for p in paths):
            return CachedData.load(paths[0]), CachedData.load(paths[1])
    prompts = sorted({p.prompt for p in pairs})
    embeds, pooled = encode_prompts(pipe, prompts, max_sequence_length)
    index = torch.tensor([prompts.index(p.prompt) for p in pairs])
    latent_size = (2 * (resolution // 16), 2 * (resolution // 16))
    out = []
    for side in ("before", "after"):
        latents = encode_images(pipe.vae, [getattr(p, side) for p in pairs], resolution)
        out.append(CachedData(latents, embeds[index], pooled[index], latent_size))
    if key is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for data, path in zip(out, paths, strict=True):
            data.save(path)
    return out[0], out[1]
