"""A tiny random-weight Qwen2-VL / Qwen2.5-VL folder in the real layout, built offline.

``AutoProcessor.from_pretrained(folder)`` and ``AutoModelForImageTextToText.from_pretrained(folder)`` load it through
the code path of ``Qwen/Qwen2-VL-7B-Instruct`` (or ``Qwen/Qwen2.5-VL-7B-Instruct``): the same classes, special tokens
in the same order, the same chat-template structure and image geometry (14 px patches, 2x2 merge). It is also a
complete folder for ``transformers serve``. Its answers are random text: it proves plumbing, never judgement.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from artaug.tiny.tokenizers import train_qwen2_tokenizer

SEED = 4
HIDDEN = 32
# Pixel budgets (the processor's "shortest_edge"/"longest_edge" are areas): 28² to 112², so any image becomes
# between 1 and 16 merged vision tokens.
IMAGE_SIZE = {"shortest_edge": 784, "longest_edge": 12544}

# Qwen2-VL-Instruct's chat template structure: a default system turn, <|im_start|>role ... <|im_end|> turns, each
# image as <|vision_start|><|image_pad|><|vision_end|> in place (the processor expands the pad to the image's tokens),
# optional "Picture N: " labels, and the assistant header when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

VARIANTS = {
    "qwen2-vl": (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor),
    "qwen2.5-vl": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor),
}


def _text_config(tokenizer) -> dict:
    # 4 heads of 8: mrope_section (temporal, height, width) must sum to head_dim / 2 = 4.
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]},
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _vision_config(variant: str) -> dict:
    # The real patch geometry (14 px, 2x2 spatial merge, 2 frames per temporal patch) at width 32; the merger's
    # output width must equal the language model's hidden size.
    common = {"depth": 3, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if variant == "qwen2-vl":
        return {**common, "embed_dim": 32, "hidden_size": HIDDEN, "mlp_ratio": 2}
    # Qwen2.5-VL: windowed attention except in the listed blocks (the real model uses full attention every 8th).
    return {
        **common,
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": HIDDEN,
        "window_size": 112,
        "fullatt_block_indexes": [2],
        "tokens_per_second": 2,
    }


def tiny_critic_model(variant: str, tokenizer) -> Qwen2VLForConditionalGeneration | Qwen2_5_VLForConditionalGeneration:
    """The tiny vision-language model with deterministic random weights, its special token ids taken from
    ``tokenizer``."""
    config_class, model_class, _ = VARIANTS[variant]
    ids = tokenizer.convert_tokens_to_ids
    config = config_class(
        text_config=_text_config(tokenizer),
        vision_config=_vision_config(variant),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = model_class(config).eval()
    # Greedy decoding, stopping at <|im_end|> or <|endoftext|> like the Instruct models' generation_config.json.
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model


def tiny_critic_processor(variant: str, tokenizer) -> Qwen2VLProcessor | Qwen2_5_VLProcessor:
    """The processor: Qwen2-VL's image and video processors with a tiny pixel budget, the tokenizer, the template."""
    processor_class = VARIANTS[variant][2]
    tokenizer.chat_template = CHAT_TEMPLATE
    return processor_class(
        image_processor=Qwen2VLImageProcessor(size=IMAGE_SIZE),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=IMAGE_SIZE),
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_critic(folder: str | Path, variant: str = "qwen2-vl") -> Path:
    """Write the tiny critic (model, generation config, tokenizer, image/video processors, chat template) to
    ``folder`` and return its path. ``variant`` is ``"qwen2-vl"`` or ``"qwen2.5-vl"``. Two builds are byte-identical.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown tiny critic variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    folder = Path(folder)
    tokenizer = train_qwen2_tokenizer()
    tiny_critic_model(variant, tokenizer).save_pretrained(folder)
    tiny_critic_processor(variant, tokenizer).save_pretrained(folder)
    return folder
