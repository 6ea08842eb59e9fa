"""The in-process critic on the tiny Qwen2-VL / Qwen2.5-VL folders (the real loading code), templates, the critique
cache, drawing, ``load_critic`` and ``artaug critique``. Tiny models answer random text: these tests prove plumbing,
formats and invariants, never judgement."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from artaug.cli import main
from artaug.critic import (
    CachedCritic,
    Critic,
    CritiqueCache,
    draw_critique,
    image_hash,
    load_critic,
    load_template,
    parse_critique,
)
from artaug.critic.local import LocalCritic, _strip_control
from artaug.critic.prompts import available_templates, response_schema
from artaug.types import Box, Critique, Edit

GROUNDED = (
    "<|object_ref_start|>warm golden rim light on the couple<|object_ref_end|>"
    "<|box_start|>(100,200),(500,900)<|box_end|> reason: flat light"
)


def gradient(width: int, height: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="module")
def critic2(tiny_critic_dir) -> LocalCritic:
    return LocalCritic.from_pretrained(tiny_critic_dir, device="cpu", dtype=torch.float32, max_new_tokens=12)


@pytest.fixture(scope="module")
def critic25(tiny_critic25_dir) -> LocalCritic:
    return LocalCritic.from_pretrained(tiny_critic25_dir, device="cpu", max_new_tokens=12, batch_size=2)


# --- templates ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "grounding", "json-v1", "grounding-v1"])
def test_templates_render_the_art_directors_brief(name):
    template = load_template(name)
    text = template.render('a {cat} costing $5 and "$prompt"', max_edits=3, pixels=False)
    assert 'a {cat} costing $5 and "$prompt"' in text  # the painting prompt passes through untouched
    assert "at most 3 edits" in text and "0-1000" in text
    for topic in ("lighting", "composition", "atmosphere", "hands", "desired end state", "reason"):
        assert topic in text
    assert template.version.startswith(template.name + "@") and template.name in available_templates()
    assert "absolute pixel" in template.render("x", pixels=True)


def test_template_version_follows_its_text(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Judge $prompt, at most $max_edits edits, $coordinates.")
    first = load_template(path)
    path.write_text("Judge $prompt harshly, at most $max_edits edits, $coordinates.")
    second = load_template(path)
    assert first.name == second.name == "mine" and first.version != second.version
    with pytest.raises(ValueError, match="unknown critic template"):
        load_template("no-such-template")


def test_json_template_example_and_schema_agree_with_the_parser():
    schema = response_schema(4)["schema"]
    assert set(schema["required"]) == {"edits", "global_prompt"}
    answer = json.dumps(
        {"edits": [{"box": [0, 0, 500, 500], "prompt": "a red door", "reason": "dull"}], "global_prompt": None}
    )
    critique = parse_critique(answer, (64, 64))
    assert critique.edits == [Edit(Box(0, 0, 0.5, 0.5), "a red door", "dull")] and critique.repairs == []


# --- the in-process critic ------------------------------------------------------------------------------------------


def test_local_critic_loads_and_critiques(critic2, tiny_critic_dir):
    image = gradient(128, 96)
    critique = critic2.critique(image, "a fox in the snow")
    assert critique.error is None and isinstance(critique.raw, str)
    assert "<|im_end|>" not in critique.raw and "<|endoftext|>" not in critique.raw
    assert critique.model == str(tiny_critic_dir) == critic2.model_id
    assert critique.template_version.startswith("grounding-v1@")  # Qwen2-VL defaults to its native grounding
    assert critique.convention in ("qwen2-vl",) and critique.image_size == (128, 96)
    # The processed size comes from image_grid_thw: whole 28 px merged patches, near the original aspect ratio.
    w, h = critique.processed_size
    assert w % 28 == 0 and h % 28 == 0 and abs(w / h - 128 / 96) < 0.5
    for edit in critique.edits:
        assert 0 <= edit.box.x0 < edit.box.x1 <= 1 and 0 <= edit.box.y0 < edit.box.y1 <= 1


def test_local_critic_batches_like_single_calls(critic25):
    images = [gradient(128, 96, 1), gradient(64, 160, 2), gradient(96, 96, 3)]
    prompts = ["a fox", "a lighthouse at dusk", "two cats"]
    batch = critic25.critique_batch(images, prompts)
    singles = [critic25.critique(image, prompt) for image, prompt in zip(images, prompts, strict=True)]
    assert [c.raw for c in batch] == [c.raw for c in singles]
    assert [c.processed_size for c in batch] == [c.processed_size for c in singles]
    assert len({c.processed_size for c in batch}) == 3  # each image keeps its own size through the batch
    assert critic25.convention == "qwen2.5-vl" and critic25.template.form == "json"
    assert "absolute pixel" in critic25.instruction("a fox")
    with pytest.raises(ValueError):
        critic25.critique_batch(images, prompts[:2])


def test_local_decode_keeps_grounding_tokens(critic2, monkeypatch):
    # Make the tiny model "answer" a grounded critique: the decode must keep the box tokens for the parser.
    tokenizer = critic2.processor.tokenizer
    answer = tokenizer(GROUNDED + "<|im_end|><|endoftext|><|endoftext|>", add_special_tokens=False)["input_ids"]
    real_generate = critic2.model.generate

    def scripted_generate(**inputs):
        real_generate(**{**inputs, "max_new_tokens": 1})  # still run the real model once
        ids = inputs["input_ids"]
        return torch.cat([ids, torch.tensor([answer] * ids.shape[0])], dim=1)

    monkeypatch.setattr(critic2.model, "generate", scripted_generate)
    critique = critic2.critique(gradient(64, 64), "a couple at sunset")
    assert critique.raw == GROUNDED
    assert critique.edits == [Edit(Box(0.1, 0.2, 0.5, 0.9), "warm golden rim light on the couple", "flat light",
                                   label="warm golden rim light on the couple")]  # fmt: skip
    assert critique.repairs == []


def test_strip_control_tokens():
    text = "<|im_start|>" + GROUNDED + "<|im_end|>\n<|endoftext|><|endoftext|>"
    assert _strip_control(text) == GROUNDED


def test_local_ask_with_two_images(critic2):
    answer = critic2.ask([gradient(64, 64, 1), gradient(64, 64, 2)], "Which is better, A or B?", max_new_tokens=4)
    assert isinstance(answer, str) and "<|im_end|>" not in answer


def test_missing_model_gives_a_download_hint():
    with pytest.raises(OSError, match="hf download"):
        LocalCritic.from_pretrained("Qwen/Qwen2-VL-7B-Instruct", local_files_only=True)


def test_load_critic_dispatches(tiny_critic_dir):
    remote = load_critic("http://127.0.0.1:9/v1", model="m")
    assert type(remote).__name__ == "RemoteCritic"
    local = load_critic(str(tiny_critic_dir), device="cpu", max_new_tokens=2, template="json", max_edits=2)
    assert isinstance(local, LocalCritic) and local.template.form == "json" and local.max_edits == 2


# --- cache and drawing ----------------------------------------------------------------------------------------------


class ScriptedCritic(Critic):
    """A backend whose answer is fixed text; counts how often it is really asked."""

    name = "scripted"

    def __init__(self, answer: str, template: str = "json", error: str | None = None) -> None:
        super().__init__(model_id="scripted-model", template=template, max_edits=4, convention="auto")
        self.answer, self.error, self.calls = answer, error, 0

    def ask(self, images, text, max_new_tokens=256):
        self.calls += 1
        return self.answer

    def critique_batch(self, images, prompts):
        self.calls += len(images)
        return [self._critique_from(self.answer, image, None, 0.0, error=self.error) for image in images]


def test_cached_critic_hits_misses_and_keys(tmp_path):
    answer = '{"edits": [{"box": [0, 0, 500, 500], "prompt": "a red door", "reason": "dull"}], "global_prompt": null}'
    inner = ScriptedCritic(answer)
    cached = CachedCritic(inner, tmp_path / "cache")
    image = gradient(64, 64)
    first = cached.critique(image, "a house")
    again = cached.critique(image.copy(), "a house")  # same pixels, new object: a hit
    assert inner.calls == 1 and (cached.hits, cached.misses) == (1, 1)
    assert again == first and again.edits[0].prompt == "a red door"
    cached.critique_batch([image, gradient(64, 64, 5), image], ["a house", "a house", "a barn"])
    assert inner.calls == 3 and cached.hits == 2
    assert cached.model_id == "scripted-model" and cached.template_version == inner.template_version
    assert cached.max_edits == 4 and cached.convention == "auto" and cached.name == "scripted"
    # Another template version is another key.
    other = CachedCritic(ScriptedCritic(answer, template="grounding"), tmp_path / "cache")
    other.critique(image, "a house")
    assert other.misses == 1
    assert image_hash(image) == image_hash(image.copy()) != image_hash(gradient(64, 64, 5))


def test_cache_skips_failures_and_survives_damage(tmp_path):
    failing = CachedCritic(ScriptedCritic("", error="endpoint down"), tmp_path)
    failing.critique(gradient(32, 32), "x")
    failing.critique(gradient(32, 32), "x")
    assert failing.critic.calls == 2  # failures are never cached
    good = CachedCritic(ScriptedCritic("no changes"), tmp_path)
    good.critique(gradient(32, 32), "x")
    for path in tmp_path.rglob("*.json"):
        path.write_text("{not json")
    assert good.critique(gradient(32, 32), "x").error is None and good.critic.calls == 2
    assert isinstance(CritiqueCache(tmp_path).get("0" * 64), type(None))


def test_draw_critique_marks_the_boxes():
    image = Image.new("RGB", (200, 100), (128, 128, 128))
    critique = Critique(
        edits=[Edit(Box(0.1, 0.2, 0.5, 0.9), "warm golden rim light on the couple, very long prompt text " * 3)],
        global_prompt="a couple at golden hour",
    )
    drawn = draw_critique(image, critique)
    assert drawn.width == 200 and drawn.height > 100  # a footer for the global prompt
    assert image.getpixel((20, 60)) == (128, 128, 128)  # the input is untouched
    assert drawn.getpixel((20, 60)) != (128, 128, 128)  # the box's left edge at x = 0.1 * 200
    assert drawn.getpixel((150, 50)) == (128, 128, 128)  # outside the box
    assert draw_critique(image, Critique(error="down")).height > 100


# --- the command line -----------------------------------------------------------------------------------------------


def test_cli_critique_json_and_draw(tiny_critic_dir, tmp_path, capsys):
    image_path, drawn_path = tmp_path / "in.png", tmp_path / "drawn.png"
    gradient(96, 64).save(image_path)
    args = ["critique", str(image_path), "--prompt", "a fox", "--critic", str(tiny_critic_dir), "--format", "json"]
    code = main([*args, "--device", "cpu", "--template", "json", "--max-new-tokens", "16", "--draw", str(drawn_path)])
    out = capsys.readouterr().out
    critique = Critique.from_dict(json.loads(out))
    assert code == 0 and critique.model == str(tiny_critic_dir) and critique.template_version.startswith("json-v1@")
    assert Image.open(drawn_path).size[0] == 96
    assert main(["critique", str(tmp_path / "missing.png"), "--prompt", "x", "--critic", "y"]) == 2
