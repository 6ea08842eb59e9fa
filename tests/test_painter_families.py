"""The painter contract, one parametrised matrix over every family (FLUX.1-dev, FLUX.1-schnell, Qwen-Image), each on
its tiny folder loaded through the real ``from_pretrained``: no edits is the family's own diffusers pipeline pixel for
pixel; an identity edit changes nothing; blend leaves every token outside the boxes alone; the attention
implementations equal the masked reference; and the mask's locality holds token by token in every kind of block."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artaug.painter import BasePainter, FluxPainter, QwenImagePainter, painter_class, regions
from artaug.painter.qwen import NEGATIVE_PROMPT
from artaug.tiny import tiny_painter_path
from artaug.types import Box, Edit, Painting, PaintRequest

FAMILIES = ("flux", "flux-schnell", "qwen-image")
PROMPT = "a red fox in the snow"
OTHER = "a glass vase with sunflowers"
# Non-square on purpose: a row/column mix-up in the token masks would show. 64x128 px is 4x8 tokens.
BASE = PaintRequest(PROMPT, seed=3, height=64, width=128, num_inference_steps=3, max_sequence_length=16)
LEFT = Box(0.0, 0.0, 0.5, 1.0)
TWO = (Edit(LEFT, OTHER), Edit(Box(0.25, 0.25, 0.9, 1.0), "a dragon over a castle"))  # overlapping boxes


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def painter(family) -> BasePainter:
    folder = str(tiny_painter_path(family))
    return painter_class(folder).from_pretrained(folder, device="cpu")


@pytest.fixture(scope="module")
def stock(painter):
    pipe = type(painter.pipe).from_pretrained(painter.model_id)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def plain(painter) -> Painting:
    return painter.paint(BASE)


def pixels(painting) -> np.ndarray:
    return np.asarray(painting.image)


def stock_call(pipe, request: PaintRequest, **kwargs):
    """The family pipeline's own call for ``request``: FLUX's distilled guidance, Qwen-Image's true CFG."""
    if type(pipe).__name__ == "QwenImagePipeline":
        kwargs |= {"true_cfg_scale": request.guidance_scale, "negative_prompt": NEGATIVE_PROMPT}
    else:
        kwargs |= {"guidance_scale": request.guidance_scale}
    return pipe(
        request.prompt,
        height=request.height,
        width=request.width,
        num_inference_steps=request.num_inference_steps,
        max_sequence_length=request.max_sequence_length,
        generator=torch.Generator("cpu").manual_seed(request.seed),
        **kwargs,
    ).images


def noise(painter: BasePainter, seed: int) -> torch.Tensor:
    return torch.randn(
        1, 32, painter.pipe.transformer.config.in_channels, generator=torch.Generator().manual_seed(seed)
    )


# ---------------------------------------------------------------- no edits: exactly the family's pipeline


@pytest.mark.parametrize("guidance", [1.0, 3.5])
def test_no_edits_equals_the_family_pipeline_pixel_for_pixel(painter, stock, guidance):
    request = BASE.replace(guidance_scale=guidance)
    painting = painter.paint(request)
    assert np.array_equal(pixels(painting), np.asarray(stock_call(stock, request)[0]))
    assert torch.equal(painting.latents, stock_call(stock, request, output_type="latent"))
    # Qwen-Image's true classifier-free guidance costs one unconditional pass per step more.
    cfg = isinstance(painter, QwenImagePainter) and guidance > 1
    assert painting.cost.transformer_passes == 3 * (2 if cfg else 1) and painting.cost.steps == 3


def test_attention_mode_without_edits_equals_plain(painter, plain):
    assert np.array_equal(pixels(painter.paint(BASE.replace(regional="attention"))), pixels(plain))


# ---------------------------------------------------------------- blend


def test_blend_identity_edit_changes_nothing(painter, plain):
    painting = painter.paint(BASE.replace(regional="blend", edits=(Edit(LEFT, PROMPT),)))
    assert torch.equal(painting.latents, plain.latents) and np.array_equal(pixels(painting), pixels(plain))
    assert painting.cost.transformer_passes == plain.cost.transformer_passes  # the repeated prompt reuses its pass


def test_blend_changes_concentrate_in_the_box(painter, plain):
    painting = painter.paint(BASE.replace(regional="blend", edits=(Edit(LEFT, OTHER),)))
    assert painting.cost.transformer_passes == plain.cost.transformer_passes + 3
    change = (painting.latents - plain.latents).abs().amax(-1).reshape(4, 8)
    assert change[:, :4].mean() > 10 * change[:, 4:].mean()


def test_blend_prediction_outside_hard_masks_is_the_global_one(painter):
    request = BASE.replace(
        regional="blend", edits=(Edit(Box(0, 0, 0.25, 0.5), OTHER), Edit(Box(0.5, 0.5, 0.75, 1), "x"))
    )
    latents, t = noise(painter, 0), torch.tensor(700.0)
    inside = regions.token_masks([e.box for e in request.edits], 64, 128).sum(0) > 0
    v_global = painter.predict(BASE, latents, t)
    painter.max_batch = 1  # one sequence per call: the global row is computed exactly as without edits
    try:
        v_exact = painter.predict(request, latents, t)
    finally:
        painter.max_batch = None
    assert torch.equal(v_exact[:, ~inside], v_global[:, ~inside])
    assert (v_exact[:, inside] - v_global[:, inside]).abs().amax(-1).min() > 0
    torch.testing.assert_close(painter.predict(request, latents, t), v_exact, rtol=1e-5, atol=1e-5)  # one batch


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize("impl", ["lse", "grouped"])
def test_attention_implementations_equal_the_masked_reference(painter, impl):
    request = BASE.replace(regional="attention", region_max_sequence_length=8, edits=TWO)
    latents, t = noise(painter, 2), torch.tensor(800.0)
    try:
        painter.attention_impl = impl
        fast_v, fast = painter.predict(request, latents, t), painter.paint(request)
        painter.attention_impl = "mask"
        masked_v, masked = painter.predict(request, latents, t), painter.paint(request)
    finally:
        painter.attention_impl = "lse"
    torch.testing.assert_close(fast_v, masked_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.latents, masked.latents, rtol=1e-5, atol=1e-5)
    assert fast.cost.transformer_passes == painter.paint(BASE).cost.transformer_passes  # one pass per step
    assert not torch.allclose(fast_v, painter.predict(BASE, latents, t), atol=1e-4)  # the regions do act


def test_processors_are_restored_after_a_painting_and_after_an_error(painter):
    before = dict(painter.pipe.transformer.attn_processors)
    painter.paint(BASE.replace(regional="attention", edits=TWO))

    def boom(step: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        painter.paint(BASE.replace(regional="attention", edits=TWO), progress=boom)
    after = painter.pipe.transformer.attn_processors
    assert all(after[name] is proc for name, proc in before.items())


def _attention_call(
    painter: BasePainter, attn, kind: str, text: torch.Tensor, image: torch.Tensor, kwargs
) -> torch.Tensor:
    """One attention layer on ``[text | image]`` tokens with the family's rotary embedding: outputs ``(L, dim)``."""
    transformer = painter.pipe.transformer
    if isinstance(painter, QwenImagePainter):
        rotary = transformer.pos_embed([[(1, 4, 8)]], max_txt_seq_len=text.shape[1], device=text.device)
        image_out, text_out = attn(hidden_states=image, encoder_hidden_states=text, image_rotary_emb=rotary, **kwargs)
        return torch.cat([text_out, image_out], dim=1)[0]
    ids = torch.cat([torch.zeros(text.shape[1], 3), painter._image_positions(BASE, "cpu", torch.float32)])
    rotary = transformer.pos_embed(ids)
    if kind == "single":
        return attn(hidden_states=torch.cat([text, image], dim=1), image_rotary_emb=rotary, **kwargs)[0]
    image_out, text_out = attn(hidden_states=image, encoder_hidden_states=text, image_rotary_emb=rotary, **kwargs)
    return torch.cat([text_out, image_out], dim=1)[0]


@pytest.mark.parametrize("impl", ["lse", "grouped", "mask"])
def test_attention_mask_locality_token_by_token(painter, impl):
    """Perturb one input token at a time: exactly the output tokens the mask lets see it change, in every kind of
    block the family has (FLUX: double- and single-stream; Qwen-Image: double-stream)."""
    masks = regions.token_masks([e.box for e in TWO], 64, 128)
    layout = regions.regional_layout(6, [3, 2], masks)  # 6 base-text tokens, region texts of 3 and 2 tokens
    allowed = layout.allowed()
    transformer = painter.pipe.transformer
    blocks = {"double": transformer.transformer_blocks[0].attn}
    if isinstance(painter, FluxPainter):
        blocks["single"] = transformer.single_transformer_blocks[0].attn
    dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    tokens = torch.randn(1, allowed.shape[0], dim, generator=torch.Generator().manual_seed(5))
    painter.attention_impl = impl
    try:
        context, kwargs = painter._regional_attention(layout)
        with context, torch.no_grad():
            for kind, attn in blocks.items():

                def run(x: torch.Tensor) -> torch.Tensor:
                    return _attention_call(painter, attn, kind, x[:, :11], x[:, 11:], kwargs)  # noqa: B023

                base = run(tokens)
                seen = torch.zeros_like(allowed)
                for j in range(allowed.shape[0]):
                    moved = tokens.clone()
                    moved[0, j] += torch.randn(dim, generator=torch.Generator().manual_seed(j))
                    seen[:, j] = (run(moved) != base).any(-1)
                assert torch.equal(seen, allowed), f"{kind} block: {(seen != allowed).nonzero().tolist()[:5]}"
    finally:
        painter.attention_impl = "lse"


# ---------------------------------------------------------------- revisions and family choice


def test_a_revision_starts_from_the_init_latents_or_its_image(painter):
    first = painter.paint(BASE.replace(num_inference_steps=4))
    request = BASE.replace(num_inference_steps=4, strength=0.5, regional="attention", edits=(Edit(LEFT, OTHER),))
    revised = painter.paint(request, init=first)
    from_image = painter.paint(request, init=Painting(first.image, first.request))  # VAE-encodes the image
    assert revised.cost.steps == from_image.cost.steps == 2
    assert not torch.equal(revised.latents, first.latents) and not torch.equal(from_image.latents, revised.latents)
    assert from_image.latents.shape == first.latents.shape


def test_the_family_comes_from_model_index_json(family, tmp_path):
    expected = QwenImagePainter if family == "qwen-image" else FluxPainter
    assert painter_class(str(tiny_painter_path(family))) is expected
    assert painter_class("Qwen/Qwen-Image") is QwenImagePainter
    assert painter_class("black-forest-labs/FLUX.1-schnell") is FluxPainter
    with pytest.raises(ValueError, match="not a hub id artaug knows.*model_index.json"):
        painter_class("someone/some-model")
    with pytest.raises(ValueError, match="instruction-editing model.*painter.editor"):
        painter_class(str(tiny_painter_path("flux-kontext")))
    wrong = FluxPainter if expected is QwenImagePainter else QwenImagePainter
    with pytest.raises(ValueError, match="load_painter"):
        wrong.from_pretrained(str(tiny_painter_path(family)), device="cpu")


@pytest.mark.parametrize(
    ("family", "pipeline"), [("flux-schnell", "FluxPipeline"), ("qwen-image", "QwenImagePipeline")]
)
def test_the_tiny_command_writes_each_family_in_its_real_layout(tmp_path, family, pipeline):
    import json

    from artaug.cli import main

    assert main(["tiny", "painter", str(tmp_path / family), "--family", family]) == 0
    index = json.loads((tmp_path / family / "model_index.json").read_text())
    assert index["_class_name"] == pipeline and (tmp_path / family / "transformer" / "config.json").is_file()


def test_a_compiled_qwen_image_painter_never_recompiles_across_rounds(tiny_qwen_image_dir):
    """test_compile.py's check for FLUX, for Qwen-Image: the regional call arrives as an attention kwarg, so the one
    installed processor keeps its guards; true CFG's unconditional pass goes through it without one."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    request = BASE.replace(
        height=64, width=64, num_inference_steps=2, regional="attention", region_max_sequence_length=16
    )

    def edits(n: int, words: int = 3) -> tuple[Edit, ...]:
        return tuple(
            Edit(Box(0.05 * i, 0, 0.05 * i + 0.5, 0.5), " ".join(["fox"] * words) + f" {i}") for i in range(n)
        )

    eager = QwenImagePainter.from_pretrained(str(tiny_qwen_image_dir), device="cpu")
    compiled = QwenImagePainter.from_pretrained(str(tiny_qwen_image_dir), device="cpu")
    compiled.compile(backend="eager")
    try:
        for n in (0, 1, 8):  # warm-up: the plain shape, then two regional shapes
            compiled.paint(request.replace(edits=edits(n)))
        graphs = counters["stats"]["unique_graphs"]
        for n in (3, 0, 5, 2):
            regional = request.replace(edits=edits(n, words=1 + n % 4))
            torch.testing.assert_close(compiled.paint(regional).latents, eager.paint(regional).latents)
        assert counters["stats"]["unique_graphs"] == graphs, "a round recompiled the transformer blocks"
    finally:
        torch._dynamo.reset()
