"""``artaug demo``: the whole loop, offline, on the built-in tiny models (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

from artaug.cli.options import add_config_flags, check_output, config_from_args

DEMO_PROMPT = "a red fox in a snowy birch forest at golden hour, soft rim light"
# Tiny models paint at a tiny size: 128 px is 64 FLUX image tokens, a second or so per painting on a laptop CPU.
DEMO_SETTINGS = {
    "painter.height": 128,
    "painter.width": 128,
    "painter.num_inference_steps": 8,
    "painter.max_sequence_length": 32,
    "loop.region_max_sequence_length": 32,
    "critic.max_new_tokens": 64,
}
# The closed world's example: a held-out prompt of `artaug world bench --quick` whose first painting has a square
# where the triangle should be; the default loop fixes it in round 1 (picked from that run to show, not measured by
# it). The world part runs the bench's WORLD_ROUNDS rounds whatever ``--rounds`` says (that flag is the tiny parts').
WORLD_PROMPT = "a triangle at the bottom and a square at the top"
WORLD_SEED = 817757975
WORLD_ROUNDS = 2
DEMO_EDITS = (("0.0,0.0,1.0,0.4", "a glowing orange sunset sky"), ("0.3,0.5,0.8,1.0", "a red fox"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="paint, critique, repaint and judge offline on the built-in tiny models", description=__doc__
    )
    parser.add_argument("--output", type=Path, default=Path("runs/demo"), help="folder for the demo's outputs")
    parser.add_argument("--prompt", default=DEMO_PROMPT, help="what to paint")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo")
    add_config_flags(parser, ("loop.rounds",))
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from artaug.cli.paint import ProgressPrinter, summary
    from artaug.critic import critic_from_config
    from artaug.loop import first_request
    from artaug.loop.components import Components
    from artaug.loop.paint import paint
    from artaug.loop.runfolder import free_output
    from artaug.pngmeta import a1111_parameters, painting_provenance, save_png
    from artaug.tiny import tiny_critic_path, tiny_painter_path
    from artaug.types import Box, Edit
    from artaug.world import world_overrides
    from artaug.world.metric import judge_image

    # 1. Settings, checked before anything is built or written.
    config = config_from_args(args, presets=DEMO_SETTINGS)
    check_output(args.output, "folder")
    out = free_output(args.output, args.overwrite)
    if out != args.output:
        print(f"{args.output} exists: writing {out} instead (--overwrite replaces it)")
    config = config.updated({"painter.model": str(tiny_painter_path()), "critic.model": str(tiny_critic_path())})
    print(f"tiny painter: {config.painter.model}\ntiny critic:  {config.critic.model}")
    components = Components.load(config)
    painter = components.painter

    # 2. One painting without edits, and the same seed repainted with two regional edits in each mode.
    request = first_request(args.prompt, config.painter, 0)
    edits = tuple(Edit(Box(*map(float, box.split(","))), text) for box, text in DEMO_EDITS)
    for name, changes in (
        ("plain", {}),
        *((mode, {"edits": edits, "regional": mode}) for mode in ("blend", "attention")),
    ):
        painting = painter.paint(request.replace(**changes))
        save_png(painting.image, out / f"{name}.png", a1111_parameters(painting.request, painting.model),
                 painting_provenance(painting))  # fmt: skip

    # 3. The main job: paint → critique → repaint → judge, with the tiny Qwen2-VL critic. Its random weights write
    #    gibberish, so expect the loop to stop at round 1 with the unusable answer recorded in the trail.
    result = paint(args.prompt, config=config, output=out / "run", components=components, on_event=ProgressPrinter())
    print(summary(result, out / "run"))

    # 4. The same loop with an art director's notes written in advance (artaug/data/demo_critique.txt): the notes go
    #    through the same parser as a VLM's answer, so this shows the repaint, judge and contact-sheet path.
    notes = str(files("artaug") / "data" / "demo_critique.txt")
    notes_config = config.updated({"critic.model": notes})
    notes_components = Components(painter, critic_from_config(notes_config.critic), components.judge)
    result = paint(args.prompt, config=notes_config, output=out / "run_notes", components=notes_components,
                   on_event=ProgressPrinter())  # fmt: skip
    print(summary(result, out / "run_notes"))

    # 5. The closed world (artaug.world): a painter trained here on scenes of shapes, and a critic that really looks
    #    (a detector). Its first painting misses part of the prompt; the critique asks for it by box; the repaint
    #    paints it. The tiny models above prove the plumbing; this one shows the method doing what it claims.
    world_config = config_from_args(args, presets=world_overrides()).updated({"loop.rounds": WORLD_ROUNDS})
    world = Components.load(world_config)
    result = paint(WORLD_PROMPT, config=world_config, output=out / "world_run", components=world, seed=WORLD_SEED,
                   on_event=ProgressPrinter())  # fmt: skip
    print(summary(result, out / "world_run"))
    for name, painting in (("first painting", result.first), ("final painting", result.final)):
        verdict = judge_image(painting.image, WORLD_PROMPT)
        print(f"world metric, {name}: {'correct' if verdict.correct else 'wrong: ' + '; '.join(verdict.reasons)}")
    print(
        f"\ndemo outputs in {out}: plain.png, blend.png, attention.png (regional edits), run/ (tiny VLM critic),"
        f" run_notes/ (recorded notes; open run_notes/contact_sheet.png), world_run/ (the closed world: open"
        f" world_run/contact_sheet.png)"
    )
    return 0
