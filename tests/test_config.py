import subprocess
import sys
import tomllib

import pytest

from artaug.config import Config, ConfigError, LoopConfig, PainterConfig, load_config, parse_set_options
from artaug.loop.paint import resolve_config


def test_defaults_are_the_real_models():
    config = load_config()
    assert config.painter.model == "black-forest-labs/FLUX.1-dev"
    assert config.critic.model == "Qwen/Qwen2-VL-7B-Instruct"
    assert (config.painter.height, config.painter.width, config.painter.num_inference_steps) == (1024, 1024, 28)
    assert config.painter.guidance_scale == 3.5
    assert config.loop.rounds == 2 and config.loop.regional == "attention" and config.loop.strength == 0.8


def test_toml_then_overrides_and_dump_round_trip(tmp_path):
    path = tmp_path / "artaug.toml"
    path.write_text(f'[painter]\nheight = 512\nmodel = "{tmp_path}"\n[loop]\nrounds = 3\n[judge]\naesthetic = true\n')
    config = load_config(
        path, parse_set_options(["loop.rounds=5", "loop.use_global_prompt=false", "painter.width=768"])
    )
    assert config.painter.height == 512 and config.painter.width == 768 and config.painter.model == str(tmp_path)
    assert config.loop.rounds == 5 and config.loop.use_global_prompt is False
    assert config.judge.aesthetic is True
    dumped = tmp_path / "dumped.toml"
    config.dump(dumped)
    assert tomllib.loads(dumped.read_text())["loop"]["rounds"] == 5
    assert load_config(dumped).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "toml, overrides, message",
    [
        ("[painter]\nheigth = 5\n", {}, "unknown setting painter.heigth"),
        ("[paintr]\nheight = 5\n", {}, r"unknown config section \[paintr\]"),
        ("", {"loop.rounds": "many"}, "cannot read 'many' as an integer"),
        ("", {"rounds": 3}, "section.key"),
        ("[loop\n", {}, "not valid TOML"),
        ("", {"loop.use_global_prompt": "perhaps"}, "cannot read"),
        ('[painter]\nheight = "tall"\n', {}, "painter.height: cannot read 'tall'"),
        ("[painter]\nheight = 12.5\n", {}, "painter.height must be an integer"),
        ("painter = 3\n", {}, r"\[painter\] must be a table"),
        ("", {"loop.strength": "1.5"}, "loop.strength must be <= 1.0"),
        ("", {"painter.guidance_scale": "nan"}, "painter.guidance_scale must be a finite number"),
        ("", {"painter.height": "100"}, "painter.height: must be a multiple of 16"),
        ("", {"loop.rounds": "-1"}, "loop.rounds must be >= 0"),
        ("", {"painter.num_inference_steps": "100000"}, "must be <= 1000"),
        ("", {"painter.device": "gpu"}, "unknown device 'gpu'"),
        ("", {"judge.broken.black_level": "0.95"}, "black_level 0.95 must be below white_level"),
        ("", {"synth.filters.similarity": "clip"}, "needs clip_model"),
        ("", {"painter.offload": "model", "painter.device": "cpu"}, "moves weights to an accelerator"),
        ("", {"critic.api_key_env": "MY KEY"}, "not a variable name"),
        ("", {"painter.model": "/no/such/flux"}, "'/no/such/flux' does not exist"),
    ],
)
def test_bad_config_gets_a_clear_error(tmp_path, toml, overrides, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=message):
        load_config(path, overrides)


def test_every_problem_is_named_at_once():
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"painter.height": "100", "painter.guidance_scale": "inf"})
    assert "painter.height" in str(caught.value) and "painter.guidance_scale" in str(caught.value)


def test_sections_validate_on_creation_and_are_frozen():
    with pytest.raises(ConfigError, match="loop.strength"):
        LoopConfig(strength=0.0)
    with pytest.raises(ConfigError, match="painter.width"):
        PainterConfig(width=-16)
    config = LoopConfig()
    with pytest.raises(AttributeError):
        config.rounds = 5  # type: ignore[misc]
    assert config.replace(rounds="5").rounds == 5 and config.rounds == 2


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config("/nonexistent/artaug.toml")


def test_shortcuts_override_a_config_object_without_mutating_it(tmp_path):
    base = Config()
    config = resolve_config(base, rounds=0, height=256, painter=str(tmp_path), steps=4)
    assert (config.loop.rounds, config.painter.height, config.painter.model) == (0, 256, str(tmp_path))
    assert config.painter.num_inference_steps == 4
    assert base.loop.rounds == 2 and base.painter.height == 1024
    assert base.updated({}).to_dict() == base.to_dict()
    with pytest.raises(TypeError, match="unknown option"):
        resolve_config(None, colour="red")


def test_importing_the_config_does_not_import_torch():
    code = "import sys, artaug.config, artaug.settings, artaug.files; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
