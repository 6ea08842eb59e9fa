"""``artaug train PAIRS_DIR`` (differential LoRA training), ``artaug bootstrap`` (the self-improvement cycle) and
``artaug lora merge`` / ``artaug lora kohya``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from artaug.cli.options import (
    add_config_file_flags,
    add_config_flags,
    check_output,
    config_from_args,
    finite,
    integer,
)
from artaug.config import TrainConfig

FORMATS = ("diffusers", "kohya", "both")
TRAIN_SETTINGS = tuple(f"train.{name}" for name, _, _ in TrainConfig.settings())
BOOTSTRAP_SETTINGS = ("bootstrap.iterations", "bootstrap.score", "bootstrap.min_improvement", "eval.metrics",
                      "eval.epsilon", "painter.model", "critic.model")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a (differential) LoRA on the pairs of a synth store",
        description="Stage 1 trains a LoRA on the before images and fuses it; stage 2 trains a fresh LoRA on the "
        "after images and is the one kept (mode differential). Mode plain trains one LoRA on the after images. "
        "Run it again with the same --out to resume; `accelerate launch -m artaug.cli train ...` runs it on "
        "several GPUs. Every config field is a flag; --config reads a TOML file first.",
    )
    train.add_argument("pairs_dir", type=Path, metavar="PAIRS_DIR", help="a synth store folder (artaug synth --out)")
    train.add_argument(
        "--painter", required=True, help="painter pipeline (FLUX.1, Qwen-Image): hub id or local folder"
    )
    train.add_argument("--out", type=Path, required=True, help="output folder (LoRA, config, checkpoints, cache)")
    train.add_argument("--format", choices=FORMATS, default="diffusers", help="LoRA file format(s) to write")
    train.add_argument(
        "--all-pairs",
        action="store_true",
        help="also train on pairs the synth filters dropped (never on pairs a person rejected)",
    )
    train.add_argument("--overwrite", action="store_true", help="start over: clear the training run in --out first")
    add_config_file_flags(train)
    add_config_flags(train, TRAIN_SETTINGS, "training settings ([train] in the config file)")
    train.set_defaults(func=run_train)

    boot = subparsers.add_parser(
        "bootstrap",
        help="synth → differential train → fuse → score held-out prompts, repeated while it helps",
        description="Each iteration synthesizes pairs with the current painter, trains a differential LoRA on them, "
        "fuses it and scores the held-out prompts (same seeds); it is kept only if the score improves, otherwise "
        "rolled back and the run stops. Writes DIR/final (the merged kept LoRAs), report.md and report.png. Run it "
        "again with the same --out to resume.",
    )
    boot.add_argument("--prompts", type=Path, required=True, help="prompts file for synthesis (.txt/.jsonl/.csv)")
    boot.add_argument("--heldout", type=Path, required=True, help="held-out prompts file (scored, never trained on)")
    boot.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    boot.add_argument("--tiny", action="store_true", help="the built-in tiny models at 64 px (plumbing only)")
    boot.add_argument("--format", choices=FORMATS, default="diffusers", help="final LoRA file format(s)")
    add_config_file_flags(boot)
    add_config_flags(boot, BOOTSTRAP_SETTINGS, "the cycle")
    add_config_flags(boot, TRAIN_SETTINGS, "training settings ([train] in the config file)")
    boot.set_defaults(func=run_bootstrap)

    lora = subparsers.add_parser("lora", help="merge or convert LoRA files")
    actions = lora.add_subparsers(dest="action", required=True, metavar="ACTION")
    merge = actions.add_parser(
        "merge",
        help="sum LoRAs' weight updates (exact: concatenation along the rank)",
        description="Write the LoRA whose update is the (weighted) sum of the inputs' updates. --rank re-compresses "
        "it by truncated SVD and reports the relative error per layer.",
    )
    merge.add_argument("inputs", nargs="+", type=Path, metavar="LORA", help="LoRA files or folders")
    merge.add_argument("--out", type=Path, required=True, help="output folder or .safetensors file")
    merge.add_argument("--weights", type=finite, nargs="+", help="one multiplier per input (default 1 each)")
    merge.add_argument("--rank", type=integer(1), help="re-compress to this rank by SVD")
    merge.add_argument("--format", choices=FORMATS, default="diffusers", help="file format(s) to write")
    merge.set_defaults(func=run_merge)
    kohya = actions.add_parser("kohya", help="write a diffusers-format LoRA in kohya / ComfyUI format")
    kohya.add_argument("input", type=Path, metavar="LORA", help="diffusers LoRA file or folder")
    kohya.add_argument("--out", type=Path, required=True, help="output .safetensors file or folder")
    kohya.set_defaults(func=run_kohya)


def run_train(args: argparse.Namespace) -> int:
    from artaug.painter import painter_class
    from artaug.synth.store import read_pairs
    from artaug.train.data import as_pairs
    from artaug.train.trainer import RUN_FILE, train_lora

    # 1. Settings, the painter's family, pairs and output, all checked before the painter loads.
    config = config_from_args(args).train
    pairs = read_pairs(args.pairs_dir, kept_only=not args.all_pairs)
    if not pairs:
        raise ValueError(
            f"{args.pairs_dir} has no {'' if args.all_pairs else 'accepted '}pairs to train on (pairs a person "
            "rejected in the studio are left out)"
        )
    as_pairs(pairs)  # every image present and readable
    check_output(args.out, "folder")
    if args.overwrite and args.out.is_dir() and any(args.out.iterdir()):
        if not (args.out / RUN_FILE).is_file() and not (args.out / "train_config.toml").is_file():
            raise FileExistsError(f"--overwrite would clear {args.out}, which is not an artaug training folder")
        shutil.rmtree(args.out)
    painter_class(args.painter)

    # 2. Train (resumes what --out holds when it is the same run).
    print(f"training a {config.mode} LoRA on {len(pairs)} pairs from {args.pairs_dir}", file=sys.stderr)
    result = train_lora(args.painter, pairs, config, args.out, kohya=args.format != "diffusers")
    if args.format == "kohya":
        result.path.unlink(missing_ok=True)
    for name, stage in result.stages.items():
        tail = stage.losses[-20:]
        mean = sum(tail) / len(tail) if tail else float("nan")
        print(f"{name}: {stage.steps} steps in {stage.seconds:.1f} s, mean loss of the last {len(tail)}: {mean:.4f}")
    for path in (result.path, result.kohya_path):
        if path is not None and path.exists():
            print(f"wrote {path}")
    return 0


def run_bootstrap(args: argparse.Namespace) -> int:
    from artaug.synth.prompts import read_prompts
    from artaug.train.bootstrap import bootstrap

    # 1. One config (defaults < --tiny < --config < --set < flags), the prompt files and the output, checked first.
    presets = None
    if args.tiny:
        from artaug.tiny import tiny_overrides

        presets = tiny_overrides()
    config = config_from_args(args, presets)
    prompts, heldout = read_prompts(args.prompts), read_prompts(args.heldout)
    check_output(args.out, "folder")
    # 2. Run (resumes whatever --out holds) and print the table.
    report = bootstrap(prompts, heldout, config, args.out, kohya=args.format != "diffusers")
    print(report.table())
    print(f"stopped: {report.stopped}")
    print(f"final LoRA: {report.final or 'none (no iteration improved the held-out score)'}")
    print(f"report: {args.out / 'report.md'}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from artaug.train.lora_io import load_lora, save_kohya, save_lora
    from artaug.train.merge import merge_loras, recompress

    if args.weights is not None and len(args.weights) != len(args.inputs):
        raise ValueError(f"--weights gives {len(args.weights)} multipliers for {len(args.inputs)} LoRAs")
    check_output(args.out, "file" if args.out.suffix == ".safetensors" else "folder")
    loras, sources = [], []
    for path in args.inputs:
        lora, _ = load_lora(path)
        loras.append(lora)
        sources.append(str(path if path.suffix == ".safetensors" else path / "pytorch_lora_weights.safetensors"))
    merged = merge_loras(loras, args.weights)
    rank = next(iter(merged.values()))[0].shape[0]
    metadata = {"artaug.merged_from": json.dumps(sources), "artaug.merge_weights": json.dumps(args.weights)}
    print(f"merged {len(loras)} LoRAs: {len(merged)} layers, rank {rank} (exact)")
    if args.rank is not None and args.rank < rank:
        result = recompress(merged, args.rank)
        merged = result.lora
        metadata["artaug.recompress_max_error"] = f"{result.max_error:.6g}"
        print(
            f"re-compressed to rank {args.rank}: relative error mean {result.mean_error:.4g}, "
            f"max {result.max_error:.4g} ({max(result.errors, key=result.errors.get)})"
        )
    if args.format in ("diffusers", "both"):
        print(f"wrote {save_lora(args.out, merged, metadata)}")
    if args.format in ("kohya", "both"):
        print(f"wrote {save_kohya(args.out, merged, metadata)}")
    return 0


def run_kohya(args: argparse.Namespace) -> int:
    from artaug.train.lora_io import load_lora, save_kohya

    check_output(args.out, "file" if args.out.suffix == ".safetensors" else "folder")
    lora, metadata = load_lora(args.input)
    metadata.pop("lora_adapter_metadata", None)
    metadata.pop("format", None)
    print(f"wrote {save_kohya(args.out, lora, metadata)}")
    return 0
