"""Tiny random-weight Qwen-Image and Qwen-Image-Edit folders in the real layouts, built offline.

``QwenImagePipeline.from_pretrained(folder)`` loads it through the code path of ``Qwen/Qwen-Image``: the same
component classes (``QwenImageTransformer2DModel``, the video VAE ``AutoencoderKLQwenImage``, a Qwen2.5-VL text
encoder and a ``Qwen2Tokenizer``), file names and ``model_index.json``. The tokenizer is trained so that the
pipeline's chat template tokenizes as the real one does: its system part is exactly the 34 tokens the pipeline drops
(``prompt_template_encode_start_idx``), so a prompt's embeddings are its own tokens and the template's 5 closing
ones. The Qwen-Image-Edit folder (``QwenImageEditPipeline``) adds a ``Qwen2VLProcessor`` (the text encoder sees the
image to edit) and a tokenizer whose edit template's system part is the 64 tokens that pipeline drops. Widths and
depths are tiny: they prove plumbing, shapes and invariants, never beauty.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImageEditPipeline,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)

from artaug.tiny.corpus import corpus
from artaug.tiny.critic import tiny_critic_model, tiny_critic_processor
from artaug.tiny.tokenizers import train_qwen2_tokenizer

SEEDS = {"transformer": 10, "vae": 11}
TEXT_DIM = 32  # the tiny Qwen2.5-VL's hidden size = the transformer's joint_attention_dim
# The words of QwenImagePipeline's prompt template, added to the corpus so each becomes one token, as in Qwen's
# real vocabulary.
TEMPLATE_WORDS = (
    "system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships "
    "of the objects and background:\nuser\nassistant\n"
)
EDIT_TEMPLATE_WORDS = (
    "system\nDescribe the key features of the input image (color, shape, size, texture, objects, background), then "
    "explain how the user's text instruction should alter or modify the image. Generate a new image that meets the "
    "user's requirements while maintaining consistency with the original input where appropriate.\nuser\nassistant\n"
)


def tiny_qwen_transformer() -> QwenImageTransformer2DModel:
    # Qwen-Image's geometry at width 32: 2 heads of 16 (RoPE axes summing to the head dim), 2x2 patches of the 16
    # latent channels in, 16 channels out, two double-stream blocks.
    torch.manual_seed(SEEDS["transformer"])
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_DIM,
        axes_dims_rope=(4, 6, 6),
    )


def tiny_qwen_vae() -> AutoencoderKLQwenImage:
    # Three downsamples give Qwen-Image's spatial factor of 8; 16 latent channels with the real per-channel
    # normalisation statistics (the class defaults).
    torch.manual_seed(SEEDS["vae"])
    return AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1)


def tiny_qwen_scheduler() -> FlowMatchEulerDiscreteScheduler:
    # Qwen-Image's scheduler config: exponential time shift between base_shift and max_shift, terminal sigma 0.02.
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=0.9,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )


def tiny_qwen_image_pipeline() -> QwenImagePipeline:
    """The tiny Qwen-Image pipeline in memory: deterministic random weights, a tokenizer trained on the corpus."""
    tokenizer = train_qwen2_tokenizer(texts=[*corpus(), *[TEMPLATE_WORDS] * 50])
    return QwenImagePipeline(
        scheduler=tiny_qwen_scheduler(),
        vae=tiny_qwen_vae().eval(),
        text_encoder=tiny_critic_model("qwen2.5-vl", tokenizer),
        tokenizer=tokenizer,
        transformer=tiny_qwen_transformer().eval(),
    )


def tiny_qwen_image_edit_pipeline() -> QwenImageEditPipeline:
    """The tiny Qwen-Image-Edit pipeline: the tiny Qwen-Image components, a processor for the image to edit."""
    tokenizer = train_qwen2_tokenizer(texts=[*corpus(), *[TEMPLATE_WORDS] * 50, *[EDIT_TEMPLATE_WORDS] * 50])
    return QwenImageEditPipeline(
        scheduler=tiny_qwen_scheduler(),
        vae=tiny_qwen_vae().eval(),
        text_encoder=tiny_critic_model("qwen2.5-vl", tokenizer),
        tokenizer=tokenizer,
        processor=tiny_critic_processor("qwen2-vl", tokenizer),
        transformer=tiny_qwen_transformer().eval(),
    )


def build_tiny_qwen_image(folder: str | Path, edit: bool = False) -> Path:
    """Write the tiny Qwen-Image folder (transformer/, vae/, text_encoder/, tokenizer/, scheduler/,
    model_index.json; with ``edit``, Qwen-Image-Edit's, processor/ too) to ``folder`` and return its path."""
    folder = Path(folder)
    (tiny_qwen_image_edit_pipeline() if edit else tiny_qwen_image_pipeline()).save_pretrained(folder)
    return folder
