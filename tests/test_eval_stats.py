"""The statistics of ``artaug eval`` as invariants: identical conditions differ by exactly 0, swapping conditions
negates the difference, a planted difference is found, and a metric that fails on one image loses only that score."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from PIL import Image

from artaug.config import load_config
from artaug.eval import Result, bootstrap_mean, compare, gate, score_existing, score_safely
from artaug.eval.stats import per_prompt
from artaug.pngmeta import save_png

RESAMPLES = 500


def scores(seed: int, n: int = 30) -> dict[str, float]:
    rng = random.Random(seed)
    return {f"p{i}": rng.gauss(5.0, 1.0) for i in range(n)}


def test_identical_conditions_differ_by_exactly_zero():
    a = scores(0)
    result = compare(a, dict(a), RESAMPLES)
    assert result.difference.mean == result.difference.low == result.difference.high == 0.0
    assert result.win_rate == 0.5 and result.difference.n == 30


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_swapping_conditions_negates_the_difference_exactly(seed):
    a, b = scores(seed), scores(seed + 100)
    ab, ba = compare(a, b, RESAMPLES, seed=7), compare(b, a, RESAMPLES, seed=7)
    assert ab.difference.mean == -ba.difference.mean
    assert (ab.difference.low, ab.difference.high) == (-ba.difference.high, -ba.difference.low)
    assert ab.win_rate == 1 - ba.win_rate


def test_interval_covers_the_mean_and_shrinks_with_more_prompts():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 1, 20).tolist(), rng.normal(0, 1, 2000).tolist()
    for values in (small, large):
        estimate = bootstrap_mean(values, RESAMPLES)
        assert estimate.low <= estimate.mean <= estimate.high
    assert bootstrap_mean(large, RESAMPLES).high - bootstrap_mean(large, RESAMPLES).low < 0.3
    assert math.isnan(bootstrap_mean([], RESAMPLES).mean)


def test_compare_pairs_by_prompt_and_averages_seeds_first():
    reference = per_prompt({("a", 0): 1.0, ("a", 1): 3.0, ("b", 0): 5.0})
    assert reference == {"a": 2.0, "b": 5.0}
    candidate = {"a": 2.5, "c": 9.0}  # only "a" is shared
    result = compare(reference, candidate, RESAMPLES)
    assert result.difference.n == 1 and result.difference.mean == 0.5 and result.win_rate == 1.0


def test_gate_keeps_only_a_clear_gain_without_a_loss_beyond_epsilon():
    gain, flat = (
        compare(scores(0), {k: v + 1 for k, v in scores(0).items()}, RESAMPLES),
        compare(scores(0), scores(0), RESAMPLES),
    )
    drop = compare(scores(0), {k: v - 0.5 for k, v in scores(0).items()}, RESAMPLES)
    assert gate({"pickscore": gain, "aesthetic": flat}, "pickscore").accepted
    assert not gate({"pickscore": flat}, "pickscore").accepted  # [0, 0] is not above 0
    assert not gate({"pickscore": gain, "aesthetic": drop}, "pickscore", epsilon=0.4).accepted
    decision = gate({"pickscore": gain, "aesthetic": drop}, "pickscore", epsilon=0.6)
    assert decision.accepted and len(decision.reasons) == 2
    with pytest.raises(ValueError, match="was not evaluated"):
        gate({"aesthetic": flat}, "pickscore")


# --- through the whole scoring path, on PNG folders ----------------------------------------------------------------


class Redness:
    """A scripted metric that prefers red: mean red minus mean blue of the image, in [-1, 1]. It fails on one
    prompt on purpose."""

    name = "redness"

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on, self.calls = fail_on, 0

    def score(self, samples):
        self.calls += 1
        results = []
        for sample in samples:
            if sample.prompt == self.fail_on:
                raise RuntimeError("this metric cannot read that image")
            pixels = np.asarray(sample.image.convert("RGB"), dtype=float) / 255
            results.append(Result(float(pixels[..., 0].mean() - pixels[..., 2].mean())))
        return results


def paint_folder(root, condition: str, colour: tuple[int, int, int], prompts: list[str], noise: int = 0) -> None:
    """PNGs with their prompt in A1111's ``parameters`` chunk: a colour with per-image noise (same ``noise`` seed,
    same noise)."""
    for i, prompt in enumerate(prompts):
        rng = np.random.default_rng([noise, i])
        pixels = np.clip(np.array(colour) + rng.integers(-40, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
        save_png(Image.fromarray(pixels), root / condition / f"{i:03d}.png", f"{prompt}\nSteps: 2, Seed: {i}", {})


PROMPTS = [f"a swatch number {i}" for i in range(24)]
CONFIG = load_config(None, {"eval.resamples": RESAMPLES, "eval.progress": False, "eval.report_prompts": 4})


def test_a_planted_difference_is_found_and_its_mirror_too(tmp_path):
    paint_folder(tmp_path / "src", "blue", (90, 60, 160), PROMPTS)
    paint_folder(tmp_path / "src", "red", (160, 60, 90), PROMPTS, noise=1)
    summary = score_existing(tmp_path / "src", tmp_path / "out", CONFIG, reference="blue",
                             metrics={"redness": Redness()}).summary  # fmt: skip
    red = summary["metrics"]["redness"]["red"]
    assert red["difference"]["low"] > 0.3 and red["win_rate"] == 1.0 and red["n"] == len(PROMPTS)
    mirrored = score_existing(tmp_path / "src", tmp_path / "out2", CONFIG, reference="red",
                              metrics={"redness": Redness()}).summary  # fmt: skip
    blue = mirrored["metrics"]["redness"]["blue"]
    assert blue["difference"]["mean"] == -red["difference"]["mean"]
    assert (blue["difference"]["low"], blue["difference"]["high"]) == (-red["difference"]["high"],
                                                                       -red["difference"]["low"])  # fmt: skip


def test_the_same_images_twice_differ_by_zero(tmp_path):
    paint_folder(tmp_path / "src", "a", (120, 90, 100), PROMPTS)
    paint_folder(tmp_path / "src", "b", (120, 90, 100), PROMPTS)  # same seeds: the very same pixels
    summary = score_existing(tmp_path / "src", tmp_path / "out", CONFIG, metrics={"redness": Redness()}).summary
    b = summary["metrics"]["redness"]["b"]["difference"]
    assert b["mean"] == b["low"] == b["high"] == 0.0 and b["low"] <= 0 <= b["high"]


def test_a_metric_failing_on_one_image_records_it_and_keeps_the_rest(tmp_path):
    paint_folder(tmp_path / "src", "x", (150, 80, 80), PROMPTS[:10])
    metric = Redness(fail_on=PROMPTS[3])
    result = score_existing(tmp_path / "src", tmp_path / "out", CONFIG.updated({"eval.batch_size": 4}),
                            metrics={"redness": metric})  # fmt: skip
    row = result.summary["metrics"]["redness"]["x"]
    assert row["n"] == 9 and row["failures"] == 1 and result.scored == 10
    lines = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    failed = [line for line in lines if line["value"] is None]
    assert len(lines) == 10 and len(failed) == 1 and failed[0]["prompt"] == PROMPTS[3]
    assert "cannot read that image" in failed[0]["error"]
    assert result.summary["failures"]["count"] == 1


def test_score_safely_isolates_non_finite_scores_and_wrong_lengths():
    class Odd:
        name = "odd"

        def score(self, samples):
            if len(samples) > 1:
                return [Result(1.0)]  # the wrong number of results: retried one by one
            return [Result(float("nan") if samples[0].prompt == "bad" else 2.0)]

    from artaug.eval import Sample

    image = Image.new("RGB", (4, 4))
    out = score_safely(Odd(), [Sample(image, "good"), Sample(image, "bad"), Sample(image, "good")])
    assert [r.value if isinstance(r, Result) else "error" for r in out] == [2.0, "error", 2.0]
    assert "not a finite score" in out[1]
