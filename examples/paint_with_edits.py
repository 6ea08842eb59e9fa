"""Paint a prompt, then repaint the same seed with two regional edits in both regional modes.

    python examples/paint_with_edits.py                 # FLUX.1-dev on a GPU
    python examples/paint_with_edits.py --tiny          # offline, on the built-in tiny random-weight painter

Writes plain.png, blend.png and attention.png to --output and prints what each cost in transformer passes.
``blend`` is ArtAug's partition formula (1 + N prompts per step); ``attention`` is one pass per step with the local
prompts' tokens restricted to their boxes.
"""

import argparse
from pathlib import Path

from artaug import Box, Edit, PaintRequest
from artaug.config import DEFAULT_PAINTER
from artaug.painter import FluxPainter

PROMPT = "a red fox in a snowy birch forest at golden hour"
EDITS = (
    Edit(Box(0.0, 0.0, 1.0, 0.4), "a glowing orange sunset sky", reason="the sky is flat"),
    Edit(Box(0.3, 0.5, 0.8, 1.0), "a red fox with thick winter fur", reason="the fox is blurry"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="use the tiny offline painter (small and fast)")
    parser.add_argument("--painter", default=DEFAULT_PAINTER, help="hub id or local FLUX folder")
    parser.add_argument("--output", type=Path, default=Path("runs/examples/paint_with_edits"))
    parser.add_argument("--size", type=int, default=None, help="height = width in pixels; default 1024 (tiny: 128)")
    parser.add_argument("--steps", type=int, default=None, help="num_inference_steps; default 28 (tiny: 4)")
    args = parser.parse_args()

    # 1. The painter: FLUX.1-dev by default, the tiny random-weight one with --tiny
    if args.tiny:
        from artaug.tiny import tiny_painter_path

        args.painter = str(tiny_painter_path())
    painter = FluxPainter.from_pretrained(args.painter)
    size = args.size or (128 if args.tiny else 1024)
    request = PaintRequest(
        PROMPT,
        seed=0,
        height=size,
        width=size,
        num_inference_steps=args.steps or (4 if args.tiny else 28),
        max_sequence_length=32 if args.tiny else 512,
        region_max_sequence_length=16 if args.tiny else 64,
    )

    # 2. The plain painting, then the same seed with the edits painted in each regional mode
    args.output.mkdir(parents=True, exist_ok=True)
    for name, req in (
        ("plain", request),
        ("blend", request.replace(edits=EDITS, regional="blend")),
        ("attention", request.replace(edits=EDITS, regional="attention")),
    ):
        painting = painter.paint(req)
        painting.image.save(args.output / f"{name}.png")
        cost = painting.cost
        print(f"{name:<9} {cost.transformer_passes:>3} transformer passes, {cost.seconds:.1f} s -> {name}.png")
    print(f"images in {args.output}")


if __name__ == "__main__":
    main()
