"""The world grammar: prompts and specs map both ways, and the prompt sets are fixed and disjoint."""

from __future__ import annotations

import pytest

from artaug.world.grammar import (
    CATEGORIES,
    EMPTY_PROMPT,
    SPLITS,
    ObjectSpec,
    SceneSpec,
    enumerate_category,
    eval_items,
    parse_prompt,
    scene_key,
    split_of,
    split_prompts,
    to_prompt,
)


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_spec_round_trips_and_has_its_category(category):
    specs = enumerate_category(category)
    assert len(set(specs)) == len(specs)
    for spec in specs:
        assert parse_prompt(to_prompt(spec)) == spec
        assert spec.category == category


def test_examples_parse_to_the_intended_spec():
    spec = parse_prompt("a red circle at the top left and a blue square at the bottom right")
    assert spec == SceneSpec((ObjectSpec("circle", "red", "top left"), ObjectSpec("square", "blue", "bottom right")))
    assert parse_prompt("Three  squares") == SceneSpec((ObjectSpec("square", count=3),))
    assert parse_prompt("a triangle in the center").objects[0].place == "center"
    assert parse_prompt("a circle to the left of a yellow square").relation == "to the left of"
    assert parse_prompt(EMPTY_PROMPT) == SceneSpec()


@pytest.mark.parametrize(
    "text",
    [
        "a cat",
        "a red circles",
        "two circle",
        "a circle and a circle",  # one prompt names each shape once
        "two circles at the top",  # a group has no single cell
        "a circle at the top and a square at the top",
        "a circle at the top left above a square",  # a relation links unplaced objects
        "a circle to the left of a square and a triangle",
        "",
    ],
)
def test_text_outside_the_grammar_is_refused(text):
    with pytest.raises(ValueError):
        parse_prompt(text)


def test_word_order_does_not_change_the_split():
    a, b = ObjectSpec("circle", "red", "top"), ObjectSpec("square", None, "left")
    assert split_of(SceneSpec((a, b))) == split_of(SceneSpec((b, a)))
    left = SceneSpec((ObjectSpec("circle"), ObjectSpec("square")), "to the left of")
    right = SceneSpec((ObjectSpec("square"), ObjectSpec("circle")), "to the right of")
    assert scene_key(left) == scene_key(right)


def test_splits_are_disjoint_and_cover_each_category():
    for category in CATEGORIES:
        sets = {split: set(split_prompts(category, split)) for split in SPLITS}
        assert all(sets.values()), category
        assert not (sets["train"] & sets["synth"] or sets["train"] & sets["eval"] or sets["synth"] & sets["eval"])
        assert sum(len(s) for s in sets.values()) == len(enumerate_category(category))


def test_held_out_set_is_fixed_large_and_held_out():
    items = eval_items()
    assert items == eval_items()
    assert len({item.prompt for item in items}) >= 200
    assert len({(item.prompt, item.seed) for item in items}) == len(items)
    for item in items:
        spec = parse_prompt(item.prompt)
        assert split_of(spec) == "eval" and spec.category == item.category
    quick = eval_items(quick=True)
    assert len(quick) >= 48 and set(quick) <= set(items)
    assert {item.category for item in quick} == set(CATEGORIES)
