"""Fixes by instruction edit (``loop.fix``): the instruction, the composite that keeps every pixel outside the dilated
boxes exactly, the auto policy and its recorded reason, an end-to-end loop with the tiny FLUX.1-Kontext editor whose
trail says which fix ran and what it cost, replay of such a trail, and trails written before fixes existed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from artaug.config import Config, ConfigError, load_config
from artaug.judge import Judge
from artaug.loop import run
from artaug.loop.fixes import choose_fix
from artaug.loop.replay import replay
from artaug.loop.runfolder import RunFolder
from artaug.painter import FluxPainter
from artaug.painter.editor import InstructionEditor, composite, instruction, seam_alpha, where
from artaug.tiny import tiny_painter_path
from artaug.types import Box, Critique, Edit, Round, Trail

PROMPT = "a red fox in a snowy forest"
HAT = Edit(Box(0.0, 0.0, 0.25, 0.25), "a red woollen hat", label="the head")
SKY = Edit(Box(0.0, 0.0, 1.0, 0.5), "warm golden evening light", label="the sky")


class Scripted:
    """Answers with prepared critiques in turn."""

    model_id = "scripted"

    def __init__(self, *critiques: Critique) -> None:
        self.critiques = list(critiques)

    def critique(self, image, prompt):
        return self.critiques.pop(0)


@pytest.fixture(scope="module")
def kontext_dir():
    return tiny_painter_path("flux-kontext")


@pytest.fixture(scope="module")
def painter(tiny_painter_dir, kontext_dir) -> FluxPainter:
    config = load_config(None, {"painter.model": str(tiny_painter_dir), "painter.editor": str(kontext_dir),
                                "painter.device": "cpu"}).painter  # fmt: skip
    return FluxPainter.from_config(config)


def tiny_config(kontext_dir, rounds=2, **loop) -> Config:
    tiny = {"painter.height": 128, "painter.width": 128, "painter.num_inference_steps": 4, "loop.rounds": rounds,
            "painter.max_sequence_length": 16, "loop.region_max_sequence_length": 16, "loop.strength": 0.5,
            "painter.editor": str(kontext_dir)}  # fmt: skip
    return Config().updated(tiny | {f"loop.{key}": value for key, value in loop.items()})


# ---------------------------------------------------------------- instruction and composite


def test_the_instruction_says_where_and_what():
    assert instruction([HAT]) == (
        "In the box at the top left, make the head a red woollen hat. Keep everything outside these boxes exactly as "
        "it is."
    )
    unlabelled = Edit(Box(0.4, 0.7, 0.6, 0.9), "a blue boat")
    assert instruction([unlabelled], "a fox at dusk").startswith(
        "Make the whole picture match: a fox at dusk; in the box at the bottom, paint a blue boat."
    )
    assert [where(Box(x, y, x + 0.1, y + 0.1)) for x, y in ((0.45, 0.45), (0.8, 0.1), (0.1, 0.5))] == [
        "center", "top right", "left"
    ]  # fmt: skip


@pytest.mark.parametrize("seam", [0, 6])
def test_outside_the_dilated_boxes_every_pixel_is_the_input(seam):
    rng = np.random.default_rng(0)
    before = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    after = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    boxes = [Box(0.1, 0.2, 0.3, 0.5), Box(0.6, 0.6, 0.9, 1.0)]
    out = np.asarray(composite(before, after, boxes, seam))
    dilated = np.zeros((64, 96), dtype=bool)
    inside = np.zeros((64, 96), dtype=bool)
    for box in boxes:
        x0, y0, x1, y1 = box.to_pixels(96, 64)
        dilated[max(0, y0 - seam) : y1 + seam, max(0, x0 - seam) : x1 + seam] = True
        inside[y0:y1, x0:x1] = True
    assert np.array_equal(out[~dilated], np.asarray(before)[~dilated])
    assert np.array_equal(out[inside], np.asarray(after)[inside])
    alpha = seam_alpha(boxes, 64, 96, seam)
    ring = dilated & ~inside
    assert (alpha[ring] < 1).all() and (alpha[~dilated] == 0).all()
    if seam:  # a soft seam: part of the ring blends both images
        assert ((alpha[ring] > 0) & (alpha[ring] < 1)).any()


# ---------------------------------------------------------------- choosing the fix


def test_auto_picks_by_the_edits_kind_and_says_why(kontext_dir):
    auto = tiny_config(kontext_dir, fix="auto").loop
    kind, why = choose_fix(Critique(edits=[HAT]), auto)
    assert kind == "edit" and "local change" in why and "6%" in why
    kind, why = choose_fix(Critique(edits=[SKY]), auto)
    assert kind == "regional" and "50%" in why and "auto_edit_area" in why
    small_light = Edit(Box(0, 0, 0.2, 0.2), "soft rim lighting on the fur")
    assert choose_fix(Critique(edits=[small_light]), auto) == (
        "regional", "auto: 'soft rim lighting on the fur' asks for light or style, which a regional repaint blends"
    )  # fmt: skip
    assert choose_fix(Critique(global_prompt="a fox at dusk"), tiny_config(kontext_dir, fix="edit").loop)[0] == (
        "regional"
    )
    assert choose_fix(Critique(edits=[SKY]), tiny_config(kontext_dir, fix="edit").loop) == ("edit", "loop.fix = edit")


def test_an_edit_fix_needs_an_editor_and_the_editor_must_be_one(tiny_painter_dir):
    with pytest.raises(ConfigError, match="loop.fix = edit needs painter.editor"):
        load_config(None, {"loop.fix": "edit"})
    with pytest.raises(ValueError, match="holds a FluxPipeline; an editor is one of FluxKontextPipeline"):
        InstructionEditor.from_pretrained(str(tiny_painter_dir), device="cpu")


# ---------------------------------------------------------------- the loop


def test_a_loop_of_edit_rounds_records_the_fix_its_cost_and_replays(painter, kontext_dir, tmp_path):
    config = tiny_config(kontext_dir, rounds=2, fix="auto")
    folder = RunFolder(tmp_path / "run", config)
    provenance = {"painter": {"id": painter.model_id}, "editor": {"id": painter.editor.model_id}}
    result = run(PROMPT, painter=painter, critic=Scripted(Critique(edits=[HAT]), Critique(edits=[SKY])),
                 judge=Judge(), config=config, seed=3, on_event=folder.on_event, provenance=provenance)  # fmt: skip
    trail = result.trail
    assert [r.accepted for r in trail.rounds] == [True, True]
    edit_round, regional_round = trail.rounds
    assert edit_round.fix["kind"] == "edit" and regional_round.fix["kind"] == "regional"
    assert edit_round.fix["instruction"].startswith("In the box at the top left, make the head a red woollen hat")
    assert edit_round.fix["editor"] == str(kontext_dir) and edit_round.fix["seam"] == 16
    # Cost: the editor runs the whole schedule (4 steps, one pass each) over the 8x8 painting's tokens plus the 64 of
    # the conditioning image; the regional round runs half the schedule.
    assert edit_round.fix["image_tokens"] == 64 and edit_round.fix["passes_per_step"] == 1
    assert (edit_round.cost.transformer_passes, edit_round.cost.steps) == (4, 4)
    assert regional_round.cost.transformer_passes == 2
    # Outside the dilated box the edit round's painting is the first painting, pixel for pixel.
    first, edited = np.asarray(result.first.image), np.asarray(result.paintings[1].image)
    assert np.array_equal(first[48:, :], edited[48:, :]) and np.array_equal(first[:, 48:], edited[:, 48:])
    assert not np.array_equal(first[:32, :32], edited[:32, :32])
    stored = json.loads((tmp_path / "run" / "trail.json").read_text())
    assert stored["rounds"][0]["fix"]["kind"] == "edit" and stored["rounds"][1]["fix"]["reason"].startswith("auto")

    report = replay(tmp_path / "run" / "trail.json", painter)
    assert report.identical, report.summary()


def test_the_replay_command_loads_the_editor_the_trail_names(painter, kontext_dir, tiny_painter_dir, tmp_path):
    from artaug.cli import main

    config = tiny_config(kontext_dir, rounds=1, fix="edit")
    folder = RunFolder(tmp_path / "run", config)
    provenance = {"painter": {"id": str(tiny_painter_dir)}, "editor": {"id": str(kontext_dir)}}
    run(PROMPT, painter=painter, critic=Scripted(Critique(edits=[HAT])), judge=Judge(), config=config, seed=1,
        on_event=folder.on_event, provenance=provenance)  # fmt: skip
    assert main(["replay", str(tmp_path / "run" / "trail.json"), "--device", "cpu"]) == 0


def test_trails_written_before_fixes_existed_still_read_as_regional():
    old = {"index": 1, "critique": {"edits": []}, "request": None, "accepted": False}
    assert Round.from_dict(old).fix == {}
    trail = Trail.from_dict({"prompt": "p", "first_request": {"prompt": "p"}, "rounds": [old]})
    assert Trail.from_dict(json.loads(json.dumps(trail.to_dict()))).rounds[0].fix == {}


def test_qwen_image_edit_revises_by_instruction_with_true_guidance(tiny_qwen_image_dir):
    """The same fix with Qwen-Image-Edit on a Qwen-Image painting: its VL encoder sees the painting, true CFG
    doubles the passes, and the conditioning image is resized to ~1024² (4096 tokens) whatever the painting's size."""
    from artaug.painter import QwenImagePainter
    from artaug.types import PaintRequest

    painter = QwenImagePainter.from_pretrained(str(tiny_qwen_image_dir), device="cpu")
    painter.editor = InstructionEditor.from_pretrained(str(tiny_painter_path("qwen-image-edit")), device="cpu")
    request = PaintRequest(PROMPT, seed=2, height=64, width=64, num_inference_steps=2, max_sequence_length=16)
    first = painter.paint(request)
    revised, details = painter.edit(request.replace(edits=(HAT,)), first, seam=4)
    assert (revised.cost.transformer_passes, details["passes_per_step"], details["image_tokens"]) == (4, 2, 4096)
    before, after = np.asarray(first.image), np.asarray(revised.image)
    assert np.array_equal(before[20:], after[20:]) and np.array_equal(before[:, 20:], after[:, 20:])
    assert not np.array_equal(before[:16, :16], after[:16, :16])


def test_the_example_fixes_a_qwen_image_painting_both_ways(tmp_path, tiny_qwen_image_dir, kontext_dir):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "examples" / "fix_by_instruction.py"
    process = subprocess.run([sys.executable, str(script), "--tiny", "--output", str(tmp_path)], capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    assert "instruction: In the box at the top left, make the head a red woollen hat." in process.stdout
    assert "the edit is the first painting: True" in process.stdout
    assert all((tmp_path / f"{name}.png").is_file() for name in ("first", "regional", "edit"))


def test_paint_command_fixes_by_instruction_and_records_the_editor(tiny_painter_dir, kontext_dir, tmp_path):
    from importlib.resources import files

    from artaug.cli import main

    notes = str(files("artaug") / "data" / "demo_critique.txt")
    out = tmp_path / "run"
    assert main(["paint", PROMPT, "--painter", str(tiny_painter_dir), "--editor", str(kontext_dir), "--fix", "edit",
                 "--critic", notes, "--rounds", "1", "--height", "64", "--width", "64", "--steps", "2",
                 "--max-sequence-length", "16", "--output", str(out)]) == 0  # fmt: skip
    trail = json.loads((out / "trail.json").read_text())
    assert trail["provenance"]["editor"]["id"] == str(kontext_dir)
    assert trail["rounds"][0]["fix"]["kind"] == "edit" and "golden" in trail["rounds"][0]["fix"]["instruction"]
