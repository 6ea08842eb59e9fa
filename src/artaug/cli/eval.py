"""``artaug eval``: paint a prompt set under several conditions side by side and score them; or score images that
already exist. Running the same command again resumes it: nothing is painted or scored twice.

artaug eval --prompts SET --out DIR [--painter ID_OR_DIR] [--lora FILE]... [--condition NAME=SPEC]...
            [--metrics a,b,c] [--seeds N] [--loop]
artaug eval score DIR_OR_RUNS --out DIR [--reference NAME] [--prompts SET]   # SET: metadata for the prompts
artaug eval sets                          # the named prompt sets, their licences, and how to get the others

SET: a prompt file (.txt .jsonl .csv .parquet; GenEval's evaluation_metadata.jsonl included), datasets:NAME[:SPLIT
[:COLUMN]], or a named set. SPEC: comma-separated base | loop | lora=FILE | section.key=value; the first condition
is the reference. DIR_OR_RUNS: an evaluation, a synth store, run folders, or PNGs with their prompt in their metadata.
Writes DIR/summary.json, DIR/scores.jsonl and DIR/report.html (self-contained, opens offline).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artaug.cli.options import add_config_file_flags, add_config_flags, check_output, config_from_args, integer

EVAL_SETTINGS = ("eval.metrics", "eval.seeds", "eval.loop", "eval.resamples", "eval.epsilon", "eval.progress",
                 "painter.model", "critic.model", "loop.rounds")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="paint and score conditions side by side (base, + LoRA, + loop); also: eval score DIR, eval sets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("verb", nargs="?", choices=("score", "sets"), metavar="score|sets", help="optional verb")
    parser.add_argument("path", nargs="?", type=Path, metavar="DIR_OR_RUNS", help="what `eval score` scores")
    parser.add_argument("--prompts", metavar="SET", help="prompt file, datasets:NAME[:SPLIT[:COLUMN]], or a set name")
    parser.add_argument("--out", type=Path, help="the evaluation folder (created; running again resumes it)")
    parser.add_argument("--lora", action="append", default=[], metavar="FILE", help="a LoRA condition (repeatable)")
    parser.add_argument(
        "--condition", action="append", default=[], metavar="NAME=SPEC", help="a condition of your own (repeatable)"
    )
    parser.add_argument("--limit", type=integer(1), help="the first N prompts of the set only")
    parser.add_argument("--reference", metavar="NAME", help="eval score: the condition the others are compared with")
    parser.add_argument("--tiny", action="store_true", help="the built-in tiny models at 64 px (plumbing only)")
    add_config_file_flags(parser)
    add_config_flags(parser, EVAL_SETTINGS, "settings (each is also a config field)")
    parser.set_defaults(func=main, eval_parser=parser)


def main(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.eval_parser
    if args.verb == "sets":
        return _sets()
    if args.verb == "score":
        return _score(args, parser)
    return _evaluate(args, parser)


def _evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from artaug.eval import evaluate, load_prompt_set, parse_condition

    # 1. The arguments, the config, the prompts and the output, all checked before any model loads.
    if args.path is not None:
        parser.error(f"unexpected argument {args.path} (did you mean `artaug eval score {args.path}`?)")
    if args.prompts is None or args.out is None:
        parser.error("--prompts SET and --out DIR are required")
    if args.reference is not None:
        parser.error("--reference is for `eval score`; with --condition the first condition is the reference")
    if args.condition and args.lora:
        parser.error("give either --lora (base vs each LoRA) or --condition NAME=SPEC, not both")
    config = config_from_args(args, _tiny_presets() if args.tiny else None)
    conditions = [parse_condition(text) for text in args.condition] or None
    prompts = load_prompt_set(args.prompts)[: args.limit]
    check_output(args.out, "folder")

    # 2. Paint, score and report (resuming whatever --out holds).
    result = evaluate(prompts, args.out, config, conditions=conditions, loras=tuple(args.lora))
    print(f"{args.out}: painted {result.painted}, scored {result.scored}")
    print(table(result.summary))
    print(f"report: {args.out / 'report.html'}")
    return 0


def _score(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from artaug.eval import load_prompt_set, score_existing

    if args.path is None:
        parser.error("usage: artaug eval score DIR_OR_RUNS --out DIR")
    if args.lora or args.condition or args.limit:
        parser.error("eval score scores what DIR_OR_RUNS holds: --lora, --condition and --limit do not apply")
    config = config_from_args(args, _tiny_presets() if args.tiny else None)
    # A prompt set here only lends its metadata (GenEval's clauses, tags) to the images of the same prompt.
    prompts = load_prompt_set(args.prompts) if args.prompts else None
    if args.out is not None:
        check_output(args.out, "folder")
    result = score_existing(args.path, args.out, config, reference=args.reference, prompts=prompts)
    print(f"{result.folder}: scored {result.scored}")
    print(table(result.summary))
    print(f"report: {result.folder / 'report.html'}")
    return 0


def _sets() -> int:
    from artaug.eval import PROMPT_SETS

    for s in PROMPT_SETS.values():
        where = "bundled" if s.load is not None else f"not bundled: {s.fetch}"
        print(f"{s.name}: {s.description}\n    licence: {s.licence}; source: {s.source}\n    {where}")
    return 0


def _tiny_presets() -> dict[str, object]:
    from artaug.tiny import tiny_overrides
    from artaug.tiny.clip import tiny_clip_path

    models, clip = tiny_overrides(), str(tiny_clip_path())
    return {**models, "eval.metrics": "clipscore,pickscore", "eval.clip_model": clip, "eval.pickscore_model": clip,
            "eval.pickscore_processor": clip, "eval.vqa_model": models["critic.model"]}  # fmt: skip


def table(summary: dict) -> str:
    """The summary as a plain-text table: per metric and condition, mean [interval] and difference [interval]."""
    lines = []
    for metric, rows in summary["metrics"].items():
        lines.append(f"{metric}:")
        for condition, row in rows.items():
            d = row["difference"]
            lines.append(
                f"  {condition:<16} {_fmt(row['mean'])} [{_fmt(row['low'])}, {_fmt(row['high'])}]  "
                f"diff {_fmt(d['mean'])} [{_fmt(d['low'])}, {_fmt(d['high'])}]  win {_fmt(row['win_rate'])}  "
                f"n={row['n']} failed={row['failures']}"
            )
    for condition, cost in summary["cost"].items():
        lines.append(
            f"cost {condition}: {_fmt(cost['transformer_passes_per_prompt'])} transformer passes, "
            f"{_fmt(cost['vlm_calls_per_prompt'])} VLM calls, {_fmt(cost['seconds_per_prompt'])} s per prompt"
        )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
