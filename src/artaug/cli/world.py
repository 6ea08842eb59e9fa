"""``artaug world``: the closed world where the whole cycle is trained and measured on a CPU.

    artaug world bench --quick --out runs/world-bench    # loop and LoRA vs one pass, 48 held-out prompts
    artaug world bench --out runs/world-bench-full       # 261 held-out prompts
    artaug world bench --quick --bootstrap --out DIR     # + two self-bootstrap iterations (~2 x 15 min more)
    artaug world build DIR                               # retrain the world painter (the committed one is built)

Paint in the world with any command: ``artaug paint --painter <world painter> --critic world ...``; the world's
settings are ``artaug.world.WORLD_SETTINGS`` (128 px, 20 steps, 16 tokens), as ``artaug demo`` uses them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artaug.cli.options import check_output, integer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "world",
        help="the closed world: measure the loop and the LoRA on a painter trained here (CPU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    bench = kinds.add_parser("bench", help="accuracy of one pass, the loop grid and the LoRA on held-out prompts")
    bench.add_argument("--out", type=Path, required=True, help="folder for results.json, paintings and report.html")
    bench.add_argument("--quick", action="store_true", help="the fixed 48-prompt subset (a few minutes on 2 cores)")
    bench.add_argument("--rounds", type=integer(1, 8), default=2, help="critique rounds per loop row (default 2)")
    bench.add_argument("--no-lora", action="store_true", help="skip pair synthesis and LoRA distillation")
    bench.add_argument(
        "--synth-prompts", type=integer(1, 100_000), default=None,
        help="synthesis prompts for the LoRA's pairs (default 800: ~250 kept pairs, ~12 min of synthesis)",
    )  # fmt: skip
    bench.add_argument(
        "--only", default="", help="comma-separated loop rows to run (e.g. published,default); default: the grid"
    )
    bench.add_argument(
        "--bootstrap", action="store_true",
        help="also run artaug's self-bootstrap (2 iterations of synth -> LoRA -> held-out gate on train-split "
        "prompts) and, if an iteration is kept, the held-out rows with its LoRA (~2 x 15 min on 2 cores)",
    )  # fmt: skip
    bench.add_argument("--painter", default=None, help="a world painter folder (default: the committed one)")
    bench.add_argument("--overwrite", action="store_true", help="write into --out even if it holds results")
    bench.set_defaults(func=run_bench)
    build = kinds.add_parser("build", help="train the world painter (VAE, transformer, distillation) into a folder")
    build.add_argument("folder", type=Path, metavar="DIR", help="folder to write")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=run_build)


def run_bench(args: argparse.Namespace) -> int:
    check_output(args.out, "folder")
    if (args.out / "results.json").exists() and not args.overwrite:
        raise ValueError(f"{args.out} already holds results.json; choose another --out or pass --overwrite")
    if args.painter is not None and not (Path(args.painter) / "model_index.json").is_file():
        raise ValueError(f"--painter {args.painter}: not a diffusers pipeline folder (no model_index.json)")
    from artaug.world.bench import bench

    results = bench(args.out, quick=args.quick, rounds=args.rounds, lora=not args.no_lora,
                    synth_prompts=args.synth_prompts, painter_path=args.painter,
                    only=tuple(n for n in args.only.split(",") if n), bootstrap=args.bootstrap)  # fmt: skip
    print(f"\n{'condition':24s} {'accuracy':>8s}  {'delta [95% CI]':>24s}  {'cost':>6s}  edit success")
    rows = [("one pass", results["one_pass"])] + [(f"loop {k}", v) for k, v in results["loop"].items()]
    if "accuracy" in results["lora"]:
        rows += [("LoRA one pass", results["lora"]), ("LoRA + loop", results["lora"]["with_loop"])]
    boot = results["bootstrap"]
    if "one_pass" in boot:
        rows += [("bootstrap one pass", boot["one_pass"]), ("bootstrap + loop", boot["with_loop"])]
    for name, s in rows:
        ci = s.get("delta_ci")
        delta = f"{s['delta']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
        success = "" if s.get("edit_success") is None else f"{s['edit_success']:.2f}"
        print(f"{name:24s} {s['accuracy']:8.3f}  {delta:>24s}  {s.get('passes_ratio', 1.0):5.2f}x  {success}")
    if boot.get("done"):
        for it in boot["iterations"]:
            low, high = it["gate"]["interval"]
            acc = it["gate"].get("accuracy", {})
            print(f"bootstrap iteration {it['index']}: {it['kept_pairs']} kept pairs, gate {boot['score']} difference "
                  f"{_num(it['gate']['difference'])} [{_num(low)}, {_num(high)}], gate accuracy "
                  f"{_acc(acc.get('reference'))} -> {_acc(acc.get('candidate'))}: "
                  f"{'kept' if it['kept'] else 'rolled back'}")  # fmt: skip
        print(f"bootstrap: {boot['stopped']}; final LoRA: {boot['final_lora'] or 'none'}")
    print(f"\nwrote {args.out}/results.json, paintings.jsonl, report.html ({results['settings']['seconds']:.0f} s)")
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_build(args: argparse.Namespace) -> int:
    check_output(args.folder, "folder")
    if args.folder.exists() and any(args.folder.iterdir()):
        raise ValueError(f"{args.folder} is not empty; give a new folder")
    from artaug.world.build import main

    main([str(args.folder), "--seed", str(args.seed)])
    return 0
