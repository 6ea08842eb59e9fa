"""Differential LoRA training of Qwen-Image's transformer on the tiny folder: the trainer reads the folder's family,
the LoRA it writes loads back through diffusers' own ``QwenImagePipeline.load_lora_weights`` (and its kohya export
too), changes the painting, and fusing then unloading restores the base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import QwenImagePipeline

from artaug.config import TrainConfig
from artaug.train.lora_io import load_lora, lora_delta, read_metadata
from artaug.train.trainer import train_lora

CALL = dict(height=64, width=64, num_inference_steps=2, max_sequence_length=16, true_cfg_scale=1.0)
PROMPTS = ("a cat on a red couch", "a dog in the park at sunset in the rain")  # captions of different lengths


@pytest.fixture(scope="module")
def pipe(tiny_qwen_image_dir) -> QwenImagePipeline:
    pipe = QwenImagePipeline.from_pretrained(tiny_qwen_image_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def paint(pipe: QwenImagePipeline) -> torch.Tensor:
    return pipe("a cat", generator=torch.Generator().manual_seed(0), output_type="latent", **CALL).images


@pytest.fixture(scope="module")
def trained(pipe, tiny_qwen_image_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    pairs = []
    for i, prompt in enumerate(PROMPTS):
        for side, seed in (("before", i), ("after", 100 + i)):
            pipe(prompt, generator=torch.Generator().manual_seed(seed), **CALL).images[0].save(
                folder / f"{i}{side}.png"
            )
        pairs.append((prompt, folder / f"{i}before.png", folder / f"{i}after.png"))
    config = TrainConfig(resolution=64, steps=3, mixed_precision="no", max_sequence_length=16, learning_rate=1e-2,
                         rank=4, alpha=8.0, batch_size=2, checkpoint_every=0, progress=False)  # fmt: skip
    return train_lora(str(tiny_qwen_image_dir), pairs, config, tmp_path_factory.mktemp("run"), kohya=True)


def test_the_lora_adapts_qwen_image_blocks_and_says_so(trained):
    meta = read_metadata(trained.path)
    assert meta["modelspec.architecture"] == "qwen-image/lora"
    lora, _ = load_lora(trained.path)
    assert {"transformer_blocks.0.attn.to_q", "transformer_blocks.1.img_mlp.net.0.proj"} <= set(lora)
    assert all(m.startswith("transformer_blocks.") for m in lora) and len(trained.stages) == 2
    assert all(torch.isfinite(torch.tensor(stage.losses)).all() for stage in trained.stages.values())


def test_it_loads_through_diffusers_fuses_and_unloads(pipe, trained):
    base = paint(pipe)
    pipe.load_lora_weights(str(trained.path), adapter_name="a")
    with_lora = paint(pipe)
    assert (with_lora - base).abs().max() > 1e-4
    pipe.fuse_lora()
    torch.testing.assert_close(paint(pipe), with_lora, rtol=1e-4, atol=1e-4)
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    torch.testing.assert_close(paint(pipe), base, rtol=1e-5, atol=1e-5)


def test_the_kohya_export_means_the_same_updates(pipe, trained):
    assert trained.kohya_path is not None and Path(trained.kohya_path).is_file()
    kohya, _ = load_lora(trained.kohya_path)
    lora, _ = load_lora(trained.path)
    assert set(kohya) == set(lora)
    for module, value in lora.items():
        torch.testing.assert_close(lora_delta(*kohya[module]), lora_delta(*value))
    pipe.load_lora_weights(str(trained.kohya_path), adapter_name="k")  # diffusers' Qwen kohya reader
    try:
        assert "k" in pipe.transformer.peft_config
    finally:
        pipe.unload_lora_weights()
