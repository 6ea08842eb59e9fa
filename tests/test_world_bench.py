"""The world bench: revisions are requested the way the loop requests them, and its statistics mean what they say."""

from __future__ import annotations

import pytest

from artaug.critic.parse import parse_critique
from artaug.types import Box, Edit
from artaug.world.bench import (
    Condition,
    edit_carried_out,
    first_request,
    paired_bootstrap,
    revision_request,
    summarise,
)
from artaug.world.detect import Detection
from artaug.world.grammar import EMPTY_PROMPT, EvalItem


def test_revision_keeps_seed_and_prompt_and_takes_the_condition():
    base = first_request(EvalItem("a red circle and a square", "color_attr", 7))
    answer = "<|object_ref_start|>a square at the top<|object_ref_end|><|box_start|>(333,0),(667,333)<|box_end|>"
    critique = parse_critique(answer, (128, 128), "qwen2-vl")
    request = revision_request(base, critique, Condition("blend", 0.6, edit_weight=5.0))
    assert (request.prompt, request.seed, request.height) == (base.prompt, base.seed, base.height)
    assert (request.regional, request.strength) == ("blend", 0.6)
    assert [(e.prompt, e.weight) for e in request.edits] == [("a square at the top", 5.0)]


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
    assert low < 0.3 < high and low > 0  # 30 more correct out of 100
    assert paired_bootstrap([True] * 20, [True] * 20) == [0.0, 0.0]


def test_summary_counts_fixed_and_damaged_and_cost():
    rows = [
        {"category": "colors", "first": {"correct": False, "passes": 20}, "c": _after(True, 20, 1, 1)},
        {"category": "colors", "first": {"correct": True, "passes": 20}, "c": _after(False, 0, 0, 0)},
        {"category": "counting", "first": {"correct": True, "passes": 20}, "c": _after(True, 0, 0, 0)},
    ]
    summary = summarise(rows, ["first", "c"])["conditions"]["c"]
    assert (summary["fixed"], summary["damaged"]) == (1, 1)
    assert summary["passes_ratio"] == pytest.approx(80 / 60)
    assert summary["edit_success"] == 1.0
    assert summary["accuracy"] == {"colors": 0.5, "counting": 1.0, "overall": 0.75}


def _after(correct: bool, passes: int, edits: int, carried_out: int) -> dict:
    return {"correct": correct, "passes": passes, "edits": edits, "carried_out": carried_out, "reasons": []}
