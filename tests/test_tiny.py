"""The tiny model builders: real layouts, real loading paths, deterministic bytes, usable tokenizers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import artaug.tiny
from artaug.cli import main
from artaug.tiny import tiny_critic_path
from artaug.tiny.corpus import corpus, rare_characters
from artaug.tiny.tokenizers import QWEN2_VL_SPECIAL_TOKENS, train_bpe_merges

FLUX_LAYOUT = {
    "model_index.json": None,
    "scheduler": "FlowMatchEulerDiscreteScheduler",
    "text_encoder": "CLIPTextModel",
    "text_encoder_2": "T5EncoderModel",
    "tokenizer": "CLIPTokenizer",
    "tokenizer_2": "T5Tokenizer",
    "transformer": "FluxTransformer2DModel",
    "vae": "AutoencoderKL",
}
GROUNDING = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(10,20),(300,400)<|box_end|>"
BUILD_ALL = """
import sys
from pathlib import Path
from artaug.tiny import build_tiny_critic, build_tiny_painter
out = Path(sys.argv[1])
build_tiny_painter(out / "flux")
build_tiny_critic(out / "qwen2-vl", "qwen2-vl")
build_tiny_critic(out / "qwen2.5-vl", "qwen2.5-vl")
"""


def read_tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def assert_same_tree(a: Path, b: Path) -> None:
    tree_a, tree_b = read_tree(a), read_tree(b)
    assert sorted(tree_a) == sorted(tree_b)
    different = [name for name in tree_a if tree_a[name] != tree_b[name]]
    assert not different, f"files differ between {a} and {b}: {different}"


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory) -> tuple[Path, Path]:
    # Two fresh interpreters at once, with different hash seeds: whatever depends on hash order would show.
    roots = [tmp_path_factory.mktemp(f"build{i}") for i in (1, 2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD_ALL, str(root)],
            env={**os.environ, "PYTHONHASHSEED": str(i)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, root in enumerate(roots)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    return roots[0], roots[1]


@pytest.mark.parametrize("name", ["flux", "qwen2-vl", "qwen2.5-vl"])
def test_builds_in_two_processes_are_byte_identical(two_builds, name):
    first, second = two_builds
    assert len(read_tree(first / name)) >= 7
    assert_same_tree(first / name, second / name)


def test_cached_folders_equal_a_fresh_build(two_builds, tiny_painter_dir, tiny_critic_dir, tiny_critic25_dir):
    # A cached folder from an older builder with the same BUILDER_VERSION would fail here: bump the version.
    fresh, _ = two_builds
    assert_same_tree(tiny_painter_dir, fresh / "flux")
    assert_same_tree(tiny_critic_dir, fresh / "qwen2-vl")
    assert_same_tree(tiny_critic25_dir, fresh / "qwen2.5-vl")


def test_painter_has_the_real_flux_layout(tiny_painter_dir):
    index = json.loads((tiny_painter_dir / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    for name, class_name in FLUX_LAYOUT.items():
        assert (tiny_painter_dir / name).exists(), name
        if class_name is not None:
            assert index[name][1] == class_name
    vae = json.loads((tiny_painter_dir / "vae" / "config.json").read_text())
    assert len(vae["block_out_channels"]) == 4 and vae["latent_channels"] == 16  # vae_scale_factor 8, FLUX packing
    clip = json.loads((tiny_painter_dir / "text_encoder" / "config.json").read_text())
    assert clip["eos_token_id"] != 2 and clip["max_position_embeddings"] == 77


def test_painter_paints_through_flux_pipeline(tiny_painter_dir):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(tiny_painter_dir)
    pipe.set_progress_bar_config(disable=True)

    def paint(seed: int) -> np.ndarray:
        generator = torch.Generator("cpu").manual_seed(seed)
        image = pipe(
            "a red fox in the snow, golden hour",
            height=64,
            width=64,
            num_inference_steps=2,
            max_sequence_length=16,
            generator=generator,
        ).images[0]
        assert image.size == (64, 64)
        return np.asarray(image)

    first, again, other = paint(0), paint(0), paint(1)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.std() > 0  # random weights still give a non-constant image


def test_clip_and_t5_tokenizers_keep_rare_characters(tiny_painter_dir):
    from transformers import CLIPTokenizer, T5Tokenizer

    text = 'Crème brûlée at the café — “45° × ½” {"box": [0.1, 0.9]} naïve Zürich… ' + rare_characters()
    clip = CLIPTokenizer.from_pretrained(tiny_painter_dir / "tokenizer")
    assert clip.model_max_length == 77 and clip.eos_token_id == len(clip) - 1
    ids = clip(text).input_ids
    # CLIP's unk is <|endoftext|>, which also closes every sequence: look only between bos and eos.
    assert ids[0] == clip.bos_token_id and ids[-1] == clip.eos_token_id and clip.unk_token_id not in ids[1:-1]
    # CLIP normalises (lower case, NFC) and decodes word ends as spaces: compare to its normal form, without spaces.
    normal = clip.backend_tokenizer.normalizer.normalize_str(text)
    assert clip.decode(ids, skip_special_tokens=True).replace(" ", "") == normal.replace(" ", "")

    t5 = T5Tokenizer.from_pretrained(tiny_painter_dir / "tokenizer_2")
    ids = t5(text).input_ids
    assert t5.unk_token_id not in ids and ids[-1] == t5.eos_token_id
    assert t5.decode(ids, skip_special_tokens=True) == text
    assert [t5.convert_ids_to_tokens(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]


@pytest.mark.parametrize("variant", ["qwen2-vl", "qwen2.5-vl"])
def test_critic_generates_for_an_image_and_a_prompt(variant):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_critic_path(variant)
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert processor.image_processor.size["shortest_edge"] == 784
    assert processor.image_processor.size["longest_edge"] == 12544
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Critique this painting."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    image = Image.new("RGB", (128, 96), (200, 120, 40))
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    # The processor expands <|image_pad|> to one token per 2x2 group of 14 px patches.
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (inputs["input_ids"] == image_pad).sum() == inputs["image_grid_thw"].prod() // 4
    outputs = [model.generate(**inputs, max_new_tokens=8) for _ in range(2)]
    assert torch.equal(outputs[0], outputs[1])  # greedy by the folder's generation_config
    new_tokens = outputs[0][0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new_tokens) <= 8
    assert isinstance(processor.decode(new_tokens, skip_special_tokens=False), str)


def test_critic_tokenizer_keeps_qwen_special_tokens(tiny_critic_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_critic_dir)
    ids = [tokenizer.convert_tokens_to_ids(token) for token in QWEN2_VL_SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(ids))) and ids[-1] == len(tokenizer) - 1  # the real order, last
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    encoded = tokenizer(GROUNDING).input_ids
    for token in ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"):
        assert encoded.count(tokenizer.convert_tokens_to_ids(token)) == 1
    assert tokenizer.decode(encoded, skip_special_tokens=False) == GROUNDING
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "the cat(10,20),(300,400)"
    text = 'Zürich “½” — {"bbox_2d": [1, 2, 3, 4]} 🎨 ' + rare_characters()  # byte-level: nothing is unknown
    assert tokenizer.decode(tokenizer(text).input_ids) == text


def test_critic_folder_is_complete_for_serving(tiny_critic_dir):
    names = {path.name for path in tiny_critic_dir.iterdir()}
    expected = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}
    assert expected <= names and {"chat_template.jinja", "processor_config.json"} <= names
    generation = json.loads((tiny_critic_dir / "generation_config.json").read_text())
    config = json.loads((tiny_critic_dir / "config.json").read_text())
    assert generation["eos_token_id"][0] == config["text_config"]["eos_token_id"]
    assert generation["pad_token_id"] == config["text_config"]["pad_token_id"]


def test_bpe_merges_depend_on_the_corpus_alone():
    words = {"aab": 3, "abab": 2, "bb": 2}
    merges = train_bpe_merges(dict(words), 10)
    assert merges == train_bpe_merges(dict(reversed(words.items())), 10)
    assert merges[0] == ("a", "b")  # the most frequent pair: 3 + 2·2 = 7
    assert len(corpus()) >= 300


def test_cached_build_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTAUG_CACHE", str(tmp_path))
    calls = []

    def build(folder: Path) -> Path:
        calls.append(folder)
        (folder / "weights.bin").write_bytes(b"123")
        return folder

    first = artaug.tiny._cached_build("demo", build)
    assert first == tmp_path / "tiny" / f"demo-{artaug.tiny.BUILDER_VERSION}"
    assert artaug.tiny._cached_build("demo", build) == first and len(calls) == 1  # built once

    def lose_race(folder: Path) -> Path:
        # Another worker renames its complete copy into place while we build.
        build(folder)
        (tmp_path / "tiny" / "raced-1").mkdir()
        (tmp_path / "tiny" / "raced-1" / "weights.bin").write_bytes(b"theirs")
        return folder

    monkeypatch.setattr(artaug.tiny, "BUILDER_VERSION", "1")
    assert (artaug.tiny._cached_build("raced", lose_race) / "weights.bin").read_bytes() == b"theirs"

    def crash(folder: Path) -> Path:
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError, match="out of disk"):
        artaug.tiny._cached_build("broken", crash)
    assert sorted(path.name for path in (tmp_path / "tiny").iterdir()) == [first.name, "raced-1"]  # no leftovers


def test_unknown_critic_variant_is_refused():
    with pytest.raises(ValueError, match="qwen2.5-vl"):
        tiny_critic_path("llava")


def test_cli_writes_the_tiny_painter(tmp_path, tiny_painter_dir, capsys):
    folder = tmp_path / "painter"
    assert main(["tiny", "painter", str(folder)]) == 0
    assert "model_index.json" in capsys.readouterr().out
    assert_same_tree(folder, tiny_painter_dir)
    assert main(["tiny", "painter", str(folder)]) == 2  # never mixes a new model into a used folder
    assert "not an empty folder" in capsys.readouterr().err
