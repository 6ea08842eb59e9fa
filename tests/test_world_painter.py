"""The world painter: the committed folder loads like FLUX.1-dev, matches its record, and paints world prompts; the
build code that made it runs end to end at toy size."""

from __future__ import annotations

import json

import pytest
import torch

from artaug.painter import FluxPainter
from artaug.types import PaintRequest
from artaug.world import world_painter_path
from artaug.world.bench import first_request
from artaug.world.build import (
    MAX_SEQUENCE_LENGTH,
    BuildConfig,
    build_world_painter,
    folder_digests,
    world_clip_tokenizer,
    world_t5_tokenizer,
    world_words,
)
from artaug.world.grammar import CATEGORIES, SPLITS, eval_items, split_prompts
from artaug.world.metric import judge_image
from artaug.world.train import TransformerSchedule, VaeSchedule


@pytest.fixture(scope="module")
def painter() -> FluxPainter:
    return FluxPainter.from_pretrained(str(world_painter_path()))


def test_every_grammar_word_is_one_token_of_its_own():
    clip, t5 = world_clip_tokenizer(), world_t5_tokenizer()
    words = world_words()
    for tokenizer in (clip, t5):
        ids = [tokenizer(word, add_special_tokens=False).input_ids for word in words]
        assert all(len(i) == 1 for i in ids), [w for w, i in zip(words, ids, strict=True) if len(i) != 1]
        assert len({i[0] for i in ids}) == len(words)
        assert tokenizer.unk_token_id not in {i[0] for i in ids}


def test_every_world_prompt_fits_the_sequence_length():
    t5 = world_t5_tokenizer()
    prompts = [p for c in CATEGORIES for s in SPLITS for p in split_prompts(c, s)]
    assert max(len(t5(p).input_ids) for p in prompts) <= MAX_SEQUENCE_LENGTH


def test_committed_folder_matches_its_build_record():
    folder = world_painter_path()
    record = json.loads((folder / "BUILD.json").read_text())
    assert record["files"] == folder_digests(folder)
    assert record["command"].startswith("python -m artaug.world.build")


def test_painter_is_flux_pipeline_output_without_edits(painter):
    request = PaintRequest("a red circle at the top left", seed=3, height=128, width=128, num_inference_steps=4)
    request = request.replace(max_sequence_length=MAX_SEQUENCE_LENGTH)
    ours = painter.paint(request).image
    pipe = painter.pipe
    theirs = pipe(
        prompt=request.prompt,
        height=128,
        width=128,
        num_inference_steps=4,
        guidance_scale=request.guidance_scale,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
        generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]
    assert list(ours.getdata()) == list(theirs.getdata())


def test_painter_paints_single_objects(painter):
    """An effect, with a wide margin: the held-out colour prompts (one object, colour named) mostly come out right."""
    items = [item for item in eval_items(quick=True) if item.category == "colors"]
    correct = [judge_image(painter.paint(first_request(item)).image, item.prompt).correct for item in items]
    assert sum(correct) >= len(items) // 2, correct


def test_a_toy_build_runs_and_loads(tmp_path):
    config = BuildConfig(
        scenes=48,
        vae_scenes=16,
        vae=VaeSchedule(steps=2, full_steps=1, batch=2),
        transformer=TransformerSchedule(steps=2, batch=4, warmup=1),
        threads=1,
    )
    folder = build_world_painter(tmp_path / "world", config, log=lambda message: None)
    record = json.loads((folder / "BUILD.json").read_text())
    assert record["files"] == folder_digests(folder)
    painting = FluxPainter.from_pretrained(str(folder)).paint(
        PaintRequest("a red circle", height=128, width=128, num_inference_steps=2, max_sequence_length=16)
    )
    assert painting.image.size == (128, 128)
