"""Pair synthesis: prompts in, filtered (before, after) pairs in a store out, on one machine or on Ray.

``process_prompt`` is the whole per-prompt job (loop → pairs → filters) and is the only function a worker runs, in
this process or in a Ray actor; ``synthesize`` is the orchestrator that claims prompts from the store, runs them and
commits the results.
"""

from __future__ import annotations

import logging
import os
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artaug.config import Config
from artaug.store import LeaseLost, PairDraft, Store
from artaug.synth.filters import FilterConfig, PairEvidence, drop_reasons, evaluate, similarity_function
from artaug.synth.prompts import PromptRecord

if TYPE_CHECKING:
    from PIL import Image

    from artaug.types import Trail

log = logging.getLogger("artaug.synth")


@dataclass
class SynthConfig:
    """Synthesis settings, beside ``base``: the painter/critic/judge/loop config every prompt's loop runs with."""

    base: Config = field(default_factory=Config, metadata={"help": "painter, critic, judge and loop sections"})
    filters: FilterConfig = field(default_factory=FilterConfig, metadata={"help": "the pair filters"})
    all_rounds: bool = field(
        default=False,
        metadata={"help": "one pair per accepted round (previous best → this round) instead of (first, final)"},
    )
    lease_ttl: float = field(
        default=600.0, metadata={"help": "seconds a worker's claim on a prompt lasts without renewal"}
    )

    def __post_init__(self) -> None:
        if isinstance(self.filters, dict):
            self.filters = FilterConfig(**self.filters)

    def to_dict(self) -> dict[str, Any]:
        synth = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("base", "filters")}
        synth["filters"] = {k: v for k, v in asdict(self.filters).items() if v is not None}
        return {**self.base.to_dict(), "synth": synth}


@dataclass
class SynthComponents:
    """What a worker loads once: the loop's painter/critic/judge and the same-scene similarity function."""

    models: Any
    similarity: Callable[[Image.Image, Image.Image], float]

    @classmethod
    def load(cls, config: SynthConfig) -> SynthComponents:
        from artaug.components import Components

        return cls(Components.load(config.base), similarity_function(config.filters))


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


@dataclass
class SynthSummary:
    processed: int = 0
    failed: int = 0
    kept: int = 0
    dropped: int = 0
    lost: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


# -- the per-prompt job ---------------------------------------------------------------------------------------------


def process_prompt(record: PromptRecord, components: SynthComponents, config: SynthConfig) -> PairResult:
    """Run the loop on one prompt and turn its trail into filtered pairs. Errors come back as ``error``, not raised."""
    from artaug import loop

    started = time.perf_counter()
    timers = {"painting": 0.0, "critique": 0.0, "judging": 0.0, "filtering": 0.0}
    models = components.models
    try:
        # 1. the loop, with each model's time measured (the benchmark's cost breakdown)
        provenance = models.provenance() if hasattr(models, "provenance") else {}
        result = loop.run(
            record.prompt,
            painter=_Timed(models.painter, timers, "painting"),
            critic=_Timed(models.critic, timers, "critique") if models.critic is not None else None,
            judge=_Timed(models.judge, timers, "judging"),
            config=config.base,
            seed=record.seed,
            provenance={**provenance, "prompt_id": record.id},
        )
        trail = result.trail

        # 2. which paintings pair up: (first, final), or each accepted round with the best painting before it
        filtering_started = time.perf_counter()
        links = _pair_links(trail, config.all_rounds)
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
    config: SynthConfig,
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
    kept, verdicts = evaluate(evidence, config.filters)
    scores = _score_table(before_scores, after_scores)
    if evidence.similarity is not None:
        scores["similarity"] = evidence.similarity
    after_round = rounds.get(after)
    meta = {
        "first_seed": trail.first_request.seed,
        "edits": [e.to_dict() for e in after_round.request.edits] if after_round and after_round.request else [],
        "global_prompt": after_round.request.prompt if after_round and after_round.request else None,
        "decision": list(after_round.reasons) if after_round else [],
        "cost": trail.total_cost.to_dict(),
        "dropped": drop_reasons(verdicts),
        "thresholds": _thresholds(config.filters),
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


def _score_table(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    out = {}
    for key in sorted(set(before) | set(after)):
        if key in before:
            out[f"{key}.before"] = float(before[key])
        if key in after:
            out[f"{key}.after"] = float(after[key])
        if key in before and key in after:
            out[f"{key}.delta"] = float(after[key]) - float(before[key])
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


# -- the orchestrator -----------------------------------------------------------------------------------------------


def synthesize(
    prompts: list[PromptRecord] | None,
    out_dir: str | Path,
    config: SynthConfig,
    *,
    ray: str | None = None,
    workers: int | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    work: Callable[[PromptRecord], PairResult] | None = None,
) -> SynthSummary:
    """Synthesise pairs for ``prompts`` into the store at ``out_dir``, resuming whatever is already committed.

    ``ray``: ``None`` runs in this process; ``"auto"`` or an address runs ``workers`` Ray actors. ``limit`` stops
    after that many prompts (this invocation). ``work`` replaces ``process_prompt`` with loaded components (tests).
    """
    started = time.perf_counter()
    # 1. open the store, register the prompts (idempotent), record the config of this run
    store = Store(out_dir, lease_ttl=config.lease_ttl)
    try:
        if prompts:
            added = store.add_prompts(prompts)
            log.info("%d prompts, %d new in %s", len(prompts), added, store.root)
        if retry_failed:
            log.info("%d failed prompts will be retried", store.retry_failed())
        _dump_config(store, config)
        pending = store.counts()["pending"]
        todo = pending if limit is None else min(pending, limit)
        summary = SynthSummary()
        if todo == 0:
            log.info("nothing to do: every prompt in %s is committed", store.root)
        else:
            # 2. run the prompts, in this process or on Ray; either way this process commits every result
            bar = _progress_bar(todo, progress)
            try:
                if ray is not None:
                    from artaug.synth.ray_backend import run_on_ray

                    commit = _committer(store, summary, bar)
                    run_on_ray(store, config, address=ray, workers=workers, limit=todo, commit=commit)
                else:
                    if work is None:
                        components = SynthComponents.load(config)

                        def work(record: PromptRecord) -> PairResult:
                            return process_prompt(record, components, config)

                    _run_local(store, work, todo, _committer(store, summary, bar))
            finally:
                bar.close()
        # 3. summary
        summary.seconds = time.perf_counter() - started
        summary.counts = store.counts()
        return summary
    finally:
        store.close()


def _run_local(
    store: Store, work: Callable[[PromptRecord], PairResult], limit: int, commit: Callable[[PairResult], None]
) -> None:
    done = 0
    with store.keep_alive():
        while done < limit:
            claimed = store.claim(1)
            if not claimed:
                break
            record = claimed[0]
            try:
                result = work(record)
            except BaseException:
                # Ctrl-C or a crash outside process_prompt: hand the prompt back at once instead of at lease expiry.
                store.release(record.id)
                raise
            result.worker = store.worker
            commit(result)
            done += 1


def _committer(store: Store, summary: SynthSummary, bar: Any) -> Callable[[PairResult], None]:
    def commit(result: PairResult) -> None:
        record = result.record
        try:
            if result.error is not None:
                store.commit_failure(record.id, result.error, seconds=result.seconds, worker=result.worker)
                summary.failed += 1
                log.warning("[%s] %s failed after %.1fs: %s", result.worker, record.id, result.seconds, result.error)
            else:
                store.commit(
                    record.id,
                    images=result.images,
                    pairs=result.pairs,
                    trail=result.trail,
                    timings=result.timings,
                    seconds=result.seconds,
                    provenance={"prompt": record.prompt, "seed": record.seed},
                    worker=result.worker,
                )
                kept = sum(p.kept for p in result.pairs)
                summary.kept += kept
                summary.dropped += len(result.pairs) - kept
                reasons = sorted({r for p in result.pairs for r in p.meta.get("dropped", [])})
                log.info(
                    "[%s] %s done in %.1fs: %d kept, %d dropped %s",
                    result.worker,
                    record.id,
                    result.seconds,
                    kept,
                    len(result.pairs) - kept,
                    f"({'; '.join(reasons)})" if reasons else "",
                )
            summary.processed += 1
        except LeaseLost as error:
            summary.lost += 1
            log.warning("[%s] %s: result discarded: %s", result.worker, record.id, error)
        bar.update(1)
        bar.set_postfix(kept=summary.kept, dropped=summary.dropped, failed=summary.failed, refresh=False)

    return commit


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    # tqdm shows the rate (pairs/s or s/pair) and the ETA from it.
    return tqdm(total=total, unit="prompt", desc="synth", disable=not enabled, dynamic_ncols=True)


def _dump_config(store: Store, config: SynthConfig) -> None:
    import tomli_w

    runs = store.root / "runs"
    runs.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"{stamp}-{store.worker.replace(':', '_')}.toml"
    # temp + rename like everything else in the store: a kill never leaves half a config behind; a temp file that
    # a killed run left (older than a minute, so no live writer's) is removed.
    for stale in runs.glob(".tmp-*"):
        if stale.stat().st_mtime < time.time() - 60:
            stale.unlink(missing_ok=True)
    tmp = runs / f".tmp-{name}"
    tmp.write_text(tomli_w.dumps(config.to_dict()), encoding="utf-8")
    os.replace(tmp, runs / name)


# -- configuration --------------------------------------------------------------------------------------------------


def load_synth_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SynthConfig:
    """A config TOML with the usual painter/critic/judge/loop sections plus an optional ``[synth]`` table
    (``all_rounds``, ``lease_ttl``, ``[synth.filters]``); ``overrides`` take ``section.key`` and ``synth.key`` /
    ``synth.filters.key`` names."""
    from artaug.config import apply_overrides, load_config

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path} is not valid TOML: {error}") from error
    synth_table = dict(data.pop("synth", {}))
    base_overrides, synth_overrides = {}, {}
    for key, value in (overrides or {}).items():
        (synth_overrides if key.startswith("synth.") else base_overrides)[key] = value
    # The base sections go through the shared loader (its checks and coercions), file values first, then flags.
    file_values = {f"{section}.{k}": v for section, table in data.items() for k, v in _table(table, section).items()}
    base = apply_overrides(load_config(None), file_values)
    base = apply_overrides(base, base_overrides)
    filters = dict(synth_table.pop("filters", {}))
    for key, value in synth_overrides.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[1] == "filters":
            filters[parts[2]] = value
        elif len(parts) == 2:
            synth_table[parts[1]] = value
        else:
            raise ValueError(f"override {key!r}: expected synth.KEY or synth.filters.KEY")
    return _synth_from_tables(base, synth_table, filters)


def _table(value: Any, section: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"config: [{section}] must be a table")
    return value


def _synth_from_tables(base: Config, synth: dict[str, Any], filters: dict[str, Any]) -> SynthConfig:
    def build(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
        defaults = {f.name: f.default for f in fields(cls) if f.name not in ("base", "filters")}
        unknown = set(values) - set(defaults)
        if unknown:
            raise ValueError(f"unknown config keys {where}.{sorted(unknown)}; known: {', '.join(sorted(defaults))}")
        return {k: _coerce(v, defaults[k], f"{where}.{k}") for k, v in values.items()}

    filter_config = FilterConfig(**build(FilterConfig, filters, "synth.filters"))
    return SynthConfig(base=base, filters=filter_config, **build(SynthConfig, synth, "synth"))


def _coerce(value: Any, default: Any, where: str) -> Any:
    """TOML values pass through; ``--set`` strings become the default's type ("none" turns a threshold off)."""
    if not isinstance(value, str):
        return value
    if value.lower() in ("none", "off", "") and (default is None or isinstance(default, float)):
        return None
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if isinstance(default, (int, float)):
            return type(default)(value)
        if default is None and where.split(".")[-1].startswith(("min_", "max_")):
            return float(value)
    except ValueError:
        raise ValueError(f"{where}: cannot read {value!r} as {type(default).__name__}") from None
    return value
