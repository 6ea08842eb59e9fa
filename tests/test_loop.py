"""The loop on the tiny painter: repaint, accept, roll back, skip a dead critic, write and replay the run folder.

The critic here answers from a script, but every answer is raw VLM-style text that goes through the real parser,
exactly as a model's answer would; the tiny Qwen2-VL critic runs the loop end to end in test_cli_main_job.py.
"""

import json

import numpy as np
import pytest
from PIL import Image

from artaug.config import Config
from artaug.critic import parse_critique
from artaug.judge import Judge, JudgeConfig
from artaug.loop import Critiqued, Decided, Finished, PaintStep, iterate, run
from artaug.loop.replay import replay
from artaug.loop.runfolder import RunFolder
from artaug.painter import FluxPainter
from artaug.pngmeta import read_png_metadata

PROMPT = "a red fox in a snowy forest"
FOX = (
    "<|object_ref_start|>a fox with bright orange fur<|object_ref_end|>"
    "<|box_start|>(250,500),(750,1000)<|box_end|> reason: the fur is dull"
)
SKY = '{"edits": [{"box": [0, 0, 1000, 400], "prompt": "a glowing sunset sky", "reason": "flat sky"}]}'


class ScriptedCritic:
    """Answers with prepared raw texts in turn (an exception instance is raised, like a dead endpoint would)."""

    model_id = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []

    def critique(self, image, prompt):
        self.seen.append(image.copy())
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return parse_critique(answer, image_size=image.size)


class DistanceFromFirst:
    """A scorer that prefers images close to the first one it scored: every revision scores lower."""

    name = "stay_close"

    def __init__(self):
        self.reference = None

    def score(self, images, prompts):
        out = []
        for image in images:
            pixels = np.asarray(image, dtype=np.float32)
            if self.reference is None:
                self.reference = pixels
            out.append(-float(np.abs(pixels - self.reference).mean()))
        return out


@pytest.fixture(scope="module")
def painter(tiny_painter_dir):
    return FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")


def tiny_config(rounds=2, **loop):
    tiny = {"painter.height": 128, "painter.width": 128, "painter.num_inference_steps": 4}
    tiny |= {"painter.max_sequence_length": 16, "loop.region_max_sequence_length": 16, "loop.rounds": rounds}
    return Config().updated(tiny | {f"loop.{key}": value for key, value in loop.items()})


def test_accepted_rounds_repaint_from_the_best_painting(painter, tmp_path):
    critic = ScriptedCritic([FOX, SKY])
    config = tiny_config(rounds=2, strength=0.5)
    folder = RunFolder(tmp_path / "run", config)
    events = []

    def on_event(event):
        events.append(event)
        folder.on_event(event)

    result = run(
        PROMPT,
        painter=painter,
        critic=critic,
        judge=Judge(),
        config=config,
        seed=3,
        on_event=on_event,
        provenance={"painter": {"id": painter.model_id}},
    )
    trail = result.trail

    # Two rounds, both accepted by the gate-only judge; each repaint starts from the best painting so far.
    assert [r.accepted for r in trail.rounds] == [True, True] and trail.best == 2
    assert trail.stopped == "ran all 2 rounds"
    assert np.array_equal(np.asarray(critic.seen[1]), np.asarray(result.paintings[1].image))
    first_request, revision = trail.first_request, trail.rounds[0].request
    assert (revision.seed, revision.height, revision.strength, revision.regional) == (3, 128, 0.5, "attention")
    assert revision.edits[0].prompt == "a fox with bright orange fur"
    assert revision.edits[0].box.x0 == pytest.approx(0.25) and revision.edits[0].box.y1 == pytest.approx(1.0)
    assert not first_request.edits and first_request.strength == 1.0
    # Cost: the first painting runs 4 steps, each revision half the schedule, one pass per step in attention mode.
    assert trail.first_cost.transformer_passes == 4
    assert [r.cost.transformer_passes for r in trail.rounds] == [2, 2]
    assert trail.total_cost.transformer_passes == 8
    # Progress events: steps of every painting, a critique and a decision per round, and the end.
    assert sum(isinstance(e, PaintStep) and e.round == 1 for e in events) == 2
    assert [type(e) for e in events if isinstance(e, Critiqued | Decided)] == [Critiqued, Decided] * 2
    assert isinstance(events[-1], Finished)

    # The run folder: every round's PNG with its metadata, the final one, the trail, the sheet and the config.
    run_dir = tmp_path / "run"
    for name in ("round_00.png", "round_01.png", "round_02.png", "final.png", "contact_sheet.png", "config.toml"):
        assert (run_dir / name).is_file(), name
    assert np.array_equal(np.asarray(Image.open(run_dir / "final.png")), np.asarray(result.final.image))
    parameters, provenance = read_png_metadata(run_dir / "round_01.png")
    assert "Seed: 3" in parameters and provenance["edits"][0]["prompt"] == "a fox with bright orange fur"
    stored = json.loads((run_dir / "trail.json").read_text())
    assert stored["rounds"][0]["critique"]["raw"] == FOX and stored["best"] == 2
    assert Image.open(run_dir / "contact_sheet.png").width == 3 * 320

    # Replay re-renders every round from the trail alone and finds the same pixels.
    report = replay(run_dir / "trail.json", painter)
    assert report.identical, report.summary()
    assert len(report.diffs) == 4


def test_a_worse_revision_is_rolled_back(painter, tmp_path):
    config = tiny_config(rounds=2)
    judge = Judge(JudgeConfig(), scorers=[DistanceFromFirst()])
    result = run(PROMPT, painter=painter, critic=ScriptedCritic([FOX, SKY]), judge=judge, config=config, seed=1)
    record = result.trail.rounds[0]
    assert not record.accepted and result.trail.best == 0
    assert any("stay_close" in reason and "<" in reason for reason in record.reasons)
    assert result.final is result.first and len(result.trail.rounds) == 1
    assert "revision rejected" in result.trail.stopped


def test_a_dead_critic_skips_the_round_and_keeps_the_painting(painter):
    critic = ScriptedCritic([ConnectionError("endpoint down"), FOX])
    result = run(PROMPT, painter=painter, critic=critic, judge=Judge(), config=tiny_config(rounds=2), seed=0)
    skipped, repainted = result.trail.rounds
    assert skipped.request is None and not skipped.accepted
    assert "endpoint down" in skipped.critique.error and "round skipped" in skipped.reasons[0]
    assert repainted.accepted and result.trail.best == 2


@pytest.mark.parametrize(
    "answer, stopped",
    [
        ("The painting is perfect, no changes needed.", "the critic asked for no change"),
        ("<|box_start|>(5,5),(5,5)<|box_end|>", "no usable edit in the critic's answer"),
    ],
)
def test_nothing_to_change_stops_early(painter, answer, stopped):
    result = run(PROMPT, painter=painter, critic=ScriptedCritic([answer]), judge=Judge(), config=tiny_config(), seed=0)
    assert len(result.trail.rounds) == 1 and result.trail.best == 0
    assert stopped in result.trail.stopped
    assert result.trail.total_cost.transformer_passes == 4


def test_iterate_yields_the_same_run(painter):
    config = tiny_config(rounds=1)
    events = list(iterate(PROMPT, painter=painter, critic=ScriptedCritic([SKY]), judge=Judge(), config=config))
    finished = events[-1]
    direct = run(PROMPT, painter=painter, critic=ScriptedCritic([SKY]), judge=Judge(), config=config)
    assert isinstance(finished, Finished)
    assert np.array_equal(np.asarray(finished.result.final.image), np.asarray(direct.final.image))


class Declining:
    """An aesthetic-like scorer that gives every new image 0.6 less than the one before."""

    name = "aesthetic"

    def __init__(self):
        self.next = 1.0

    def score(self, images, prompts):
        out = []
        for _ in images:
            out.append(self.next)
            self.next -= 0.6
        return out


def test_small_losses_do_not_add_up_below_the_first_painting(painter):
    judge = Judge(JudgeConfig(aesthetic_epsilon=1.0), scorers=[Declining()])
    result = run(PROMPT, painter=painter, critic=ScriptedCritic([FOX, SKY]), judge=judge, config=tiny_config(), seed=0)
    first_round, second_round = result.trail.rounds
    assert first_round.accepted  # 1.0 -> 0.4: within epsilon of the best and of the first
    assert not second_round.accepted  # 0.4 -> -0.2: within epsilon of the best, but 1.2 below the first
    assert any("fell below the first painting" in reason for reason in second_round.reasons)
    assert result.trail.best == 1


class BlackFirst:
    """The real painter, except that its first painting comes back black (a broken render)."""

    def __init__(self, painter):
        self.painter, self.model_id, self.calls = painter, painter.model_id, 0

    def paint(self, request, init=None, progress=None):
        painting = self.painter.paint(request, init=init, progress=progress)
        self.calls += 1
        if self.calls == 1:
            painting.image = Image.new("RGB", painting.image.size)
        return painting


def test_a_broken_first_painting_is_rerolled_and_paid_for(painter):
    result = run(PROMPT, painter=BlackFirst(painter), critic=ScriptedCritic(["no changes"]), judge=Judge(),
                 config=tiny_config(), seed=5)  # fmt: skip
    trail = result.trail
    assert len(trail.rerolls) == 1 and trail.rerolls[0].startswith("seed 5: near-black")
    assert trail.first_request.seed == 6
    assert trail.first_cost.transformer_passes == 8 and trail.total_cost.transformer_passes == 8


def test_accepted_edits_are_carried_into_later_rounds_unless_a_new_edit_covers_them():
    """A revision re-denoises from the seed: without the earlier rounds' edits, round 2 would paint over round 1's
    fix (the closed world showed it). A new edit over most of an old box replaces it; an instruction edit does not
    carry (the best painting already holds the earlier fixes)."""
    from artaug.config import LoopConfig
    from artaug.loop.run import revision_request
    from artaug.types import MAX_EDITS, Box, Critique, Edit, PaintRequest

    loop = LoopConfig(edit_weight=3.0)
    sky, fox = Edit(Box(0.0, 0.0, 1.0, 0.4), "a sunset sky"), Edit(Box(0.25, 0.5, 0.75, 1.0), "a fox")
    base = PaintRequest(PROMPT, edits=(sky, fox))
    tree = Edit(Box(0.0, 0.5, 0.2, 1.0), "a birch tree")
    later = revision_request(base, Critique(edits=[tree]), loop)
    assert [e.prompt for e in later.edits] == ["a birch tree", "a sunset sky", "a fox"]
    assert later.edits[0].weight == 3.0
    new_fox = Edit(Box(0.2, 0.45, 0.8, 1.0), "a fox with orange fur")  # covers the old fox box: replaces it
    later = revision_request(base, Critique(edits=[new_fox]), loop)
    assert [e.prompt for e in later.edits] == ["a fox with orange fur", "a sunset sky"]
    crowd = tuple(Edit(Box(i / 20, 0.0, (i + 1) / 20, 0.1), f"thing {i}") for i in range(MAX_EDITS))
    full = revision_request(PaintRequest(PROMPT, edits=crowd), Critique(edits=[tree]), loop)
    assert len(full.edits) == MAX_EDITS and full.edits[0].prompt == "a birch tree"
