"""The world's LoRA stage: synthesis prompts come from the synth split only, and ``distill_lora`` runs artaug's own
synthesis and differential training end to end into a LoRA that ``painter.lora`` loads and that changes the painting
(plumbing only: no claim about accuracy)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from artaug.config import load_config
from artaug.painter import painter_class
from artaug.synth.store import read_pairs
from artaug.world import world_overrides
from artaug.world.bench import first_request
from artaug.world.distill import distill_config, distill_lora, prompt_records, synthesis_prompts
from artaug.world.grammar import CATEGORIES, eval_items, parse_prompt, split_of, split_prompts


def test_synthesis_prompts_are_synth_split_only_in_an_equal_mix():
    prompts = synthesis_prompts(120, seed=3)
    assert len(prompts) == 120
    assert all(split_of(parse_prompt(p)) == "synth" for p in prompts)
    assert not set(prompts) & {item.prompt for item in eval_items()}
    categories = Counter(next(c for c in CATEGORIES if p in split_prompts(c, "synth")) for p in prompts)
    assert set(categories.values()) == {20}
    assert synthesis_prompts(120, seed=3) == prompts != synthesis_prompts(120, seed=4)
    # A repeated prompt (single_object has 9 synth prompts) is painted with another seed.
    records = prompt_records(prompts)
    assert len({r.id for r in records}) == len({(r.prompt, r.seed) for r in records}) == 120


def test_distill_config_layers_the_world_the_defaults_and_the_overrides():
    config = distill_config({"loop.rounds": 1}, {"steps": 7})
    assert config.critic.model == "world" and config.judge.world and config.painter.height == 128
    assert (config.loop.regional, config.loop.strength, config.loop.rounds) == ("attention", 1.0, 1)
    assert config.train.steps == 7 and config.train.resolution == 128 and config.train.mode == "differential"
    assert config.synth.filters.similarity in ("ssim", "pixels")  # no CLIP weights needed


@pytest.mark.slow
def test_distill_lora_writes_a_lora_that_painter_lora_loads_and_that_changes_the_painting(tmp_path):
    # Every pair kept (no gain / revision filter), so the test does not depend on what the critic fixes.
    relaxed = {"synth.filters.revised": False, "synth.filters.min_aesthetic_gain": None}
    result = distill_lora(
        tmp_path / "run",
        prompts=4,
        config_overrides=relaxed,
        train_overrides={"steps": 3, "batch_size": 2, "learning_rate": 1e-3},
        log=lambda line: None,
    )
    assert result["pairs"] == 4 and result["kept"] == 4 == len(read_pairs(tmp_path / "run" / "pairs", kept_only=True))
    assert result["train_steps"] == {"stage1": 3, "stage2": 3}
    assert (tmp_path / "run" / "lora").is_dir() and result["lora"].endswith(".safetensors")

    item = eval_items(quick=True)[0]
    images = []
    for lora in ("", result["lora"]):
        config = load_config(overrides={**world_overrides(), "painter.lora": lora})
        painter = painter_class(config.painter.model).from_config(config.painter)
        images.append(np.asarray(painter.paint(first_request(item)).image, dtype=np.float64))
    assert np.abs(images[0] - images[1]).mean() > 0.01
