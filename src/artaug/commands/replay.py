"""``artaug replay TRAIL``: re-render a run from its trail and report any pixel difference."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="re-render a run deterministically from its trail.json (no critic needed)",
        description=__doc__,
    )
    parser.add_argument("trail", help="trail.json of a run folder (or NAME.trail.json beside a single image)")
    parser.add_argument("--painter", default=None, help="override the painter (hub id or folder) the trail names")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument("--device", default="auto", help="auto, cuda, cpu, ...")
    parser.add_argument("--offload", default="none", choices=("none", "model", "sequential"))
    parser.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    from artaug.components import resolve_device, resolve_dtype
    from artaug.painter import FluxPainter
    from artaug.replay import load_trail, replay

    try:
        trail = load_trail(args.trail)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    painter_id = args.painter or trail.provenance.get("painter", {}).get("id")
    if not painter_id:
        print("error: the trail names no painter; pass --painter ID_OR_DIR", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    painter = FluxPainter.from_pretrained(
        painter_id, dtype=resolve_dtype(args.dtype, device), device=device, offload=args.offload
    )
    report = replay(args.trail, painter)
    print(report.summary())
    return 0 if report.identical else 1
