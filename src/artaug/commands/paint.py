"""``artaug paint PROMPT``: the main job. Paint, let the critic ask for revisions, repaint, judge, keep the best.

``--rounds 0`` paints one image (optionally with your own ``--edit``s) and nothing else. Settings come from the
defaults (FLUX.1-dev + Qwen2-VL-7B-Instruct; sizes and steps as diffusers' ``FluxPipeline``), then ``--config
FILE.toml``, then ``--set section.key=value``, then the flags below.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from artaug.painter import OFFLOAD_MODES, check_request
from artaug.types import REGIONAL_MODES, Box, Edit, PaintRequest

DTYPES = ("auto", "bfloat16", "float16", "float32")
OOM_HINT = "out of GPU memory: try --offload model (FLUX.1-dev on a 24 GB card), or --offload sequential"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "paint",
        help="paint a prompt, revised by the critic (--rounds 0: one painting, optionally with --edit)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", metavar="PROMPT", help="what to paint")
    parser.add_argument("--painter", help="hub id or local folder of a FLUX pipeline [black-forest-labs/FLUX.1-dev]")
    parser.add_argument(
        "--critic", help="hub id or folder of a Qwen-family VLM, or an OpenAI-compatible base URL [Qwen2-VL-7B]"
    )
    parser.add_argument("--model", help="model name to request from a URL critic")
    parser.add_argument("--rounds", type=int, help="critique/repaint rounds after the first painting [2]")
    parser.add_argument("--seed", type=int, default=0, help='seed N = torch.Generator("cpu").manual_seed(N) [0]')
    parser.add_argument("--steps", type=int, help="num_inference_steps of the first painting [28]")
    parser.add_argument("--height", type=int, help="pixels, multiple of 16 [1024]")
    parser.add_argument("--width", type=int, help="pixels, multiple of 16 [1024]")
    parser.add_argument("--guidance-scale", type=float, help="FLUX distilled guidance [3.5]")
    parser.add_argument("--max-sequence-length", type=int, help="T5 tokens of the prompt (<= 512) [512]")
    parser.add_argument(
        "--edit",
        action="append",
        default=[],
        type=parse_edit,
        metavar='"x0,y0,x1,y1=local prompt"',
        help="a regional edit (implies --rounds 0): box in normalised [0,1] image coordinates (origin top-left) "
        "and what it should become; repeatable",
    )
    parser.add_argument("--regional", choices=REGIONAL_MODES, help="how edits are painted [attention]")
    parser.add_argument("--strength", type=float, help="fraction of the schedule a revision re-runs [0.4]")
    parser.add_argument("--edit-strength", type=float, help="s_i of the blend formula for every edit [10]")
    parser.add_argument("--blur-sigma", type=float, help="blend mask blur, in tokens of 16 px [0]")
    parser.add_argument("--region-max-sequence-length", type=int, help="T5 tokens per local prompt [64]")
    parser.add_argument("--dtype", choices=DTYPES, help="auto: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--offload", choices=OFFLOAD_MODES, help="CPU offload for small GPUs [none]")
    parser.add_argument("--config", type=Path, help="TOML file with [painter], [critic], [judge], [loop] sections")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a field")
    parser.add_argument(
        "--output",
        type=Path,
        help="a .png file (its trail beside it) or a run folder (created) [painting.png with --rounds 0, "
        "else runs/<prompt>-<seed>]",
    )
    parser.set_defaults(func=run_paint)


# Flags and the config fields they set; None means "not given", so the config's value stands.
FLAG_FIELDS = {
    "painter": "painter.model",
    "critic": "critic.model",
    "model": "critic.served_model",
    "rounds": "loop.rounds",
    "steps": "painter.num_inference_steps",
    "height": "painter.height",
    "width": "painter.width",
    "guidance_scale": "painter.guidance_scale",
    "max_sequence_length": "painter.max_sequence_length",
    "regional": "loop.regional",
    "strength": "loop.strength",
    "edit_strength": "loop.edit_strength",
    "blur_sigma": "loop.blur_sigma",
    "region_max_sequence_length": "loop.region_max_sequence_length",
    "dtype": "painter.dtype",
    "device": "painter.device",
    "offload": "painter.offload",
}


def parse_edit(text: str) -> tuple[Box, str]:
    """``"x0,y0,x1,y1=local prompt"`` -> (Box, prompt); argparse turns the error into a usage error."""
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


def resolve(args: argparse.Namespace):
    from artaug.config import load_config, parse_set_options

    overrides = parse_set_options(args.set)
    if args.edit and args.rounds is None:
        overrides["loop.rounds"] = 0  # your own edits mean one painting; the loop's edits come from the critic
    overrides.update(
        {field: getattr(args, flag) for flag, field in FLAG_FIELDS.items() if getattr(args, flag) is not None}
    )
    return load_config(args.config, overrides)


def build_request(args: argparse.Namespace, config) -> PaintRequest:
    """The one painting of ``--rounds 0``: the first painting's settings plus the command line's edits."""
    from artaug.loop import first_request

    edits = tuple(Edit(box, prompt, strength=config.loop.edit_strength) for box, prompt in args.edit)
    return first_request(args.prompt, config.painter, args.seed).replace(
        edits=edits,
        regional=config.loop.regional,
        blur_sigma=config.loop.blur_sigma,
        region_max_sequence_length=config.loop.region_max_sequence_length,
    )


def run_paint(args: argparse.Namespace) -> int:
    # 1. Check everything that can be checked before loading gigabytes of weights.
    try:
        config = resolve(args)
        if config.loop.rounds < 0:
            raise ValueError("--rounds must be >= 0")
        if args.edit and config.loop.rounds > 0:
            raise ValueError("--edit is for --rounds 0; in the loop the critic proposes the edits")
        request = build_request(args, config)
        check_request(request)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    # 2. Paint: one image, or the whole loop; both report out-of-memory with the way out.
    import torch

    try:
        if config.loop.rounds == 0:
            return paint_once(args, config, request)
        return paint_loop(args, config)
    except torch.OutOfMemoryError:
        print(f"error: {OOM_HINT}", file=sys.stderr)
        return 1


def paint_once(args: argparse.Namespace, config, request: PaintRequest) -> int:
    from tqdm.auto import tqdm

    from artaug.components import load_painter
    from artaug.pngmeta import a1111_parameters, painting_provenance, save_png

    try:
        painter = load_painter(config.painter)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with tqdm(total=request.num_inference_steps, desc="painting", unit="step") as bar:

        def progress(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        try:
            painting = painter.paint(request, progress=progress)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    output = args.output or Path("painting.png")
    path = save_png(painting.image, output, a1111_parameters(request, painting.model), painting_provenance(painting))
    cost = painting.cost
    print(f"wrote {path} ({cost.steps} steps, {cost.transformer_passes} transformer passes, {cost.seconds:.1f} s)")
    return 0


def paint_loop(args: argparse.Namespace, config) -> int:
    from artaug.app import ProgressPrinter, paint
    from artaug.components import Components

    output = args.output or Path("runs") / f"{slug(args.prompt)}-{args.seed}"
    try:
        components = Components.load(config)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        result = paint(args.prompt, config=config, seed=args.seed, output=output, components=components,
                       on_event=ProgressPrinter())  # fmt: skip
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {output} holds the rounds completed so far", file=sys.stderr)
        return 130
    print(summary(result, output))
    return 0


def summary(result, output: Path) -> str:
    trail = result.trail
    first = trail.first_cost
    lines = [f"{trail.stopped}; final painting: round {trail.best}"]
    for record in trail.rounds:
        state = "accepted" if record.accepted else "not accepted"
        relative = record.cost.transformer_passes / max(first.transformer_passes, 1)
        lines.append(
            f"  round {record.index}: {len(record.critique.edits)} edits, {state}, {record.cost.transformer_passes}"
            f" transformer passes ({relative:.2f}x the first painting), {record.cost.seconds:.1f} s"
        )
    total = trail.total_cost
    lines.append(
        f"total: {total.transformer_passes} transformer passes "
        f"({total.transformer_passes / max(first.transformer_passes, 1):.2f}x one painting), {total.seconds:.1f} s"
    )
    where = output if output.suffix.lower() != ".png" else f"{output} (trail: {output.stem}.trail.json)"
    lines.append(f"run: {where}")
    return "\n".join(lines)


def slug(text: str, length: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].strip("-") or "painting"
