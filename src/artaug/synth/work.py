"""The per-prompt job of pair synthesis: one prompt's loop → its (before, after) pairs → the filters' verdicts.

``process_prompt`` is the only function a worker runs, in this process or in a Ray actor; it never raises (errors
come back on the ``PairResult``), so one bad prompt cannot end a long job.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from artaug.config import Config, FilterConfig
from artaug.synth.filters import PairEvidence, drop_reasons, evaluate, similarity_function
from artaug.synth.prompts import PromptRecord
from artaug.synth.store import PairDraft

if TYPE_CHECKING:
    from PIL import Image

    from artaug.types import Trail

log = logging.getLogger("artaug.synth")


@dataclass
class SynthComponents:
    """What a worker loads once: the loop's painter/critic/judge and the same-scene similarity function."""

    models: Any
    similarity: Callable[[Image.Image, Image.Image], float]

    @classmethod
    def load(cls, config: Config) -> SynthComponents:
        from artaug.loop.components import Components

        return cls(Components.load(config), similarity_function(config.synth.filters))


@dataclass
class PairResult:
    """What ``process_prompt`` returns: everything the store commits for one prompt (picklable, for Ray)."""

    record: PromptRecord
    images: dict[str, Image.Image] = field(default_factory=dict)
    pairs: list[PairDraft] = field(default_factory=list)
    trail: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    worker: str = ""

    @property
    def seconds(self) -> float:
        return self.timings.get("total", 0.0)


# -- the per-prompt job ---------------------------------------------------------------------------------------------


def process_prompt(record: PromptRecord, components: SynthComponents, config: Config) -> PairResult:
    """Run the loop on one prompt and turn its trail into filtered pairs. Errors come back as ``error``, not raised."""
    from artaug.loop import run

    started = time.perf_counter()
    timers = {"painting": 0.0, "critique": 0.0, "judging": 0.0, "filtering": 0.0}
    models = components.models
    try:
        # 1. the loop, with each model's time measured (the benchmark's cost breakdown)
        provenance = models.provenance() if hasattr(models, "provenance") else {}
        result = run(
            record.prompt,
            painter=_Timed(models.painter, timers, "painting"),
            critic=_Timed(models.critic, timers, "critique") if models.critic is not None else None,
            judge=_Timed(models.judge, timers, "judging"),
            config=config,
            seed=record.seed,
            provenance={**provenance, "prompt_id": record.id},
        )
        trail = result.trail

        # 2. which paintings pair up: (first, final), or each accepted round with the best painting before it
        filtering_started = time.perf_counter()
        links = _pair_links(trail, config.synth.all_rounds)
        images = {f"r{k}": result.paintings[k].image for link in links for k in link}

        # 3. the filters, each recorded with its verdict
        drafts = [_draft(before, after, result, trail, components, config, models.judge) for before, after in links]
        timers["filtering"] = time.perf_counter() - filtering_started
        timings = {**timers, "total": time.perf_counter() - started}
        return PairResult(record, images, drafts, trail.to_dict(), timings)
    except Exception as error:  # one bad prompt must not end a long job: recorded as failed, visible in stats
        log.debug("prompt %s failed:\n%s", record.id, traceback.format_exc())
        timings = {**timers, "total": time.perf_counter() - started}
        return PairResult(record, timings=timings, error=f"{type(error).__name__}: {error}")


def _pair_links(trail: Trail, all_rounds: bool) -> list[tuple[int, int]]:
    # Round k repainted the best painting at the time it ran, i.e. the last accepted round before it (or the first).
    accepted = [r.index for r in trail.rounds if r.accepted]
    if not accepted:
        return [(0, 0)]
    if not all_rounds:
        return [(0, trail.best)]
    befores = [0, *accepted[:-1]]
    return list(zip(befores, accepted, strict=True))


def _draft(
    before: int,
    after: int,
    result: Any,
    trail: Trail,
    components: SynthComponents,
    config: Config,
    judge: Any,
) -> PairDraft:
    rounds = {r.index: r for r in trail.rounds}
    before_scores = trail.first_scores if before == 0 else rounds[before].scores
    after_scores = trail.first_scores if after == 0 else rounds[after].scores
    a, b = result.paintings[before].image, result.paintings[after].image
    check = judge.check if hasattr(judge, "check") else _module_check
    evidence = PairEvidence(
        revised=after != before,
        before_scores=before_scores,
        after_scores=after_scores,
        before_problems=check(a),
        after_problems=check(b),
        similarity=1.0 if after == before else components.similarity(a, b),
    )
    kept, verdicts = evaluate(evidence, config.synth.filters)
    scores = score_table(before_scores, after_scores, evidence.similarity)
    after_round = rounds.get(after)
    meta = {
        "first_seed": trail.first_request.seed,
        "edits": [e.to_dict() for e in after_round.request.edits] if after_round and after_round.request else [],
        "global_prompt": after_round.request.prompt if after_round and after_round.request else None,
        "decision": list(after_round.reasons) if after_round else [],
        "cost": trail.total_cost.to_dict(),
        "dropped": drop_reasons(verdicts),
        "thresholds": _thresholds(config.synth.filters),
    }
    return PairDraft(
        round=after,
        before=f"r{before}",
        after=f"r{after}",
        scores=scores,
        kept=kept,
        verdicts=[v.to_dict() for v in verdicts],
        meta=meta,
    )


def _thresholds(filters: FilterConfig) -> dict[str, float]:
    # Each filter's threshold on the axis of the quantity ``stats`` plots (alignment: a drop of ε is a delta of -ε).
    drop = filters.max_alignment_drop
    lines = {
        f"{filters.aesthetic_score}.delta": filters.min_aesthetic_gain,
        f"{filters.alignment_score}.delta": None if drop is None else -drop,
        "similarity": filters.min_similarity,
    }
    return {k: v for k, v in lines.items() if v is not None}


def score_table(
    before: dict[str, float], after: dict[str, float], similarity: float | None = None
) -> dict[str, float]:
    """A pair's scores as the store keeps them: ``name.before``, ``name.after``, ``name.delta``, ``similarity``."""
    out = {}
    for key in sorted(set(before) | set(after)):
        if key in before:
            out[f"{key}.before"] = float(before[key])
        if key in after:
            out[f"{key}.after"] = float(after[key])
        if key in before and key in after:
            out[f"{key}.delta"] = float(after[key]) - float(before[key])
    if similarity is not None:
        out["similarity"] = float(similarity)
    return out


def _module_check(image: Image.Image) -> list[str]:
    from artaug.judge import check

    return check(image)


class _Timed:
    """Forwards attribute access to a model object and adds the time its method calls take to ``timers[bucket]``."""

    def __init__(self, target: Any, timers: dict[str, float], bucket: str) -> None:
        self._target, self._timers, self._bucket = target, timers, bucket

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self._timers[self._bucket] += time.perf_counter() - started

        return timed
