"""Region masks, blur, the partition formula and the single-pass attention mask: pure tensors, no model."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import FluxPipeline

from artaug.painter import regions
from artaug.types import Box


@pytest.mark.parametrize("size", [(64, 72), (70, 64), (0, 64), (8, 8)])
def test_token_grid_rejects_sizes_not_multiple_of_16(size):
    with pytest.raises(ValueError, match="multiples of 16"):
        regions.token_grid(*size)


def test_token_grid_rows_and_columns():
    assert regions.token_grid(64, 128) == (4, 8)


@pytest.mark.parametrize(("row", "col"), [(0, 0), (1, 2), (3, 7), (2, 5)])
def test_aligned_box_hits_exactly_its_token_in_img_ids_order(row, col):
    height, width = 64, 128
    box = Box.from_pixels(col * 16, row * 16, col * 16 + 16, row * 16 + 16, width, height)
    mask = regions.token_mask(box, height, width)
    assert mask.shape == (4 * 8,)
    hit = mask.nonzero().flatten().tolist()
    assert len(hit) == 1 and mask[hit[0]] == 1.0
    # The same token, located through FLUX's own image position ids (channel 1 = row, channel 2 = column).
    ids = FluxPipeline._prepare_latent_image_ids(1, height // 16, width // 16, "cpu", torch.float32)
    assert ids[hit[0]].tolist() == [0.0, float(row), float(col)]


def test_unaligned_box_gives_fractional_coverage():
    # 64x64 image, 4x4 tokens. Box from x=8..40 px, y=0..24 px.
    mask = regions.token_mask(Box.from_pixels(8, 0, 40, 24, 64, 64), 64, 64).reshape(4, 4)
    expected = torch.zeros(4, 4)
    expected[0, :3] = torch.tensor([0.5, 1.0, 0.5])  # first token row fully covered vertically
    expected[1, :3] = torch.tensor([0.5, 1.0, 0.5]) * 0.5  # second token row: 8 of 16 pixel rows
    torch.testing.assert_close(mask, expected, rtol=0, atol=0)


def test_pixel_mask_rounds_outwards():
    mask = regions.pixel_mask(Box(0.1, 0.1, 0.2, 0.2), 16, 16)
    # x from 1.6 -> floor 1, to 3.2 -> ceil 4
    assert mask.sum() == 9 and mask[1:4, 1:4].all()


def test_token_masks_stacks_and_handles_none():
    boxes = [Box(0, 0, 0.5, 0.5), Box(0.5, 0.5, 1, 1)]
    masks = regions.token_masks(boxes, 64, 64)
    assert masks.shape == (2, 16)
    assert masks.sum(1).tolist() == [4.0, 4.0]
    assert (masks[0] * masks[1]).sum() == 0
    assert regions.token_masks([], 64, 64).shape == (0, 16)


def test_blur_keeps_full_masks_full_and_spreads_edges():
    height, width = 128, 128  # 8x8 tokens
    full = regions.token_masks([Box(0, 0, 1, 1)], height, width)
    torch.testing.assert_close(regions.blur_token_masks(full, height, width, sigma=2.0), full)
    half = regions.token_masks([Box(0, 0, 0.5, 1)], height, width)
    blurred = regions.blur_token_masks(half, height, width, sigma=1.0).reshape(8, 8)
    assert blurred.min() >= 0 and blurred.max() <= 1 + 1e-6
    # Left-right blur only: every row identical, monotone decreasing across the edge, spilling past it.
    torch.testing.assert_close(blurred, blurred[:1].expand(8, 8))
    assert torch.all(blurred[0, :-1] >= blurred[0, 1:])
    assert blurred[0, 4] > 0 and blurred[0, 3] < 1


@pytest.mark.parametrize(("sigma", "kernel"), [(0.0, None), (-1.0, None), (1.0, 4), (1.0, 0)])
def test_blur_rejects_bad_parameters(sigma, kernel):
    with pytest.raises(ValueError):
        regions.gaussian_kernel(sigma, kernel)


def test_gaussian_kernel_default_size_and_normalised():
    kernel = regions.gaussian_kernel(10.0)
    assert kernel.numel() == 61 and abs(kernel.sum().item() - 1) < 1e-6
    assert regions.gaussian_kernel(10.0, 33).numel() == 33


def _reference_blend(v, vs, masks, strengths):
    # The published formula, written literally.
    num = v.clone()
    den = torch.ones(masks.shape[1], 1)
    for vi, m, s in zip(vs, masks, strengths, strict=True):
        num = num + s * m[:, None] * vi
        den = den + s * m[:, None]
    return num / den


@pytest.mark.parametrize("n", [1, 2, 4])
def test_blend_is_the_normalised_mean(n):
    gen = torch.Generator().manual_seed(n)
    v = torch.randn(1, 16, 8, generator=gen)
    vs = torch.randn(n, 1, 16, 8, generator=gen)
    masks = torch.rand(n, 16, generator=gen) * (torch.rand(n, 16, generator=gen) > 0.3)
    strengths = [10.0, 3.0, 0.5, 1.0][:n]
    out = regions.blend(v, vs, masks, strengths)
    torch.testing.assert_close(out, _reference_blend(v[0], vs[:, 0], masks, strengths)[None], rtol=1e-5, atol=1e-6)


def test_blend_is_exactly_global_outside_masks_and_for_equal_predictions():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(1, 16, 8, generator=gen)
    vs = torch.randn(2, 1, 16, 8, generator=gen)
    masks = torch.zeros(2, 16)
    masks[0, :4] = 1.0
    masks[1, 2:6] = 0.25
    out = regions.blend(v, vs, masks, [10.0, 10.0])
    assert torch.equal(out[:, 6:], v[:, 6:])
    assert not torch.equal(out[:, :6], v[:, :6])
    # Inside a hard mask with s = 10 and a single region: (v + 10 v1) / 11.
    torch.testing.assert_close(out[:, :2], (v[:, :2] + 10 * vs[0, :, :2]) / 11)
    same = regions.blend(v, v[None].expand(2, 1, 16, 8), masks, [10.0, 10.0])
    assert torch.equal(same, v)


def test_blend_without_regions_and_shape_errors():
    v = torch.randn(1, 16, 8)
    assert regions.blend(v, torch.zeros(0, 1, 16, 8), torch.zeros(0, 16), []) is v
    with pytest.raises(ValueError, match="one mask and one weight"):
        regions.blend(v, torch.zeros(2, 1, 16, 8), torch.zeros(1, 16), [1.0, 1.0])
    with pytest.raises(ValueError, match="do not match"):
        regions.blend(v, torch.zeros(1, 1, 15, 8), torch.zeros(1, 16), [1.0])


def _rule(q: int, k: int, text_len: int, spans: list[range], image_start: int, masks: torch.Tensor) -> bool:
    """The single-pass rule, one (query, key) pair at a time, written independently of the implementation."""

    def kind(i: int) -> tuple[str, int]:
        if i < text_len:
            return ("base", -1)
        if i >= image_start:
            return ("image", i - image_start)
        return ("region", next(r for r, span in enumerate(spans) if i in span))

    (kq, iq), (kk, ik) = kind(q), kind(k)
    if kq == "base" or kk == "base":
        return True
    if kq == "image" and kk == "image":
        return True
    if kq == "region" and kk == "region":
        return iq == ik
    region, image_token = (iq, ik) if kq == "region" else (ik, iq)
    return bool(masks[region, image_token] > 0)


def test_joint_attention_mask_token_by_token():
    height, width = 64, 64
    boxes = [Box(0, 0, 0.5, 0.5), Box(0.4, 0.4, 1.0, 0.8)]  # overlapping, the second unaligned
    masks = regions.token_masks(boxes, height, width)
    text_len, region_lens = 5, [3, 2]
    mask = regions.joint_attention_mask(text_len, region_lens, masks)
    total = text_len + sum(region_lens) + 16
    assert mask.shape == (total, total) and mask.dtype == torch.bool
    spans = [range(5, 8), range(8, 10)]
    for q in range(total):
        for k in range(total):
            assert bool(mask[q, k]) == _rule(q, k, text_len, spans, 10, masks), (q, k)
    # Spot checks that the rule itself means what it says.
    assert not mask[5, 8] and not mask[8, 5]  # region texts do not see each other
    assert mask[5, 10] and not mask[5, 10 + 15]  # region 1 sees its box's top-left token, not the bottom-right


def test_joint_attention_mask_without_regions_is_all_true():
    mask = regions.joint_attention_mask(4, [], torch.zeros(0, 16))
    assert mask.shape == (20, 20) and mask.all()


def test_joint_attention_mask_needs_one_mask_per_region():
    with pytest.raises(ValueError, match="one token mask per region"):
        regions.joint_attention_mask(4, [2, 2], torch.zeros(1, 16))


def test_attention_groups_partition_queries_and_rebuild_the_mask():
    masks = regions.token_masks([Box(0, 0, 0.5, 0.5), Box(0.25, 0.25, 1.0, 0.75)], 64, 64)
    mask = regions.joint_attention_mask(4, [3, 2], masks)
    groups = regions.attention_groups(mask)
    rebuilt = torch.zeros_like(mask)
    seen = torch.zeros(mask.shape[0], dtype=torch.long)
    for rows, cols, bias in groups:
        seen[rows] += 1
        rebuilt[rows[:, None], cols[None, :]] = True
        assert bias is None  # no weights given
    assert torch.equal(seen, torch.ones_like(seen))  # every query in exactly one group
    assert torch.equal(rebuilt, mask)
    # Region texts (2 groups), image outside boxes / in box 1 only / in box 2 only, and the base text together with
    # the image token in both boxes (both may attend to everything).
    assert len(groups) == 6


def test_attention_groups_with_weights_rebuild_the_additive_mask():
    """With weights, the image token in both boxes (its region-text keys weighted) no longer shares a group with the
    base text (unweighted), and each group's key bias rebuilds the additive mask exactly."""
    masks = regions.token_masks([Box(0, 0, 0.5, 0.5), Box(0.25, 0.25, 1.0, 0.75)], 64, 64)
    bias = regions.joint_attention_bias(4, [3, 2], masks, [10.0, 0.5])
    allowed = regions.joint_attention_mask(4, [3, 2], masks)
    groups = regions.attention_groups(allowed, bias)
    rebuilt = torch.full_like(bias, float("-inf"))
    for rows, cols, key_bias in groups:
        rebuilt[rows[:, None], cols[None, :]] = 0.0 if key_bias is None else key_bias[None, :]
    assert torch.equal(rebuilt, bias) and len(groups) == 7


def test_joint_attention_bias_weighs_only_image_queries_on_their_regions_text():
    masks = regions.token_masks([Box(0, 0, 0.5, 0.5), Box(0.5, 0.5, 1.0, 1.0)], 64, 64)
    text_len, lens = 4, [3, 2]
    allowed = regions.joint_attention_mask(text_len, lens, masks)
    bias = regions.joint_attention_bias(text_len, lens, masks, [10.0, 2.0])
    assert torch.equal(torch.isfinite(bias), allowed)  # -inf exactly where the boolean mask forbids
    image = slice(text_len + 5, None)
    inside_1, inside_2 = masks[0] > 0, masks[1] > 0
    assert torch.allclose(bias[image, 4:7][inside_1], torch.tensor(math.log(10.0)))
    assert torch.allclose(bias[image, 7:9][inside_2], torch.tensor(math.log(2.0)))
    finite = torch.where(allowed, bias, 0.0)
    finite[image, 4:9] = 0.0
    assert not finite.any()  # base-text and region-text queries, and image<->image and base text, unweighted
    # Weight 1 everywhere is the boolean mask as an additive one.
    ones = regions.joint_attention_bias(text_len, lens, masks, [1.0, 1.0])
    assert torch.equal(ones, torch.zeros_like(ones).masked_fill(~allowed, float("-inf")))
    with pytest.raises(ValueError, match="one weight per region"):
        regions.joint_attention_bias(text_len, lens, masks, [1.0])


@pytest.mark.parametrize("pad_to", [None, 9])
def test_regional_layout_bias_is_the_joint_attention_bias(pad_to):
    masks = regions.token_masks([Box(0, 0, 0.5, 0.5), Box(0.25, 0.25, 1.0, 0.75)], 64, 64)
    layout = regions.regional_layout(4, [3, 2], masks, pad_to=pad_to, weights=[10.0, 0.5])
    expected = regions.joint_attention_bias(4, [3, 2], masks, [10.0, 0.5])
    got = layout.bias()
    if pad_to:  # padding tokens (after the real region text) are seen by nobody and see the base text alone
        real = list(range(4 + 5)) + list(range(4 + pad_to, got.shape[0]))
        assert torch.isinf(got[real][:, 9 : 4 + pad_to]).all()
        got = got[real][:, real]
    assert torch.equal(got, expected)
    assert torch.equal(torch.isfinite(layout.bias()), layout.allowed())
    with pytest.raises(ValueError, match="weight > 0"):
        regions.regional_layout(4, [3, 2], masks, weights=[1.0, 0.0])


def test_attention_groups_need_a_square_boolean_mask():
    with pytest.raises(ValueError, match="square boolean"):
        regions.attention_groups(torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="square boolean"):
        regions.attention_groups(torch.ones(3, 3))
