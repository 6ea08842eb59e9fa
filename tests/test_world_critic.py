"""The world critic asks for exactly the fix, in Qwen2-VL's grounding form, and asks nothing of a correct painting.

The strongest check: an ideal painter that carries out every edit literally (clears its box, or draws the local
prompt's object in its cell) turns every faulty scene into a correct one in a single round.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from artaug.critic.base import CriticError
from artaug.critic.parse import parse_critique
from artaug.types import Critique
from artaug.world.critic import WorldCritic, plan_fixes
from artaug.world.detect import Detection
from artaug.world.grammar import CATEGORIES, COLOURS, EMPTY_PROMPT, PLACES, parse_prompt, split_prompts
from artaug.world.metric import judge_image
from artaug.world.scenes import SIZE, Scene, Shape, cell_box, layout, render

CRITIC = WorldCritic(max_edits=9)


def carry_out(scene: Scene, critique: Critique) -> Scene:
    """An ideal painter: every edit clears the shapes centred in its box, then draws its local prompt's object."""
    shapes = list(scene.shapes)
    for edit in critique.edits:
        x0, y0, x1, y1 = (v * SIZE for v in (edit.box.x0, edit.box.y0, edit.box.x1, edit.box.y1))
        shapes = [s for s in shapes if not (x0 <= s.cx <= x1 and y0 <= s.cy <= y1)]
        if edit.prompt != EMPTY_PROMPT:
            (obj,) = parse_prompt(edit.prompt).objects
            cx0, cy0, cx1, cy1 = cell_box(obj.place)
            shapes.append(Shape(obj.shape, obj.colour or "black", (cx0 + cx1) / 2, (cy0 + cy1) / 2, 26))
    return replace(scene, shapes=tuple(shapes))


def spoil(scene: Scene, rng: random.Random) -> Scene:
    """One of the faults a painter makes: an object missing, recoloured, moved to a free cell, or one too many."""
    shapes = list(scene.shapes)
    fault = rng.choice(["missing", "recoloured", "moved", "extra"] if shapes else ["extra"])
    free = [p for p in PLACES if p not in {s.place for s in shapes}]
    if fault == "extra" or fault == "moved":
        x0, y0, x1, y1 = cell_box(rng.choice(free))
        template = rng.choice(shapes) if shapes else Shape("circle", "red", 0, 0, 26)
        if fault == "moved":
            shapes.remove(template)
        shapes.append(replace(template, cx=(x0 + x1) / 2, cy=(y0 + y1) / 2))
    elif fault == "missing":
        shapes.pop(rng.randrange(len(shapes)))
    else:
        i = rng.randrange(len(shapes))
        shapes[i] = replace(shapes[i], colour=rng.choice([c for c in COLOURS if c != shapes[i].colour]))
    return replace(scene, shapes=tuple(shapes))


@pytest.mark.parametrize("category", [*CATEGORIES, "empty"])
def test_critique_is_empty_exactly_when_the_painting_is_correct_and_one_round_of_it_fixes_the_painting(category):
    rng = random.Random(category)
    prompts = [EMPTY_PROMPT] * 4 if category == "empty" else split_prompts(category, "synth")[:25]
    for prompt in prompts:
        scene = layout(parse_prompt(prompt), rng)
        for candidate in (scene, spoil(scene, rng)):
            image = render(candidate)
            critique = CRITIC.critique(image, prompt)
            assert critique.repairs == [] and critique.error is None, critique.raw
            assert critique.wants_changes is not judge_image(image, prompt).correct, (prompt, critique.raw)
            if critique.wants_changes:
                fixed = render(carry_out(candidate, critique))
                assert judge_image(fixed, prompt).correct, (prompt, critique.raw)


def test_a_correct_painting_gets_no_changes():
    scene = Scene((Shape("circle", "red", 20, 20, 28), Shape("square", "blue", 106, 106, 28)), (230, 228, 222), 0, 0)
    critique = CRITIC.critique(render(scene), "a red circle at the top left and a blue square at the bottom right")
    assert critique.raw == "no changes" and critique.edits == []


def test_a_missing_object_is_asked_for_in_its_cell():
    scene = Scene((Shape("square", "blue", 106, 106, 28),), (230, 228, 222), 0, 0)
    critique = CRITIC.critique(render(scene), "a red circle at the top left and a blue square at the bottom right")
    assert critique.raw.startswith("<|object_ref_start|>a red circle at the top left<|object_ref_end|><|box_start|>")
    (edit,) = critique.edits
    assert edit.prompt == "a red circle at the top left"
    assert (edit.box.x0, edit.box.y0, edit.box.x1, edit.box.y1) == (0.0, 0.0, 0.333, 0.333)


def test_a_miscoloured_object_is_repainted_where_it_is():
    scene = Scene((Shape("circle", "green", 64, 64, 28),), (230, 228, 222), 0, 0)
    (edit,) = CRITIC.critique(render(scene), "a red circle").edits
    assert edit.prompt == "a red circle in the center" and "green" in edit.reason
    assert edit.box.x0 <= 50 / SIZE and edit.box.x1 >= 78 / SIZE  # covers the green circle


def test_an_extra_object_is_cleared():
    shapes = tuple(Shape("triangle", "black", x, 64, 28) for x in (21, 64, 107))
    (edit,) = CRITIC.critique(render(Scene(shapes, (230, 228, 222), 0, 0)), "two triangles").edits
    assert edit.prompt == EMPTY_PROMPT
    assert edit.box.x0 <= 93 / SIZE and edit.box.x1 >= 121 / SIZE  # the last triangle, with its rim


def test_answers_go_through_the_shared_parser():
    scene = Scene((), (230, 228, 222), 0, 0)
    image = render(scene)
    answer = CRITIC.ask([image], CRITIC.instruction("three circles"))
    assert CRITIC.critique(image, "three circles").edits == parse_critique(answer, image.size, "qwen2-vl").edits
    assert len(WorldCritic(max_edits=2).critique(image, "three circles").edits) == 2


def test_prompts_outside_the_world_are_reported_not_raised():
    image = render(Scene((), (230, 228, 222), 0, 0))
    critique = CRITIC.critique(image, "a cat on a sofa")
    assert critique.error and not critique.edits
    with pytest.raises(CriticError):
        CRITIC.ask([image], "Is this painting beautiful?")


def test_a_formless_blob_is_repainted_where_it_is():
    blob = Detection("red", "blob", (50, 50, 80, 80), 700, 0.4)
    (fix,) = plan_fixes(parse_prompt("a square"), [blob])
    assert fix.prompt == "a square in the center" and fix.box[0] <= 47 and fix.box[2] >= 83


def test_the_world_critic_and_metric_are_usable_wherever_a_critic_and_a_scorer_are():
    from artaug.config import CriticConfig, JudgeConfig
    from artaug.critic import critic_from_config, is_weightless, load_critic
    from artaug.judge import Judge

    critic = critic_from_config(CriticConfig(model="world", max_edits=2))
    assert isinstance(critic, WorldCritic) and critic.max_edits == 2 and is_weightless("world")
    assert isinstance(load_critic("world"), WorldCritic)
    scene = layout(parse_prompt("a red circle at the top left"), random.Random(0))
    image = render(scene)
    judge = Judge.from_config(JudgeConfig(world=True))
    assert judge.scores(image, "a red circle at the top left") == {"world": 1.0}
    assert judge.scores(image, "a red circle and a blue square") == {"world": 0.5}  # one of two objects met
    verdict = judge.compare(image, image, "a red circle at the top left and a blue square")
    assert verdict.accepted  # not worse: equal
