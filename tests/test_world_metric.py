"""The world metric: GenEval's rule (every requirement must hold) on the detector's output."""

from __future__ import annotations

import random

import pytest

from artaug.world.detect import Detection
from artaug.world.grammar import CATEGORIES, parse_prompt, split_prompts
from artaug.world.metric import WorldScorer, accuracy_by_category, check, judge_image, relative_position
from artaug.world.scenes import Scene, Shape, layout, render


def det(colour: str, shape: str, cx: float, cy: float, extent: float = 28) -> Detection:
    half = extent / 2
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return Detection(colour, shape, box, int(extent * extent), 0.9)


@pytest.mark.parametrize("category", CATEGORIES)
def test_a_faithful_render_of_every_eval_prompt_is_correct(category):
    rng = random.Random(category)
    for prompt in split_prompts(category, "eval")[:40]:
        verdict = judge_image(render(layout(parse_prompt(prompt), rng)), prompt)
        assert verdict.correct, (prompt, verdict.reasons)


@pytest.mark.parametrize(
    ("prompt", "detections", "correct"),
    [
        ("a circle", [det("red", "circle", 64, 64)], True),
        ("a circle", [det("red", "square", 64, 64)], False),
        ("a circle", [det("red", "blob", 64, 64)], False),
        ("a red circle", [det("blue", "circle", 64, 64)], False),
        ("a red circle", [det("blue", "circle", 20, 20), det("red", "circle", 64, 64)], True),
        ("a red circle at the top left", [det("red", "circle", 64, 64)], False),
        ("a red circle at the top left", [det("red", "circle", 20, 20)], True),
        ("a circle and a square", [det("red", "circle", 20, 20)], False),
        ("a circle and a square", [det("red", "circle", 20, 20), det("red", "square", 100, 100)], True),
        ("two squares", [det("red", "square", 20, 20)], False),
        ("two squares", [det("red", "square", 20, 20), det("blue", "square", 100, 20)], True),
        ("two squares", [det("red", "square", x, 20) for x in (20, 64, 100)], False),  # exactly two
        ("two red squares", [det("red", "square", 20, 20), det("blue", "square", 100, 20)], False),
        ("a circle to the left of a square", [det("red", "circle", 20, 64), det("red", "square", 100, 64)], True),
        ("a circle to the left of a square", [det("red", "circle", 100, 64), det("red", "square", 20, 64)], False),
        ("a circle above a square", [det("red", "circle", 64, 20), det("red", "square", 64, 100)], True),
        ("a circle above a square", [det("red", "circle", 20, 64), det("red", "square", 100, 64)], False),
        ("a red circle and a blue square", [det("blue", "circle", 20, 20), det("red", "square", 100, 100)], False),
        ("a plain background", [], True),
        ("a plain background", [det("red", "circle", 20, 20)], False),
    ],
)
def test_requirements(prompt, detections, correct):
    assert check(parse_prompt(prompt), detections).correct is correct


def test_relative_position_follows_geneval():
    a, b = det("red", "circle", 20, 64), det("red", "square", 100, 64)
    assert relative_position(a, b) == {"to the left of"} and relative_position(b, a) == {"to the right of"}
    assert relative_position(a, det("red", "square", 24, 64)) == set()  # overlapping boxes: no relation
    assert relative_position(det("red", "circle", 20, 20), det("red", "square", 100, 100)) == {
        "to the left of",
        "above",
    }


def test_scorer_has_the_judge_signature():
    scene = Scene((Shape("circle", "red", 20, 20, 28),), (230, 230, 225), 0.0, 0)
    image = render(scene)
    scorer = WorldScorer()
    assert scorer.name == "world"
    assert scorer.score([image, image], ["a red circle", "a red circle and a square"]) == [1.0, 0.0]
    assert WorldScorer(partial=True).score([image], ["a red circle and a square"]) == [0.5]
    with pytest.raises(ValueError):
        scorer.score([image], [])


def test_accuracy_by_category_averages_categories_not_items():
    accuracy = accuracy_by_category([("colors", True), ("colors", True), ("colors", False), ("counting", False)])
    assert accuracy == {"colors": 2 / 3, "counting": 0.0, "overall": 1 / 3}
