"""Synthesise (before, after) pairs from a prompt file, look at the stats, and export them for training.

    python examples/synth_pairs.py --tiny --out runs/pairs          # offline, on the built-in tiny models
    python examples/synth_pairs.py prompts.txt --out runs/pairs     # FLUX.1-dev + Qwen2-VL-7B on a GPU

Running it again resumes: committed prompts are skipped. The same job from the shell is
``artaug synth PROMPTS --out DIR``, ``artaug synth stats DIR`` and ``artaug synth export DIR --format ... --to ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artaug.config import load_config
from artaug.synth import read_pairs, read_prompts, sample_prompts_path
from artaug.synth.export import export
from artaug.synth.run import synthesize
from artaug.synth.stats import collect, plot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompts", nargs="?", type=Path, help="prompt file (default: the built-in sample set)")
    parser.add_argument("--out", type=Path, default=Path("runs/pairs"), help="the store folder")
    parser.add_argument("--tiny", action="store_true", help="the built-in tiny models at 64 px, 2 steps")
    parser.add_argument("--limit", type=int, default=None, help="at most this many prompts")
    args = parser.parse_args()

    # 1. config: the tiny models for an offline try, else the real defaults
    overrides = {}
    if args.tiny:
        from artaug.tiny import tiny_overrides

        # Tiny models have no aesthetic or alignment scorer: keep the unscored pairs, but still record why.
        overrides = {**tiny_overrides(), "synth.filters.keep_not_scored": True}
    config = load_config(None, overrides)

    # 2. synthesise (resumable), then the stats and a histogram of the score deltas
    prompts = read_prompts(args.prompts or sample_prompts_path())[: args.limit]
    summary = synthesize(prompts, args.out, config)
    print(f"processed {summary.processed} prompts in {summary.seconds:.1f}s")
    stats = collect(args.out)
    print(stats.format())
    print(f"histograms: {plot(stats, args.out / 'stats.png')}")

    # 3. the pairs as trainers read them, and an export in the kohya / ai-toolkit layout
    pairs = read_pairs(args.out)
    print(f"{len(pairs)} pairs, {sum(p.kept for p in pairs)} kept; first: {pairs[0].before} -> {pairs[0].after}")
    target = args.out.with_name(args.out.name + "-kohya")
    if not target.exists():
        print(f"exported: {export(args.out, target, 'kohya', kept_only=False)}")


if __name__ == "__main__":
    main()
