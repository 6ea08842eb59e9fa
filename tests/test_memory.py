"""Memory presets: what each card size turns on, a critic that waits on the CPU, and an out-of-memory error that
names the next preset. (How much memory each preset really needs is measured by bench/gpu.sh on a GPU, not here.)"""

from __future__ import annotations

import pytest
import torch

from artaug.cli import describe
from artaug.config import MEMORY_PRESETS, Config, load_config
from artaug.painter import FluxPainter
from artaug.types import PaintRequest


@pytest.mark.parametrize("preset", list(MEMORY_PRESETS))
def test_a_preset_fills_in_its_settings_and_explicit_ones_win(preset):
    config = load_config(None, {"painter.memory": preset, "painter.device": "cuda"})
    for dotted, value in MEMORY_PRESETS[preset].items():
        section, key = dotted.split(".")
        assert getattr(getattr(config, section), key) == value
    explicit = load_config(None, {"painter.memory": preset, "painter.device": "cuda", "critic.park": False})
    assert explicit.critic.park is False
    assert Config().updated({"painter.memory": preset, "painter.device": "cuda"}) == config


def test_smaller_cards_get_more_offload():
    order = ["80gb", "48gb", "24gb", "16gb"]
    offload = [MEMORY_PRESETS[p].get("painter.offload", "none") for p in order]
    assert offload == ["none", "none", "model", "sequential"]
    assert all(MEMORY_PRESETS[p].get("critic.park") for p in order[1:])


@pytest.mark.parametrize(
    ("preset", "advice"),
    [("none", "--memory 24gb"), ("80gb", "--memory 48gb"), ("48gb", "--memory 24gb"), ("24gb", "--memory 16gb"),
     ("16gb", "paint smaller images")],
)  # fmt: skip
def test_out_of_memory_names_the_next_preset(tiny_painter_dir, monkeypatch, preset, advice):
    painter = FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")
    painter.memory = preset

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(painter, "_paint", oom)
    with pytest.raises(torch.OutOfMemoryError) as caught:
        painter.paint(PaintRequest("a fox", height=64, width=64, num_inference_steps=1))
    assert advice in str(caught.value) and "Tried to allocate" in str(caught.value)
    code, line = describe(caught.value)
    assert code == 1 and advice in line


def test_a_parked_critic_visits_its_device_only_to_answer(tiny_critic_dir, monkeypatch):
    from PIL import Image

    from artaug.critic.local import LocalCritic

    critic = LocalCritic.from_pretrained(tiny_critic_dir, device="cpu", max_new_tokens=4, park=True)
    moves: list[str] = []
    real_to = critic.model.to

    def to(device, *args, **kwargs):
        moves.append(str(device))
        return real_to(device, *args, **kwargs)

    monkeypatch.setattr(critic.model, "to", to)
    critic.critique(Image.new("RGB", (56, 56), "white"), "a fox")
    assert moves == ["cpu", "cpu"]  # to its run device (the CPU here, a GPU in real use) and back to the CPU
    assert next(critic.model.parameters()).device.type == "cpu" and critic.device.type == "cpu"
    moves.clear()
    unparked = LocalCritic.from_pretrained(tiny_critic_dir, device="cpu", max_new_tokens=4)
    monkeypatch.setattr(unparked.model, "to", to)
    unparked.critique(Image.new("RGB", (56, 56), "white"), "a fox")
    assert moves == []


def test_vae_tiling_is_turned_on_by_the_setting(tiny_painter_dir):
    config = load_config(None, {"painter.model": str(tiny_painter_dir), "painter.vae_tiling": True})
    painter = FluxPainter.from_config(config.painter)
    assert painter.pipe.vae.use_tiling
    painting = painter.paint(PaintRequest("a fox", height=64, width=64, num_inference_steps=1))
    assert painting.image.size == (64, 64)


def test_fp8_weights_paint_close_to_full_precision(tiny_painter_dir):
    """torchao's weight-only float8 on the transformer blocks' linear layers (its kernels run on the CPU too): the
    weights really are float8, and the painting stays close to the full-precision one."""
    pytest.importorskip("torchao", reason="the fp8 extra is not installed")
    request = PaintRequest("a red fox in the snow", height=64, width=64, num_inference_steps=2, max_sequence_length=16)
    base = load_config(None, {"painter.model": str(tiny_painter_dir), "painter.device": "cpu"}).painter
    full = FluxPainter.from_config(base).paint(request)
    painter = FluxPainter.from_config(base.replace(quantize="fp8"))
    weight = painter.pipe.transformer.transformer_blocks[0].attn.to_q.weight
    assert "float8" in str(getattr(weight, "qdata", weight).dtype)
    fp8 = painter.paint(request)
    assert torch.isfinite(fp8.latents).all()
    error = (fp8.latents - full.latents).abs().mean() / full.latents.abs().mean()
    assert 0 < error < 0.1, error  # float8 rounds (error > 0) but keeps the painting (within 10% on average)
