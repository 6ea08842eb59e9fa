"""Pair synthesis: prompts in, filtered (before, after) pairs in a store out, on one machine or on Ray.

``synthesize`` is the orchestrator: it claims prompts from the store, has ``artaug.synth.work.process_prompt`` run
each one (in this process or in Ray actors, ``ray_backend``) and commits every result itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artaug.config import PAINT_SECTIONS, Config
from artaug.synth.prompts import PromptRecord
from artaug.synth.store import LeaseLost, Store
from artaug.synth.work import PairResult, SynthComponents, process_prompt

log = logging.getLogger("artaug.synth")


@dataclass
class SynthSummary:
    processed: int = 0
    failed: int = 0
    kept: int = 0
    dropped: int = 0
    lost: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


# -- the orchestrator -----------------------------------------------------------------------------------------------


def synthesize(
    prompts: list[PromptRecord] | None,
    out_dir: str | Path,
    config: Config,
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
    store = Store(out_dir, lease_ttl=config.synth.lease_ttl)
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
        except (ValueError, TypeError, RecursionError) as error:
            # A result the ledger cannot hold (it came from a worker, possibly built from tampered files): recorded
            # as this prompt's failure, and the job goes on.
            why = f"result could not be committed ({type(error).__name__}: {error})"
            store.commit_failure(record.id, why[:2000], seconds=result.seconds, worker=result.worker)
            summary.failed += 1
            summary.processed += 1
            log.warning("[%s] %s: %s", result.worker, record.id, why)
        bar.update(1)
        bar.set_postfix(kept=summary.kept, dropped=summary.dropped, failed=summary.failed, refresh=False)

    return commit


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    # tqdm shows the rate (pairs/s or s/pair) and the ETA from it.
    return tqdm(total=total, unit="prompt", desc="synth", disable=not enabled, dynamic_ncols=True)


def _dump_config(store: Store, config: Config) -> None:
    runs = store.root / "runs"
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    # Atomic like everything else in the store; a temp file that a killed run left (older than a minute, so no live
    # writer's) is removed.
    for stale in runs.glob(".*.tmp"):
        if stale.stat().st_mtime < time.time() - 60:
            stale.unlink(missing_ok=True)
    config.dump(runs / f"{stamp}-{store.worker.replace(':', '_')}.toml", sections=(*PAINT_SECTIONS, "synth"))
