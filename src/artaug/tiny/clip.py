"""A tiny random-weight CLIP (vision + text) for the judge's tests, built offline and deterministically.

It has the real layout of ``openai/clip-vit-large-patch14`` (a ``CLIPModel`` and a ``CLIPProcessor`` saved with
``save_pretrained``), so the judge's scorers load it through the very code path that loads the real checkpoint.
Its scores mean nothing; only shapes, formats and plumbing are proven with it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

TINY_CLIP_HIDDEN = 32
TINY_CLIP_IMAGE_SIZE = 32


def build_tiny_clip(folder: str | Path, tokenizer_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Write a tiny ``CLIPModel`` + ``CLIPProcessor`` to ``folder`` and return it.

    ``tokenizer_dir`` is a saved CLIP tokenizer; by default the tiny painter's (``tiny_painter_path() /
    "tokenizer"``), so that artaug trains exactly one tiny CLIP tokenizer. The same ``seed`` and tokenizer give
    byte-identical weights.
    """
    folder = Path(folder)
    if tokenizer_dir is None:
        from artaug.tiny import tiny_painter_path

        tokenizer_dir = tiny_painter_path() / "tokenizer"
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    # CLIP pools the text at the end-of-text token; id 2 would switch transformers to a legacy argmax rule.
    if tokenizer.eos_token_id is None or tokenizer.eos_token_id == 2:
        raise ValueError(f"tiny CLIP needs a tokenizer whose eos id is set and is not 2, got {tokenizer.eos_token_id}")

    # Vision: a 32x32 image in 8x8 patches (16 tokens); text: 77 positions like the real CLIP tokenizer.
    common = {"hidden_size": TINY_CLIP_HIDDEN, "intermediate_size": 37, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config={
            **common,
            "num_attention_heads": 4,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**common, "num_attention_heads": 4, "image_size": TINY_CLIP_IMAGE_SIZE, "patch_size": 8},
        projection_dim=TINY_CLIP_HIDDEN,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_CLIP_IMAGE_SIZE},
        crop_size={"height": TINY_CLIP_IMAGE_SIZE, "width": TINY_CLIP_IMAGE_SIZE},
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def tiny_clip_path() -> Path:
    """The cached tiny CLIP folder (built on first use, beside the other tiny models); load it with
    ``CLIPModel.from_pretrained`` / ``CLIPProcessor.from_pretrained``."""
    from artaug.tiny import _cached_build

    return _cached_build("clip", build_tiny_clip)
