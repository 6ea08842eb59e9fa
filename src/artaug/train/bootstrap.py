"""The self-bootstrap cycle (DESIGN.md step 7): synthesize pairs, train a differential LoRA, fuse it, and keep it
only if the held-out evaluation says the painter got better.

The held-out prompts are painted with the same seeds before and after (``artaug.eval.evaluate``, one folder per
evaluation, each with its own ``summary.json`` and ``report.html``), scored with ``bootstrap.score`` and
``eval.metrics``, and compared prompt by prompt with the current painter: an iteration is kept only when the chosen
metric's paired-difference interval lies above ``bootstrap.min_improvement`` and no other metric's interval reaches
below ``-eval.epsilon`` (``artaug.eval.gate``).

One painter stays loaded for the whole run. Its weights always hold the LoRA accepted so far, fused for good, so
stage-1 training of the next iteration starts from the current painter; a candidate LoRA is loaded and fused on top
through diffusers' API for scoring and unfused again on rollback. Because every iteration's LoRA is trained over the
painter that already contains the previous ones, the accepted LoRAs add up: the final LoRA is their exact merge
(concatenation along the rank). ``bootstrap.json`` is rewritten after every step, so a run resumes between (and,
through the store and the trainer's checkpoints, inside) iterations.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artaug.config import EVAL_METRICS, Config
from artaug.eval import Decision, EvalCondition, Result, compare, evaluate, gate
from artaug.eval.generate import Painters
from artaug.eval.metrics import Metric, Sample
from artaug.eval.run import prompt_scores
from artaug.files import atomic_write, confined, read_json, write_json
from artaug.train.lora_io import load_lora, save_kohya, save_lora
from artaug.train.merge import merge_loras

HeldoutScorer = Callable[[list[Any], list[str]], list[float]]


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

    def eval_tables(self) -> str:
        """Per iteration, every held-out metric: current painter, candidate, paired difference, win rate."""
        blocks = []
        for it in self.iterations:
            rows = [f"### iteration {it['index']}: {'kept' if it['accepted'] else 'rolled back'}", "",
                    "| metric | current | candidate | paired difference [interval] | win rate |",
                    "|---|---|---|---|---|"]  # fmt: skip
            for name, m in it.get("eval", {}).items():
                d = m["difference"]
                rows.append(f"| {name} | {_fmt(m['reference'])} | {_fmt(m['candidate'])} | {_fmt(d['mean'])} "
                            f"[{_fmt(d['low'])}, {_fmt(d['high'])}] | {_fmt(m['win_rate'])} |")  # fmt: skip
            rows += ["", *(f"- {reason}" for reason in it.get("reasons", [])), ""]
            blocks.append("\n".join(rows))
        return "\n".join(blocks)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def bootstrap(
    prompts: Sequence[Any],
    heldout: Sequence[Any],
    config: Config,
    out_dir: str | Path,
    *,
    kohya: bool = False,
    components: Any = None,
    heldout_scorer: HeldoutScorer | None = None,
) -> BootstrapReport:
    """Run up to ``config.bootstrap.iterations`` iterations into ``out_dir``; resume whatever a previous run left.

    ``prompts`` / ``heldout``: ``PromptRecord``s (held-out seeds are reused before and after, so scores compare the
    same paintings). ``config``: painter/critic/judge/loop/synth sections of every iteration's synthesis, ``train``
    for the LoRAs and ``bootstrap`` for the cycle. ``kohya`` also writes the final LoRA in kohya / ComfyUI format.
    ``components``: loaded painter / critic / judge (default: loaded from ``config``). ``heldout_scorer``: images,
    prompts -> scores, the gate's only metric (default: ``bootstrap.score`` and ``eval.metrics`` from the registry).
    """
    from artaug.synth.filters import similarity_function
    from artaug.synth.run import synthesize
    from artaug.synth.store import read_pairs
    from artaug.synth.work import SynthComponents, process_prompt
    from artaug.train.trainer import train_lora

    # 1. Load the painter once and the held-out metrics; bring the painter to the state the previous run left.
    cycle = config.bootstrap
    out_dir = Path(out_dir)
    state_path = out_dir / "bootstrap.json"
    state = _load_state(state_path)
    if heldout_scorer is None and cycle.score not in EVAL_METRICS:
        raise ValueError(
            f"bootstrap.score {cycle.score!r} is not an eval metric; choose one of {', '.join(EVAL_METRICS)}"
        )
    if components is None:
        from artaug.loop.components import Components

        components = Components.load(config)
    painter = components.painter
    metrics = _heldout_metrics(config, heldout_scorer)
    out_dir.mkdir(parents=True, exist_ok=True)
    if state.get("current"):
        _fuse_for_good(painter, str(out_dir / state["current"]))

    def save_state() -> None:
        write_json(state_path, state)

    # 2. The reference: the painter as it is now (the base, or the last accepted iteration), evaluated on held-out.
    if "baseline" not in state:
        state["reference_eval"] = "heldout-0"
        state["baseline"] = _heldout_eval(painter, heldout, config, metrics, out_dir / "heldout-0")[cycle.score]
        state["best"] = state["baseline"]
        save_state()

    # 3. Iterate: synth → differential train → fuse the candidate → score → keep or roll back.
    parts = SynthComponents(components, similarity_function(config.synth.filters))
    while not state["stopped"] and len(state["iterations"]) < cycle.iterations:
        k = len(state["iterations"]) + 1
        folder = out_dir / f"iteration-{k}"
        synthesize(list(prompts), folder / "pairs", config, progress=False,
                   work=lambda record: process_prompt(record, parts, config))  # fmt: skip
        pairs = read_pairs(folder / "pairs", kept_only=True)
        if not pairs:
            state["stopped"] = f"iteration {k}: the synthesis kept no pairs"
            save_state()
            break
        train_config = config.train.replace(iteration=k)
        lora = train_lora(painter.pipe, pairs, train_config, folder / "lora", base_model=_base_name(painter, state))
        painter.load_lora(str(lora.path))
        painter.fuse_lora()
        score = _heldout_eval(painter, heldout, config, metrics, folder / "heldout")[cycle.score]
        reference = confined(out_dir, state.get("reference_eval", "heldout-0"), what="held-out evaluation")
        decision, table = _decide(reference, folder / "heldout", list(metrics), config)
        accepted = decision.accepted
        record = {"index": k, "pairs": len(pairs), "score": score, "reference": state["best"], "accepted": accepted,
                  "lora": str(lora.path), "reasons": decision.reasons, "eval": table}  # fmt: skip
        if accepted:
            painter.unload_lora(keep_fused=True)  # the painter now holds this iteration for good
            current = out_dir / state["current"] if state.get("current") else None
            merged = _merge_into(current, lora.path, folder / "merged", k)
            state["current"] = Path(os.path.relpath(merged, out_dir)).as_posix()  # inside out_dir, as it must be
            state["reference_eval"] = f"iteration-{k}/heldout"
            state["best"] = score
        else:
            painter.unload_lora()  # unfuse: back to the last accepted painter
            state["stopped"] = f"iteration {k} did not improve the held-out evaluation ({'; '.join(decision.reasons)})"
        state["iterations"].append(record)
        save_state()
    if not state["stopped"]:
        state["stopped"] = f"ran all {cycle.iterations} iterations"
        save_state()

    # 4. The final LoRA (every kept iteration, merged) and the report.
    final = None
    if state.get("current"):
        lora, metadata = load_lora(confined(out_dir, state["current"], what="LoRA named in bootstrap.json"))
        final = save_lora(out_dir / "final", lora, metadata)
        if kohya:
            save_kohya(out_dir / "final", lora, metadata)
    report = BootstrapReport(state["baseline"], state["iterations"], final, state["stopped"], out_dir)
    _write_report(report)
    return report


def _load_state(path: Path) -> dict[str, Any]:
    """``bootstrap.json`` of a previous run (validated: it names files that must lie inside its folder)."""
    if not path.is_file():
        return {"iterations": [], "stopped": ""}
    state = read_json(path, what="bootstrap state")
    if not (isinstance(state, dict) and isinstance(state.get("iterations"), list) and "stopped" in state):
        raise ValueError(f"{path} is not an artaug bootstrap state; choose a new --out")
    if state.get("current"):
        confined(path.parent, state["current"], what=f"LoRA named in {path}")
    if state.get("reference_eval"):
        confined(path.parent, state["reference_eval"], what=f"held-out evaluation named in {path}")
    return state


class _ScriptedMetric:
    """A held-out scorer given as a function (images, prompts -> scores), as a metric."""

    def __init__(self, name: str, scorer: HeldoutScorer) -> None:
        self.name, self.scorer = name, scorer

    def score(self, samples: list[Sample]) -> list[Result]:
        return [Result(float(v)) for v in self.scorer([s.image for s in samples], [s.prompt for s in samples])]


def _heldout_metrics(config: Config, scorer: HeldoutScorer | None) -> dict[str, Metric]:
    """The gate's metrics: ``bootstrap.score`` first, then the rest of ``eval.metrics`` (or only ``scorer``)."""
    if scorer is not None:
        return {config.bootstrap.score: _ScriptedMetric(config.bootstrap.score, scorer)}
    from artaug.eval import load_metrics

    names = tuple(dict.fromkeys((config.bootstrap.score, *config.eval.metrics)))
    return load_metrics(names, config.eval)


def _heldout_eval(painter: Any, heldout: Sequence[Any], config: Config, metrics: dict[str, Metric],
                  folder: Path) -> dict[str, float]:  # fmt: skip
    """Paint every held-out prompt with its own seeds and the config's painter settings (one painting, no loop),
    score it with ``metrics`` into the evaluation folder ``folder`` (resumable); the mean of each metric."""
    if not heldout:
        raise ValueError("no held-out prompts to score")
    plain = config.updated({"eval.progress": False})
    painters = Painters(lambda settings: painter, lambda settings: (None, None))
    evaluate(list(heldout), folder, plain, conditions=[EvalCondition("painter")], painters=painters, metrics=metrics)
    means = {name: _mean(prompt_scores(folder).get(name, {})) for name in metrics}
    chosen = config.bootstrap.score
    if means.get(chosen) is None:
        raise ValueError(f"the held-out evaluation in {folder} scored no painting with {chosen}: see its summary.json")
    return means


def _decide(reference: Path, candidate: Path, metrics: list[str], config: Config) -> tuple[Decision, dict[str, Any]]:
    """Compare two held-out evaluations prompt by prompt on every metric and apply the gate; the decision and the
    eval table of the iteration (each metric's two means, paired difference with its interval, win rate)."""
    ev = config.eval
    before, after = prompt_scores(reference), prompt_scores(candidate)
    comparisons = {m: compare(before.get(m, {}), after.get(m, {}), ev.resamples, ev.confidence, ev.bootstrap_seed)
                   for m in metrics}  # fmt: skip
    decision = gate(comparisons, config.bootstrap.score, ev.epsilon, config.bootstrap.min_improvement)
    table = {m: {"reference": _mean(before.get(m, {})), "candidate": _mean(after.get(m, {})), **c.to_dict()}
             for m, c in comparisons.items()}  # fmt: skip
    return decision, table


def _mean(scores: dict[str, float]) -> float | None:
    return statistics.fmean(scores.values()) if scores else None


def _fuse_for_good(painter: Any, lora_path: str) -> None:
    painter.load_lora(lora_path)
    painter.fuse_lora()
    painter.unload_lora(keep_fused=True)


def _merge_into(current: Path | None, new: Path, folder: Path, iteration: int) -> Path:
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
             f"final LoRA: {report.final or 'none (no iteration improved the held-out score)'}", "",
             "## held-out evaluation per iteration", "", report.eval_tables()]  # fmt: skip
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        atomic_write(folder / "report.md", "\n".join(lines) + "\n\n(no plot: pip install 'artaug[data]' for it)\n")
        return
    atomic_write(folder / "report.md", "\n".join(lines) + "\n")
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
    try:
        atomic_write(folder / "report.png", lambda file: fig.savefig(file, format="png"))
    finally:
        plt.close(fig)
