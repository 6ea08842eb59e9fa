"""``artaug paint`` on the tiny FLUX folder, and the PNG metadata it writes."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from PIL import Image

from artaug.cli import build_parser, main
from artaug.cli.paint import parse_edit
from artaug.pngmeta import a1111_parameters, painting_provenance, read_png_metadata, save_png
from artaug.types import Box, Cost, Edit, Painting, PaintRequest

TINY_ARGS = ["--height", "64", "--width", "128", "--steps", "2", "--max-sequence-length", "16", "--seed", "5"]


def test_paint_writes_a_png_equal_to_diffusers_with_metadata(tiny_painter_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "plain.png"
    code = main(["paint", "a red fox in the snow", "--painter", str(tiny_painter_dir), "--rounds", "0", *TINY_ARGS,
                 "--guidance-scale", "4", "--output", str(out)])  # fmt: skip
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    pipe = FluxPipeline.from_pretrained(str(tiny_painter_dir))
    expected = pipe(
        "a red fox in the snow",
        height=64,
        width=128,
        num_inference_steps=2,
        guidance_scale=4.0,
        max_sequence_length=16,
        generator=torch.Generator("cpu").manual_seed(5),
    ).images[0]
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(expected))

    parameters, provenance = read_png_metadata(out)
    prompt_line, settings = parameters.split("\n")
    assert prompt_line == "a red fox in the snow"
    assert settings.startswith("Steps: 2, Sampler: Euler (flow match), CFG scale: 4, Seed: 5, Size: 128x64, Model: ")
    assert str(tiny_painter_dir) in settings
    assert provenance["prompt"] == "a red fox in the snow"
    assert (provenance["seed"], provenance["steps"], provenance["size"]) == (5, 2, [128, 64])
    assert provenance["model"] == str(tiny_painter_dir)
    assert provenance["edits"] == [] and provenance["regional"] is None
    assert set(provenance["versions"]) >= {"artaug", "torch", "diffusers", "transformers"}
    assert PaintRequest.from_dict(provenance["request"]).seed == 5
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no temp file


@pytest.mark.parametrize("mode", ["blend", "attention"])
def test_paint_with_edits_records_them(tiny_painter_dir, tmp_path, mode):
    out = tmp_path / f"{mode}.png"
    code = main(["paint", "a red fox in the snow", "--painter", str(tiny_painter_dir), *TINY_ARGS,
                 "--edit", "0,0,0.5,1=a glass vase with sunflowers", "--edit", "0.5,0.25,1,0.75=a dragon",
                 "--regional", mode, "--output", str(out)])  # fmt: skip
    assert code == 0
    parameters, provenance = read_png_metadata(out)
    assert f"Regional: {mode}, Edits: 2" in parameters
    assert provenance["regional"] == mode
    assert [e["prompt"] for e in provenance["edits"]] == ["a glass vase with sunflowers", "a dragon"]
    assert provenance["edits"][1]["box"] == {"x0": 0.5, "y0": 0.25, "x1": 1.0, "y1": 0.75}
    passes_per_step = 3 if mode == "blend" else 1
    assert provenance["cost"]["transformer_passes"] == 2 * passes_per_step


def test_defaults_match_flux_pipeline():
    from artaug.cli.paint import resolve

    args = build_parser().parse_args(["paint", "a cat"])
    config = resolve(args)
    painter = config.painter
    assert (painter.height, painter.width, painter.num_inference_steps, painter.guidance_scale) == (
        1024,
        1024,
        28,
        3.5,
    )
    assert painter.max_sequence_length == 512 and painter.model == "black-forest-labs/FLUX.1-dev"
    assert config.critic.model == "Qwen/Qwen2-VL-7B-Instruct" and config.loop.rounds == 2
    assert args.edit == [] and painter.offload == "none"


def test_edits_belong_to_rounds_zero(tmp_path, capsys):
    assert (
        main(["paint", "a cat", "--rounds", "2", "--edit", "0,0,1,1=a dog", "--output", str(tmp_path / "x.png")]) == 2
    )
    assert "--edit is for --rounds 0" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,0,1,1", "x0,y0,x1,y1=local prompt"),
        ("0,0,1,1=  ", "x0,y0,x1,y1=local prompt"),
        ("0,0,1=a cat", "need 4 coordinates"),
        ("0,0,1.5,1=a cat", "not inside the image"),
        ("0.5,0,0.5,1=a cat", "not inside the image"),
        ("a,b,c,d=a cat", "could not convert"),
    ],
)
def test_bad_edits_are_usage_errors(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_edit(text)


def test_bad_edit_on_the_command_line_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["paint", "a cat", "--edit", "0,0,2,1=x"])
    assert exc.value.code == 2
    assert "not inside the image" in capsys.readouterr().err


def test_bad_size_and_missing_folder_are_clear_errors(tiny_painter_dir, tmp_path, capsys):
    assert main(["paint", "a cat", "--painter", str(tmp_path / "missing"), "--output", str(tmp_path / "a.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    args = ["paint", "a cat", "--painter", str(tiny_painter_dir), "--height", "72", "--width", "64", "--steps", "1"]
    assert main([*args, "--max-sequence-length", "16", "--output", str(tmp_path / "b.png")]) == 2
    assert "multiple of 16" in capsys.readouterr().err
    assert main(["paint", " ", "--output", str(tmp_path / "c.png")]) == 2
    assert "non-empty" in capsys.readouterr().err


def test_pngmeta_round_trip_and_a1111_format(tmp_path):
    request = PaintRequest(
        "a couple, dancing\non a pier",
        seed=42,
        height=768,
        width=1024,
        num_inference_steps=20,
        guidance_scale=3.5,
        edits=(Edit(Box(0, 0, 0.5, 0.5), "warm rim light"),),
        regional="attention",
        strength=0.6,
    )
    text = a1111_parameters(request, "org/model:v1")
    assert text == (
        "a couple, dancing\non a pier\n"
        'Steps: 20, Sampler: Euler (flow match), CFG scale: 3.5, Seed: 42, Size: 1024x768, Model: "org/model:v1", '
        "Regional: attention, Edits: 1, Denoising strength: 0.6"
    )
    image = Image.new("RGB", (16, 8), (10, 20, 30))
    record = painting_provenance(Painting(image, request, Cost(4, 2, 1.5), model="org/model:v1"), round=1)
    path = save_png(image, tmp_path / "x.png", text, record)
    parameters, provenance = read_png_metadata(path)
    assert parameters == text and provenance == record
    assert provenance["round"] == 1 and provenance["edits"][0]["prompt"] == "warm rim light"
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(image))
    plain = tmp_path / "plain.png"
    image.save(plain)
    assert read_png_metadata(plain) == (None, None)
