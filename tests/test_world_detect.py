"""The world detector finds every object of a rendered scene, with its colour, shape and cell, also on degraded
renders (blur, noise, colour drift, lost resolution): the defects of a small VAE's paintings."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from artaug.world.detect import Detection, detect
from artaug.world.grammar import CATEGORIES, EMPTY_PROMPT, parse_prompt, split_prompts
from artaug.world.scenes import SIZE, Scene, layout, render


def scenes(count: int, seed: int) -> list[Scene]:
    """Scenes of every category (and plain backgrounds), from training prompts."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        category = CATEGORIES[i % len(CATEGORIES)]
        prompt = EMPTY_PROMPT if i % 13 == 12 else rng.choice(split_prompts(category, "train"))
        out.append(layout(parse_prompt(prompt), rng))
    return out


def truth(scene: Scene) -> list[tuple[str, str, str]]:
    return sorted((s.shape, s.colour, s.place) for s in scene.shapes)


def found(detections: list[Detection]) -> list[tuple[str, str, str]]:
    return sorted((d.shape, d.colour, d.place()) for d in detections)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


DEGRADATIONS = {
    "clean": lambda im, rng: im,
    "blur": lambda im, rng: im.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 2.0))),
    "noise": lambda im, rng: _image(
        _pixels(im) + np.random.default_rng(rng.randrange(1000)).normal(0, 12, (SIZE, SIZE, 3))
    ),
    "colour drift": lambda im, rng: _image(_pixels(im) * np.array([rng.uniform(0.85, 1.1) for _ in range(3)])),
    "darker": lambda im, rng: _image(_pixels(im) * rng.uniform(0.75, 0.9)),
    "half resolution": lambda im, rng: im.resize((SIZE // 2, SIZE // 2), Image.Resampling.BILINEAR).resize(
        (SIZE, SIZE), Image.Resampling.BILINEAR
    ),
}


@pytest.mark.parametrize("degradation", DEGRADATIONS)
def test_detector_recovers_every_object(degradation):
    rng = random.Random(degradation)
    for scene in scenes(40, seed=len(degradation)):
        image = DEGRADATIONS[degradation](render(scene), rng)
        assert found(detect(image)) == truth(scene), (degradation, scene)


def test_detections_describe_their_objects():
    for scene in scenes(20, seed=5):
        detections = detect(render(scene))
        for shape in scene.shapes:
            (hit,) = [d for d in detections if d.box[0] <= shape.cx <= d.box[2] and d.box[1] <= shape.cy <= d.box[3]]
            assert abs((hit.box[2] - hit.box[0]) - shape.extent) <= 3 and hit.shape_iou > 0.8


def test_formless_paint_is_a_blob_and_specks_are_ignored():
    canvas = np.full((SIZE, SIZE, 3), 230.0)
    canvas[20:60, 20:30] = (214, 39, 40)  # a bar: no world shape
    canvas[20:30, 30:60] = (214, 39, 40)
    canvas[100:104, 100:104] = (30, 90, 220)  # a speck
    (detection,) = detect(_image(canvas))
    assert detection.shape == "blob" and detection.colour == "red"


def test_touching_objects_of_two_colours_are_two_objects():
    canvas = np.full((SIZE, SIZE, 3), 230.0)
    canvas[40:70, 20:50] = (214, 39, 40)
    canvas[40:70, 50:80] = (30, 90, 220)
    assert [(d.colour, d.shape) for d in detect(_image(canvas))] == [("red", "square"), ("blue", "square")]
