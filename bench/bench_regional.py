"""Per-step time of regional control: plain vs blend vs attention at 1, 2, 4, 8 edits, as ratios to plain.

Every number comes from ``FluxPainter.paint`` itself (blend batching, installed attention processors, scheduler), at
FLUX's 1024x1024 token geometry: 4096 image tokens + 512 T5 tokens (+ 16 per edit in attention mode: local prompts
are encoded at their own length, and a critic's local prompt is about a dozen T5 tokens). Text encoding
is replaced by fixed random embeddings of FLUX.1-dev's widths (it runs once per painting, not per step), and the
VAE is the tiny one; neither is timed. A step's time is the gap between consecutive progress callbacks (after a CUDA
synchronise), the first step excluded as warm-up.

    python bench/bench_regional.py           # CPU: a narrow transformer (few, thin layers), real geometry
    python bench/bench_regional.py --full    # GPU: FLUX.1-dev's real transformer config, random bf16 weights

Attention mode is timed in every implementation: ``attn-lse`` (one unmasked call plus small ones merged by
log-sum-exp; the painter's default), ``attn-grouped`` (unmasked calls per group of queries) and ``attn-mask`` (the
boolean mask handed to diffusers' processors, which rules out FlashAttention). Not a test: it asserts nothing.
Issue 13's target: attention <= 1.10x plain at 4 edits; blend is (1 + N)x by construction and is reported as
measured.
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib
from dataclasses import dataclass

import torch
from diffusers import FluxPipeline, FluxTransformer2DModel

from artaug.painter import FluxPainter
from artaug.tiny.painter import tiny_scheduler, tiny_vae
from artaug.types import Box, Edit, PaintRequest

# FLUX.1-dev's transformer (black-forest-labs/FLUX.1-dev/transformer/config.json).
FULL = dict(
    num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24, axes_dims_rope=(16, 56, 56)
)
# Narrow enough for 2 CPU cores; same text widths, same geometry.
NARROW = dict(
    num_layers=1, num_single_layers=2, attention_head_dim=32, num_attention_heads=4, axes_dims_rope=(8, 12, 12)
)
TEXT_WIDTH, POOLED_WIDTH = 4096, 768  # T5-XXL and CLIP-L widths
LOCAL_PROMPT_TOKENS = 16


@dataclass
class Row:
    mode: str
    edits: int
    wall: float  # seconds per step, wall clock
    cpu: float  # seconds per step of this process's CPU time (all threads): steadier on a shared CPU
    passes_per_step: int


class RandomTextPainter(FluxPainter):
    """The real painter with text encoders replaced by fixed random embeddings (per prompt, per length)."""

    def _encode(self, prompt: str, max_sequence_length: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
        dtype = self.pipe.transformer.dtype
        embeds = torch.randn(1, max_sequence_length, TEXT_WIDTH, generator=gen).to(device, dtype)
        pooled = torch.randn(1, POOLED_WIDTH, generator=gen).to(device, dtype)
        return embeds, pooled

    def local_prompt_length(self, prompt: str, cap: int) -> int:
        # No tokenizer here: a critic's local prompt ("warm golden rim light on the couple") is ~12 T5 tokens.
        return min(LOCAL_PROMPT_TOKENS, cap)


def build_painter(full: bool, device: str, dtype: torch.dtype) -> FluxPainter:
    config = FULL if full else NARROW
    torch.manual_seed(0)
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # build the 12B-parameter model directly in bf16 on the GPU
        try:
            transformer = FluxTransformer2DModel(
                patch_size=1,
                in_channels=64,
                joint_attention_dim=TEXT_WIDTH,
                pooled_projection_dim=POOLED_WIDTH,
                guidance_embeds=True,
                **config,
            ).eval()
        finally:
            torch.set_default_dtype(previous)
    vae = tiny_vae().to(device, dtype)
    pipe = FluxPipeline(
        scheduler=tiny_scheduler(),
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )
    return RandomTextPainter(pipe, "random-flux-full" if full else "random-flux-narrow")


def edits(n: int) -> tuple[Edit, ...]:
    # Overlapping half-size boxes spread over the image, like a critic's typical answer.
    return tuple(
        Edit(Box(0.1 * (i % 4), 0.1 * (i // 4), 0.1 * (i % 4) + 0.5, 0.1 * (i // 4) + 0.5), f"local prompt {i}")
        for i in range(n)
    )


def time_steps(painter: FluxPainter, request: PaintRequest, attention_impl: str = "lse") -> Row:
    stamps: list[tuple[float, float]] = []
    cuda = painter.pipe.transformer.device.type == "cuda"

    def progress(step: int, total: int) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append((time.perf_counter(), time.process_time()))

    painter.attention_impl = attention_impl
    painting = painter.paint(request, progress=progress)
    pairs = list(zip(stamps, stamps[1:], strict=False))
    wall = statistics.median(b[0] - a[0] for a, b in pairs)
    cpu = statistics.median(b[1] - a[1] for a, b in pairs)
    mode = request.regional if request.edits else "plain"
    if mode == "attention":
        mode = f"attn-{attention_impl}"
    return Row(mode, len(request.edits), wall, cpu, painting.cost.transformer_passes // painting.cost.steps)


def report(rows: list[Row], with_cpu: bool) -> None:
    plain_wall = statistics.mean(r.wall for r in rows if r.mode == "plain")
    plain_cpu = statistics.mean(r.cpu for r in rows if r.mode == "plain")
    header = f"{'mode':<10} {'edits':>5} {'passes/step':>12} {'wall s/step':>12} {'x plain':>8}"
    print("\n" + header + (f" {'cpu s/step':>11} {'x plain':>8}" if with_cpu else ""))
    for r in rows:
        line = f"{r.mode:<10} {r.edits:>5} {r.passes_per_step:>12} {r.wall:>12.4f} {r.wall / plain_wall:>8.2f}"
        print(line + (f" {r.cpu:>11.4f} {r.cpu / plain_cpu:>8.2f}" if with_cpu else ""))
    first, last = (r.wall for r in rows if r.mode == "plain")
    print(f"\nplain wall baseline {plain_wall:.4f} s/step (first {first:.4f}, last {last:.4f}: "
          f"drift {100 * (last / first - 1):+.1f}%)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="FLUX.1-dev's real transformer config (needs a GPU)")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per painting (first excluded); default 3 CPU, 6 GPU"
    )
    parser.add_argument("--repeats", type=int, default=1, help="rounds over all modes; the fastest round counts")
    parser.add_argument("--edits", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (1024 = 4096 image tokens)")
    parser.add_argument("--max-batch", type=int, default=None, help="cap on sequences per blend call")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1: no OpenMP spin-waits inflate CPU time on a busy host)"
    )
    parser.add_argument(
        "--attention-impl",
        choices=("lse", "grouped", "mask", "all"),
        default="all",
        help="attention mode's implementation: lse (FluxPainter's default), grouped, mask (reference), or all",
    )
    args = parser.parse_args()
    impls = ("lse", "grouped", "mask") if args.attention_impl == "all" else (args.attention_impl,)
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    steps = args.steps or (6 if args.device.startswith("cuda") else 3)

    # 1. Build the painter
    painter = build_painter(args.full, args.device, dtype)
    painter.max_batch = args.max_batch
    params = sum(p.numel() for p in painter.pipe.transformer.parameters())
    base = PaintRequest(
        "a couple dancing on a pier at sunset", height=args.size, width=args.size, num_inference_steps=steps
    )
    print(f"{painter.model_id}: {params / 1e6:.1f}M parameters, {args.device}, {dtype}, {steps} steps, "
          f"{(args.size // 16) ** 2} image tokens + {base.max_sequence_length} text tokens")  # fmt: skip

    # 2. Measure: plain first and last of each round (the run's own baseline, and drift), every mode in between.
    # On a shared machine the fastest of several rounds is the least disturbed estimate.
    time_steps(painter, base.replace(num_inference_steps=2))  # warm-up (allocator, kernels)
    requests = [(base, "lse")]
    for n in args.edits:
        requests.append((base.replace(edits=edits(n), regional="blend"), "lse"))
        requests += [(base.replace(edits=edits(n), regional="attention"), impl) for impl in impls]
    requests.append((base, "lse"))
    rounds = []
    for index in range(args.repeats):
        rounds.append([])
        for request, impl in requests:
            rounds[-1].append(row := time_steps(painter, request, impl))
            print(f"  round {index + 1}: {row.mode} {row.edits} edits: {row.wall:.4f} s/step", flush=True)
    rows = [min(column, key=lambda r: r.wall) for column in zip(*rounds, strict=True)]

    # 3. Report
    report(rows, with_cpu=not args.device.startswith("cuda"))


if __name__ == "__main__":
    main()
