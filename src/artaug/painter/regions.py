"""Boxes to masks, and the two ways of letting a region's prompt steer only its region.

Pure tensor functions, no model. Geometry follows FLUX: the VAE downsamples 8x and the transformer packs 2x2 latent
pixels into one token, so one token covers 16x16 image pixels, and the packed sequence is row-major like FLUX's
``img_ids`` (token ``k`` is row ``k // (width // 16)``, column ``k % (width // 16)``).

* ``blend`` is ArtAug's partition formula (the normalised mean of the global and the regional predictions).
* ``joint_attention_mask`` is the single-pass alternative: region prompts' text tokens join the joint attention
  sequence, and a boolean mask lets each of them see only its own box's image tokens. ``joint_attention_bias`` adds
  the edits' weights: an image token in box ``i`` pays ``s_i`` times the attention it otherwise would to region
  ``i``'s text (a log-weight added to those logits), as ``s_i`` weighs the local prediction in blend mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from artaug.types import Box

# Image pixels per packed token along each side: VAE scale factor 8 x 2x2 packing.
TOKEN_PIXELS = 16


def token_grid(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of packed tokens for an image; raises if the size is not a multiple of 16 px."""
    if height <= 0 or width <= 0 or height % TOKEN_PIXELS or width % TOKEN_PIXELS:
        raise ValueError(
            f"height and width must be positive multiples of {TOKEN_PIXELS} pixels (FLUX packs 16x16 pixels into "
            f"one token), got {height}x{width}; nearest valid size: "
            f"{_round_to_token(height)}x{_round_to_token(width)}"
        )
    return height // TOKEN_PIXELS, width // TOKEN_PIXELS


def _round_to_token(size: int) -> int:
    return max(TOKEN_PIXELS, round(size / TOKEN_PIXELS) * TOKEN_PIXELS)


def pixel_mask(box: Box, height: int, width: int) -> torch.Tensor:
    """A ``(height, width)`` float mask: 1 inside the box (corners rounded outwards, as ``Box.to_pixels``), else 0."""
    x0, y0, x1, y1 = box.to_pixels(width, height)
    mask = torch.zeros(height, width)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def token_mask(box: Box, height: int, width: int) -> torch.Tensor:
    """The box as a ``(S,)`` packed-token mask: each token's fractional pixel coverage, row-major like ``img_ids``."""
    token_grid(height, width)
    pooled = F.avg_pool2d(pixel_mask(box, height, width)[None, None], TOKEN_PIXELS)
    return pooled.flatten()


def token_masks(boxes: Sequence[Box], height: int, width: int) -> torch.Tensor:
    """``(N, S)`` packed-token masks for N boxes (``(0, S)`` for none)."""
    rows, cols = token_grid(height, width)
    if not boxes:
        return torch.zeros(0, rows * cols)
    return torch.stack([token_mask(box, height, width) for box in boxes])


def gaussian_kernel(sigma: float, kernel_size: int | None = None) -> torch.Tensor:
    """A normalised 1-D Gaussian; the default size ``2 * ceil(3 * sigma) + 1`` keeps 99.7% of the mass."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}")
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma) + 1
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur kernel size must be a positive odd number, got {kernel_size}")
    x = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def blur_token_masks(
    masks: torch.Tensor, height: int, width: int, sigma: float, kernel_size: int | None = None
) -> torch.Tensor:
    """Gaussian-blur ``(N, S)`` token masks on the token grid (``sigma`` in tokens, i.e. units of 16 px).

    This is ``B`` of the partition formula (the ArtAug reference used kernel 33, sigma 10). Edges are padded by
    replication so a box touching the image border keeps full weight there.
    """
    rows, cols = token_grid(height, width)
    if masks.shape[-1] != rows * cols:
        raise ValueError(f"masks have {masks.shape[-1]} tokens, a {height}x{width} image has {rows * cols}")
    if masks.shape[0] == 0:
        return masks
    kernel = gaussian_kernel(sigma, kernel_size).to(masks.device, masks.dtype)
    pad = kernel.numel() // 2
    grid = masks.reshape(-1, 1, rows, cols)
    # Separable blur: rows, then columns. Replicate padding works for any pad width.
    grid = F.conv2d(F.pad(grid, (pad, pad, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    grid = F.conv2d(F.pad(grid, (0, 0, pad, pad), mode="replicate"), kernel.view(1, 1, -1, 1))
    return grid.reshape(masks.shape)


def blend(
    v_global: torch.Tensor,
    v_regions: torch.Tensor,
    masks: torch.Tensor,
    edit_weights: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """ArtAug's partition formula: ``(v(P) + sum_i s_i B(M_i) v(P_i)) / (1 + sum_i s_i B(M_i))``.

    ``v_global`` is ``(..., S, C)``, ``v_regions`` is ``(N, ..., S, C)`` (one prediction per region prompt), ``masks``
    is ``(N, S)`` (already blurred if wanted) and ``edit_weights`` (the ``s_i``) has N entries. It is evaluated in
    the algebraically equal residual form ``v(P) + sum_i w_i (v(P_i) - v(P)) / (1 + sum_i w_i)`` with
    ``w_i = s_i M_i``, so that the result is *bit-exactly* the global prediction wherever every mask is 0, and
    wherever the regional predictions equal the global one.
    """
    n = v_regions.shape[0]
    if masks.shape[0] != n or len(edit_weights) != n:
        raise ValueError(f"blend needs one mask and one weight per region: {n} predictions, {masks.shape[0]} masks")
    if v_regions.shape[1:] != v_global.shape:
        raise ValueError(f"regional predictions {tuple(v_regions.shape)} do not match global {tuple(v_global.shape)}")
    if n == 0:
        return v_global
    s = torch.as_tensor(edit_weights, dtype=torch.float32, device=masks.device)
    weights = s[:, None] * masks.float()  # (N, S)
    # (N, 1, ..., 1, S, 1): broadcast over leading batch dims of v_global and over the channel dim.
    weights = weights.view(n, *([1] * (v_global.dim() - 2)), -1, 1).to(v_global.device, torch.float32)
    delta = (weights * (v_regions.float() - v_global.float()[None])).sum(0) / (1 + weights.sum(0))
    return (v_global.float() + delta).to(v_global.dtype)


def joint_attention_mask(text_len: int, region_text_lens: Sequence[int], masks: torch.Tensor) -> torch.Tensor:
    """The ``(L, L)`` boolean attention mask (True = may attend) for single-pass regional prompting.

    Sequence order is ``base text | region 1 text | ... | region N text | image`` (FLUX puts text before image).
    Rules: base text <-> everything; image <-> image; region i's text <-> itself and the image tokens its box
    touches (``masks[i] > 0``); nothing else (no region text <-> other region text, no image token outside a box
    <-> that box's text). With no regions the mask is all True, which SDPA treats exactly like no mask.
    """
    n = len(region_text_lens)
    if masks.shape[0] != n:
        raise ValueError(f"need one token mask per region: {n} regions, {masks.shape[0]} masks")
    image_len = masks.shape[1]
    total = text_len + sum(region_text_lens) + image_len
    image = slice(total - image_len, total)
    allowed = torch.zeros(total, total, dtype=torch.bool)
    allowed[:text_len, :] = True
    allowed[:, :text_len] = True
    allowed[image, image] = True
    start = text_len
    for length, mask in zip(region_text_lens, masks, strict=True):
        region = slice(start, start + length)
        inside = torch.zeros(total, dtype=torch.bool)
        inside[image] = mask > 0
        allowed[region, region] = True
        allowed[region, :] |= inside
        allowed[:, region] |= inside[:, None]
        start += length
    return allowed


def joint_attention_bias(
    text_len: int, region_text_lens: Sequence[int], masks: torch.Tensor, weights: Sequence[float]
) -> torch.Tensor:
    """The ``(L, L)`` additive attention mask (float32) of ``joint_attention_mask`` with the edits' weights: ``-inf``
    where that mask forbids, ``log(weights[i])`` where an image token attends to region ``i``'s text, 0 elsewhere.

    Adding ``log s`` to a logit multiplies that key's unnormalised attention by ``s``: an image token in box ``i``
    weighs the local prompt ``s_i`` times as much against the global prompt and the image as it would unweighted
    (``s_i = 1``: exactly the boolean mask). Base-text and region-text queries are not reweighted.
    """
    allowed = joint_attention_mask(text_len, region_text_lens, masks)
    if len(weights) != len(region_text_lens):
        raise ValueError(f"need one weight per region: {len(region_text_lens)} regions, {len(weights)} weights")
    bias = torch.zeros(allowed.shape, dtype=torch.float32)
    image_start = text_len + sum(region_text_lens)
    start = text_len
    for length, weight in zip(region_text_lens, weights, strict=True):
        bias[image_start:, start : start + length] = math.log(weight)
        start += length
    return bias.masked_fill(~allowed, float("-inf"))


def attention_groups(
    allowed: torch.Tensor, bias: torch.Tensor | None = None
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Split a boolean ``(L, L)`` attention mask into ``(query indices, key indices, key bias)`` groups of identical
    rows (of ``allowed`` and, when given, of the additive ``bias``; a group's key bias is None where it is all 0).

    Attending each group's queries to exactly its allowed keys, without a mask, is the masked attention: a masked key
    adds exp(-inf) = 0 to the softmax. Unmasked calls keep fused kernels (FlashAttention) that a mask rules out. The
    single-pass mask has few distinct rows: base text, each region's text, and one per set of overlapping boxes.
    """
    if allowed.dim() != 2 or allowed.shape[0] != allowed.shape[1] or allowed.dtype != torch.bool:
        raise ValueError(f"need a square boolean mask, got {tuple(allowed.shape)} {allowed.dtype}")
    if bias is not None and bias.shape != allowed.shape:
        raise ValueError(f"bias {tuple(bias.shape)} does not match the mask {tuple(allowed.shape)}")
    finite = torch.zeros(allowed.shape) if bias is None else torch.where(allowed, bias.float(), 0.0)
    rows, inverse = torch.unique(torch.cat([allowed.float(), finite], dim=1), dim=0, return_inverse=True)
    groups = []
    for g in range(rows.shape[0]):
        queries = (inverse == g).nonzero().flatten()
        keys = allowed[queries[0]].nonzero().flatten()
        key_bias = finite[queries[0], keys]
        groups.append((queries, keys, key_bias if bool(key_bias.ne(0).any()) else None))
    return groups


@dataclass(frozen=True)
class RegionalLayout:
    """Who may attend to whom in single-pass regional attention, split as ``LseRegionalAttnProcessor`` computes it.

    The joint sequence is ``base text (T) | region texts (R) | image (S)``. ``extra_mask`` ``(T + S, R)``: which base
    text and image queries may see which region-text keys (base text all real ones, an image token those of the boxes
    it lies in). ``region_mask`` ``(R, T + R + S)``: which keys each region-text query sees (the base text, its own
    region's text, its box's image tokens). ``token_region`` ``(R,)`` names each region-text token's region, -1 for
    padding: padding tokens (added only so that shapes fall into a few buckets, for ``torch.compile``) are seen by
    nobody and see only the base text, so they change nothing. Base text and image queries also see the base text
    and every image token: that part needs no mask at all. ``extra_bias`` ``(T + S, R)`` float32 is ``extra_mask``
    as an additive mask with the edits' weights (``joint_attention_bias``): ``log s_i`` where an image token sees
    region ``i``'s text, 0 where base text does, ``-inf`` where nobody may look.
    """

    text_len: int
    image_len: int
    token_region: torch.Tensor
    extra_mask: torch.Tensor
    region_mask: torch.Tensor
    extra_bias: torch.Tensor

    @property
    def region_len(self) -> int:
        return self.token_region.shape[0]

    def allowed(self) -> torch.Tensor:
        """The whole ``(L, L)`` boolean mask: equal to ``joint_attention_mask`` when there is no padding."""
        t, r = self.text_len, self.region_len
        total = t + r + self.image_len
        allowed = torch.zeros(total, total, dtype=torch.bool, device=self.extra_mask.device)
        main = torch.cat([torch.arange(t), torch.arange(t + r, total)]).to(allowed.device)
        allowed[main[:, None], main[None, :]] = True
        allowed[main, t : t + r] = self.extra_mask
        allowed[t : t + r] = self.region_mask
        return allowed

    def bias(self) -> torch.Tensor:
        """The whole ``(L, L)`` additive mask (float32): equal to ``joint_attention_bias`` when there is no padding."""
        allowed = self.allowed()
        t, r = self.text_len, self.region_len
        bias = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
        main = torch.cat([torch.arange(t), torch.arange(t + r, allowed.shape[0])]).to(allowed.device)
        bias[main, t : t + r] = self.extra_bias.float()
        return bias.masked_fill(~allowed, float("-inf"))

    def to(self, device: torch.device | str) -> RegionalLayout:
        return RegionalLayout(self.text_len, self.image_len, *(x.to(device) for x in self._tensors()))

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return self.token_region, self.extra_mask, self.region_mask, self.extra_bias


def regional_layout(
    text_len: int,
    region_text_lens: Sequence[int],
    masks: torch.Tensor,
    pad_to: int | None = None,
    weights: Sequence[float] | None = None,
) -> RegionalLayout:
    """The ``RegionalLayout`` of ``text_len`` base-text tokens, one run of region-text tokens per box (``masks`` as
    from ``token_masks``), padded with invisible tokens to ``pad_to`` region-text tokens in all when given;
    ``weights`` (one per region, > 0; default 1) reweigh what image tokens pay each region's text
    (``joint_attention_bias``)."""
    n = len(region_text_lens)
    if masks.shape[0] != n:
        raise ValueError(f"need one token mask per region: {n} regions, {masks.shape[0]} masks")
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    if len(weights) != n or not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"need one finite weight > 0 per region: {n} regions, weights {weights}")
    real = sum(region_text_lens)
    total = real if pad_to is None else pad_to
    if total < real:
        raise ValueError(f"pad_to={pad_to} is shorter than the {real} region-text tokens")
    image_len = masks.shape[1]
    token_region = torch.full((total,), -1, dtype=torch.long)
    token_region[:real] = torch.repeat_interleave(
        torch.arange(n), torch.tensor(list(region_text_lens), dtype=torch.long)
    )
    inside = masks > 0  # (N, S)
    real_token = token_region >= 0
    own = inside[token_region.clamp(min=0)] & real_token[:, None]  # (R, S): each token's box
    extra = torch.cat([real_token.expand(text_len, total), own.T], dim=0)  # (T + S, R)
    same_region = (token_region[:, None] == token_region[None, :]) & real_token[:, None]
    region = torch.cat([torch.ones(total, text_len, dtype=torch.bool), same_region, own], dim=1)
    region[~real_token, text_len : text_len + total] = torch.eye(total, dtype=torch.bool)[~real_token]
    # Each region-text token's log-weight (R,); padding (region -1) takes the appended 0 and is masked anyway.
    log_weight = torch.tensor([math.log(w) for w in weights] + [0.0], dtype=torch.float32)[token_region]
    bias = torch.cat([torch.zeros(text_len, total), log_weight.expand(image_len, total)], dim=0)
    bias = bias.masked_fill(~extra, float("-inf"))
    return RegionalLayout(text_len, image_len, token_region, extra, region, bias)
