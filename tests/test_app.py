"""``artaug.paint``: the main job as a function, its outputs, and a consistent run folder after Ctrl-C."""

import json

import pytest
from PIL import Image

from artaug.config import Config
from artaug.judge import Judge
from artaug.loop import Decided
from artaug.loop.components import Components
from artaug.loop.paint import paint
from artaug.painter import FluxPainter
from test_loop import FOX, SKY, ScriptedCritic, tiny_config


@pytest.fixture(scope="module")
def painter(tiny_painter_dir):
    return FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")


def test_png_output_writes_image_trail_and_config_beside(painter, tmp_path):
    components = Components(painter, ScriptedCritic([FOX, SKY]), Judge())
    output = tmp_path / "out" / "fox.png"
    result = paint("a fox", config=tiny_config(), components=components, output=output, seed=2, rounds=1)
    assert output.is_file() and Image.open(output).size == (128, 128)
    trail = json.loads((tmp_path / "out" / "fox.trail.json").read_text())
    assert trail["provenance"]["files"] == {"final": "fox.png"} and len(trail["rounds"]) == 1
    assert "rounds = 1" in (tmp_path / "out" / "fox.config.toml").read_text()
    assert not (tmp_path / "out" / "round_00.png").exists()
    assert result.trail.first_request.seed == 2


def test_ctrl_c_leaves_the_folder_describing_the_rounds_completed(painter, tmp_path):
    def interrupt_after_round_one(event):
        if isinstance(event, Decided) and event.round == 1:
            raise KeyboardInterrupt

    components = Components(painter, ScriptedCritic([FOX, SKY]), Judge())
    with pytest.raises(KeyboardInterrupt):
        paint(
            "a fox",
            config=tiny_config(rounds=2),
            components=components,
            output=tmp_path / "run",
            on_event=interrupt_after_round_one,
        )
    trail = json.loads((tmp_path / "run" / "trail.json").read_text())
    assert len(trail["rounds"]) == 1 and trail["rounds"][0]["accepted"]
    assert trail["stopped"].startswith("interrupted")
    assert (tmp_path / "run" / "round_00.png").is_file() and (tmp_path / "run" / "round_01.png").is_file()
    assert not list((tmp_path / "run").glob(".*tmp"))


def test_unknown_shortcut_is_refused_before_loading_anything():
    with pytest.raises(TypeError, match="unknown option"):
        paint("a fox", config=Config(), colour="red")
