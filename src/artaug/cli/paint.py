"""``artaug paint PROMPT``: the main job. Paint, let the critic ask for revisions, repaint, judge, keep the best.

``--rounds 0`` paints one image (optionally with your own ``--edit``s) and nothing else. Settings come from the
defaults (FLUX.1-dev + Qwen2-VL-7B-Instruct; sizes and steps as diffusers' ``FluxPipeline``), then ``--config
FILE.toml``, then ``--set section.key=value``, then the flags below. An existing output is never overwritten: the
run goes to ``NAME-2``... unless ``--overwrite`` (which clears the old run first).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from artaug.cli.options import add_config_file_flags, add_config_flags, check_output, config_from_args, integer
from artaug.config import Config
from artaug.loop.paint import PAINT_SETTINGS
from artaug.types import MAX_EDITS, MAX_SEED, Box, Edit, PaintRequest


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "paint",
        help="paint a prompt, revised by the critic (--rounds 0: one painting, optionally with --edit)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", metavar="PROMPT", help="what to paint")
    parser.add_argument(
        "--seed", type=integer(0, MAX_SEED), default=0, help='seed N = torch.Generator("cpu").manual_seed(N) [0]'
    )
    parser.add_argument(
        "--edit",
        action="append",
        default=[],
        type=parse_edit,
        metavar='"x0,y0,x1,y1=local prompt"',
        help="a regional edit (implies --rounds 0): box in normalised [0,1] image coordinates (origin top-left) "
        "and what it should become; repeatable",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="a .png file (its trail beside it) or a run folder [painting.png with --rounds 0, else "
        "runs/<prompt>-<seed>]; an existing one is kept and NAME-2... used instead",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (clears an old run)")
    add_config_file_flags(parser)
    add_config_flags(parser, PAINT_SETTINGS, "settings (each is also a config field)")
    parser.set_defaults(func=run_paint)


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


def resolve(args: argparse.Namespace) -> Config:
    """The validated config; your own ``--edit``s mean one painting (the loop's edits come from the critic)."""
    config = config_from_args(args)
    if args.edit and config.loop.rounds > 0:
        if "cfg:loop.rounds" in vars(args) or any(s.startswith("loop.rounds=") for s in args.set):
            raise ValueError("--edit is for --rounds 0; in the loop the critic proposes the edits")
        config = config.updated({"loop.rounds": 0})
    if len(args.edit) > MAX_EDITS:
        raise ValueError(f"at most {MAX_EDITS} --edit flags, got {len(args.edit)}")
    return config


def build_request(args: argparse.Namespace, config: Config) -> PaintRequest:
    """The one painting of ``--rounds 0``: the first painting's settings plus the command line's edits."""
    from artaug.loop import first_request

    edits = tuple(Edit(box, prompt, weight=config.loop.edit_weight) for box, prompt in args.edit)
    return first_request(args.prompt, config.painter, args.seed).replace(
        edits=edits,
        regional=config.loop.regional,
        blur_sigma=config.loop.blur_sigma,
        region_max_sequence_length=config.loop.region_max_sequence_length,
    )


def run_paint(args: argparse.Namespace) -> int:
    from artaug.loop.runfolder import free_output
    from artaug.painter import check_request, painter_class

    # 1. Check everything that can be checked before loading gigabytes of weights.
    config = resolve(args)
    request = build_request(args, config)
    check_request(request)
    painter_class(config.painter.model)
    single = config.loop.rounds == 0
    output = args.output or (Path("painting.png") if single else Path("runs") / f"{slug(args.prompt)}-{args.seed}")
    if single and output.suffix.lower() != ".png":
        output = output / "painting.png"  # --rounds 0 writes one image; a folder gets it inside
    check_output(output, "file" if output.suffix.lower() == ".png" else "folder")
    target = free_output(output, args.overwrite)
    if target != output:
        print(f"{output} exists: writing {target} instead (--overwrite replaces it)", file=sys.stderr)

    # 2. Paint: one image, or the whole loop.
    if single:
        return paint_once(config, request, target)
    return paint_loop(args, config, target)


def paint_once(config: Config, request: PaintRequest, output: Path) -> int:
    from tqdm.auto import tqdm

    from artaug.painter import load_painter
    from artaug.pngmeta import a1111_parameters, painting_provenance, save_png

    painter = load_painter(config.painter)
    with tqdm(total=request.num_inference_steps, desc="painting", unit="step") as bar:

        def progress(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        painting = painter.paint(request, progress=progress)
    path = save_png(painting.image, output, a1111_parameters(request, painting.model), painting_provenance(painting))
    cost = painting.cost
    print(f"wrote {path} ({cost.steps} steps, {cost.transformer_passes} transformer passes, {cost.seconds:.1f} s)")
    return 0


def paint_loop(args: argparse.Namespace, config: Config, output: Path) -> int:
    from artaug.loop.components import Components
    from artaug.loop.paint import paint

    components = Components.load(config)
    try:
        result = paint(args.prompt, config=config, seed=args.seed, output=output, overwrite=True,
                       components=components, on_event=ProgressPrinter())  # fmt: skip
    except KeyboardInterrupt:
        print(f"interrupted: {output} holds the rounds completed so far", file=sys.stderr)
        return 130
    print(summary(result, output))
    return 0


def summary(result: Any, output: Path) -> str:
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


class ProgressPrinter:
    """Renders loop events as tqdm bars (one per painting) and one line per decision, on stderr."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.bar: Any = None

    def __call__(self, event: Any) -> None:
        from tqdm.auto import tqdm

        from artaug.loop import Decided, Finished, PaintStep, Rerolled, RoundStarted

        if isinstance(event, RoundStarted):
            self._close()
            label = "first painting" if event.round == 0 else f"round {event.round}"
            self.bar = tqdm(total=None, desc=label, unit="step", file=self.stream, leave=False)
        elif isinstance(event, PaintStep) and self.bar is not None:
            self.bar.total = event.total
            self.bar.update(event.step - self.bar.n)
        elif isinstance(event, Rerolled):
            self._print(f"seed {event.seed} gave a broken image ({'; '.join(event.problems)}): re-rolling")
        elif isinstance(event, Decided):
            self._close()
            state = "accepted" if event.accepted else "not accepted"
            self._print(f"round {event.round}: {state}" + (f" ({'; '.join(event.reasons)})" if event.reasons else ""))
        elif isinstance(event, Finished):
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _print(self, line: str) -> None:
        print(line, file=self.stream)
