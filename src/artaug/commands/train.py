"""``artaug train PAIRS_DIR`` (differential LoRA training), ``artaug bootstrap`` (the self-improvement cycle) and
``artaug lora merge`` / ``artaug lora kohya``."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import fields
from pathlib import Path

from artaug.train.config import TrainConfig

FORMATS = ("diffusers", "kohya", "both")


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
    train.add_argument("--painter", required=True, help="FLUX pipeline: hub id or local folder")
    train.add_argument("--out", type=Path, required=True, help="output folder (LoRA, config, checkpoints, cache)")
    train.add_argument("--config", type=Path, help="TOML file with a [train] table of TrainConfig fields")
    train.add_argument("--format", choices=FORMATS, default="diffusers", help="LoRA file format(s) to write")
    train.add_argument("--all-pairs", action="store_true", help="also train on pairs the synth filters rejected")
    _add_config_flags(train)
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
    boot.add_argument("--iterations", type=int, default=3, help="most iterations (default 3)")
    boot.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    boot.add_argument("--synth-config", type=Path, help="TOML with painter/critic/judge/loop sections and [synth]")
    boot.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="synth config override")
    boot.add_argument("--painter", help="painter hub id or folder (painter.model)")
    boot.add_argument("--critic", help="critic hub id, folder or OpenAI-compatible URL (critic.model)")
    boot.add_argument("--tiny", action="store_true", help="the built-in tiny models at 64 px (plumbing only)")
    boot.add_argument("--score", default="aesthetic", help="judge score averaged over the held-out prompts")
    boot.add_argument("--min-improvement", type=float, default=0.0, help="least held-out gain that counts")
    boot.add_argument("--config", type=Path, help="TOML with a [train] table of TrainConfig fields")
    boot.add_argument("--format", choices=FORMATS, default="diffusers", help="final LoRA file format(s)")
    _add_config_flags(boot)
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
    merge.add_argument("--weights", type=float, nargs="+", help="one multiplier per input (default 1 each)")
    merge.add_argument("--rank", type=int, help="re-compress to this rank by SVD")
    merge.add_argument("--format", choices=FORMATS, default="diffusers", help="file format(s) to write")
    merge.set_defaults(func=run_merge)
    kohya = actions.add_parser("kohya", help="write a diffusers-format LoRA in kohya / ComfyUI format")
    kohya.add_argument("input", type=Path, metavar="LORA", help="diffusers LoRA file or folder")
    kohya.add_argument("--out", type=Path, required=True, help="output .safetensors file or folder")
    kohya.set_defaults(func=run_kohya)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    # One flag per TrainConfig field, typed and documented from the dataclass, so the CLI cannot drift from it.
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training config (overrides --config)")
    for f in fields(TrainConfig):
        flag, hint, help = "--" + f.name.replace("_", "-"), hints[f.name], f.metadata["help"]
        if hint is bool:
            group.add_argument(flag, dest=f"cfg_{f.name}", action=argparse.BooleanOptionalAction, help=help)
        elif typing.get_origin(hint) is typing.Literal:
            group.add_argument(flag, dest=f"cfg_{f.name}", choices=typing.get_args(hint), help=help)
        elif typing.get_origin(hint) is tuple:
            group.add_argument(flag, dest=f"cfg_{f.name}", nargs="+", metavar="NAME", help=help)
        else:
            group.add_argument(flag, dest=f"cfg_{f.name}", type=hint, metavar=f.name.upper(),
                               help=f"{help} (default {f.default})")  # fmt: skip


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    data = TrainConfig.from_toml(args.config).to_dict() if args.config else {}
    for f in fields(TrainConfig):
        value = getattr(args, f"cfg_{f.name}", None)
        if value is not None:
            data[f.name] = value
    return TrainConfig.from_dict(data)


def run_train(args: argparse.Namespace) -> int:
    from artaug.store import read_pairs
    from artaug.train.trainer import train_lora

    try:
        config = config_from_args(args)
        pairs = read_pairs(args.pairs_dir, kept_only=not args.all_pairs)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not pairs:
        print(f"error: {args.pairs_dir} has no {'' if args.all_pairs else 'kept '}pairs to train on", file=sys.stderr)
        return 2
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
    from artaug.commands.synth import TINY_PRESET
    from artaug.config import parse_set_options
    from artaug.synth.prompts import read_prompts
    from artaug.synth.run import load_synth_config
    from artaug.train.bootstrap import BootstrapConfig, bootstrap

    # 1. The configs: synth (defaults < --tiny < file < flags < --set) and train (file < flags).
    overrides: dict[str, str] = {}
    if args.tiny:
        from artaug.tiny import tiny_critic_path, tiny_painter_path

        overrides |= TINY_PRESET | {"painter.model": str(tiny_painter_path()), "critic.model": str(tiny_critic_path())}
    overrides |= {k: v for k, v in {"painter.model": args.painter, "critic.model": args.critic}.items() if v}
    try:
        overrides |= parse_set_options(args.set)
        synth_config = load_synth_config(args.synth_config, overrides)
        config = BootstrapConfig(iterations=args.iterations, score=args.score, min_improvement=args.min_improvement,
                                 kohya=args.format != "diffusers", train=config_from_args(args))  # fmt: skip
        prompts, heldout = read_prompts(args.prompts), read_prompts(args.heldout)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # 2. Run (resumes whatever --out holds) and print the table.
    try:
        report = bootstrap(prompts, heldout, synth_config, config, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    print(f"stopped: {report.stopped}")
    print(f"final LoRA: {report.final or 'none (no iteration improved the held-out score)'}")
    print(f"report: {args.out / 'report.md'}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from artaug.train.lora_io import load_lora, save_kohya, save_lora
    from artaug.train.merge import merge_loras, recompress

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

    lora, metadata = load_lora(args.input)
    metadata.pop("lora_adapter_metadata", None)
    metadata.pop("format", None)
    print(f"wrote {save_kohya(args.out, lora, metadata)}")
    return 0
