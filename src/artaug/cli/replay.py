"""``artaug replay TRAIL``: re-render a run from its trail and report any pixel difference.

The painter comes from the trail (shown before it loads) or from ``--painter``; rounds fixed by instruction edit also
need the editor the trail names (or ``--editor``). A trail may come from someone else, so a model it names by hub id
is refused unless ``--allow-hub`` says to fetch it; every image it names must lie in the trail's own folder.
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
    parser.add_argument(
        "--editor",
        default=None,
        help="the instruction editor for edit rounds (hub id or folder) instead of the trail's",
    )
    parser.add_argument("--allow-hub", action="store_true", help="let a trail's hub id painter be fetched")
    add_config_flags(parser, REPLAY_SETTINGS)
    parser.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    from artaug.loop.replay import edit_rounds, load_trail, replay

    # 1. The trail (validated) and the models it will load, said out loud before anything loads.
    config = config_from_args(args)
    trail = load_trail(args.trail)
    painter_id = _model(args, trail, "painter", args.painter)
    editor_id = _model(args, trail, "editor", args.editor) if edit_rounds(trail) else ""

    # 2. Load and re-render.
    from artaug.painter import load_painter

    painter = load_painter(config.painter.replace(model=painter_id, lora="", editor=editor_id))
    report = replay(args.trail, painter)
    print(report.summary())
    return 0 if report.identical else 1


def _model(args: argparse.Namespace, trail, role: str, given: str | None) -> str:
    """The painter or editor to load: given on the command line, or the trail's (a hub id only with --allow-hub)."""
    from artaug.loop.replay import trail_painter

    model = given or trail_painter(trail, role)
    if not model:
        raise ValueError(f"{args.trail} names no {role}; pass --{role} ID_OR_DIR")
    if not given and not Path(model).is_dir() and not args.allow_hub:
        raise ValueError(
            f"{args.trail} names the {role} {model!r}, which is not a local folder here; pass --allow-hub to "
            f"fetch it from the hub, or --{role} ID_OR_DIR to choose one"
        )
    print(
        f"replaying {args.trail} with {role} {model} (from {'--' + role if given else 'the trail'})", file=sys.stderr
    )
    return model
