"""The world bench: its statistics mean what they say, its grid holds the settings the issue names, and on the
committed world painter the loop raises accuracy over one pass (an effect, with a margin noise cannot fake)."""

from __future__ import annotations

import json

import pytest

from artaug.config import LoopConfig
from artaug.types import Box, Edit
from artaug.world.bench import bench, edit_carried_out, grid, paired_bootstrap, summarise
from artaug.world.detect import Detection
from artaug.world.grammar import EMPTY_PROMPT


def test_grid_holds_the_published_and_the_default_setting_and_labels_the_metric_judge():
    conditions = {c.name: c for c in grid(LoopConfig(regional="attention", strength=0.6))}
    assert (conditions["published"].regional, conditions["published"].strength) == ("blend", 1.0)
    assert (conditions["default"].regional, conditions["default"].strength) == ("attention", 0.6)
    assert "attention@0.6" not in conditions  # the default is not measured twice
    judged = [c for c in conditions.values() if c.world_judge]
    assert [c.name for c in judged] == ["default+world_judge"]


def test_edit_success_reads_the_box():
    edit = Edit(Box(0.0, 0.0, 1 / 3, 1 / 3), "a red circle at the top left")
    red = Detection("red", "circle", (8, 8, 36, 36), 600, 0.9)
    blue = Detection("blue", "circle", (8, 8, 36, 36), 600, 0.9)
    elsewhere = Detection("red", "circle", (90, 90, 118, 118), 600, 0.9)
    assert edit_carried_out(edit, [red]) and not edit_carried_out(edit, [blue, elsewhere])
    clear = Edit(Box(0.0, 0.0, 1 / 3, 1 / 3), EMPTY_PROMPT)
    assert edit_carried_out(clear, [elsewhere]) and not edit_carried_out(clear, [red])


def test_paired_bootstrap_brackets_the_mean_difference():
    before, after = [False] * 50 + [True] * 50, [True] * 80 + [False] * 20
    low, high = paired_bootstrap(before, after)
    assert 0 < low < 0.3 < high  # 30 more correct out of 100
    assert paired_bootstrap([True] * 20, [True] * 20) == [0.0, 0.0]
    swapped = paired_bootstrap(after, before)
    assert swapped == pytest.approx([-high, -low], abs=0.05)


def test_summary_counts_fixed_and_damaged_and_cost():
    rows = [
        {"category": "colors", "first": {"correct": False, "passes": 20}, "c": _after(True, 20, 1, 1)},
        {"category": "colors", "first": {"correct": True, "passes": 20}, "c": _after(False, 0, 0, 0)},
        {"category": "counting", "first": {"correct": True, "passes": 20}, "c": _after(True, 0, 0, 0)},
    ]
    summary = summarise(rows, "c")
    assert (summary["fixed"], summary["damaged"]) == (1, 1)
    assert summary["passes_ratio"] == pytest.approx(80 / 60)
    assert summary["edit_success"] == 1.0
    assert summary["accuracy"] == pytest.approx(0.75) and summary["delta"] == pytest.approx(0.0)  # mean of categories
    assert summary["by_category"] == {"colors": 0.5, "counting": 1.0}


def _after(correct: bool, passes: int, edits: int, carried_out: int) -> dict:
    return {"correct": correct, "passes": passes, "edits": edits, "carried_out": carried_out, "reasons": []}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("world-bench")
    only = ("published", "default")  # the two rows the issue names; the whole grid is `artaug world bench`'s job
    return out, bench(out, quick=True, lora=False, only=only, log=lambda message: None)


def test_quick_bench_writes_what_the_issue_names(quick):
    out, results = quick
    saved = json.loads((out / "results.json").read_text())
    assert saved["prompts"] == results["prompts"] == 48
    for name in ("default", "published"):
        assert {"accuracy", "delta_ci", "passes_ratio"} <= set(saved["loop"][name])
    lines = [json.loads(line) for line in (out / "paintings.jsonl").read_text().splitlines()]
    assert len(lines) == 48 * (1 + len(saved["loop"]))
    assert {"prompt", "condition", "seed", "path", "correct"} <= set(lines[0])
    assert all((out / "paintings").is_dir() and __import__("pathlib").Path(line["path"]).is_file() for line in lines)
    assert "<svg" in (out / "report.html").read_text()


def test_the_loop_makes_world_paintings_match_their_prompts_better(quick):
    """The method's claim, measured: with the judge blind to the metric, two critique rounds of the published setting
    raise held-out accuracy, by an interval that excludes 0 and by at least 8 of 48 prompts fixed net."""
    _, results = quick
    published = results["loop"]["published"]
    assert published["delta_ci"][0] > 0, published
    assert published["fixed"] - published["damaged"] >= 8, published
    assert results["loop"]["default"]["delta_ci"][0] > 0, results["loop"]["default"]


def test_gate_records_are_train_split_prompts_in_an_equal_mix_with_fixed_seeds():
    from collections import Counter

    from artaug.world.bench import gate_records
    from artaug.world.grammar import CATEGORIES, eval_items, parse_prompt, split_of

    records = gate_records(96)
    assert all(split_of(parse_prompt(r.prompt)) == "train" for r in records)
    assert not {r.prompt for r in records} & {item.prompt for item in eval_items()}
    assert set(Counter(r.meta["category"] for r in records).values()) == {96 // len(CATEGORIES)}
    assert gate_records(96) == records and len({r.id for r in records}) == len({(r.prompt, r.seed) for r in records})


def test_bench_without_bootstrap_says_why(quick):
    _, results = quick
    assert results["bootstrap"] == {"done": False, "why": "--bootstrap not given"}


@pytest.mark.slow
@pytest.mark.parametrize("margin", [-2.0, 2.0], ids=["always-kept", "always-rolled-back"])
def test_bootstrap_stage_runs_the_cycle_and_records_a_decision_per_iteration(tmp_path, monkeypatch, margin):
    """Plumbing only: artaug's bootstrap runs in the world at toy size and its decisions reach the results. The
    gate's margin forces the decision (the world metric's difference lies in [-1, 1]): every iteration kept (the
    second trains over the first, the final LoRA is their merge, and the bench paints with it), or the first rolled
    back (the cycle stops there, no final LoRA)."""
    from pathlib import Path

    from artaug.config import load_config
    from artaug.world import bench as bench_module
    from artaug.world import world_overrides
    from artaug.world.bench import _bootstrap, bootstrap_stage
    from artaug.world.grammar import eval_items

    toy = {
        "synth.filters.revised": False,
        "synth.filters.min_aesthetic_gain": None,
        "loop.rounds": 1,
        "train.steps": 2,
        "train.batch_size": 2,
        "bootstrap.min_improvement": margin,
    }
    result = bootstrap_stage(tmp_path / "boot", iterations=2, prompts=4, gate_prompts=6, log=lambda line: None, **toy)
    state = json.loads((tmp_path / "boot" / "bootstrap.json").read_text())
    assert result["done"] and result["gate_prompts"] == 6 and result["gate_split"] == "train" and result["stopped"]
    assert result["score"] == "world (partial)"
    kept = margin < 0
    assert len(result["iterations"]) == len(state["iterations"]) == (2 if kept else 1)
    for it, saved in zip(result["iterations"], state["iterations"], strict=True):
        assert it["kept"] is saved["accepted"] is kept
        assert it["pairs"] == it["kept_pairs"] == 4
        low, high = it["gate"]["interval"]
        assert low <= it["gate"]["difference"] <= high
        # The gate scores the share of requirements met; the all-or-nothing accuracy of the same paintings beside it.
        for side in ("reference", "candidate"):
            assert 0.0 <= it["gate"]["accuracy"][side] <= 1.0
        assert it["seconds"] is None or it["seconds"] >= 0
    if not kept:
        assert result["final_lora"] is None and "did not improve" in result["stopped"]
        return
    assert result["final_lora"] and (tmp_path / "boot" / "final").is_dir()
    # The bench's use of it: the held-out rows painted with the final LoRA fused (here 2 items, stage stubbed).
    monkeypatch.setattr(bench_module, "bootstrap_stage", lambda *args, **kwargs: result)
    config = load_config(presets=world_overrides())
    made, rows = _bootstrap(tmp_path / "bench", config, eval_items(quick=True)[:2], 1, lambda line: None)
    assert made is result and len(rows) == 2
    assert all({"first", "default"} <= set(row) and Path(row["first"]["path"]).is_file() for row in rows)
