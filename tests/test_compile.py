"""``painter.compile``: the repeated blocks compile once per shape family, and no round of the loop recompiles them.

Dynamo's recompiles are counted with the ``eager`` backend (the guards and graphs are dynamo's, whatever backend
turns the graphs into kernels; inductor would only make the test slower).
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from artaug.painter import FluxPainter
from artaug.painter.flux import region_bucket
from artaug.types import Box, Edit, PaintRequest

BASE = PaintRequest(
    "a red fox in the snow", height=64, width=64, num_inference_steps=2, max_sequence_length=16,
    region_max_sequence_length=16, regional="attention",
)  # fmt: skip


def edits(n: int, words: int = 3) -> tuple[Edit, ...]:
    return tuple(Edit(Box(0.05 * i, 0.0, 0.05 * i + 0.5, 0.5), " ".join(["fox"] * words) + f" {i}") for i in range(n))


@pytest.fixture
def painters(tiny_painter_dir):
    torch._dynamo.reset()
    eager = FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")
    compiled = FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")
    compiled.compile(backend="eager")
    yield eager, compiled
    torch._dynamo.reset()


def test_rounds_with_0_to_8_edits_never_recompile_after_warm_up(painters):
    eager, compiled = painters
    for n in (0, 1, 8):  # warm-up: the plain shape, then two regional shapes (dynamo then makes them dynamic)
        compiled.paint(BASE.replace(edits=edits(n)))
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    for n in (0, 3, 1, 8, 5, 2, 7, 4, 6, 0):
        request = BASE.replace(edits=edits(n, words=1 + n % 4))  # other lengths: other buckets too
        painting = compiled.paint(request)
        torch.testing.assert_close(painting.latents, eager.paint(request).latents, rtol=1e-5, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == graphs, "a round recompiled the transformer blocks"


def test_compile_keeps_one_processor_and_needs_the_lse_implementation(painters, tiny_painter_dir):
    _, compiled = painters
    processors = set(map(id, compiled.pipe.transformer.attn_processors.values()))
    compiled.paint(BASE.replace(edits=edits(2)))
    assert set(map(id, compiled.pipe.transformer.attn_processors.values())) == processors and len(processors) == 1
    assert compiled._compiled.layout is None  # the regional layout is set for a call only
    other = FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu", attention_impl="grouped")
    with pytest.raises(ValueError, match="compile needs attention_impl 'lse'"):
        other.compile(backend="eager")


@pytest.mark.parametrize(("tokens", "bucket"), [(0, 32), (1, 32), (32, 32), (33, 64), (64, 64), (65, 128), (500, 512)])
def test_region_buckets(tokens, bucket):
    assert region_bucket(tokens) == bucket
