"""Single-pass regional attention for Qwen-Image's double-stream joint attention.

Qwen-Image's blocks attend jointly over ``[text | image]`` like FLUX's double-stream blocks, so regional attention
is the same: local prompts' text tokens join the text stream after the base prompt's, and a mask
(``regions.RegionalLayout``) lets each region's text see only its box's image tokens, weighted by the edit's weight.
The three implementations are shared with FLUX (``artaug.painter.attention``): ``lse`` (one unmasked call plus
small masked ones merged by log-sum-exp), ``grouped`` and the masked reference ``mask``.

Two things differ from FLUX:

* Qwen-Image gives text tokens rotary positions (``QwenEmbedRope``: text continues after the image's largest
  position). A local prompt's tokens get the positions they would have as a prompt of their own (0, 1, ... from the
  start of the text positions), as DiffSynth-Studio's EliGen does for Qwen-Image's entity prompts, not positions
  after the base prompt's.
* The regional call arrives per transformer call as the attention kwarg ``regional`` (a ``QwenRegionalCall``), not as
  processor state: true classifier-free guidance runs an unconditional pass with the same processors installed, and
  without the kwarg a processor hands the call to the stock ``QwenDoubleStreamAttnProcessor2_0`` it wraps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from artaug.painter.attention import grouped_attention, lse_regional_attention
from artaug.painter.regions import RegionalLayout, attention_groups


@dataclass(frozen=True)
class QwenRegionalCall:
    """What the processors need for one regional painting, built once per request on the model's device:
    the layout, each text token's rotary position, and the dense additive mask (``mask``) or query groups
    (``grouped``)."""

    impl: str
    layout: RegionalLayout
    text_positions: torch.Tensor  # (T + R,)
    bias: torch.Tensor | None = None
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] | None = None

    @classmethod
    def build(cls, impl: str, layout: RegionalLayout) -> QwenRegionalCall:
        bias = layout.bias() if impl in ("mask", "grouped") else None
        groups = attention_groups(layout.allowed(), bias) if impl == "grouped" else None
        return cls(impl, layout, text_positions(layout), bias if impl == "mask" else None, groups)


def text_positions(layout: RegionalLayout) -> torch.Tensor:
    """Rotary index of every text token: base text ``0..T-1``; a region's tokens ``0..n-1`` (their own prompt's);
    padding tokens (seen by nobody) keep their place."""
    region = layout.token_region
    r = region.shape[0]
    earlier = ((region[None, :] < region[:, None]) & (region[None, :] >= 0)).sum(1)  # tokens of earlier regions
    device = region.device
    return torch.cat([torch.arange(layout.text_len, device=device), torch.arange(r, device=device) - earlier])


class QwenRegionalAttnProcessor:
    """Wraps a Qwen-Image block's stock processor; with a ``regional`` kwarg it computes regional joint attention
    (``QwenRegionalCall.impl``), without one it is the stock processor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._attention_backend = getattr(inner, "_attention_backend", None)
        self._parallel_config = getattr(inner, "_parallel_config", None)

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        encoder_hidden_states_mask=None,
        attention_mask=None,
        image_rotary_emb=None,
        regional: QwenRegionalCall | None = None,
    ):
        if regional is None:
            return self.inner(
                attn,
                hidden_states,
                encoder_hidden_states,
                encoder_hidden_states_mask,
                attention_mask,
                image_rotary_emb,
            )
        if attention_mask is not None or encoder_hidden_states_mask is not None:
            raise ValueError("regional attention paints one prompt at a time, without another attention mask")
        query, key, value = _joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb, regional)
        if regional.impl == "lse":
            out = lse_regional_attention(*(x.transpose(1, 2) for x in (query, key, value)), regional.layout,
                                         self._attention_backend).transpose(1, 2)  # fmt: skip
        elif regional.impl == "grouped":
            out = grouped_attention(*(x.transpose(1, 2) for x in (query, key, value)), regional.groups).transpose(1, 2)
        else:  # the reference: the stock processor's attention call with the dense mask
            from diffusers.models.attention_dispatch import dispatch_attention_fn

            out = dispatch_attention_fn(
                query, key, value, attn_mask=regional.bias[None, None].to(query.dtype), backend=self._attention_backend
            )
        return _finish(attn, out, encoder_hidden_states.shape[1], query.dtype)


def _joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb, regional) -> tuple[torch.Tensor, ...]:
    """``[text | image]`` query, key and value as ``(B, L, H, D)``, exactly as ``QwenDoubleStreamAttnProcessor2_0``
    makes them, except that text tokens take their rotary positions from ``regional.text_positions``."""
    from diffusers.models.transformers.transformer_qwenimage import apply_rotary_emb_qwen

    head_dim = attn.inner_dim // attn.heads
    image = [proj(hidden_states).unflatten(-1, (-1, head_dim)) for proj in (attn.to_q, attn.to_k, attn.to_v)]
    text = [proj(encoder_hidden_states).unflatten(-1, (-1, head_dim))
            for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)]  # fmt: skip
    for states, norm_q, norm_k in ((image, attn.norm_q, attn.norm_k), (text, attn.norm_added_q, attn.norm_added_k)):
        if norm_q is not None:
            states[0] = norm_q(states[0])
        if norm_k is not None:
            states[1] = norm_k(states[1])
    if image_rotary_emb is not None:
        image_freqs, text_freqs = image_rotary_emb
        text_freqs = text_freqs[regional.text_positions]
        for states, freqs in ((image, image_freqs), (text, text_freqs)):
            states[0], states[1] = (apply_rotary_emb_qwen(x, freqs, use_real=False) for x in states[:2])
    return tuple(torch.cat([t, i], dim=1) for t, i in zip(text, image, strict=True))


def _finish(attn, out: torch.Tensor, text_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, L, H, D)`` joint output back to the block: split, then the image and text output projections."""
    out = out.flatten(2, 3).to(dtype)
    image_out = attn.to_out[0](out[:, text_len:].contiguous())
    if len(attn.to_out) > 1:
        image_out = attn.to_out[1](image_out)
    return image_out, attn.to_add_out(out[:, :text_len].contiguous())
