"""The evaluation orchestrators: ``evaluate`` (paint the conditions, then score) and ``score_existing`` (score
images that already exist). Both resume whatever their output folder holds, and end in the same three files:
``summary.json``, ``scores.jsonl`` (one line per painting and metric) and ``report.html``.

Everything that can be checked is checked before any model loads or any file is written. A model that fails to load
in a new output folder leaves no folder behind; once paintings or scores are committed, the folder is a resumable
evaluation (see ``artaug.eval.ledger``), and a killed run continues where it stopped, with nothing painted or scored
twice.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artaug.config import PAINT_SECTIONS, Config, EvalConfig
from artaug.eval.conditions import EvalCondition, check_conditions, default_conditions
from artaug.eval.generate import Painters, paint_missing
from artaug.eval.ledger import LEDGER, Item, Ledger, Score
from artaug.eval.metrics import Metric, Sample, score_safely
from artaug.eval.report import summarize, write_report
from artaug.eval.stats import per_prompt
from artaug.files import atomic_write, open_image, write_json
from artaug.synth.prompts import PromptRecord

EVAL_SECTIONS = ("painter", "critic", "judge", "loop", "eval")


@dataclass
class EvalResult:
    """Where the evaluation lies, its summary, and what this call added."""

    folder: Path
    summary: dict[str, Any]
    painted: int
    scored: int


def evaluate(
    prompts: list[PromptRecord],
    out: str | Path,
    config: Config,
    *,
    conditions: list[EvalCondition] | None = None,
    loras: tuple[str, ...] = (),
    painters: Painters | None = None,
    metrics: dict[str, Metric] | None = None,
) -> EvalResult:
    """Paint ``prompts`` under every condition (``eval.seeds`` seeds each), score them with ``eval.metrics``, and
    write the summary and report into ``out``.

    ``conditions`` default to base, + each of ``loras`` and, with ``eval.loop``, + loop and + LoRA + loop.
    ``painters`` / ``metrics``: already loaded models (default: loaded from ``config`` when first needed).
    """
    # 1. Check the conditions, their LoRAs, the metrics' inputs and the output before anything loads.
    ev = config.eval
    out = Path(out)
    conditions = conditions or default_conditions(list(loras), ev.loop)
    configs = check_conditions(conditions, config)
    if not prompts:
        raise ValueError("no prompts to evaluate")
    check_metric_inputs(ev)
    _check_output(out)
    identity = {"kind": "generate", "prompts": [[r.id, r.prompt, r.seed] for r in prompts], "seeds": ev.seeds,
                "conditions": [c.describe() for c in conditions],
                "configs": {name: c.to_dict(sections=PAINT_SECTIONS) for name, c in configs.items()}}  # fmt: skip
    painters = painters or Painters.from_configs()

    # 2. Open (or start) the ledger; in a new folder the first painter loads first, so a bad model leaves nothing.
    new = not (out / LEDGER).is_file()
    if new:
        painters.painter_for(configs[conditions[0].name])
    with _ledger(out, new) as ledger:
        ledger.claim_identity(identity)
        config.dump(out / "config.toml", sections=EVAL_SECTIONS)

        # 3. Paint what is missing, condition by condition.
        total = len(prompts) * ev.seeds * len(conditions) - len(ledger.done())
        with _bar(total, "painting", ev.progress) as bar:
            painted = paint_missing(ledger, out, prompts, conditions, configs, ev.seeds, painters, bar)
        painters.painter = painters.helpers = None  # free the painter's memory before the metrics load

        # 4. Score what is missing, then 5. write the summary, the scores and the report.
        scored = score_missing(ledger, ev, metrics, source=None)
        summary = write_outputs(ledger, out, ev, [c.name for c in conditions], None, "artaug eval")
    return EvalResult(out, summary, painted, scored)


def score_existing(
    source: str | Path,
    out: str | Path | None,
    config: Config,
    *,
    reference: str | None = None,
    prompts: list[PromptRecord] | None = None,
    metrics: dict[str, Metric] | None = None,
) -> EvalResult:
    """Score the images of ``source`` (an evaluation, a synth store, run folders, GenEval's sample folders, or PNGs
    with their prompt in their metadata; see ``artaug.eval.sources``) into ``out`` (default: ``source`` itself when
    it is an evaluation). ``reference``: the condition the others are compared with (default: the first found).
    ``prompts``: a prompt set whose records' metadata (GenEval's clauses, tags) joins the images of the same prompt.
    """
    from artaug.eval.sources import discover

    # 1. Find the images (reading only), check the metrics' inputs and the output.
    ev = config.eval
    source = Path(source)
    kind, items = discover(source)
    known = {r.prompt: r.meta for r in prompts or []}
    for item in items:
        item.meta = {**known.get(item.prompt, {}), **item.meta}
    out = Path(out) if out is not None else source
    in_place = out.resolve() == source.resolve()
    if in_place and kind != "evaluation":
        raise ValueError(f"{source} is a {kind}, which eval score only reads: give --out DIR for the results")
    conditions = list(dict.fromkeys(i.condition for i in items))
    if reference is not None:
        if reference not in conditions:
            raise ValueError(f"--reference {reference!r} is not a condition of {source}: {', '.join(conditions)}")
        conditions.remove(reference)
        conditions.insert(0, reference)
    check_metric_inputs(ev)
    if not in_place:
        _check_output(out)
    new = not (out / LEDGER).is_file()
    if new and metrics is None:
        metrics = _load(ev, ev.metrics)  # a metric that fails to load leaves no folder behind

    # 2. Record the items (a resumed run adds none twice), then 3. score and 4. write the results.
    with _ledger(out, new) as ledger:
        if not in_place:
            ledger.claim_identity({"kind": "score", "source": str(source.resolve())})
            for item in items:
                ledger.add_item(item)
        else:  # the images of an evaluation that scored another folder still lie in that folder
            scored_from = ledger.identity().get("source")
            source = Path(scored_from) if isinstance(scored_from, str) else source
        scored = score_missing(ledger, ev, metrics, source=source)
        summary = write_outputs(ledger, out, ev, conditions, source, f"artaug eval score {source.name}")
    return EvalResult(out, summary, 0, scored)


def score_missing(ledger: Ledger, ev: EvalConfig, metrics: dict[str, Metric] | None, source: Path | None) -> int:
    """Score every painting a metric has no row for, batch by batch (each batch committed at once); returns how many
    scores were added. The metrics are ``metrics`` when given (already loaded), else ``ev.metrics``, loaded only when
    something is left for them to score."""
    items = [i for i in ledger.items() if i.path is not None]
    todo = {}
    for name in tuple(metrics) if metrics is not None else ev.metrics:
        done = ledger.scored(name)
        if pending := [i for i in items if i.key not in done]:
            todo[name] = pending
    if not todo:
        return 0
    loaded = metrics if metrics is not None else _load(ev, tuple(todo))
    added = 0
    with _bar(sum(map(len, todo.values())), "scoring", ev.progress) as bar:
        for name, pending in todo.items():
            for start in range(0, len(pending), ev.batch_size):
                batch = pending[start : start + ev.batch_size]
                scores = _score_batch(loaded[name], name, batch, ledger, source)
                ledger.add_scores(scores)
                added += len(scores)
                bar(len(batch))
    return added


def _score_batch(metric: Metric, name: str, batch: list[Item], ledger: Ledger, source: Path | None) -> list[Score]:
    """One batch: images that do not open fail alone, the rest go to the metric through ``score_safely``."""
    scores, ready = [], []
    for item in batch:
        try:
            image = open_image(ledger.image_path(item, source), what=f"painting {item.path}")
            ready.append((item, Sample(image, item.prompt, item.meta, item.path or "")))
        except (OSError, ValueError) as error:
            scores.append(Score(*item.key, name, None, error=str(error)))
    started = time.perf_counter()
    results = score_safely(metric, [sample for _, sample in ready]) if ready else []
    seconds = (time.perf_counter() - started) / max(len(ready), 1)
    for (item, _), result in zip(ready, results, strict=True):
        if isinstance(result, str):
            scores.append(Score(*item.key, name, None, error=result, seconds=seconds))
        else:
            scores.append(Score(*item.key, name, result.value, result.detail, seconds=seconds))
    return scores


def write_outputs(
    ledger: Ledger, out: Path, ev: EvalConfig, conditions: list[str], source: Path | None, title: str
) -> dict[str, Any]:
    """``summary.json``, ``scores.jsonl`` and ``report.html`` from what the ledger holds now (each atomically)."""
    items, scores = ledger.items(), ledger.scores()
    summary = summarize(items, scores, conditions, ev)
    write_json(out / "summary.json", summary)
    by_key = {i.key: i for i in items}
    lines = [json.dumps({**s.to_dict(), "prompt": by_key[(s.condition, s.prompt_id, s.seed)].prompt,
                         "image": by_key[(s.condition, s.prompt_id, s.seed)].path}, ensure_ascii=False)
             for s in scores if (s.condition, s.prompt_id, s.seed) in by_key]  # fmt: skip
    atomic_write(out / "scores.jsonl", "".join(line + "\n" for line in lines))
    write_report(out / "report.html", summary, items, scores, lambda i: open_image(ledger.image_path(i, source)),
                 ev, title)  # fmt: skip
    return summary


def prompt_scores(folder: str | Path, condition: str | None = None) -> dict[str, dict[str, float]]:
    """``{metric: {prompt id: score averaged over seeds}}`` of an evaluation folder (one condition, or all)."""
    with Ledger(folder, readonly=True) as ledger:
        rows = [s for s in ledger.scores() if s.value is not None and condition in (None, s.condition)]
    metrics = dict.fromkeys(s.metric for s in rows)
    return {m: per_prompt({(s.prompt_id, s.seed): s.value for s in rows if s.metric == m}) for m in metrics}


def check_metric_inputs(ev: EvalConfig) -> None:
    """Check the inputs the chosen metrics read before any model: the GenEval detections, a local aesthetic head."""
    if "geneval" in ev.metrics:
        if not ev.geneval_detections:
            raise ValueError("the geneval metric reads the detector job's output: set eval.geneval_detections=FILE")
        if not Path(ev.geneval_detections).is_file():
            raise FileNotFoundError(f"eval.geneval_detections: {ev.geneval_detections} does not exist")
    head = ev.aesthetic_head
    if "aesthetic" in ev.metrics and head.startswith(("/", ".", "~")) and not Path(head).expanduser().is_file():
        raise FileNotFoundError(f"eval.aesthetic_head: {head} does not exist")


def _load(ev: EvalConfig, names: tuple[str, ...]) -> dict[str, Metric]:
    from artaug.eval.registry import load_metrics

    return load_metrics(names, ev)


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / LEDGER).is_file():
        raise FileExistsError(f"output {out} holds files but no artaug evaluation; choose a new or empty --out")


@contextlib.contextmanager
def _ledger(out: Path, new: bool) -> Iterator[Ledger]:
    """The ledger of ``out``; a folder this call created is removed again if it fails before committing anything."""
    created = new and not out.exists()
    ledger = Ledger(out)
    try:
        yield ledger
    except BaseException:
        empty = not ledger.items() and not ledger.scores()
        ledger.close()
        if created and empty:
            shutil.rmtree(out, ignore_errors=True)
        raise
    ledger.close()


@contextlib.contextmanager
def _bar(total: int, what: str, enabled: bool) -> Iterator[Any]:
    """A progress bar with rate and ETA (tqdm), as a function ``bar(n)`` that advances it by ``n``."""
    if not enabled or total <= 0:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=what, unit="image", dynamic_ncols=True) as progress:
        yield progress.update
