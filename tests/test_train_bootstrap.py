"""The bootstrap cycle end to end on the tiny painter: an accepted iteration, then a rollback, then a resume."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from artaug.config import load_config
from artaug.synth.prompts import PromptRecord
from artaug.tiny import TINY_SETTINGS
from artaug.train.bootstrap import bootstrap
from artaug.train.lora_io import load_lora, lora_delta
from artaug.types import PaintRequest
from helpers import AlwaysEditsCritic

TINY = {**TINY_SETTINGS, "loop.rounds": 1}


class ScriptedScores:
    """Held-out scores by phase: the base, iteration 1 (better: kept), iteration 2 (worse: rolled back)."""

    def __init__(self, means: list[float]):
        self.means, self.calls = list(means), 0

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        assert len(images) == len(prompts)
        mean = self.means[self.calls]
        self.calls += 1
        return [mean] * len(images)


def test_bootstrap_keeps_an_improvement_rolls_back_a_regression_and_resumes(tiny_painter_dir: Path, tmp_path: Path):
    from artaug.judge import Judge
    from artaug.painter import FluxPainter

    painter = FluxPainter.from_pretrained(str(tiny_painter_dir))
    components = SimpleNamespace(painter=painter, critic=AlwaysEditsCritic(), judge=Judge())
    prompts = [PromptRecord("fox", "a red fox in the snow", 5), PromptRecord("cat", "a cat on a red couch", 6)]
    heldout = [PromptRecord("dog", "a dog in the park at sunset", 11)]
    train = {"resolution": 64, "steps": 2, "mixed_precision": "no", "max_sequence_length": 16, "rank": 4,
             "learning_rate": 1e-2, "checkpoint_every": 0, "progress": False}  # fmt: skip
    config = load_config(
        None,
        {**TINY, "synth.filters.keep_not_scored": True, "synth.filters.min_similarity": 0.0,
         "bootstrap.iterations": 3, "bootstrap.score": "scripted", **{f"train.{k}": v for k, v in train.items()}},
    )  # fmt: skip
    scores = ScriptedScores([1.0, 2.0, 1.5])

    report = bootstrap(prompts, heldout, config, tmp_path, components=components, heldout_scorer=scores)

    # 1. Iteration 1 improved and was kept; iteration 2 did not and was rolled back; the run stopped there.
    assert [it["accepted"] for it in report.iterations] == [True, False]
    assert report.baseline == 1.0 and [it["reference"] for it in report.iterations] == [1.0, 2.0]
    assert "iteration 2 did not improve" in report.stopped and scores.calls == 3
    # 2. The final LoRA is iteration 1's, exactly (the rolled-back iteration is not in it).
    final, meta = load_lora(report.final)
    first, _ = load_lora(report.iterations[0]["lora"])
    assert set(final) == set(first) and meta["artaug.iteration"] == "1"
    for module, (a, b, s) in first.items():
        torch.testing.assert_close(lora_delta(*final[module]), lora_delta(a, b, s))
    # 3. After the rollback the painter paints like the accepted iteration-1 painter (same held-out seed).
    request = PaintRequest(prompt=heldout[0].prompt, seed=heldout[0].seed, height=64, width=64,
                           num_inference_steps=2, max_sequence_length=16)  # fmt: skip
    now = np.asarray(painter.paint(request).image, dtype=float)
    kept = np.asarray(Image.open(tmp_path / "iteration-1/heldout/images/painter/dog-s11.png"), dtype=float)
    base = np.asarray(Image.open(tmp_path / "heldout-0/images/painter/dog-s11.png"), dtype=float)
    assert np.abs(now - kept).max() <= 2 and np.abs(kept - base).max() > 0
    # 4. The report: a table, the held-out evaluation of every iteration, and a plot; each evaluation's own report.
    text = (tmp_path / "report.md").read_text()
    assert "| 1 |" in text and "kept" in text and "rolled back" in text
    assert (
        "### iteration 2: rolled back" in text and "| scripted | 2.0000 | 1.5000 | -0.5000 [-0.5000, -0.5000]" in text
    )
    assert (tmp_path / "iteration-2" / "heldout" / "report.html").is_file()
    assert (tmp_path / "report.png").stat().st_size > 0
    # 5. Resuming a finished run does no work and gives the same report.
    again = bootstrap(prompts, heldout, config, tmp_path, components=components, heldout_scorer=ScriptedScores([]))
    assert again.iterations == report.iterations and again.final == report.final


def test_bootstrap_command_on_the_tiny_models(tmp_path: Path, tiny_clip_dir: Path, capsys):
    """The real tiny painter, critic and CLIP alignment judge through the CLI; a resumed run redoes nothing."""
    from artaug.cli import main

    (tmp_path / "prompts.txt").write_text("a red fox in the snow\na cat on a red couch\n")
    (tmp_path / "heldout.txt").write_text("a dog in the park\n")
    argv = ["bootstrap", "--tiny", "--prompts", str(tmp_path / "prompts.txt"),
            "--heldout", str(tmp_path / "heldout.txt"), "--iterations", "2", "--out", str(tmp_path / "run"),
            "--steps", "2", "--resolution", "64", "--mixed-precision", "no", "--max-sequence-length", "16",
            "--no-progress", "--score", "clipscore",
            "--set", "eval.metrics=clipscore", "--set", f"eval.clip_model={tiny_clip_dir}",
            "--set", "synth.filters.keep_not_scored=true", "--set", "synth.filters.min_similarity=0",
            "--set", "synth.filters.revised=false"]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "| 0 (base) |" in first and "| 1 | 2 |" in first and "stopped:" in first
    assert (tmp_path / "run" / "report.png").is_file() and (tmp_path / "run" / "iteration-1" / "lora").is_dir()
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[:4] == first.splitlines()[:4]
    assert main([*argv, "--score", "imagereward"]) == 2  # not an eval metric: a clear error before any model loads


class PerPromptScores:
    """Held-out scores by phase and prompt: ``table[phase][prompt]``."""

    def __init__(self, table: list[dict[str, float]]):
        self.table, self.calls = table, 0

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        scores = [self.table[self.calls][prompt] for prompt in prompts]
        self.calls += 1
        return scores


def test_a_higher_mean_is_not_enough_the_paired_interval_decides(tiny_painter_dir: Path, tmp_path: Path):
    """The candidate's held-out mean rises (1.0 → 1.375), but prompt by prompt it wins two and loses two: the paired
    difference's interval reaches below 0, so the iteration is rolled back (the old mean-only rule kept it)."""
    from artaug.judge import Judge
    from artaug.painter import FluxPainter

    painter = FluxPainter.from_pretrained(str(tiny_painter_dir))
    components = SimpleNamespace(painter=painter, critic=AlwaysEditsCritic(), judge=Judge())
    heldout = [PromptRecord(f"h{i}", f"a held-out prompt number {i}", 20 + i) for i in range(4)]
    base = {r.prompt: 1.0 for r in heldout}
    noisy = dict(zip(base, [3.0, 0.0, 2.0, 0.5], strict=True))
    train = {"resolution": 64, "steps": 1, "mixed_precision": "no", "max_sequence_length": 16, "rank": 4,
             "checkpoint_every": 0, "progress": False}  # fmt: skip
    config = load_config(
        None,
        {**TINY, "synth.filters.keep_not_scored": True, "synth.filters.min_similarity": 0.0, "eval.resamples": 500,
         "bootstrap.iterations": 2, "bootstrap.score": "scripted", **{f"train.{k}": v for k, v in train.items()}},
    )  # fmt: skip
    prompts = [PromptRecord("fox", "a red fox in the snow", 5)]

    report = bootstrap(prompts, heldout, config, tmp_path, components=components,
                       heldout_scorer=PerPromptScores([base, noisy]))  # fmt: skip

    [iteration] = report.iterations
    assert iteration["score"] == 1.375 > iteration["reference"] == 1.0 and not iteration["accepted"]
    difference = iteration["eval"]["scripted"]["difference"]
    assert difference["low"] < 0 < difference["high"] and iteration["eval"]["scripted"]["win_rate"] == 0.5
    assert "did not improve the held-out evaluation" in report.stopped and report.final is None
