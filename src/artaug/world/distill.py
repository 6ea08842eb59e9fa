"""The world's LoRA stage: pairs synthesised by the critique loop, a differential LoRA trained on them.

    distill_lora(Path("runs/world-distill"), prompts=800)  # ~12 min of synthesis, ~2.5 of training (1 thread)

1. ``synthesis_prompts``: prompts of the *synth* split only (never train or eval), an equal mix over the six
   categories (the held-out set weighs them equally), each category cycled in a seeded order; a prompt that comes
   round again is painted with another seed.
2. ``artaug.synth.run.synthesize``: the loop (world painter, world critic, judge = the world metric's partial score)
   on every prompt, its (first, final) pair filtered and committed to ``out_dir/pairs``.
3. ``artaug.train.trainer.train_lora``: the differential LoRA (stage 1 on the *before* images, fused; stage 2 on the
   *after* images, kept), written to ``out_dir/lora``, exactly as ``artaug train`` runs it.

Paint with it through the config: ``{"painter.lora": result["lora"]}`` (``from_config`` loads and fuses it, so a
painting costs what it cost without it).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artaug.config import Config, load_config
from artaug.synth.prompts import PromptRecord
from artaug.world import world_overrides
from artaug.world.grammar import CATEGORIES, split_prompts

# How pairs are made: the loop in attention mode with a full re-denoise from the seed's noise, 2 rounds (chosen when
# attention mode still ignored the edits' weights: attention@1.0 then took the quick held-out set from 0.33 to 0.56 in
# one round, attention@0.4 only to 0.375; the loop's default is now 0.8, the LoRA stage was measured at 1.0), the
# world metric's partial score as the judge. The filters need no CLIP weights:
# - revised: the loop accepted a revision (otherwise after == before, nothing to learn);
# - not_broken: the broken-image gate (pixel statistics);
# - the "aesthetic gain" filter reads the judge's ``world`` score: the after image must meet strictly more of the
#   prompt's requirements than the before image (a revision the judge accepted at equal score teaches nothing);
# - alignment drop: off (CLIPScore needs CLIP weights; the world score above is this world's alignment);
# - same scene: SSIM >= 0.5, model-free as artaug's default.
SYNTH_SETTINGS: dict[str, Any] = {
    "loop.rounds": 2,
    "loop.regional": "attention",
    "loop.strength": 1.0,
    "judge.world": True,
    "synth.filters.revised": True,
    "synth.filters.broken_gate": True,
    "synth.filters.aesthetic_score": "world",
    "synth.filters.min_aesthetic_gain": 1e-6,
    "synth.filters.max_alignment_drop": None,
    "synth.filters.similarity": "ssim",
    "synth.filters.min_similarity": 0.5,
}

# How the LoRA is trained (``[train]``): the world's size and caption length, float32 (the painter paints in float32
# on a CPU), no checkpoints in between, and the rest chosen on a dev set of *train*-split prompts (never eval ones),
# one-pass accuracy, base painter 0.354 on 96 items / 0.344 on 192:
# - 127 pairs (400 prompts), 96 items: lr 1e-3 x 1000 steps 0.354, the same with guidance 3.5 (the painting's)
#   0.344, lr 3e-3 0.333, plain mode 0.344: no setting moved it;
# - 251 pairs (800 prompts), 192 items: lr 1e-3 x 1000 steps with artaug's FLUX timestep recipe (shifted, shift 3,
#   mid-schedule weights) and guidance 1.0 as DESIGN says: 0.385 (+8 items, paired 95% interval [-0.01, +0.09]);
#   the painter's own training density (logit-normal, shift 1.6) 0.349; a control LoRA trained the same way on the
#   *before* images alone 0.266 (fine-tuning on its own paintings hurts; the after images are what helps).
# lr 1e-3 and batch 4 make 1000 steps about 16 epochs of 251 pairs, ~2.5 min on one thread; rank 16 / alpha 16 are
# artaug's defaults (an eighth of these 128-wide layers), on all 39 block layers (every FLUX target name exists here).
# artaug's lr 1e-4 was not tried at full length (at 20 steps it barely changes a painting).
TRAIN_SETTINGS: dict[str, Any] = {
    "resolution": 128,
    "max_sequence_length": 16,
    "mixed_precision": "no",
    "checkpoint_every": 0,
    "progress": False,
    "rank": 16,
    "alpha": 16.0,
    "learning_rate": 1e-3,
    "steps": 1000,
    "batch_size": 4,
    "timestep_sampling": "shifted",
    "shift": 3.0,
    "guidance": 1.0,
}


def synthesis_prompts(count: int, seed: int = 0) -> list[str]:
    """``count`` prompts of the synth split: the categories in turn, each category's prompts in an order shuffled by
    ``seed`` and cycled (single_object has 9 synth prompts, counting 16), so a long list repeats the small ones."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    orders = {}
    for category in CATEGORIES:
        prompts = list(split_prompts(category, "synth"))
        random.Random(f"{seed}:{category}").shuffle(prompts)
        orders[category] = prompts
    out = []
    for i in range(count):
        category = CATEGORIES[i % len(CATEGORIES)]
        prompts = orders[category]
        out.append(prompts[(i // len(CATEGORIES)) % len(prompts)])
    return out


def prompt_records(
    prompts: list[str],
    seed: int = 0,
    *,
    salt: str = "world-synth",
    id_prefix: str = "w",
    metas: list[dict[str, Any]] | None = None,
) -> list[PromptRecord]:
    """One ``PromptRecord`` per list entry: ids and first-painting seeds from (salt, seed, position, prompt), so a
    repeated prompt is painted with another seed; ``metas`` (one per prompt) become the records' ``meta``."""
    records = []
    for i, prompt in enumerate(prompts):
        digest = hashlib.sha256(f"{salt}:{seed}:{i}:{prompt}".encode()).hexdigest()
        meta = metas[i] if metas is not None else {}
        records.append(
            PromptRecord(
                id=f"{id_prefix}{i:05d}-{digest[:8]}",
                prompt=prompt,
                seed=int(digest[8:16], 16) & 0x7FFFFFFF,
                meta=meta,
            )
        )
    return records


def distill_config(config_overrides: dict | None = None, train_overrides: dict | None = None) -> Config:
    """The world's config with ``SYNTH_SETTINGS``, ``TRAIN_SETTINGS`` and the caller's overrides (theirs win)."""
    overrides = {**SYNTH_SETTINGS, **{f"train.{k}": v for k, v in TRAIN_SETTINGS.items()}}
    overrides.update(config_overrides or {})
    overrides.update({f"train.{k}": v for k, v in (train_overrides or {}).items()})
    return load_config(presets=world_overrides(), overrides=overrides)


def distill_lora(
    out_dir: Path,
    *,
    prompts: int,
    config_overrides: dict | None = None,
    train_overrides: dict | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Synthesise pairs for ``prompts`` synthesis prompts into ``out_dir/pairs`` and train the differential LoRA on
    the kept ones into ``out_dir/lora``; both steps resume what ``out_dir`` already holds.

    Returns ``lora`` (the .safetensors path), ``pairs`` (committed), ``kept`` (after the filters), ``dropped`` (drop
    reasons counted), ``synth_seconds``, ``train_seconds`` (this call's: a resumed run counts only what it did),
    ``train_steps`` (per stage) and ``losses`` (mean of the last 20 steps per stage). ``synthesis_prompts(n)`` is a
    prefix of ``synthesis_prompts(m)`` for n < m, so a larger ``prompts`` on the same ``out_dir`` synthesises only the
    new ones; ``train_lora`` then refuses to resume ``out_dir/lora`` (other data): delete that folder first.
    """
    from artaug.synth.run import synthesize
    from artaug.synth.store import read_pairs
    from artaug.train.trainer import train_lora

    out_dir = Path(out_dir)
    config = distill_config(config_overrides, train_overrides)

    # 1. Pairs: the loop on every synthesis prompt, filtered, committed to the store.
    started = time.perf_counter()
    records = prompt_records(synthesis_prompts(prompts, seed), seed)
    summary = synthesize(records, out_dir / "pairs", config, progress=False)
    synth_seconds = time.perf_counter() - started
    committed = read_pairs(out_dir / "pairs")
    kept = read_pairs(out_dir / "pairs", kept_only=True)
    dropped: dict[str, int] = {}
    for pair in committed:
        for reason in pair.meta.get("dropped", []) if not pair.kept else []:
            dropped[reason] = dropped.get(reason, 0) + 1
    log(f"synth: {len(committed)} pairs from {prompts} prompts, {len(kept)} kept, {summary.failed} failed, "
        f"{synth_seconds:.0f} s; dropped: {dropped}")  # fmt: skip
    if not kept:
        raise ValueError(f"no pair of {out_dir / 'pairs'} passed the filters: nothing to train on")

    # 2. The differential LoRA on the kept pairs (as ``artaug train PAIRS --painter MODEL`` runs it).
    started = time.perf_counter()
    result = train_lora(config.painter.model, kept, config.train, out_dir / "lora")
    train_seconds = time.perf_counter() - started
    losses = {name: _tail_mean(stage.losses) for name, stage in result.stages.items()}
    steps = {name: stage.steps for name, stage in result.stages.items()}
    log(f"train: {config.train.mode} LoRA, {steps} steps, {train_seconds:.0f} s, final losses {losses}")
    return {
        "lora": str(result.path),
        "pairs": len(committed),
        "kept": len(kept),
        "dropped": dropped,
        "failed": summary.failed,
        "synth_seconds": round(synth_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "train_steps": steps,
        "losses": losses,
    }


def _tail_mean(losses: list[float], n: int = 20) -> float:
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else float("nan")


__all__ = ["SYNTH_SETTINGS", "TRAIN_SETTINGS", "distill_config", "distill_lora", "prompt_records", "synthesis_prompts"]
