"""``artaug studio``: the web app where a person is the client: paint, edit the critic's boxes, repaint, accept, and
review the pairs of a synth store (see ``artaug.studio``).

artaug studio [--painter ...] [--critic ...] [--config FILE] [--store DIR] [--host 127.0.0.1] [--port 7860]
artaug studio --tiny            # the built-in tiny painter and the packaged critic notes: plumbing only
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from artaug.cli.options import add_config_file_flags, add_config_flags, check_output, config_from_args

STUDIO_SETTINGS = (
    "painter.model",
    "critic.model",
    "critic.served_model",
    "studio.store",
    "studio.output",
    "studio.host",
    "studio.port",
    "studio.use_critic",
    "studio.person",
    "studio.max_upload_mb",
    "painter.height",
    "painter.width",
    "painter.num_inference_steps",
    "painter.dtype",
    "painter.device",
    "painter.offload",
    "loop.regional",
    "loop.strength",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "studio",
        help="a web app: paint, edit the critic's boxes, repaint, accept; review a synth store's pairs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--auth", metavar="USER:PASSWORD", help="ask for this login (needed to listen beyond 127.0.0.1); safer: "
        "the variable named by studio.auth_env (default ARTAUG_STUDIO_AUTH)",
    )  # fmt: skip
    parser.add_argument(
        "--tiny", action="store_true", help="the built-in tiny painter and the packaged critic notes (no downloads)"
    )
    add_config_file_flags(parser)
    add_config_flags(parser, STUDIO_SETTINGS, "settings ([studio], [painter], ... in the config file)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # 1. Settings, login and folders, all checked before any model loads.
    presets = None
    if args.tiny:
        from importlib.resources import files

        from artaug.tiny import tiny_overrides

        presets = {**tiny_overrides(), "critic.model": str(files("artaug") / "data" / "demo_critique.txt")}
        presets |= {"painter.height": 128, "painter.width": 128}
    config = config_from_args(args, presets)
    try:
        from artaug.studio.app import check_host, parse_auth, serve
    except ImportError as error:
        raise ImportError(f"artaug studio needs gradio ({error}); install it: pip install -e '.[studio]'") from None
    variable = config.studio.auth_env
    auth = parse_auth(args.auth, "--auth") or parse_auth(os.environ.get(variable), f"the variable {variable}")
    check_host(config.studio.host, auth)
    check_output(Path(config.studio.output), "folder")
    check_output(Path(config.studio.store), "folder")

    # 2. Load the models once, then serve until Ctrl-C.
    from artaug.studio import Studio

    serve(Studio.load(config), auth=auth)
    return 0
