"""The self-bootstrap cycle (DESIGN.md step 7): synthesize pairs, train a differential LoRA, fuse it, and keep it
only if the painter's held-out score improves.

One painter stays loaded for the whole run. Its weights always hold the LoRA accepted so far, fused for good, so
stage-1 training of the next iteration starts from the current painter; a candidate LoRA is loaded and fused on top
through diffusers' API for scoring and unfused again on rollback. Because every iteration's LoRA is trained over the
painter that already contains the previous ones, the accepted LoRAs add up: the final LoRA is their exact merge
(concatenation along the rank). ``bootstrap.json`` is rewritten after every step, so a run resumes between (and,
through the store and the trainer's checkpoints, inside) iterations.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from artaug.train.config import TrainConfig
from artaug.train.lora_io import load_lora, save_kohya, save_lora
from artaug.train.merge import merge_loras

HeldoutScorer = Callable[[list[Any], list[str]], list[float]]


@dataclass
class BootstrapConfig:
    """How many iterations, what to train, and what "better" means."""

    iterations: int = field(default=3, metadata={"help": "Most synth → train → score iterations to run."})
    score: str = field(default="aesthetic", metadata={"help": "The judge score averaged over the held-out prompts."})
    min_improvement: float = field(
        default=0.0, metadata={"help": "An iteration is kept only if the held-out mean rises by more than this."}
    )
    kohya: bool = field(default=False, metadata={"help": "Also write the final LoRA in kohya / ComfyUI format."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "The differential training config."})

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict(self.train)
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")


@dataclass
class BootstrapReport:
    """Per-iteration held-out scores and decisions; ``final`` is the merged LoRA of the kept iterations (or None)."""

    baseline: float
    iterations: list[dict[str, Any]]
    final: Path | None
    stopped: str
    folder: Path

    def table(self) -> str:
        rows = ["| iteration | kept pairs | held-out score | change | decision |", "|---|---|---|---|---|"]
        rows.append(f"| 0 (base) | - | {self.baseline:.4f} | - | - |")
        for it in self.iterations:
            rows.append(
                f"| {it['index']} | {it['pairs']} | {it['score']:.4f} | {it['score'] - it['reference']:+.4f} | "
                f"{'kept' if it['accepted'] else 'rolled back'} |"
            )
        return "\n".join(rows)


def bootstrap(
    prompts: Sequence[Any],
    heldout: Sequence[Any],
    synth_config: Any,
    config: BootstrapConfig,
    out_dir: str | Path,
    *,
    components: Any = None,
    heldout_scorer: HeldoutScorer | None = None,
) -> BootstrapReport:
    """Run up to ``config.iterations`` iterations into ``out_dir``; resume whatever a previous run left there.

    ``prompts`` / ``heldout``: ``PromptRecord``s (held-out seeds are reused before and after, so scores compare the
    same paintings). ``synth_config``: the ``SynthConfig`` of every iteration's synthesis. ``components``: loaded
    painter / critic / judge (default: loaded from ``synth_config.base``). ``heldout_scorer``: images, prompts ->
    scores (default: the judge's ``config.score`` scorer).
    """
    from artaug.store import read_pairs
    from artaug.synth.filters import similarity_function
    from artaug.synth.run import SynthComponents, process_prompt, synthesize
    from artaug.train.trainer import train_lora

    # 1. Load the painter once; bring it to the state the previous run left (its accepted LoRA fused).
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "bootstrap.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"iterations": [], "stopped": ""}
    if components is None:
        from artaug.components import Components

        components = Components.load(synth_config.base)
    painter = components.painter
    scorer = heldout_scorer or _judge_scorer(components.judge, config.score)
    if state.get("current"):
        _fuse_for_good(painter, state["current"])

    def save_state() -> None:
        state_path.write_text(json.dumps(state, indent=2))

    # 2. The reference score: the painter as it is now (the base, or the last accepted iteration).
    if "baseline" not in state:
        state["baseline"] = _heldout_score(painter, heldout, synth_config, scorer, out_dir / "heldout-0")
        state["best"] = state["baseline"]
        save_state()

    # 3. Iterate: synth → differential train → fuse the candidate → score → keep or roll back.
    parts = SynthComponents(components, similarity_function(synth_config.filters))
    while not state["stopped"] and len(state["iterations"]) < config.iterations:
        k = len(state["iterations"]) + 1
        folder = out_dir / f"iteration-{k}"
        synthesize(list(prompts), folder / "pairs", synth_config, progress=False,
                   work=lambda record: process_prompt(record, parts, synth_config))  # fmt: skip
        pairs = read_pairs(folder / "pairs", kept_only=True)
        if not pairs:
            state["stopped"] = f"iteration {k}: the synthesis kept no pairs"
            save_state()
            break
        train_config = replace(config.train, iteration=k)
        lora = train_lora(painter.pipe, pairs, train_config, folder / "lora", base_model=_base_name(painter, state))
        painter.load_lora(str(lora.path))
        painter.fuse_lora()
        score = _heldout_score(painter, heldout, synth_config, scorer, folder / "heldout")
        accepted = score > state["best"] + config.min_improvement
        record = {"index": k, "pairs": len(pairs), "score": score, "reference": state["best"], "accepted": accepted,
                  "lora": str(lora.path)}  # fmt: skip
        if accepted:
            painter.unload_lora(keep_fused=True)  # the painter now holds this iteration for good
            state["current"] = str(_merge_into(state.get("current"), lora.path, folder / "merged", k))
            state["best"] = score
        else:
            painter.unload_lora()  # unfuse: back to the last accepted painter
            state["stopped"] = f"iteration {k} did not improve the held-out score ({score:.4f} <= {state['best']:.4f})"
        state["iterations"].append(record)
        save_state()
    if not state["stopped"]:
        state["stopped"] = f"ran all {config.iterations} iterations"
        save_state()

    # 4. The final LoRA (every kept iteration, merged) and the report.
    final = None
    if state.get("current"):
        lora, metadata = load_lora(state["current"])
        final = save_lora(out_dir / "final", lora, metadata)
        if config.kohya:
            save_kohya(out_dir / "final", lora, metadata)
    report = BootstrapReport(state["baseline"], state["iterations"], final, state["stopped"], out_dir)
    _write_report(report)
    return report


def _judge_scorer(judge: Any, name: str) -> HeldoutScorer:
    names = [s.name for s in getattr(judge, "scorers", [])]
    if name not in names:
        raise ValueError(
            f"the bootstrap scores held-out prompts with the judge's {name!r} score, but the judge runs "
            f"{names or 'none'}: enable it in the [judge] config (aesthetic / alignment) or choose another score"
        )
    scorer = next(s for s in judge.scorers if s.name == name)
    return scorer.score


def _heldout_score(painter: Any, heldout: Sequence[Any], synth_config: Any, scorer: HeldoutScorer,
                   folder: Path) -> float:  # fmt: skip
    """Paint every held-out prompt with its own seed and the synth config's painter settings; mean score."""
    from artaug.types import PaintRequest

    p = synth_config.base.painter
    folder.mkdir(parents=True, exist_ok=True)
    images, texts = [], []
    for record in heldout:
        request = PaintRequest(prompt=record.prompt, seed=record.seed, height=p.height, width=p.width,
                               num_inference_steps=p.num_inference_steps, guidance_scale=p.guidance_scale,
                               max_sequence_length=p.max_sequence_length)  # fmt: skip
        image = painter.paint(request).image
        image.save(folder / f"{record.id}.png")
        images.append(image)
        texts.append(record.prompt)
    if not images:
        raise ValueError("no held-out prompts to score")
    return statistics.fmean(scorer(images, texts))


def _fuse_for_good(painter: Any, lora_path: str) -> None:
    painter.load_lora(lora_path)
    painter.fuse_lora()
    painter.unload_lora(keep_fused=True)


def _merge_into(current: str | None, new: Path, folder: Path, iteration: int) -> Path:
    """Sum the accepted LoRAs' updates (each was trained over the painter holding the previous ones)."""
    new_lora, metadata = load_lora(new)
    sources = [new_lora] if current is None else [load_lora(current)[0], new_lora]
    metadata = {**metadata, "artaug.iteration": str(iteration), "artaug.bootstrap_merged": str(len(sources))}
    return save_lora(folder, merge_loras(sources), metadata)


def _base_name(painter: Any, state: dict[str, Any]) -> str:
    base = str(getattr(painter, "model_id", "") or getattr(painter, "source", "") or "unknown")
    return base if not state.get("current") else f"{base} + {state['current']}"


def _write_report(report: BootstrapReport) -> None:
    folder = report.folder
    lines = ["# artaug bootstrap", "", report.table(), "", f"stopped: {report.stopped}", "",
             f"final LoRA: {report.final or 'none (no iteration improved the held-out score)'}"]  # fmt: skip
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        (folder / "report.md").write_text("\n".join(lines) + "\n\n(no plot: pip install 'artaug[data]' for it)\n")
        return
    xs = [0] + [it["index"] for it in report.iterations]
    ys = [report.baseline] + [it["score"] for it in report.iterations]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(xs, ys, marker="o")
    for it in report.iterations:
        if not it["accepted"]:
            ax.annotate("rolled back", (it["index"], it["score"]), textcoords="offset points", xytext=(4, 6))
    ax.set_xlabel("iteration")
    ax.set_ylabel("held-out score")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xticks(xs)
    ax.set_title("artaug bootstrap")
    fig.tight_layout()
    fig.savefig(folder / "report.png")
    plt.close(fig)
