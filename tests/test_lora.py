"""LoRA files and merging: diffusers and kohya formats load in diffusers alike; merge sums deltas exactly."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import FluxPipeline
from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers
from safetensors.torch import load_file

from artaug.cli import main
from artaug.train.lora_io import load_lora, lora_delta, read_metadata, save_kohya, save_lora, to_kohya
from artaug.train.merge import merge_loras, recompress

CALL = dict(height=64, width=64, num_inference_steps=2, max_sequence_length=16, output_type="pt")
# Every FLUX block layer the kohya naming covers, with the tiny model's (in, out) sizes (width 32, MLP 128).
TINY_DOUBLE = {
    "attn.to_q": (32, 32), "attn.to_k": (32, 32), "attn.to_v": (32, 32), "attn.to_out.0": (32, 32),
    "attn.add_q_proj": (32, 32), "attn.add_k_proj": (32, 32), "attn.add_v_proj": (32, 32),
    "attn.to_add_out": (32, 32), "ff.net.0.proj": (32, 128), "ff.net.2": (128, 32),
    "ff_context.net.0.proj": (32, 128), "ff_context.net.2": (128, 32),
}  # fmt: skip


def random_lora(modules: dict[str, tuple[int, int]], rank: int, scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    return {
        m: (torch.randn(rank, i, generator=g) * 0.3, torch.randn(o, rank, generator=g) * 0.3, scale)
        for m, (i, o) in modules.items()
    }


def tiny_lora(seed: int = 0, rank: int = 4, scale: float = 2.0, single_linear1: bool = False):
    modules = {f"transformer_blocks.0.{m}": shape for m, shape in TINY_DOUBLE.items()}
    modules["single_transformer_blocks.0.proj_out"] = (160, 32)
    if single_linear1:
        modules.update({f"single_transformer_blocks.0.attn.to_{x}": (32, 32) for x in "qkv"})
    return random_lora(modules, rank, scale, seed)


@pytest.fixture(scope="module")
def pipe(tiny_painter_dir) -> FluxPipeline:
    pipe = FluxPipeline.from_pretrained(tiny_painter_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def paint(pipe: FluxPipeline) -> torch.Tensor:
    return pipe("a cat on a red couch", generator=torch.Generator().manual_seed(0), **CALL).images


def loaded_deltas(pipe: FluxPipeline, adapter: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, layer in pipe.transformer.named_modules():
        if hasattr(layer, "lora_A") and adapter in layer.lora_A:
            w = lora_delta(layer.lora_A[adapter].weight, layer.lora_B[adapter].weight, layer.scaling[adapter])
            out[name] = w
    return out


def test_kohya_export_loads_in_diffusers_and_matches_diffusers_export(pipe, tmp_path):
    lora = tiny_lora()
    diffusers_file = save_lora(tmp_path / "d", lora, {"modelspec.title": "t"})
    kohya_file = save_kohya(tmp_path / "k", lora)
    assert all(k.startswith("lora_unet_") for k in to_kohya(lora))
    assert "lora_unet_double_blocks_0_img_attn_qkv.alpha" in to_kohya(lora)
    base = paint(pipe)
    pipe.load_lora_weights(diffusers_file, adapter_name="d")
    from_diffusers, d_deltas = paint(pipe), loaded_deltas(pipe, "d")
    pipe.unload_lora_weights()
    pipe.load_lora_weights(kohya_file, adapter_name="k")
    from_kohya, k_deltas = paint(pipe), loaded_deltas(pipe, "k")
    pipe.unload_lora_weights()
    assert (from_diffusers - base).abs().max() > 1e-3
    torch.testing.assert_close(from_kohya, from_diffusers, atol=1e-5, rtol=0)
    assert set(k_deltas) == set(d_deltas) == set(lora)
    read_back, _ = load_lora(kohya_file)  # artaug reads kohya files through diffusers' converter
    for module, (a, b, s) in lora.items():
        torch.testing.assert_close(k_deltas[module], lora_delta(a, b, s))
        torch.testing.assert_close(d_deltas[module], lora_delta(a, b, s))
        torch.testing.assert_close(lora_delta(*read_back[module]), lora_delta(a, b, s))


@pytest.mark.parametrize("with_mlp", [True, False])
def test_kohya_fused_layers_at_flux_dev_geometry(with_mlp):
    """diffusers' kohya reader (ComfyUI's key scheme) splits our fused qkv / linear1 back into the exact updates.

    Its split sizes are FLUX.1-dev's (3072 wide, MLP 12288), so this runs at that geometry on factors only.
    """
    modules = {f"transformer_blocks.3.attn.{m}": (3072, 3072) for m in ("to_q", "to_k", "to_v", "add_q_proj")}
    modules.update({f"single_transformer_blocks.7.attn.to_{x}": (3072, 3072) for x in "qkv"})
    if with_mlp:
        modules["single_transformer_blocks.7.proj_mlp"] = (3072, 12288)
    lora = random_lora(modules, rank=2, scale=4.0, seed=1)
    converted = _convert_kohya_flux_lora_to_diffusers(to_kohya(lora))
    x = torch.randn(3072, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for module, (a, b, s) in lora.items():
        got_a = converted[f"transformer.{module}.lora_A.weight"].double()
        got_b = converted[f"transformer.{module}.lora_B.weight"].double()
        torch.testing.assert_close(got_b @ (got_a @ x), s * (b.double() @ (a.double() @ x)))
    # The parts of a fused layer that were not trained are present, with a zero update.
    for missing in ["transformer_blocks.3.attn.add_k_proj"] + (
        [] if with_mlp else ["single_transformer_blocks.7.proj_mlp"]
    ):
        got_b = converted[f"transformer.{missing}.lora_B.weight"]
        assert got_b.abs().max() == 0


def test_save_load_roundtrip_keeps_scale():
    lora = tiny_lora(scale=2.0)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = save_lora(d, lora, {"artaug.iteration": 3})
        loaded, meta = load_lora(path)
        assert json.loads(meta["lora_adapter_metadata"])["transformer.lora_alpha"] == 8.0
        assert meta["artaug.iteration"] == "3"
        assert read_metadata(path) == meta
    for module, (a, b, s) in lora.items():
        torch.testing.assert_close(lora_delta(*loaded[module]), lora_delta(a, b, s))


def test_metadata_copied_from_another_file_cannot_change_the_scale(tmp_path):
    original = tiny_lora(scale=2.0)
    _, stale = load_lora(save_lora(tmp_path / "a", original))  # says lora_alpha = 8 for rank 4
    merged = merge_loras([original])  # scale folded into B: alpha = rank
    loaded, meta = load_lora(save_lora(tmp_path / "b", merged, stale))
    assert json.loads(meta["lora_adapter_metadata"])["transformer.lora_alpha"] == 4.0
    for module, (a, b, s) in original.items():
        torch.testing.assert_close(lora_delta(*loaded[module]), lora_delta(a, b, s))


def test_merge_equals_weighted_sum_of_deltas():
    first = tiny_lora(seed=1, rank=4, scale=2.0)
    second = tiny_lora(seed=2, rank=3, scale=0.5, single_linear1=True)
    merged = merge_loras([first, second], weights=[1.0, -0.5])
    assert set(merged) == set(first) | set(second)
    for module, (a, b, s) in merged.items():
        assert a.shape[0] == 7
        expected = torch.zeros_like(lora_delta(a, b, s))
        if module in first:
            expected += lora_delta(*first[module])
        if module in second:
            expected -= 0.5 * lora_delta(*second[module])
        torch.testing.assert_close(lora_delta(a, b, s), expected, atol=1e-6, rtol=1e-6)


def test_recompress_reports_the_true_error_and_is_exact_at_full_rank():
    merged = merge_loras([tiny_lora(seed=1), tiny_lora(seed=2)])
    full = recompress(merged, rank=8)
    assert full.max_error < 1e-6
    low = recompress(merged, rank=2)
    for module, (a, b, s) in merged.items():
        dense = lora_delta(a, b, s)
        approx = lora_delta(*low.lora[module])
        assert low.lora[module][0].shape[0] == 2
        actual = float((dense - approx).norm() / dense.norm())
        assert abs(actual - low.errors[module]) < 1e-5
        # Eckart-Young: nothing of rank 2 does better than the truncated SVD of the dense update.
        sv = torch.linalg.svdvals(dense)
        assert abs(low.errors[module] - float(sv[2:].norm() / sv.norm())) < 1e-5
        torch.testing.assert_close(lora_delta(*full.lora[module]), dense, atol=1e-5, rtol=1e-5)
    assert 0 < low.mean_error <= low.max_error < 1


def test_lora_merge_command(tmp_path, capsys):
    first, second = tiny_lora(seed=1), tiny_lora(seed=2, scale=1.0)
    a = save_lora(tmp_path / "a", first)
    b = save_lora(tmp_path / "b", second)
    assert main(["lora", "merge", str(a), str(b), "--out", str(tmp_path / "c"), "--rank", "3"]) == 0
    out = capsys.readouterr().out
    assert "relative error" in out
    merged, meta = load_lora(tmp_path / "c")
    assert json.loads(meta["artaug.merged_from"])[0].endswith("a/pytorch_lora_weights.safetensors")
    assert all(a.shape[0] == 3 for a, _, _ in merged.values())
    assert main(["lora", "merge", str(a), str(b), "--out", str(tmp_path / "exact"), "--format", "both"]) == 0
    exact, _ = load_lora(tmp_path / "exact" / "pytorch_lora_weights.safetensors")
    module = "transformer_blocks.0.attn.to_out.0"
    torch.testing.assert_close(
        lora_delta(*exact[module]), lora_delta(*first[module]) + lora_delta(*second[module]), atol=1e-6, rtol=1e-6
    )
    assert (tmp_path / "exact" / "pytorch_lora_weights_kohya.safetensors").is_file()
    assert main(["lora", "kohya", str(a), "--out", str(tmp_path / "k.safetensors")]) == 0
    converted = _convert_kohya_flux_lora_to_diffusers(load_file(tmp_path / "k.safetensors"))
    got = lora_delta(
        converted[f"transformer.{module}.lora_A.weight"], converted[f"transformer.{module}.lora_B.weight"], 1.0
    )
    torch.testing.assert_close(got, lora_delta(*first[module]), atol=1e-6, rtol=1e-6)
