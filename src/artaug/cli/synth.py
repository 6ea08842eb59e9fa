"""``artaug synth``: prompts → filtered (before, after) pairs in a resumable store; ``stats`` and ``export`` on it.

artaug synth PROMPTS --out DIR [--config FILE] [--set section.key=value ...] [--ray auto|ADDRESS]
artaug synth --resume --out DIR          # continue the store's own queue
artaug synth stats DIR [--png PATH]
artaug synth export DIR --format imagefolder|kohya|webdataset --to OUT [--all]
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from artaug.cli.options import add_config_file_flags, add_config_flags, check_output, config_from_args, integer

SYNTH_SETTINGS = ("painter.model", "critic.model", "loop.rounds", "synth.all_rounds")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="synthesise filtered (before, after) pairs from a prompt file; also: synth stats DIR, synth export DIR",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target", nargs="?", metavar="PROMPTS|stats|export", help="prompt file (.txt .jsonl .csv .parquet), or a verb"
    )
    parser.add_argument("path", nargs="?", metavar="DIR", help="the store folder (for stats and export)")
    run = parser.add_argument_group("synthesis")
    run.add_argument("--out", type=Path, help="the store folder (created; running again resumes it)")
    run.add_argument("--resume", action="store_true", help="continue the store's queue (PROMPTS optional)")
    run.add_argument("--sample", action="store_true", help="use the built-in sample prompt set as PROMPTS")
    run.add_argument("--tiny", action="store_true", help="the built-in tiny models at 64 px, 2 steps (no downloads)")
    run.add_argument("--limit", type=integer(1), help="process at most this many prompts in this invocation")
    run.add_argument("--retry-failed", action="store_true", help="run prompts that failed before again")
    run.add_argument("--ray", metavar="auto|ADDRESS", help="run on Ray: auto (running cluster, else local) or address")
    run.add_argument("--workers", type=integer(1), help="Ray actors (default: one per GPU, or 1 without GPUs)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    run.add_argument("-q", "--quiet", action="store_true", help="warnings only in the log")
    stats = parser.add_argument_group("stats")
    stats.add_argument("--png", type=Path, help="histogram PNG path (default DIR/stats.png)")
    export = parser.add_argument_group("export")
    export.add_argument("--format", choices=("imagefolder", "kohya", "webdataset"), help="export layout")
    export.add_argument("--to", type=Path, help="export folder (new or empty)")
    export.add_argument(
        "--all", action="store_true", help="export the filters' dropped pairs too (default: accepted pairs only)"
    )
    export.add_argument("--shard-size", type=integer(1), default=1000, help="pairs per WebDataset shard")
    add_config_file_flags(run)
    add_config_flags(run, SYNTH_SETTINGS)
    parser.set_defaults(func=main, synth_parser=parser)


def main(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.synth_parser
    if args.target == "stats":
        return _stats(args, parser)
    if args.target == "export":
        return _export(args, parser)
    return _synth(args, parser)


def _synth(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from artaug.synth.prompts import read_prompts, sample_prompts_path
    from artaug.synth.run import synthesize

    # 1. check the arguments
    if args.out is None:
        parser.error("--out DIR is required")
    if args.path is not None:
        parser.error(f"unexpected argument {args.path!r} (the store folder goes in --out)")
    if args.sample and args.target:
        parser.error("give either PROMPTS or --sample, not both")
    if not (args.target or args.sample or args.resume):
        parser.error("give a PROMPTS file, --sample, or --resume to continue the store's queue")
    _setup_logging(args.quiet)

    # 2. the config (defaults < --tiny < --config file < --set < flags) and the prompts, checked before any model
    #    loads or anything is written
    presets = None
    if args.tiny:
        from artaug.tiny import tiny_overrides

        presets = tiny_overrides()
    config = config_from_args(args, presets)
    path = sample_prompts_path() if args.sample else args.target
    prompts = read_prompts(path) if path else None
    check_output(args.out, "folder")
    if args.resume and not prompts and not (args.out / "ledger.sqlite").is_file():
        raise FileNotFoundError(f"--resume: {args.out} is not a synth store yet; give a PROMPTS file to start one")

    # 3. run; the store says what is already done
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[logging.getLogger("artaug.synth")]):
        summary = synthesize(
            prompts,
            args.out,
            config,
            ray=args.ray,
            workers=args.workers,
            limit=args.limit,
            retry_failed=args.retry_failed,
            progress=not args.no_progress,
        )
    c = summary.counts
    print(
        f"{args.out}: {summary.processed} prompts processed in {summary.seconds:.1f}s "
        f"({summary.kept} pairs kept, {summary.dropped} dropped, {summary.failed} failed); "
        f"store: {c['done']} done, {c['failed']} failed, {c['pending']} pending, {c['kept']}/{c['pairs']} pairs kept"
    )
    return 0


def _stats(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from artaug.synth.stats import collect, plot

    if args.path is None:
        parser.error("usage: artaug synth stats DIR")
    if args.png is not None:
        check_output(args.png)
    stats = collect(args.path)
    print(stats.format())
    png = args.png or Path(args.path) / "stats.png"
    if args.png is None and not os.access(args.path, os.W_OK):
        print(f"histograms: not written ({args.path} is read-only; pass --png PATH)")
        return 0
    print(f"histograms: {plot(stats, png)}")
    return 0


def _export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from artaug.synth.export import export

    if args.path is None or args.format is None or args.to is None:
        parser.error("usage: artaug synth export DIR --format imagefolder|kohya|webdataset --to OUT")
    check_output(args.to, "folder")
    out = export(args.path, args.to, args.format, kept_only=not args.all, shard_size=args.shard_size)
    print(f"exported to {out} ({args.format})")
    return 0


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("artaug.synth")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False  # libraries may configure the root logger; print each line once
