"""``artaug tiny painter DIR`` and ``artaug tiny critic DIR``: write the tiny random-weight models to a folder."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from artaug.cli.options import check_output
from artaug.tiny import CRITIC_VARIANTS, PAINTER_FAMILIES

FOLDER_HELP = "folder to write (created; must be empty if it exists)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tiny",
        help="write a tiny random-weight model folder (offline, deterministic)",
        description="Write a tiny random-weight model in the real folder layout, for demos and tests. "
        "It loads with from_pretrained like the real model; it paints and critiques nothing meaningful.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    painter = kinds.add_parser(
        "painter",
        help="tiny painter or editor folder: FLUX.1-dev (FluxPipeline), schnell, Qwen-Image, FLUX.1-Kontext, "
        "Qwen-Image-Edit",
    )
    painter.add_argument("folder", type=Path, metavar="DIR", help=FOLDER_HELP)
    painter.add_argument("--family", choices=PAINTER_FAMILIES, default="flux", help="which model family to mimic")
    painter.set_defaults(func=run_painter)
    critic = kinds.add_parser("critic", help="tiny Qwen2-VL / Qwen2.5-VL folder (AutoModelForImageTextToText)")
    critic.add_argument("folder", type=Path, metavar="DIR", help=FOLDER_HELP)
    critic.add_argument("--variant", choices=CRITIC_VARIANTS, default="qwen2-vl", help="which model family to mimic")
    critic.set_defaults(func=run_critic)


def run_painter(args: argparse.Namespace) -> int:
    from artaug.tiny import build_tiny_painter

    _build(args.folder, lambda folder: build_tiny_painter(folder, args.family))
    return 0


def run_critic(args: argparse.Namespace) -> int:
    from artaug.tiny.critic import build_tiny_critic

    _build(args.folder, lambda folder: build_tiny_critic(folder, args.variant))
    return 0


def _build(folder: Path, build: Callable[[Path], object]) -> None:
    """Build into a temporary sibling and rename it into place: a failed build leaves nothing behind."""
    # Refuse to mix a new model into an existing folder: stale files from another model would load silently.
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder} exists and is not an empty folder; choose a new folder")
    check_output(folder, "folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)
        if folder.exists():
            folder.rmdir()
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    for path in files:
        print(f"{path.stat().st_size:>10,d}  {path.relative_to(folder)}")
    total = sum(path.stat().st_size for path in files)
    print(f"wrote {len(files)} files, {total:,d} bytes, to {folder} in {time.perf_counter() - started:.1f} s")
