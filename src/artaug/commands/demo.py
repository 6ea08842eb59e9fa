"""``artaug demo``: the whole loop, offline, on the built-in tiny models (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

DEMO_PROMPT = "a red fox in a snowy birch forest at golden hour, soft rim light"
# Tiny models paint at a tiny size: 128 px is 64 FLUX image tokens, a second or so per painting on a laptop CPU.
DEMO_ARGS = ["--height", "128", "--width", "128", "--steps", "8", "--max-sequence-length", "32"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="paint, critique, repaint and judge offline on the built-in tiny models", description=__doc__
    )
    parser.add_argument("--output", default="runs/demo", help="folder for the demo's outputs")
    parser.add_argument("--prompt", default=DEMO_PROMPT)
    parser.add_argument("--rounds", type=int, default=2)
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from artaug.cli import main
    from artaug.tiny import tiny_critic_path, tiny_painter_path

    out = Path(args.output)
    painter, critic = str(tiny_painter_path()), str(tiny_critic_path("qwen2-vl"))
    print(f"tiny painter: {painter}\ntiny critic:  {critic}")

    # 1. One painting without edits, and the same seed repainted with two regional edits in each mode.
    common = ["--painter", painter, "--rounds", "0", "--seed", "0", *DEMO_ARGS]
    edits = ["--edit", "0.0,0.0,1.0,0.4=a glowing orange sunset sky", "--edit", "0.3,0.5,0.8,1.0=a red fox"]
    for name, extra in (
        ("plain", []),
        ("blend", [*edits, "--regional", "blend"]),
        ("attention", [*edits, "--regional", "attention"]),
    ):
        code = main(["paint", args.prompt, *common, *extra, "--output", str(out / f"{name}.png")])
        if code:
            return code

    # 2. The main job: paint → critique → repaint → judge, with the tiny Qwen2-VL critic. Its random weights write
    #    gibberish, so expect the loop to stop at round 1 with the unusable answer recorded in the trail.
    loop_args = ["--painter", painter, "--rounds", str(args.rounds), "--seed", "0", *DEMO_ARGS]
    if code := main(["paint", args.prompt, *loop_args, "--critic", critic, "--output", str(out / "run")]):
        return code

    # 3. The same loop with an art director's notes written in advance (artaug/data/demo_critique.txt): the notes go
    #    through the same parser as a VLM's answer, so this shows the repaint, judge and contact-sheet path.
    notes = str(files("artaug") / "data" / "demo_critique.txt")
    if code := main(["paint", args.prompt, *loop_args, "--critic", notes, "--output", str(out / "run_notes")]):
        return code
    print(
        f"\ndemo outputs in {out}: plain.png, blend.png, attention.png (regional edits), run/ (tiny VLM critic),"
        f" run_notes/ (recorded notes; open run_notes/contact_sheet.png)"
    )
    return 0
