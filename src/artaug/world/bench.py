"""Measure the world painter: one-pass accuracy on the held-out prompts, and what critique rounds change.

    python -m artaug.world.bench --quick --out runs/world-bench

For each held-out item the painter paints once (the *first* painting); the world critic reads it; for every
condition (regional mode x strength) the critique's edits are painted from the first painting exactly as the loop
paints a revision (``artaug.loop``'s ``revision_request``: same seed and prompt, the edits, ``regional``,
``strength``), for ``rounds`` rounds, each from the previous round's painting. No judge: every revision is kept, so
the numbers measure the critic and the painter, not a selection by the metric.

Besides accuracy it reports, per condition, the *edit success* (after the revision, does the box hold what the edit
asked for: the object for a paint edit, nothing for a clear edit) and the *damage* (items correct before, wrong
after), which separate "the painter cannot follow local prompts" from "the repaint spoils the rest".
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from artaug.painter import FluxPainter
from artaug.types import Critique, Edit, Painting, PaintRequest
from artaug.world.build import MAX_SEQUENCE_LENGTH, MODEL_DIR
from artaug.world.critic import WorldCritic
from artaug.world.detect import Detection, detect
from artaug.world.grammar import EMPTY_PROMPT, EvalItem, eval_items, parse_prompt
from artaug.world.metric import accuracy_by_category, check, matches
from artaug.world.scenes import SIZE

NUM_INFERENCE_STEPS = 20


@dataclass(frozen=True)
class Condition:
    """How a critique is painted: ``regional`` mode, ``strength`` of the revision, ``edit_weight`` (blend's s_i)."""

    regional: str
    strength: float
    edit_weight: float = 10.0

    @property
    def name(self) -> str:
        return f"{self.regional}@{self.strength:g}"


# The published ArtAug setting (blend, full re-denoise), artaug's default (attention, 0.4), and strengths between.
CONDITIONS = (
    Condition("blend", 1.0),
    Condition("attention", 0.4),
    Condition("attention", 0.6),
    Condition("attention", 0.8),
    Condition("attention", 1.0),
    Condition("blend", 0.4),
    Condition("blend", 0.6),
    Condition("blend", 0.8),
)


def first_request(item: EvalItem) -> PaintRequest:
    """The one-pass request of a held-out item at the world's size and sequence lengths."""
    return PaintRequest(
        prompt=item.prompt,
        seed=item.seed,
        height=SIZE,
        width=SIZE,
        num_inference_steps=NUM_INFERENCE_STEPS,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
        region_max_sequence_length=MAX_SEQUENCE_LENGTH,
    )


def revision_request(base: PaintRequest, critique: Critique, condition: Condition) -> PaintRequest:
    """What ``artaug.loop`` paints for a critique: same seed and prompt, the edits at the condition's settings."""
    edits = tuple(Edit(e.box, e.prompt, e.reason, e.label, condition.edit_weight) for e in critique.edits)
    return base.replace(edits=edits, regional=condition.regional, strength=condition.strength)


def edit_carried_out(edit: Edit, detections: list[Detection], size: int = SIZE) -> bool:
    """Whether the box now holds what the edit asked: its object (centred in the box), or nothing for a clear."""
    x0, y0, x1, y1 = edit.box.to_pixels(size, size)
    inside = [d for d in detections if x0 <= d.centre[0] <= x1 and y0 <= d.centre[1] <= y1]
    if edit.prompt == EMPTY_PROMPT:
        return not inside
    (wanted,) = parse_prompt(edit.prompt).objects
    return any(matches(wanted, d) for d in inside)


def run(painter: FluxPainter, items: list[EvalItem], conditions=CONDITIONS, rounds: int = 1, out_dir=None) -> dict:
    """Paint every item once, then revise it under every condition; returns the results (see module docstring)."""
    critic = WorldCritic(max_edits=4)
    rows = []
    for item in items:
        first = painter.paint(first_request(item))
        row = {"prompt": item.prompt, "category": item.category, "seed": item.seed}
        row["first"] = _verdict(item.prompt, first.image) | {"passes": first.cost.transformer_passes}
        for condition in conditions:
            row[condition.name] = _revise(painter, critic, item, first, condition, rounds, out_dir)
        rows.append(row)
        if out_dir is not None:
            first.image.save(Path(out_dir) / f"{_stem(item)}-first.png")
    return summarise(rows, ["first", *(c.name for c in conditions)])


def _revise(painter, critic, item, first: Painting, condition: Condition, rounds: int, out_dir) -> dict:
    current, passes, edits, carried = first, 0, 0, 0
    for _ in range(rounds):
        critique = critic.critique(current.image, item.prompt)
        if not critique.edits:
            break
        current = painter.paint(revision_request(first.request, critique, condition), init=current)
        passes += current.cost.transformer_passes
        found = detect(current.image)
        edits += len(critique.edits)
        carried += sum(edit_carried_out(e, found) for e in critique.edits)
    if out_dir is not None and current is not first:
        current.image.save(Path(out_dir) / f"{_stem(item)}-{condition.name}.png")
    return _verdict(item.prompt, current.image) | {"passes": passes, "edits": edits, "carried_out": carried}


def _verdict(prompt: str, image) -> dict:
    verdict = check(parse_prompt(prompt), detect(image))
    return {"correct": verdict.correct, "reasons": verdict.reasons}


def _stem(item: EvalItem) -> str:
    return f"{item.category}-{item.seed}"


def summarise(rows: list[dict], names: list[str]) -> dict:
    """Accuracy per category and overall, cost relative to one pass, edit success, damage, paired-bootstrap CI."""
    first_passes = sum(r["first"]["passes"] for r in rows)
    out = {"items": len(rows), "rows": rows, "conditions": {}}
    for name in names:
        correct = [r[name]["correct"] for r in rows]
        summary = {
            "accuracy": accuracy_by_category((r["category"], c) for r, c in zip(rows, correct, strict=True)),
            "item_accuracy": sum(correct) / len(rows),
        }
        if name != "first":
            before = [r["first"]["correct"] for r in rows]
            edits = sum(r[name]["edits"] for r in rows)
            summary |= {
                "passes_ratio": (first_passes + sum(r[name]["passes"] for r in rows)) / first_passes,
                "edit_success": sum(r[name]["carried_out"] for r in rows) / edits if edits else None,
                "fixed": sum(c and not b for b, c in zip(before, correct, strict=True)),
                "damaged": sum(b and not c for b, c in zip(before, correct, strict=True)),
                "delta_ci": paired_bootstrap(before, correct),
            }
        out["conditions"][name] = summary
    return out


def paired_bootstrap(before: list[bool], after: list[bool], samples: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of mean(after) - mean(before), resampling items with replacement (percentile bootstrap)."""
    diffs = [float(a) - float(b) for b, a in zip(before, after, strict=True)]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(samples))
    return [means[int(0.025 * samples)], means[int(0.975 * samples) - 1]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m artaug.world.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--painter", default=str(MODEL_DIR), help="world painter folder")
    parser.add_argument("--quick", action="store_true", help="the fixed 48-item subset of the held-out prompts")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", required=True, help="folder for results.json and the paintings")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    painter = FluxPainter.from_pretrained(args.painter)
    results = run(painter, eval_items(quick=args.quick), rounds=args.rounds, out_dir=out)
    results["settings"] = {
        "painter": args.painter,
        "quick": args.quick,
        "rounds": args.rounds,
        "num_inference_steps": NUM_INFERENCE_STEPS,
        "conditions": [asdict(c) for c in CONDITIONS],
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, summary in results["conditions"].items():
        acc = summary["accuracy"]
        extra = {
            k: summary[k] for k in ("passes_ratio", "edit_success", "fixed", "damaged", "delta_ci") if k in summary
        }
        print(f"{name:15s} overall {acc['overall']:.3f} items {summary['item_accuracy']:.3f} {extra}")


if __name__ == "__main__":
    main()
