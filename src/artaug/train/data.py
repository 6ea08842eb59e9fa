"""Training data: image pairs in, cached VAE latents and text embeddings out.

Latents and text embeddings are computed once per run (the VAE and both text encoders never run inside the training
loop) and kept on disk next to the run, keyed by a hash of everything that determines them, so a resumed or repeated
run skips the encoders entirely.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from artaug.files import check_image, file_digest, open_image
from artaug.train.family import encode_captions, encode_pixels, image_ids, latent_statistics

__all__ = ["CachedData", "TrainPair", "as_pairs", "cache_pairs", "dataset_hash", "image_ids", "pack_latents"]


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
    for pair in pairs:  # unreadable or oversized images are found here, before any model loads
        check_image(pair.before, what="training image")
        check_image(pair.after, what="training image")
    return pairs


def dataset_hash(pairs: Sequence[TrainPair]) -> str:
    """A content hash of the pairs (captions and image bytes, order-independent): the dataset's provenance id."""
    items = sorted(f"{p.prompt}\x00{file_digest(p.before)}\x00{file_digest(p.after)}" for p in pairs)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def crop_tensor(image: Image.Image, width: int, height: int) -> torch.Tensor:
    """Resize to cover ``width`` x ``height``, crop the center, map to [-1, 1] as (3, height, width)."""
    image = image.convert("RGB")
    w, h = image.size
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - width) // 2, (nh - height) // 2
    image = image.crop((left, top, left + width, top + height))
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(height, width, 3)
    return data.permute(2, 0, 1).float() / 127.5 - 1.0


def bucket_sizes(resolution: int, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """``(width, height)`` pairs, multiples of 16, of about ``resolution``² pixels and aspect ratios up to
    ``max_ratio`` either way: the aspect-ratio buckets of SDXL-style training (NovelAI's scheme)."""
    sizes = set()
    for width in range(16, int(resolution * max_ratio) + 16, 16):
        height = max(16, round(resolution * resolution / width / 16) * 16)
        if 1 / max_ratio <= width / height <= max_ratio:
            sizes |= {(width, height), (height, width)}  # portrait and landscape alike
    return sorted(sizes)


def pick_size(image_size: tuple[int, int], resolution: int, buckets: bool) -> tuple[int, int]:
    """The training size of an image: the bucket nearest its aspect ratio, or the center square."""
    if not buckets:
        return resolution, resolution
    aspect = math.log(image_size[0] / image_size[1])
    return min(bucket_sizes(resolution), key=lambda wh: (abs(math.log(wh[0] / wh[1]) - aspect), wh))


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, C*4): FLUX's 2x2 patch packing, row-major over patches."""
    b, c, h, w = latents.shape
    latents = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return latents.reshape(b, (h // 2) * (w // 2), c * 4)


@torch.no_grad()
def encode_images(vae, paths: Sequence[Path], resolution: int, buckets: bool = False) -> list[torch.Tensor]:
    """Packed, normalised latents ``(S_i, 64)`` per image, float32; the posterior mean: a deterministic cache."""
    device, dtype = vae.device, vae.dtype
    shift, scale = latent_statistics(vae)
    out = []
    for path in paths:
        image = open_image(path, what="training image")
        width, height = pick_size(image.size, resolution, buckets)
        pixels = crop_tensor(image, width, height)[None]
        latents = encode_pixels(vae, pixels.to(device, dtype)).float().cpu()
        out.append(pack_latents((latents - shift) * scale)[0])
    return out


@dataclass
class CachedData:
    """Everything the training loop reads: per-example packed latents and their caption's embeddings."""

    latents: list[torch.Tensor]  # N x (S_i, 64)
    prompt_embeds: torch.Tensor  # (N, L, D)
    pooled_embeds: torch.Tensor  # (N, P); P = 0 for Qwen-Image
    latent_sizes: list[tuple[int, int]]  # unpacked latent (height, width) of each example, for its image ids
    prompt_mask: torch.Tensor | None = None  # (N, L), 1 = a real text token; None: none is padding

    def __post_init__(self) -> None:
        if isinstance(self.latents, torch.Tensor):
            self.latents = list(self.latents)
        if len(self.latent_sizes) != len(self.latents):
            raise ValueError(f"{len(self.latents)} latents but {len(self.latent_sizes)} latent sizes")
        self.latent_sizes = [tuple(int(v) for v in size) for size in self.latent_sizes]

    def __len__(self) -> int:
        return len(self.latents)

    def batch(self, index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Latents, embeddings, pooled embeddings and the latent size of examples that share one size."""
        sizes = {self.latent_sizes[i] for i in index}
        if len(sizes) != 1:
            raise ValueError(f"a batch mixes latent sizes {sorted(sizes)}")
        latents = torch.stack([self.latents[i] for i in index])
        return latents, self.prompt_embeds[list(index)], self.pooled_embeds[list(index)], sizes.pop()

    def mask(self, index: Sequence[int]) -> torch.Tensor | None:
        """The text mask rows of ``index`` (None when no caption is padded)."""
        return None if self.prompt_mask is None else self.prompt_mask[list(index)]

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {f"latents.{i}": t.contiguous() for i, t in enumerate(self.latents)}
        tensors |= {"prompt_embeds": self.prompt_embeds.contiguous(), "pooled_embeds": self.pooled_embeds.contiguous()}
        if self.prompt_mask is not None:
            tensors["prompt_mask"] = self.prompt_mask.contiguous()
        save_file(tensors, path, metadata={"latent_sizes": json.dumps(self.latent_sizes)})

    @classmethod
    def load(cls, path: Path) -> CachedData:
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            sizes = json.loads(f.metadata()["latent_sizes"])
            latents = [f.get_tensor(f"latents.{i}") for i in range(len(sizes))]
            mask = f.get_tensor("prompt_mask") if "prompt_mask" in f.keys() else None  # noqa: SIM118
            return cls(latents, f.get_tensor("prompt_embeds"), f.get_tensor("pooled_embeds"), sizes, mask)


def _latent_size(path: Path, resolution: int, buckets: bool) -> tuple[int, int]:
    width, height = pick_size(check_image(path, what="training image"), resolution, buckets)
    return height // 8, width // 8


def _text_config(pipe) -> dict | None:
    # The sequence encoder whose outputs the cache holds: FLUX's T5, Qwen-Image's Qwen2.5-VL.
    encoder = getattr(pipe, "text_encoder_2", None) or getattr(pipe, "text_encoder", None)
    return encoder.config.to_dict() if encoder is not None else None


def _fingerprint(module) -> str:
    """A cheap hash of a model's weights (a strided sample of every tensor), so other weights miss the cache."""
    if module is None:
        return ""
    digest = hashlib.sha256()
    for p in module.parameters():
        digest.update(p.detach().flatten()[:: max(1, p.numel() // 64)].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def cache_pairs(
    pipe,
    pairs: Sequence[TrainPair],
    resolution: int,
    max_sequence_length: int,
    cache_dir: Path | None = None,
    buckets: bool = False,
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
            "buckets": buckets,
            "max_sequence_length": max_sequence_length,
            "vae": dict(pipe.vae.config),
            "t5": _text_config(pipe),
            "weights": [_fingerprint(getattr(pipe, m, None)) for m in ("vae", "text_encoder", "text_encoder_2")],
        }
        key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
        cache_files = [Path(cache_dir) / f"{name}-{key}.safetensors" for name in ("before", "after")]
        if all(p.is_file() for p in cache_files):
            return CachedData.load(cache_files[0]), CachedData.load(cache_files[1])
    prompts = sorted({p.prompt for p in pairs})
    embeds, pooled, mask = encode_captions(pipe, prompts, max_sequence_length)
    index = torch.tensor([prompts.index(p.prompt) for p in pairs])
    out = []
    for side in ("before", "after"):
        images = [getattr(p, side) for p in pairs]
        latents = encode_images(pipe.vae, images, resolution, buckets)
        sizes = [_latent_size(path, resolution, buckets) for path in images]
        out.append(CachedData(latents, embeds[index], pooled[index], sizes, None if mask.all() else mask[index]))
    if key is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for data, path in zip(out, cache_files, strict=True):
            data.save(path)
    return out[0], out[1]
