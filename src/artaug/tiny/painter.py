"""Tiny random-weight FLUX.1 folders in the real layouts, built offline: FLUX.1-dev, FLUX.1-schnell and
FLUX.1-Kontext-dev.

``FluxPipeline.from_pretrained(folder)`` loads the dev folder through exactly the code path that loads
``black-forest-labs/FLUX.1-dev``: the same component classes, file names and ``model_index.json``; schnell differs as
the real one does (no guidance embedding, a fixed-shift scheduler), Kontext is the dev components in a
``FluxKontextPipeline``. Only the widths and depths are tiny (a folder is about a megabyte), so they prove plumbing,
shapes and invariants, never beauty.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxKontextPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from artaug.tiny.tokenizers import train_clip_tokenizer, train_t5_tokenizer

# One fixed seed per component, so changing one component's size leaves the others' weights alone.
SEEDS = {"transformer": 0, "vae": 1, "text_encoder": 2, "text_encoder_2": 3}
FLUX_VARIANTS = ("flux", "flux-schnell", "flux-kontext")
TEXT_DIM = 32  # T5 width = the transformer's joint_attention_dim; CLIP width = its pooled_projection_dim


def tiny_transformer(guidance_embeds: bool = True) -> FluxTransformer2DModel:
    # FLUX's geometry at width 32: 2 heads of 16, RoPE axes summing to the head dim; in_channels is 16 latent
    # channels packed 2x2, as in the real model. FLUX.1-schnell has no guidance embedding.
    torch.manual_seed(SEEDS["transformer"])
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_DIM,
        pooled_projection_dim=TEXT_DIM,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),
    )


def tiny_vae() -> AutoencoderKL:
    # Four blocks give FLUX's vae_scale_factor of 8; 16 latent channels, no quant convs and FLUX's latent scaling
    # and shift, so packing and re-encoding code runs as on the real VAE.
    torch.manual_seed(SEEDS["vae"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def tiny_clip(vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int) -> CLIPTextModel:
    torch.manual_seed(SEEDS["text_encoder"])
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TEXT_DIM,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    return CLIPTextModel(config)


def tiny_t5(vocab_size: int) -> T5EncoderModel:
    torch.manual_seed(SEEDS["text_encoder_2"])
    config = T5Config(
        vocab_size=vocab_size,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def tiny_scheduler(schnell: bool = False) -> FlowMatchEulerDiscreteScheduler:
    # FLUX.1-dev's scheduler config: resolution-dependent shift between base_shift and max_shift; FLUX.1-schnell's
    # is a fixed shift of 1.
    if schnell:
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def tiny_flux_pipeline(variant: str = "flux") -> FluxPipeline | FluxKontextPipeline:
    """The tiny FLUX pipeline in memory (``variant``: ``flux``, ``flux-schnell`` or ``flux-kontext``): deterministic
    random weights and tokenizers trained on the built-in corpus."""
    if variant not in FLUX_VARIANTS:
        raise ValueError(f"unknown tiny FLUX variant {variant!r}; choose one of {', '.join(FLUX_VARIANTS)}")
    schnell = variant == "flux-schnell"
    tokenizer = train_clip_tokenizer()
    tokenizer_2 = train_t5_tokenizer()
    text_encoder = tiny_clip(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    pipeline = FluxKontextPipeline if variant == "flux-kontext" else FluxPipeline
    return pipeline(
        scheduler=tiny_scheduler(schnell),
        vae=tiny_vae(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        text_encoder_2=tiny_t5(len(tokenizer_2)).eval(),
        tokenizer_2=tokenizer_2,
        transformer=tiny_transformer(guidance_embeds=not schnell).eval(),
    )


def build_tiny_painter(folder: str | Path, variant: str = "flux") -> Path:
    """Write a tiny FLUX folder (transformer/, vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/,
    scheduler/, model_index.json) to ``folder`` and return its path. Two builds are byte-identical."""
    folder = Path(folder)
    tiny_flux_pipeline(variant).save_pretrained(folder)
    return folder
