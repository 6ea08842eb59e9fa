"""Paint with Qwen-Image, then fix one critique both ways: regional repaint and instruction edit.

    python examples/fix_by_instruction.py               # Qwen-Image + FLUX.1-Kontext-dev on a GPU
    python examples/fix_by_instruction.py --tiny        # offline, on the built-in tiny random-weight models

Writes first.png, regional.png and edit.png to --output and prints what each fix cost and the instruction the
editor read. Outside the box (beyond the seam) edit.png is first.png pixel for pixel.
"""

import argparse
from pathlib import Path

import numpy as np

from artaug import Box, Edit, PaintRequest
from artaug.config import load_config
from artaug.painter import load_painter

PROMPT = "a red fox in a snowy birch forest at golden hour"
EDIT = Edit(Box(0.0, 0.0, 0.5, 0.5), "a red woollen hat", reason="give the fox some character", label="the head")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="use the tiny offline painter and editor")
    parser.add_argument("--painter", default="Qwen/Qwen-Image", help="hub id or folder of a painter")
    parser.add_argument("--editor", default="black-forest-labs/FLUX.1-Kontext-dev", help="instruction editor")
    parser.add_argument("--output", type=Path, default=Path("runs/examples/fix_by_instruction"))
    parser.add_argument("--size", type=int, default=None, help="height = width in pixels; default 1024 (tiny: 64)")
    parser.add_argument("--steps", type=int, default=None, help="num_inference_steps; default 28 (tiny: 2)")
    args = parser.parse_args()

    # 1. The painter and its editor, each of the family its folder (or hub id) says
    if args.tiny:
        from artaug.tiny import tiny_painter_path

        args.painter, args.editor = str(tiny_painter_path("qwen-image")), str(tiny_painter_path("flux-kontext"))
    painter = load_painter(load_config(None, {"painter.model": args.painter, "painter.editor": args.editor}).painter)
    size = args.size or (64 if args.tiny else 1024)
    request = PaintRequest(PROMPT, seed=0, height=size, width=size, num_inference_steps=args.steps or (2 if args.tiny
                           else 28), max_sequence_length=32 if args.tiny else 512)  # fmt: skip

    # 2. The first painting, then the same critique fixed both ways from it
    args.output.mkdir(parents=True, exist_ok=True)
    first = painter.paint(request)
    revision = request.replace(edits=(EDIT,), strength=0.5)
    regional = painter.paint(revision, init=first)
    edited, fix = painter.edit(revision, first, seam=16)
    for name, painting in (("first", first), ("regional", regional), ("edit", edited)):
        painting.image.save(args.output / f"{name}.png")
        cost = painting.cost
        print(f"{name:<9} {cost.transformer_passes:>3} transformer passes, {cost.seconds:.1f} s -> {name}.png")
    print(f"instruction: {fix['instruction']}")
    print(f"the editor attended to {fix['image_tokens']} conditioning image tokens per pass")
    corner = size // 2 + 16
    same = np.array_equal(np.asarray(first.image)[corner:], np.asarray(edited.image)[corner:])
    print(f"outside the box (and the seam) the edit is the first painting: {same}")


if __name__ == "__main__":
    main()
