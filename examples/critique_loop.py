"""The whole loop in one call: paint, let the critic ask for regional edits, repaint, judge, keep the best.

    python examples/critique_loop.py                    # FLUX.1-dev + Qwen2-VL-7B-Instruct on a GPU
    python examples/critique_loop.py --tiny             # offline, on the built-in tiny painter and tiny critic

``artaug.paint`` returns the trail (every round's critique, edits, decision and cost) and writes a run folder:
round_NN.png, final.png, trail.json, contact_sheet.png and config.toml. Replay it with examples/replay_run.py.
"""

import argparse
from pathlib import Path

from artaug.cli.paint import ProgressPrinter
from artaug.config import Config
from artaug.loop.paint import paint

PROMPT = "a red fox in a snowy birch forest at golden hour, soft rim light"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="use the tiny offline painter and critic")
    parser.add_argument("--output", type=Path, default=Path("runs/examples/critique_loop"), help="the run folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=None, help="height = width in pixels; default 1024 (tiny: 128)")
    parser.add_argument("--steps", type=int, default=None, help="num_inference_steps; default 28 (tiny: 8)")
    args = parser.parse_args()

    # 1. The config: real-use defaults (see artaug.config), shrunk to the tiny models with --tiny
    changes = {}
    if args.tiny:
        from artaug.tiny import tiny_critic_path, tiny_painter_path

        changes = {"painter.model": str(tiny_painter_path()), "critic.model": str(tiny_critic_path("qwen2-vl"))}
        changes |= {"painter.height": 128, "painter.width": 128, "painter.num_inference_steps": 8}
        changes |= {"painter.max_sequence_length": 32, "loop.region_max_sequence_length": 32}
        changes["critic.max_new_tokens"] = 64  # a random-weight critic writes noise; keep it short
    if args.size:
        changes |= {"painter.height": args.size, "painter.width": args.size}
    if args.steps:
        changes["painter.num_inference_steps"] = args.steps
    config = Config().updated(changes)  # validated: a bad size or step count stops here, before any model loads

    # 2. Run the loop into a run folder, with progress bars on stderr
    result = paint(PROMPT, config=config, rounds=args.rounds, seed=0, output=args.output, overwrite=True,
                   on_event=ProgressPrinter())  # fmt: skip

    # 3. What happened, and what it cost relative to the first painting
    trail = result.trail
    for record in trail.rounds:
        state = "accepted" if record.accepted else "not accepted"
        print(f"round {record.index}: {len(record.critique.edits)} edits, {state}; {'; '.join(record.reasons)}")
    first, total = trail.first_cost, trail.total_cost
    print(f"stopped: {trail.stopped}; final painting from round {trail.best}")
    ratio = total.transformer_passes / first.transformer_passes
    print(f"cost: {total.transformer_passes} transformer passes, {ratio:.2f}x the first painting's")
    print(f"run folder: {result.output}")


if __name__ == "__main__":
    main()
