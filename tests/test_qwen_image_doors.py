"""``--painter`` naming a Qwen-Image folder works at every door, on the tiny Qwen-Image folder: ``artaug paint`` with a
critique round (and ``artaug replay`` of it), ``synth`` then ``train`` on its pairs, ``eval``, ``bootstrap`` and the
studio. Each door picks the family from the folder's ``model_index.json``; nothing here names a class."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import pytest

from artaug.cli import main
from artaug.config import load_config
from artaug.loop.components import Components
from artaug.painter import QwenImagePainter
from artaug.train.lora_io import read_metadata

NOTES = str(files("artaug") / "data" / "demo_critique.txt")  # two critic answers, written in advance
TINY = ["--height", "64", "--width", "64", "--steps", "2", "--max-sequence-length", "16"]


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("a red fox in the snow\n")
    return path


def test_paint_a_critique_round_and_replay_it(tiny_qwen_image_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["paint", "a red fox in the snow", "--painter", str(tiny_qwen_image_dir), "--critic", NOTES,
                 "--rounds", "1", *TINY, "--output", str(out)]) == 0  # fmt: skip
    trail = json.loads((out / "trail.json").read_text())
    assert trail["provenance"]["painter"]["id"] == str(tiny_qwen_image_dir) and len(trail["rounds"]) == 1
    assert trail["rounds"][0]["fix"]["kind"] == "regional"
    assert trail["first_cost"]["transformer_passes"] == 2 * 2  # Qwen-Image's true CFG: two passes per step
    assert main(["replay", str(out / "trail.json"), "--device", "cpu"]) == 0
    assert "replay identical" in capsys.readouterr().out


def test_synth_then_train_a_qwen_image_lora(tiny_qwen_image_dir, prompts, tmp_path):
    store = tmp_path / "store"
    assert main(["synth", str(prompts), "--out", str(store), "--tiny", "--painter", str(tiny_qwen_image_dir),
                 "--critic", NOTES, "--set", "synth.filters.revised=false", "--set", "synth.filters.min_similarity=0",
                 "--no-progress"]) == 0  # fmt: skip
    lora = tmp_path / "lora"
    assert main(["train", str(store), "--painter", str(tiny_qwen_image_dir), "--out", str(lora), "--all-pairs",
                 "--steps", "1", "--resolution", "64", "--mixed-precision", "no", "--max-sequence-length", "16",
                 "--no-progress"]) == 0  # fmt: skip
    assert read_metadata(lora / "pytorch_lora_weights.safetensors")["modelspec.architecture"] == "qwen-image/lora"


def test_eval_and_bootstrap(tiny_qwen_image_dir, tiny_clip_dir, prompts, tmp_path, capsys):
    clip = ["--metrics", "clipscore", "--set", f"eval.clip_model={tiny_clip_dir}"]
    assert main(["eval", "--tiny", "--prompts", str(prompts), "--painter", str(tiny_qwen_image_dir),
                 "--out", str(tmp_path / "eval"), "--no-progress", *clip]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert (
        "clipscore" in json.dumps(summary)
        and str(tiny_qwen_image_dir) in (tmp_path / "eval" / "config.toml").read_text()
    )
    assert main(["bootstrap", "--tiny", "--painter", str(tiny_qwen_image_dir), "--prompts", str(prompts),
                 "--heldout", str(prompts), "--iterations", "1", "--out", str(tmp_path / "boot"), "--steps", "1",
                 "--resolution", "64", "--mixed-precision", "no", "--max-sequence-length", "16", "--no-progress",
                 "--score", "clipscore", *clip[2:], "--set", "eval.metrics=clipscore",
                 "--set", "synth.filters.keep_not_scored=true", "--set", "synth.filters.min_similarity=0",
                 "--set", "synth.filters.revised=false"]) == 0  # fmt: skip
    lora = tmp_path / "boot" / "iteration-1" / "lora" / "pytorch_lora_weights.safetensors"
    assert read_metadata(lora)["modelspec.architecture"] == "qwen-image/lora" and "| 1 |" in capsys.readouterr().out


def test_the_studio_paints_and_repaints(tiny_qwen_image_dir, tmp_path):
    from artaug.studio.handlers import Handlers
    from artaug.studio.session import Studio

    config = load_config(
        presets={"painter.model": str(tiny_qwen_image_dir), "painter.device": "cpu", "critic.model": NOTES,
                 "painter.height": 64, "painter.width": 64, "painter.num_inference_steps": 2,
                 "painter.max_sequence_length": 16, "loop.region_max_sequence_length": 16,
                 "studio.output": str(tmp_path / "runs"), "studio.store": str(tmp_path / "pairs")}
    )  # fmt: skip
    components = Components.load(config)
    assert isinstance(components.painter, QwenImagePainter)
    handlers, tab = Handlers(Studio(config, components)), SimpleNamespace(session_hash="tab")
    editor, status, _, _ = handlers.paint("a red fox in the snow", 3, 64, 64, 2, tab)
    assert "Painted" in status
    editor, revision_prompt, _ = handlers.critique(editor, tab)
    _, after, verdict, status = handlers.repaint(editor, revision_prompt, "attention", 0.5, tab)
    assert "accept or reject" in status and after is not None
