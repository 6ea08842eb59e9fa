import tomllib

import pytest

from artaug.app import resolve_config
from artaug.config import Config, apply_overrides, load_config, parse_set_options


def test_defaults_are_the_real_models():
    config = load_config()
    assert config.painter.model == "black-forest-labs/FLUX.1-dev"
    assert config.critic.model == "Qwen/Qwen2-VL-7B-Instruct"
    assert (config.painter.height, config.painter.width, config.painter.num_inference_steps) == (1024, 1024, 28)
    assert config.painter.guidance_scale == 3.5
    assert config.loop.rounds == 2


def test_toml_then_overrides_and_dump_round_trip(tmp_path):
    path = tmp_path / "artaug.toml"
    path.write_text('[painter]\nheight = 512\nmodel = "/models/flux"\n[loop]\nrounds = 3\n[judge]\naesthetic = true\n')
    config = load_config(
        path, parse_set_options(["loop.rounds=5", "loop.use_global_prompt=false", "painter.width=768"])
    )
    assert config.painter.height == 512 and config.painter.width == 768 and config.painter.model == "/models/flux"
    assert config.loop.rounds == 5 and config.loop.use_global_prompt is False
    assert config.judge.aesthetic is True
    dumped = tmp_path / "dumped.toml"
    config.dump(dumped)
    assert tomllib.loads(dumped.read_text())["loop"]["rounds"] == 5
    assert load_config(dumped).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "toml, overrides, message",
    [
        ("[painter]\nheigth = 5\n", {}, "unknown config key"),
        ("", {"loop.rounds": "many"}, "cannot read 'many' as int"),
        ("", {"rounds": 3}, "section.key"),
        ("[loop\n", {}, "not valid TOML"),
        ("", {"loop.use_global_prompt": "perhaps"}, "cannot read"),
    ],
)
def test_bad_config_gets_a_clear_error(tmp_path, toml, overrides, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=message):
        load_config(path, overrides)


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config("/nonexistent/artaug.toml")


def test_shortcuts_override_a_config_object_without_mutating_it():
    base = Config()
    config = resolve_config(base, rounds=0, height=256, painter="/tiny")
    assert (config.loop.rounds, config.painter.height, config.painter.model) == (0, 256, "/tiny")
    assert base.loop.rounds == 2 and base.painter.height == 1024
    assert apply_overrides(base, {}).to_dict() == base.to_dict()
    with pytest.raises(TypeError, match="unknown option"):
        resolve_config(None, colour="red")
