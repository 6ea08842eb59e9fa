"""The Ray backend on a local Ray instance (CPU, two actors, tiny models): the same records as one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artaug.config import load_config
from artaug.synth.prompts import read_prompts, sample_prompts_path
from artaug.synth.run import synthesize
from artaug.synth.store import Store, read_pairs

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.mark.slow
def test_ray_gives_the_same_records_as_one_process(
    tmp_path: Path, tiny_painter_dir: Path, tiny_critic_dir: Path
) -> None:
    overrides = {
        "painter.model": str(tiny_painter_dir),
        "critic.model": str(tiny_critic_dir),
        "painter.height": "64",
        "painter.width": "64",
        "painter.num_inference_steps": "2",
        "painter.max_sequence_length": "16",
        "critic.max_new_tokens": "16",
        "loop.rounds": "1",
    }
    config = load_config(None, overrides)
    prompts = read_prompts(sample_prompts_path())[:4]

    local = synthesize(prompts, tmp_path / "local", config, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        distributed = synthesize(prompts, tmp_path / "ray", config, ray="auto", workers=2, progress=False)
    finally:
        ray.shutdown()

    assert local.counts == distributed.counts and distributed.counts["done"] == 4
    with Store(tmp_path / "ray") as store:
        workers = {r["worker"] for r in store.results()}
        assert store.check() == []
    assert len(workers) == 2 and all(w.startswith("ray:") for w in workers)  # both actors worked
    a, b = read_pairs(tmp_path / "local"), read_pairs(tmp_path / "ray")
    assert [(p.id, p.prompt, p.seed, p.kept, p.scores) for p in a] == [
        (p.id, p.prompt, p.seed, p.kept, p.scores) for p in b
    ]
    assert [p.meta["filters"] for p in a] == [p.meta["filters"] for p in b]
    for x, y in zip(a, b, strict=True):
        for side in ("before", "after"):
            assert np.array_equal(np.asarray(Image.open(getattr(x, side))), np.asarray(Image.open(getattr(y, side))))
