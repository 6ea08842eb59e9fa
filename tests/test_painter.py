"""FluxPainter on the tiny FLUX folder: the invariants of issue 2, loaded through the real ``from_pretrained`` path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline

from artaug.painter import FluxPainter, regions, start_index
from artaug.types import Box, Edit, Painting, PaintRequest

PROMPT = "a red fox in the snow"
OTHER = "a glass vase with sunflowers"
# Non-square on purpose: a row/column mix-up in the token masks would show.
BASE = PaintRequest(PROMPT, seed=3, height=64, width=128, num_inference_steps=3, max_sequence_length=16)
LEFT = Box(0.0, 0.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def painter(tiny_painter_dir) -> FluxPainter:
    return FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")


@pytest.fixture(scope="module")
def pipe(tiny_painter_dir) -> FluxPipeline:
    pipe = FluxPipeline.from_pretrained(str(tiny_painter_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def plain(painter) -> Painting:
    return painter.paint(BASE)


def _pixels(painting_or_image) -> np.ndarray:
    image = getattr(painting_or_image, "image", painting_or_image)
    return np.asarray(image)


def _stock(pipe: FluxPipeline, request: PaintRequest, **kwargs):
    return pipe(
        request.prompt,
        height=request.height,
        width=request.width,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        max_sequence_length=request.max_sequence_length,
        generator=torch.Generator("cpu").manual_seed(request.seed),
        **kwargs,
    )


# ---------------------------------------------------------------- no edits: exactly diffusers


def test_no_edits_equals_flux_pipeline_pixel_for_pixel(painter, pipe, plain):
    expected = _stock(pipe, BASE).images[0]
    assert plain.image.size == (128, 64)
    assert np.array_equal(_pixels(plain), _pixels(expected))
    latents = _stock(pipe, BASE, output_type="latent").images
    assert torch.equal(plain.latents, latents)
    assert plain.cost.steps == 3 and plain.cost.transformer_passes == 3 and plain.cost.seconds > 0
    assert plain.model == painter.model_id == str(painter.model_id)


def test_other_seed_gives_another_image(painter, plain):
    assert not np.array_equal(_pixels(painter.paint(BASE.replace(seed=4))), _pixels(plain))


def test_attention_mode_without_edits_equals_plain(painter, plain):
    painting = painter.paint(BASE.replace(regional="attention"))
    assert np.array_equal(_pixels(painting), _pixels(plain))


# ---------------------------------------------------------------- blend


def test_blend_local_prompt_equal_to_global_gives_the_same_image(painter, plain):
    painting = painter.paint(BASE.replace(regional="blend", edits=(Edit(LEFT, PROMPT),)))
    assert np.array_equal(_pixels(painting), _pixels(plain))
    assert torch.equal(painting.latents, plain.latents)
    # The repeated prompt reuses the global prediction: no extra pass.
    assert painting.cost.transformer_passes == plain.cost.transformer_passes


def test_blend_different_local_prompt_changes_the_image(painter, plain):
    painting = painter.paint(BASE.replace(regional="blend", edits=(Edit(LEFT, OTHER),)))
    assert not np.array_equal(_pixels(painting), _pixels(plain))
    assert painting.cost.transformer_passes == 2 * 3
    # The change concentrates in the box (left half of the token grid).
    change = (painting.latents - plain.latents).abs().amax(-1).reshape(4, 8)
    assert change[:, :4].mean() > 10 * change[:, 4:].mean()


def _two_edits() -> PaintRequest:
    return BASE.replace(
        regional="blend",
        edits=(
            Edit(Box(0.0, 0.0, 0.25, 0.5), OTHER),
            Edit(Box(0.5, 0.5, 0.75, 1.0), "a steam train crossing a bridge", weight=3.0),
        ),
    )


def test_blend_prediction_outside_hard_masks_is_the_global_one(painter):
    request = _two_edits()
    latents = torch.randn(1, 32, 64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(700.0)
    inside = regions.token_masks([e.box for e in request.edits], 64, 128).sum(0) > 0
    assert 0 < inside.sum() < 32
    v_global = painter.predict(BASE, latents, t)
    painter.max_batch = 1  # one sequence per call: the global row is computed exactly as without edits
    try:
        v_exact = painter.predict(request, latents, t)
    finally:
        painter.max_batch = None
    assert torch.equal(v_exact[:, ~inside], v_global[:, ~inside])
    assert (v_exact[:, inside] - v_global[:, inside]).abs().amax(-1).min() > 0
    # One batched call of 3 sequences: equal up to the last bits of batched matmuls.
    v_batched = painter.predict(request, latents, t)
    torch.testing.assert_close(v_batched, v_exact, rtol=1e-5, atol=1e-5)


def test_blend_with_blur_spreads_beyond_the_box(painter):
    request = _two_edits()
    latents = torch.randn(1, 32, 64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor(500.0)
    inside = regions.token_masks([e.box for e in request.edits], 64, 128).sum(0) > 0
    v_global = painter.predict(BASE, latents, t)
    v_blurred = painter.predict(request.replace(blur_sigma=1.0), latents, t)
    outside_change = (v_blurred[:, ~inside] - v_global[:, ~inside]).abs().amax(-1)
    assert (outside_change > 1e-4).any()


def test_blend_chunked_batches_match_one_batch(painter):
    request = _two_edits()
    whole = painter.paint(request)
    painter.max_batch = 2
    try:
        chunked = painter.paint(request)
    finally:
        painter.max_batch = None
    assert whole.cost.transformer_passes == chunked.cost.transformer_passes == 3 * 3
    torch.testing.assert_close(chunked.latents, whole.latents, rtol=1e-4, atol=1e-4)


def test_blend_halves_its_batch_on_out_of_memory(painter, monkeypatch, caplog):
    request = _two_edits()
    whole = painter.paint(request)
    real = painter._transformer

    def small_memory(latents, *args, **kwargs):
        if latents.shape[0] > 1:
            raise torch.OutOfMemoryError("pretend: 2 sequences do not fit")
        return real(latents, *args, **kwargs)

    monkeypatch.setattr(painter, "_transformer", small_memory)
    try:
        halved = painter.paint(request)
        assert painter.max_batch == 1
    finally:
        painter.max_batch = None
    assert "out of memory" in caplog.text
    assert halved.cost.transformer_passes == whole.cost.transformer_passes
    torch.testing.assert_close(halved.latents, whole.latents, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- attention


def test_attention_mode_equals_stock_pipeline_with_the_joint_mask(painter, pipe, plain):
    """The installed processors must do exactly what FluxPipeline does with the same sequence and additive mask
    (the edits' weights in it: the default 10 and another)."""
    request = BASE.replace(
        regional="attention",
        region_max_sequence_length=8,
        edits=(Edit(LEFT, OTHER), Edit(Box(0.5, 0, 1, 0.5), "x", weight=2.5)),
    )
    before = dict(painter.pipe.transformer.attn_processors)
    painter.attention_impl = "mask"  # the reference: the mask handed to the pipeline's own processors
    try:
        painting = painter.paint(request)
    finally:
        painter.attention_impl = "lse"
    after = painter.pipe.transformer.attn_processors
    assert all(after[name] is proc for name, proc in before.items())  # restored, same objects

    # Each local prompt at its own token length (capped by region_max_sequence_length), not padded.
    lengths = [painter.local_prompt_length(e.prompt, 8) for e in request.edits]
    assert lengths[1] < 8 and all(n <= 8 for n in lengths)
    with torch.no_grad():  # as inside FluxPipeline.__call__ (grad mode changes T5's kernels in the last bits)
        embeds, pooled, _ = pipe.encode_prompt(PROMPT, prompt_2=None, max_sequence_length=16)
        locals_ = [
            pipe.encode_prompt(e.prompt, prompt_2=None, max_sequence_length=n)[0]
            for e, n in zip(request.edits, lengths, strict=True)
        ]
    masks = regions.token_masks([e.box for e in request.edits], 64, 128)
    mask = regions.joint_attention_bias(16, lengths, masks, [e.weight for e in request.edits])
    expected = pipe(
        prompt_embeds=torch.cat([embeds, *locals_], dim=1),
        pooled_prompt_embeds=pooled,
        height=64,
        width=128,
        num_inference_steps=3,
        generator=torch.Generator("cpu").manual_seed(3),
        joint_attention_kwargs={"attention_mask": mask[None, None]},
        output_type="latent",
    ).images
    assert torch.equal(painting.latents, expected)
    assert painting.cost.transformer_passes == 3  # one pass per step, whatever the number of edits
    assert not np.array_equal(_pixels(painting), _pixels(plain))


@pytest.mark.parametrize("impl", ["lse", "grouped"])
def test_attention_implementations_equal_the_masked_reference(painter, impl):
    request = BASE.replace(
        regional="attention",
        region_max_sequence_length=8,
        edits=(Edit(LEFT, OTHER), Edit(Box(0.25, 0.25, 0.9, 1.0), "a dragon over a castle")),  # overlapping boxes
    )
    latents = torch.randn(1, 32, 64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor(800.0)
    assert painter.attention_impl == "lse"  # the default
    try:
        painter.attention_impl = impl
        fast_v, fast = painter.predict(request, latents, t), painter.paint(request)
        painter.attention_impl = "mask"
        masked_v, masked = painter.predict(request, latents, t), painter.paint(request)
    finally:
        painter.attention_impl = "lse"
    torch.testing.assert_close(fast_v, masked_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.latents, masked.latents, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fast_v, painter.predict(BASE, latents, t), atol=1e-4)  # the regions do act


def test_attention_processors_restored_after_an_error(painter):
    before = dict(painter.pipe.transformer.attn_processors)

    def boom(step: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        painter.paint(BASE.replace(regional="attention", edits=(Edit(LEFT, OTHER),)), progress=boom)
    after = painter.pipe.transformer.attn_processors
    assert all(after[name] is proc for name, proc in before.items())


# ---------------------------------------------------------------- strength and progress


def test_strength_half_runs_half_the_steps_from_init(painter, plain):
    steps: list[tuple[int, int]] = []
    request = BASE.replace(num_inference_steps=4, strength=0.5, regional="blend", edits=(Edit(LEFT, OTHER),))
    first = painter.paint(BASE.replace(num_inference_steps=4))
    revised = painter.paint(request, init=first, progress=lambda i, n: steps.append((i, n)))
    assert revised.cost.steps == 2 and revised.cost.transformer_passes == 2 * 2
    assert steps == [(1, 2), (2, 2)]
    assert not torch.equal(revised.latents, first.latents)
    # Without latents the init image is VAE-encoded instead: still 2 steps, another (nearby) start.
    from_image = painter.paint(request, init=Painting(first.image, first.request))
    assert from_image.cost.steps == 2
    assert not torch.equal(from_image.latents, revised.latents)


@pytest.mark.parametrize(("steps", "strength", "start"), [(4, 0.5, 2), (4, 1.0, 0), (28, 0.3, 19), (4, 0.01, 3)])
def test_start_index(steps, strength, start):
    assert start_index(steps, strength) == start


def test_strength_one_with_init_is_a_full_repaint_from_the_seed(painter, plain):
    painting = painter.paint(BASE, init=plain)
    assert painting.cost.steps == 3
    assert torch.equal(painting.latents, plain.latents)


def test_progress_is_called_after_every_step(painter):
    calls: list[tuple[int, int]] = []
    painter.paint(BASE, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_prompt_cache_is_exact_and_skips_encoding(painter, plain, monkeypatch):
    painter.clear_prompt_cache()
    painter.paint(BASE)
    calls = []
    original = painter.pipe.encode_prompt
    monkeypatch.setattr(painter.pipe, "encode_prompt", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = painter.paint(BASE)
    assert calls == [] and torch.equal(again.latents, plain.latents)
    painter.clear_prompt_cache()
    painter.paint(BASE)
    assert calls == [1]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("height", "width"), [(72, 64), (64, 100)])
def test_size_not_multiple_of_16_is_an_error(painter, height, width):
    with pytest.raises(ValueError, match="multiples of 16"):
        painter.paint(BASE.replace(height=height, width=width))


def test_bad_requests_are_errors(painter, plain):
    with pytest.raises(ValueError, match="non-empty"):
        PaintRequest("  ")
    with pytest.raises(ValueError, match="inside the image"):
        Edit(Box(0.5, 0.5, 1.2, 1.0), OTHER)
    with pytest.raises(ValueError, match="inside the image"):
        Box(0.5, 0.5, 0.5, 0.7)  # empty
    with pytest.raises(ValueError, match="pass init="):
        painter.paint(BASE.replace(strength=0.5))
    with pytest.raises(ValueError, match="max_sequence_length"):
        painter.paint(BASE.replace(max_sequence_length=513))
    with pytest.raises(ValueError, match="init painting is"):
        painter.paint(BASE.replace(height=128, strength=0.5), init=plain)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FluxPainter.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        FluxPainter.from_pretrained(str(tmp_path))


def test_no_hub_access_says_how_to_use_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(OSError, match="--painter /path/to/FLUX.1-dev"):
        FluxPainter.from_pretrained("artaug-offline-test/no-such-model", device="cpu")


def test_offload_options_are_checked_before_loading(tmp_path):
    with pytest.raises(ValueError, match="accelerator"):
        FluxPainter.from_pretrained(str(tmp_path / "never-read"), device="cpu", offload="model")
    with pytest.raises(ValueError, match="offload must be one of"):
        FluxPainter.from_pretrained(str(tmp_path / "never-read"), offload="disk")  # type: ignore[arg-type]


def test_painter_wraps_an_existing_pipeline(pipe, tiny_painter_dir):
    painter = FluxPainter(pipe, "my-flux")
    assert painter.pipe is pipe and painter.model_id == "my-flux"
    assert FluxPainter(pipe).model_id == str(tiny_painter_dir)  # from the pipeline's own name_or_path
    with pytest.raises(ValueError, match="max_batch"):
        FluxPainter(pipe, max_batch=0)


# ---------------------------------------------------------------- LoRA through diffusers' API


def test_lora_load_fuse_unload_round_trip(tiny_painter_dir, tmp_path):
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    # A random LoRA, saved the way diffusers saves LoRAs.
    maker = FluxPipeline.from_pretrained(str(tiny_painter_dir))
    maker.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"]))
    with torch.no_grad():
        for name, param in maker.transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    FluxPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(maker.transformer))

    painter = FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")
    base = painter.paint(BASE)
    painter.load_lora(str(tmp_path))
    with_lora = painter.paint(BASE)
    assert (with_lora.latents - base.latents).abs().max() > 1e-3
    painter.fuse_lora()
    fused = painter.paint(BASE)
    torch.testing.assert_close(fused.latents, with_lora.latents, rtol=1e-4, atol=1e-4)
    painter.unload_lora()
    restored = painter.paint(BASE)
    torch.testing.assert_close(restored.latents, base.latents, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no LoRA loaded"):
        painter.fuse_lora()


def test_lse_attention_in_bfloat16_stays_within_one_ulp_of_the_reference(tiny_painter_dir):
    """In bfloat16 the log-sum-exp merge may round differently from one masked softmax: within about one bfloat16 ulp
    of the reference (values of magnitude ~2 here; a bfloat16 ulp at 2 is 2**-6 = 0.0156)."""
    painter = FluxPainter.from_pretrained(str(tiny_painter_dir), dtype=torch.bfloat16, device="cpu")
    request = BASE.replace(
        regional="attention",
        region_max_sequence_length=8,
        edits=(Edit(LEFT, OTHER), Edit(Box(0.25, 0.25, 0.9, 1.0), "a dragon over a castle")),
    )
    latents = torch.randn(1, 32, 64, generator=torch.Generator().manual_seed(2))
    fast = painter.predict(request, latents, torch.tensor(800.0)).float()
    painter.attention_impl = "mask"
    reference = painter.predict(request, latents, torch.tensor(800.0)).float()
    torch.testing.assert_close(fast, reference, rtol=2e-2, atol=2e-2)
