"""Attention processors of single-pass regional control (``loop.regional = "attention"``).

Local prompts' text tokens join FLUX's joint attention sequence; a boolean mask (``regions.joint_attention_mask``)
lets each region's text see only its box's image tokens. Processors are installed on the transformer for one call
and restored after (``regional_processors``), so the shared model is never left modified.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F


class RegionalAttnProcessor:
    """Wraps a transformer's own attention processor and hands it the regional mask (``attention_impl="mask"``).

    Delegating (instead of reimplementing attention) keeps whatever backend the processor was set up with; a mask
    rules out FlashAttention, though, so SDPA falls back to slower kernels.
    """

    def __init__(self, inner: Any, mask: torch.Tensor) -> None:
        self.inner = inner
        self.mask = mask

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if attention_mask is not None:
            raise ValueError("regional attention cannot be combined with another attention_mask")
        mask = self.mask.to(hidden_states.device)
        return self.inner(attn, hidden_states, encoder_hidden_states, mask, image_rotary_emb)


class GroupedRegionalAttnProcessor:
    """FLUX joint attention computed group by group (``regions.attention_groups``), each group without a mask.

    The projections, QK norms, rotary embedding and output projections are those of diffusers' ``FluxAttnProcessor``
    (double-stream blocks pass the text separately, single-stream blocks pass [text, image] at once); only the
    attention call differs. Tested against the masked reference.
    """

    def __init__(self, groups: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.groups = groups

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        from diffusers.models.embeddings import apply_rotary_emb

        if attention_mask is not None:
            raise ValueError("regional attention cannot be combined with another attention_mask")
        query, key, value = (
            _heads(x, attn.head_dim) for x in _project(attn, hidden_states, attn.to_q, attn.to_k, attn.to_v)
        )
        query, key = attn.norm_q(query), attn.norm_k(key)
        if encoder_hidden_states is not None and attn.added_kv_proj_dim is not None:
            text = _project(attn, encoder_hidden_states, attn.add_q_proj, attn.add_k_proj, attn.add_v_proj, added=True)
            text_q, text_k, text_v = (_heads(x, attn.head_dim) for x in text)
            text_q, text_k = attn.norm_added_q(text_q), attn.norm_added_k(text_k)
            query, key, value = (torch.cat(pair, dim=1) for pair in ((text_q, query), (text_k, key), (text_v, value)))
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)

        # (B, L, H, D) -> (B, H, L, D); every query row belongs to exactly one group.
        query, key, value = (x.transpose(1, 2) for x in (query, key, value))
        out = torch.empty_like(query)
        for rows, cols in self.groups:
            out[:, :, rows] = F.scaled_dot_product_attention(query[:, :, rows], key[:, :, cols], value[:, :, cols])
        out = out.transpose(1, 2).flatten(2, 3).to(query.dtype)

        if encoder_hidden_states is None:
            return out
        text_len = encoder_hidden_states.shape[1]
        text_out, image_out = out[:, :text_len], out[:, text_len:]
        image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
        return image_out, attn.to_add_out(text_out.contiguous())


def _project(attn, states, to_q, to_k, to_v, added: bool = False) -> tuple[torch.Tensor, ...]:
    # Layers whose QKV projections were fused (``transformer.fuse_qkv_projections()``) carry one packed linear.
    fused = getattr(attn, "to_added_qkv" if added else "to_qkv", None)
    if getattr(attn, "fused_projections", False) and fused is not None:
        return fused(states).chunk(3, dim=-1)
    return to_q(states), to_k(states), to_v(states)


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    return x.unflatten(-1, (-1, head_dim))


@contextlib.contextmanager
def regional_processors(transformer: Any, make: Callable[[Any], Any]) -> Iterator[None]:
    """Install ``make(original)`` on every attention layer for the duration of the block, then restore them."""
    original = transformer.attn_processors
    transformer.set_attn_processor({name: make(p) for name, p in original.items()})
    try:
        yield
    finally:
        transformer.set_attn_processor(dict(original))
