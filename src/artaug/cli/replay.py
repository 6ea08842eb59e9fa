"""``artaug replay TRAIL``: re-render a run from its trail and report any pixel difference.

The painter comes from the trail (shown before it loads) or from ``--painter``. A trail may come from someone else,
so a painter it names by hub id is refused unless ``--allow-hub`` says to fetch it; every image it names must lie in
the trail's own folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artaug.cli.options import add_config_flags, config_from_args

REPLAY_SETTINGS = ("painter.dtype", "painter.device", "painter.offload", "painter.attention_impl")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="re-render a run deterministically from its trail.json (no critic needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "trail", type=Path, help="trail.json of a run folder (or NAME.trail.json beside a single image)"
    )
    parser.add_argument("--painter", default=None, help="the painter to use (hub id or folder) instead of the trail's")
    parser.add_argument("--allow-hub", action="store_true", help="let a trail's hub id painter be fetched")
    add_config_flags(parser, REPLAY_SETTINGS)
    parser.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    from artaug.loop.replay import load_trail, replay, trail_painter

    # 1. The trail (validated) and the painter it will load, said out loud before anything loads.
    config = config_from_args(args)
    trail = load_trail(args.trail)
    painter_id = args.painter or trail_painter(trail)
    if not painter_id:
        raise ValueError(f"{args.trail} names no painter; pass --painter ID_OR_DIR")
    source = "--painter" if args.painter else "the trail"
    if not args.painter and not Path(painter_id).is_dir() and not args.allow_hub:
        raise ValueError(
            f"{args.trail} names the painter {painter_id!r}, which is not a local folder here; pass --allow-hub to "
            "fetch it from the hub, or --painter ID_OR_DIR to choose one"
        )
    print(f"replaying {args.trail} with painter {painter_id} (from {source})", file=sys.stderr)

    # 2. Load and re-render.
    from artaug.painter import load_painter

    painter = load_painter(config.painter.replace(model=painter_id, lora=""))
    report = replay(args.trail, painter)
    print(report.summary())
    return 0 if report.identical else 1
