"""LoRA files in the layouts users bring (diffusers, kohya, DiffSynth-Studio's), for FLUX.1 and Qwen-Image: each maps
key by key onto the tiny model's layers with the exact update, through ``painter.load_lora`` (diffusers' own
``load_lora_weights``) and through ``lora_io.load_lora``; keys that map nowhere are an error naming the format."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from artaug.painter import BasePainter, painter_class
from artaug.painter.lora import lora_format
from artaug.tiny import tiny_painter_path
from artaug.train.lora_io import load_lora, lora_delta, save_kohya, save_lora
from artaug.types import PaintRequest

REQUEST = PaintRequest("a red fox in the snow", height=64, width=64, num_inference_steps=2, max_sequence_length=16)
# (in, out) of block layers of the tiny models (width 32, MLP 128); FLUX's single-block MLP input is 4x wide.
FLUX = {
    "transformer_blocks.0.attn.to_q": (32, 32), "transformer_blocks.0.attn.to_k": (32, 32),
    "transformer_blocks.0.attn.to_v": (32, 32), "transformer_blocks.0.attn.add_q_proj": (32, 32),
    "transformer_blocks.0.attn.to_add_out": (32, 32), "transformer_blocks.0.ff.net.0.proj": (32, 128),
    "transformer_blocks.0.ff_context.net.2": (128, 32), "single_transformer_blocks.0.proj_out": (160, 32),
}  # fmt: skip
QWEN = {
    "transformer_blocks.0.attn.to_q": (32, 32), "transformer_blocks.1.attn.add_v_proj": (32, 32),
    "transformer_blocks.0.attn.to_out.0": (32, 32), "transformer_blocks.1.img_mlp.net.0.proj": (32, 128),
    "transformer_blocks.0.txt_mlp.net.2": (128, 32), "transformer_blocks.1.img_mod.1": (32, 192),
}  # fmt: skip
MODULES = {"flux": FLUX, "qwen-image": QWEN}


@pytest.fixture(scope="module", params=["flux", "qwen-image"])
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def painter(family) -> BasePainter:
    folder = str(tiny_painter_path(family))
    return painter_class(folder).from_pretrained(folder, device="cpu")


def random_lora(modules: dict[str, tuple[int, int]], rank: int = 4, scale: float = 2.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        m: (torch.randn(rank, i, generator=g) * 0.3, torch.randn(o, rank, generator=g) * 0.3, scale)
        for m, (i, o) in modules.items()
    }


def loaded_deltas(painter: BasePainter, adapter: str = "artaug") -> dict[str, torch.Tensor]:
    out = {}
    for name, layer in painter.pipe.transformer.named_modules():
        if hasattr(layer, "lora_A") and adapter in layer.lora_A:
            out[name] = lora_delta(layer.lora_A[adapter].weight, layer.lora_B[adapter].weight, layer.scaling[adapter])
    return out


def check_round_trip(painter: BasePainter, path, expected: dict[str, torch.Tensor]) -> None:
    """``painter.load_lora(path)`` adapts exactly ``expected``'s layers with their updates, changes the painting,
    and unloading restores the base; ``lora_io.load_lora`` reads the same updates."""
    base = painter.paint(REQUEST).latents
    painter.load_lora(str(path))
    try:
        deltas = loaded_deltas(painter)
        changed = painter.paint(REQUEST).latents
    finally:
        painter.unload_lora()
    nonzero = {m for m, d in deltas.items() if d.abs().max() > 0}
    assert nonzero == {m for m, d in expected.items() if d.abs().max() > 0}
    for module in nonzero:
        torch.testing.assert_close(deltas[module], expected[module])
    assert (changed - base).abs().max() > 1e-4
    torch.testing.assert_close(painter.paint(REQUEST).latents, base)
    read, _ = load_lora(path)
    for module, delta in expected.items():
        torch.testing.assert_close(lora_delta(*read[module]), delta)


def test_diffusers_layout(painter, family, tmp_path):
    lora = random_lora(MODULES[family])
    path = save_lora(tmp_path, lora)
    check_round_trip(painter, path, {m: lora_delta(*v) for m, v in lora.items()})


def test_kohya_layout(painter, family, tmp_path):
    lora = random_lora(MODULES[family], seed=1)
    metadata = {"modelspec.architecture": "qwen-image/lora"} if family == "qwen-image" else {}
    path = save_kohya(tmp_path / "k.safetensors", lora, metadata)
    prefix = "lora_unet_transformer_blocks_" if family == "qwen-image" else "lora_unet_double_blocks_"
    assert any(k.startswith(prefix) for k in load_file_keys(path))
    assert lora_format({k: torch.zeros(1) for k in load_file_keys(path)}) == "kohya"
    check_round_trip(painter, path, {m: lora_delta(*v) for m, v in lora.items()})


def load_file_keys(path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def diffsynth_file(family: str, tmp_path, seed: int = 2, default: bool = True):
    """A LoRA in DiffSynth-Studio's own layout (as its trainer saves them: peft's ``.default`` adapter name, no alpha)
    and the per-layer updates it means in diffusers' model. FLUX.1's fused layers: q|k|v and q|k|v|mlp rows."""
    g = torch.Generator().manual_seed(seed)
    tag = ".default" if default else ""
    tensors, expected = {}, {}

    def add(key: str, a: torch.Tensor, b: torch.Tensor, parts: list[tuple[str, int]]) -> None:
        tensors[f"{key}.lora_A{tag}.weight"], tensors[f"{key}.lora_B{tag}.weight"] = a, b
        start = 0
        for module, rows in parts:
            expected[module] = b[start : start + rows].double() @ a.double()
            start += rows

    if family == "flux":
        add("blocks.0.attn.a_to_qkv", torch.randn(4, 32, generator=g), torch.randn(96, 4, generator=g),
            [(f"transformer_blocks.0.attn.to_{x}", 32) for x in "qkv"])  # fmt: skip
        add("blocks.0.ff_b.0", torch.randn(4, 32, generator=g), torch.randn(128, 4, generator=g),
            [("transformer_blocks.0.ff_context.net.0.proj", 128)])  # fmt: skip
        add("blocks.0.norm1_a.linear", torch.randn(4, 32, generator=g), torch.randn(192, 4, generator=g),
            [("transformer_blocks.0.norm1.linear", 192)])  # fmt: skip
        parts = [*((f"single_transformer_blocks.0.attn.to_{x}", 32) for x in "qkv"),
                 ("single_transformer_blocks.0.proj_mlp", 128)]  # fmt: skip
        add("single_blocks.0.to_qkv_mlp", torch.randn(4, 32, generator=g), torch.randn(224, 4, generator=g), parts)
    else:
        for module, (i, o) in QWEN.items():
            add(module, torch.randn(4, i, generator=g), torch.randn(o, 4, generator=g), [(module, o)])
    path = tmp_path / f"diffsynth-{family}.safetensors"
    save_file({k: (v * 0.3).contiguous() for k, v in tensors.items()}, str(path))
    return path, {m: d * 0.09 for m, d in expected.items()}


@pytest.mark.parametrize("default", [True, False])
def test_diffsynth_layout_of_the_released_artaug_loras(painter, family, tmp_path, default):
    path, expected = diffsynth_file(family, tmp_path, default=default)
    assert lora_format({k: torch.zeros(1) for k in load_file_keys(path)}) == "diffsynth"
    check_round_trip(painter, path, expected)


def test_keys_that_map_nowhere_are_an_error_naming_the_format(painter, family, tmp_path):
    bad = tmp_path / "bad.safetensors"
    if family == "flux":
        save_file({"blocks.0.attn.a_to_zzz.lora_A.weight": torch.ones(4, 32),
                   "blocks.0.attn.a_to_zzz.lora_B.weight": torch.ones(32, 4)}, str(bad))  # fmt: skip
        match = "DiffSynth-Studio layer blocks.0.attn.a_to_zzz maps to no FLUX.1 layer"
    else:
        save_file({"transformer_blocks.7.attn.to_q.lora_A.weight": torch.ones(4, 32),
                   "transformer_blocks.7.attn.to_q.lora_B.weight": torch.ones(32, 4)}, str(bad))  # fmt: skip
        match = r"DiffSynth-Studio format\) adapts transformer_blocks.7.attn.to_q, which the painter lacks"
    with pytest.raises(ValueError, match=match):
        painter.load_lora(str(bad))
    wide = random_lora({next(iter(MODULES[family])): (48, 48)})  # another model's width
    kohya = save_kohya(tmp_path / "wide.safetensors", wide, {"modelspec.architecture": f"{family}/lora"})
    with pytest.raises(ValueError, match=r"\(kohya format\) does not fit the painter"):
        painter.load_lora(str(kohya))
    assert not getattr(painter.pipe.transformer, "peft_config", {})  # nothing half-loaded stays behind
