"""``artaug tiny painter DIR`` and ``artaug tiny critic DIR``: write the tiny random-weight models to a folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from artaug.tiny import CRITIC_VARIANTS

FOLDER_HELP = "folder to write (created; must be empty if it exists)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tiny",
        help="write a tiny random-weight model folder (offline, deterministic)",
        description="Write a tiny random-weight model in the real folder layout, for demos and tests. "
        "It loads with from_pretrained like the real model; it paints and critiques nothing meaningful.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    painter = kinds.add_parser("painter", help="tiny FLUX.1 folder (loads with diffusers' FluxPipeline)")
    painter.add_argument("folder", type=Path, metavar="DIR", help=FOLDER_HELP)
    painter.set_defaults(func=run_painter)
    critic = kinds.add_parser("critic", help="tiny Qwen2-VL / Qwen2.5-VL folder (AutoModelForImageTextToText)")
    critic.add_argument("folder", type=Path, metavar="DIR", help=FOLDER_HELP)
    critic.add_argument("--variant", choices=CRITIC_VARIANTS, default="qwen2-vl", help="which model family to mimic")
    critic.set_defaults(func=run_critic)


def _check_empty(folder: Path) -> str | None:
    # Refuse to mix a new model into an existing folder: stale files from another model would load silently.
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        return f"error: {folder} exists and is not an empty folder; choose a new folder"
    return None


def _report(folder: Path, seconds: float) -> None:
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    for path in files:
        print(f"{path.stat().st_size:>10,d}  {path.relative_to(folder)}")
    total = sum(path.stat().st_size for path in files)
    print(f"wrote {len(files)} files, {total:,d} bytes, to {folder} in {seconds:.1f} s")


def run_painter(args: argparse.Namespace) -> int:
    from artaug.tiny.painter import build_tiny_painter

    if error := _check_empty(args.folder):
        print(error, file=sys.stderr)
        return 2
    start = time.perf_counter()
    build_tiny_painter(args.folder)
    _report(args.folder, time.perf_counter() - start)
    return 0


def run_critic(args: argparse.Namespace) -> int:
    from artaug.tiny.critic import build_tiny_critic

    if error := _check_empty(args.folder):
        print(error, file=sys.stderr)
        return 2
    start = time.perf_counter()
    build_tiny_critic(args.folder, args.variant)
    _report(args.folder, time.perf_counter() - start)
    return 0
