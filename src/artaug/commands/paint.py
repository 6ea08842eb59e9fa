"""``artaug paint PROMPT``: render one image, optionally with regional edits, into a PNG that records how.

Defaults follow diffusers' ``FluxPipeline`` (1024x1024, 28 steps, guidance 3.5, 512 T5 tokens).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artaug.painter import DEFAULT_PAINTER, OFFLOAD_MODES
from artaug.types import REGIONAL_MODES, Box, Edit, PaintRequest

DTYPES = ("auto", "bfloat16", "float16", "float32")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "paint", help="paint one image (optionally with regional edits) into a PNG", description=__doc__
    )
    parser.add_argument("prompt", metavar="PROMPT", help="what to paint")
    parser.add_argument("--painter", default=DEFAULT_PAINTER, help="hub id or local folder of a FLUX pipeline")
    parser.add_argument("--rounds", type=int, default=0, help="critique/repaint rounds after the first painting")
    parser.add_argument("--seed", type=int, default=0, help='seed N = torch.Generator("cpu").manual_seed(N)')
    parser.add_argument("--steps", type=int, default=28, help="num_inference_steps")
    parser.add_argument("--height", type=int, default=1024, help="pixels, multiple of 16")
    parser.add_argument("--width", type=int, default=1024, help="pixels, multiple of 16")
    parser.add_argument("--guidance-scale", type=float, default=3.5, help="FLUX distilled guidance")
    parser.add_argument("--max-sequence-length", type=int, default=512, help="T5 tokens of the prompt (<= 512)")
    parser.add_argument(
        "--edit",
        action="append",
        default=[],
        type=parse_edit,
        metavar='"x0,y0,x1,y1=local prompt"',
        help="a regional edit: box in normalised [0,1] image coordinates (origin top-left) and what it should "
        "become; repeatable",
    )
    parser.add_argument("--regional", choices=REGIONAL_MODES, default="blend", help="how edits are painted")
    parser.add_argument("--edit-strength", type=float, default=10.0, help="s_i of the blend formula for every edit")
    parser.add_argument("--blur-sigma", type=float, default=0.0, help="blend mask blur, in tokens of 16 px")
    parser.add_argument("--region-max-sequence-length", type=int, default=64, help="T5 tokens per local prompt")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="auto: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--offload", choices=OFFLOAD_MODES, default="none", help="CPU offload for small GPUs")
    parser.add_argument("--output", type=Path, default=Path("painting.png"), help="PNG file to write")
    parser.set_defaults(func=run_paint)


def parse_edit(text: str) -> tuple[Box, str]:
    """``"x0,y0,x1,y1=local prompt"`` -> (Box, prompt); argparse turns the ValueError into a usage error."""
    coords, sep, prompt = text.partition("=")
    if not sep or not prompt.strip():
        raise argparse.ArgumentTypeError(f'edit {text!r} must look like "x0,y0,x1,y1=local prompt"')
    try:
        values = [float(v) for v in coords.split(",")]
        if len(values) != 4:
            raise ValueError(f"need 4 coordinates, got {len(values)}")
        return Box(*values), prompt.strip()
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"edit {text!r}: {err}") from err


def build_request(args: argparse.Namespace) -> PaintRequest:
    edits = tuple(Edit(box, prompt, strength=args.edit_strength) for box, prompt in args.edit)
    return PaintRequest(
        prompt=args.prompt,
        seed=args.seed,
        height=args.height,
        width=args.width,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        max_sequence_length=args.max_sequence_length,
        edits=edits,
        regional=args.regional,
        blur_sigma=args.blur_sigma,
        region_max_sequence_length=args.region_max_sequence_length,
    )


def load_painter(args: argparse.Namespace):
    import torch

    from artaug.painter import FluxPainter

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return FluxPainter.from_pretrained(args.painter, dtype=dtype, device=args.device, offload=args.offload)


def run_paint(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from artaug.pngmeta import a1111_parameters, painting_provenance, save_png

    # 1. Check the request before loading gigabytes of weights
    if args.rounds < 0:
        print("error: --rounds must be >= 0", file=sys.stderr)
        return 2
    if args.rounds > 0:
        print("error: the critic loop is not available yet: use --rounds 0", file=sys.stderr)
        return 2
    try:
        request = build_request(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    # 2. Load the painter
    try:
        painter = load_painter(args)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    # 3. Paint, with a progress bar over denoising steps
    with tqdm(total=request.num_inference_steps, desc="painting", unit="step") as bar:

        def progress(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        try:
            painting = painter.paint(request, progress=progress)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    # 4. Save the PNG with its A1111 parameters and provenance
    path = save_png(
        painting.image, args.output, a1111_parameters(request, painting.model), painting_provenance(painting)
    )
    cost = painting.cost
    print(f"wrote {path} ({cost.steps} steps, {cost.transformer_passes} transformer passes, {cost.seconds:.1f} s)")
    return 0
