"""A closed world where the painter is trained here and the method's effects can be measured on a CPU.

Procedural 128 x 128 scenes of circles, squares and triangles in six colours on a 3 x 3 grid, with a prompt grammar in
GenEval's six categories; a FLUX-layout painter trained on those scenes by artaug's own flow-matching code; a
detector that reads paintings back; a metric (GenEval's all-requirements rule) and a critic that answers in Qwen2-VL's
grounding format. The world measures whether critique rounds and LoRAs make *these* paintings match *these* prompts
better; it says nothing about FLUX.1-dev's image quality.

- ``grammar``: ``ObjectSpec``, ``SceneSpec``, ``to_prompt``, ``parse_prompt``, the splits and ``eval_items``;
- ``scenes``: ``layout(spec, rng)``, ``render(scene)``;
- ``detect``: ``detect(image) -> list[Detection]``;
- ``metric``: ``check``, ``judge_image``, ``accuracy_by_category``, ``WorldScorer`` (the judge's scorer signature);
- ``critic``: ``WorldCritic`` (an ``artaug.critic.base.Critic``), ``plan_fixes``;
- ``build``: ``python -m artaug.world.build`` trains the painter folder; ``world_painter_path()`` is the committed one;
- ``bench``: ``python -m artaug.world.bench`` measures one-pass accuracy and critique rounds.
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).parent / "model"


def world_painter_path() -> Path:
    """The committed, pre-built world painter folder (``FluxPainter.from_pretrained(world_painter_path())``)."""
    if not (MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(f"no world painter at {MODEL_DIR}; build one with `python -m artaug.world.build`")
    return MODEL_DIR


# The world's painter at the size and sequence lengths it was trained for, with the world's detector as the critic.
WORLD_SETTINGS = {
    "painter.height": 128,
    "painter.width": 128,
    "painter.num_inference_steps": 20,
    "painter.max_sequence_length": 16,
    "loop.region_max_sequence_length": 16,
    "critic.model": "world",
}


def world_overrides() -> dict[str, object]:
    """Config overrides that paint with the committed world painter and critique with the world's detector."""
    return {**WORLD_SETTINGS, "painter.model": str(world_painter_path())}


__all__ = ["MODEL_DIR", "WORLD_SETTINGS", "world_overrides", "world_painter_path"]
