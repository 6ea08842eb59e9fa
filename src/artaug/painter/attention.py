"""Attention processors of single-pass regional control (``loop.regional = "attention"``).

Local prompts' text tokens join FLUX's joint attention sequence; a mask (``regions.joint_attention_bias``) lets each
region's text see only its box's image tokens, and weighs what an image token in box ``i`` pays region ``i``'s text
by the edit's weight ``s_i`` (a ``log s_i`` added to those logits). Processors are installed on the transformer for
one call and restored after (``regional_processors``), so the shared model is never left modified. Three
implementations compute the same attention (``painter.attention_impl``):

* ``lse`` (default): the base text and image queries attend, *without a mask*, to the base text and image keys in
  one call of the fastest kernel there is (the user's diffusers attention backend when it returns the log-sum-exp,
  else PyTorch's fused flash / memory-efficient kernels), plus one small masked, weighted call to the few
  region-text keys;
  the two partial softmaxes are merged exactly by their log-sum-exps (the rule FlashAttention itself uses between
  key blocks: ``out = sum_k exp(lse_k - lse) out_k`` with ``lse = logsumexp_k lse_k``). Region-text queries (a few
  dozen tokens) attend in one small masked call. At 4 regions the extra work is a few percent of a plain step.
* ``grouped``: unmasked calls over groups of queries that share their allowed keys (``regions.attention_groups``),
  with the group's key weights as a one-row additive mask where it has any.
* ``mask``: the additive mask handed to diffusers' own processors: the reference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb


class RegionalAttnProcessor:
    """Wraps a transformer's own attention processor and hands it the regional additive mask
    (``RegionalLayout.bias``, ``attention_impl="mask"``).

    Delegating (instead of reimplementing attention) keeps whatever backend the processor was set up with; a mask
    rules out FlashAttention, though, so SDPA falls back to slower kernels.
    """

    def __init__(self, inner: Any, mask: torch.Tensor) -> None:
        self.inner = inner
        self.mask = mask

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if attention_mask is not None:
            raise ValueError("regional attention cannot be combined with another attention_mask")
        mask = self.mask.to(hidden_states.device, hidden_states.dtype)
        return self.inner(attn, hidden_states, encoder_hidden_states, mask, image_rotary_emb)


class LseRegionalAttnProcessor:
    """FLUX joint attention with regional text, as one unmasked main call plus small masked ones merged by
    log-sum-exp (see the module docstring). ``layout`` (``regions.RegionalLayout``, on the model's device) says who
    may see which region-text tokens; ``backend`` is the diffusers attention backend the replaced processor used."""

    def __init__(self, layout: Any, backend: Any = None) -> None:
        self.layout = layout
        self.backend = backend

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if attention_mask is not None:
            raise ValueError("regional attention cannot be combined with another attention_mask")
        query, key, value = _joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        if self.layout is None:  # a plain call through a compiled transformer's one processor
            return _finish(attn, attention_with_lse(query, key, value, self.backend)[0], encoder_hidden_states)
        out = lse_regional_attention(query, key, value, self.layout, self.backend)
        return _finish(attn, out, encoder_hidden_states)


class GroupedRegionalAttnProcessor:
    """FLUX joint attention computed group by group (``regions.attention_groups``), each group without a mask.

    The projections, QK norms, rotary embedding and output projections are those of diffusers' ``FluxAttnProcessor``
    (double-stream blocks pass the text separately, single-stream blocks pass [text, image] at once); only the
    attention call differs. Tested against the masked reference.
    """

    def __init__(self, groups: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.groups = groups

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):

        if attention_mask is not None:
            raise ValueError("regional attention cannot be combined with another attention_mask")
        query, key, value = _joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        return _finish(attn, grouped_attention(query, key, value, self.groups), encoder_hidden_states)


def lse_regional_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layout: Any, backend: Any = None
) -> torch.Tensor:
    """Regional joint attention of ``(B, H, L, D)`` queries, keys and values ordered ``base text | region texts |
    image`` (``layout``: a ``regions.RegionalLayout``), as one unmasked call plus small masked ones merged by
    log-sum-exp (see the module docstring). Any family whose joint attention is one softmax over that sequence uses
    it (FLUX, Qwen-Image)."""
    t, r = layout.text_len, layout.region_len

    # 1. Base text and image queries over base text and image keys: no mask, the fastest kernel.
    def main(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :, :t], x[:, :, t + r :]], dim=2)

    out, lse = attention_with_lse(main(query), main(key), main(value), backend)
    # 2. The same queries over the region-text keys they may see (a few dozen keys), weighted by the edits' weights,
    #    merged by log-sum-exp.
    if r:
        extra, extra_lse = masked_attention_with_lse(
            main(query), key[:, :, t : t + r], value[:, :, t : t + r], layout.extra_mask, layout.extra_bias
        )
        out = _merge(out, lse, extra, extra_lse)
    # 3. Region-text queries: their own text, the base text and their box, in one small masked call (every row
    #    sees the base text, so no row is empty; no log-sum-exp is needed).
    regional = F.scaled_dot_product_attention(query[:, :, t : t + r], key, value, layout.region_mask) if r else None
    parts = [out[:, :, :t], *([regional] if r else []), out[:, :, t:]]
    return torch.cat(parts, dim=2).to(query.dtype)


def grouped_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
) -> torch.Tensor:
    """Masked attention as calls without a mask, one per group of queries sharing their allowed keys and key
    weights (``regions.attention_groups``); a group with weights passes them as a one-row additive mask. Every query
    row belongs to exactly one group."""
    out = torch.empty_like(query)
    for rows, cols, bias in groups:
        mask = None if bias is None else bias.to(query.dtype)[None, :]
        out[:, :, rows] = F.scaled_dot_product_attention(
            query[:, :, rows], key[:, :, cols], value[:, :, cols], attn_mask=mask
        )
    return out


def _joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb) -> tuple[torch.Tensor, ...]:
    """Query, key and value of the joint ``[text | image]`` sequence as ``(B, H, L, D)``, exactly as diffusers'
    ``FluxAttnProcessor`` makes them (double-stream blocks pass the text separately, single-stream ones at once)."""
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
    return tuple(x.transpose(1, 2) for x in (query, key, value))


def _finish(attn, out: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> Any:
    """``(B, H, L, D)`` attention output back to the block: split text and image, project as diffusers does."""
    out = out.transpose(1, 2).flatten(2, 3)
    if encoder_hidden_states is None:
        return out
    text_len = encoder_hidden_states.shape[1]
    text_out, image_out = out[:, :text_len], out[:, text_len:]
    image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
    return image_out, attn.to_add_out(text_out.contiguous())


def attention_with_lse(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, backend: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention ``(B, H, L, D)`` and its log-sum-exp ``(B, H, L)`` (float32), from the fastest kernel.

    The user's diffusers attention backend (``transformer.set_attention_backend``) when it can return the
    log-sum-exp; else PyTorch's fused kernels: flash attention (CUDA half precision, and the CPU kernel), the
    memory-efficient one (CUDA float32); else the plain formula.
    """
    if backend is not None:
        found = _backend_lse(query, key, value, backend)
        if found is not None:
            return found
    aten = torch.ops.aten
    if query.device.type == "cpu":
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(query, key, value)[:2]
        return out, lse.float()
    if query.device.type == "cuda":
        if query.dtype in (torch.float16, torch.bfloat16) and query.shape[-1] % 8 == 0 and query.shape[-1] <= 256:
            out, lse = aten._scaled_dot_product_flash_attention(query, key, value)[:2]
        else:
            out, lse = aten._scaled_dot_product_efficient_attention(query, key, value, None, True)[:2]
        return out, lse[..., : query.shape[2]].float()  # the efficient kernel pads the lse to a block multiple
    return _masked_attention(query, key, value, None)


def _backend_lse(query, key, value, backend) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(out, lse)`` through diffusers' dispatcher with the user's backend, or None if it gives no log-sum-exp."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry, dispatch_attention_fn

    name = getattr(backend, "value", backend)
    supported = _AttentionBackendRegistry._supported_arg_names.get(backend, ())
    if "return_lse" not in supported or name == "native":
        return None
    b, h, length, _ = query.shape
    out, lse = dispatch_attention_fn(
        *(x.transpose(1, 2) for x in (query, key, value)), backend=backend, attention_kwargs={"return_lse": True}
    )
    # Backends return the log-sum-exp as (B, H, L) or (B, L, H); the output as (B, L, H, D).
    lse = lse.transpose(1, 2) if lse.shape == (b, length, h) else lse
    return out.transpose(1, 2), lse.float()


def masked_attention_with_lse(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked attention and its log-sum-exp for few keys: the CPU flash kernel with an additive mask (5x faster than
    the formula there), the formula elsewhere. ``bias``: an additive mask (``-inf`` where ``allowed`` is False) with
    key weights in it; default none. A row that may see no key gets output 0 and log-sum-exp -inf."""
    if query.device.type != "cpu":
        return _masked_attention(query, key, value, allowed, bias)
    if bias is None:
        bias = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device).masked_fill(~allowed, float("-inf"))
    bias = bias.to(query.dtype)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, attn_mask=bias)[:2]
    # The kernel reports an empty row as output 0 with log-sum-exp 0; the merge needs -inf there (it adds nothing).
    lse = lse.float().masked_fill(~allowed.any(-1), float("-inf"))
    return out, lse


def _masked_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor | None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention by the formula, with its log-sum-exp, in float32: for the small parts (few keys or few queries).
    ``bias``: key weights as an additive mask, added to the logits.

    A query that may see no key at all gets output 0 and log-sum-exp -inf: it adds nothing when merged.
    """
    scores = (query.float() @ key.float().transpose(-1, -2)) * query.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias.float()
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse.clamp(min=torch.finfo(torch.float32).min)[..., None])
    return (weights @ value.float()).to(query.dtype), lse


def _merge(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor) -> torch.Tensor:
    """Two softmax attentions over disjoint key sets as one: ``exp(lse_k - lse) out_k`` summed, ``lse =
    logaddexp(lse_a, lse_b)`` (FlashAttention's rescaling between key blocks). In float32."""
    lse = torch.logaddexp(lse_a, lse_b)
    weight_a, weight_b = torch.exp(lse_a - lse)[..., None], torch.exp(lse_b - lse)[..., None]
    return weight_a * out_a.float() + weight_b * out_b.float()


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
