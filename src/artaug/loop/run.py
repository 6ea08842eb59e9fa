"""The interaction loop: paint → critique → repaint → judge, N rounds, with rollback.

This is ArtAug's "synthesis-understanding interaction" (see DESIGN.md) made cheap and safe: a revision repaints the
critic's regions starting partway through the schedule from the current best painting (``loop.strength``) with
single-pass regional attention (or, with ``loop.fix``, by an instruction to an editing model, composited back
outside the boxes: ``artaug.loop.fixes``), and the judge keeps a revision only when it is not broken and not worse.

``run`` reads top to bottom and reports progress through typed events; ``iterate`` offers the same events as a
generator for interfaces that prefer to pull them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from artaug.config import Config, LoopConfig, PainterConfig
from artaug.loop.fixes import choose_fix
from artaug.types import MAX_EDITS, Box, Cost, Critique, Edit, Painting, PaintRequest, Round, Trail

if TYPE_CHECKING:
    from PIL import Image

    from artaug.critic import Critic
    from artaug.judge import Judge


class Painter(Protocol):
    """What the loop needs of a painter (``artaug.painter.BasePainter``: FLUX.1, Qwen-Image, ...). ``edit`` (an
    instruction edit, ``loop.fix = edit``) is called only when a round chose that fix."""

    model_id: str

    def paint(
        self, request: PaintRequest, init: Painting | None = None, progress: Callable[[int, int], None] | None = None
    ) -> Painting: ...

    def edit(
        self, request: PaintRequest, init: Painting, seam: int, progress: Callable[[int, int], None] | None = None
    ) -> tuple[Painting, dict[str, Any]]: ...


# ---- events -------------------------------------------------------------------------------------------------------


@dataclass
class RoundStarted:
    round: int


@dataclass
class PaintStep:
    round: int
    step: int
    total: int


@dataclass
class Rerolled:
    seed: int
    problems: list[str]


@dataclass
class Painted:
    round: int
    painting: Painting
    scores: dict[str, float]
    trail: Trail


@dataclass
class Critiqued:
    round: int
    critique: Critique


@dataclass
class Decided:
    round: int
    accepted: bool
    reasons: list[str]
    painting: Painting | None
    trail: Trail


@dataclass
class Finished:
    result: LoopResult


Event = RoundStarted | PaintStep | Rerolled | Painted | Critiqued | Decided | Finished


@dataclass
class LoopResult:
    """The trail plus the paintings it refers to (round index → painting; 0 is the first painting).

    ``paintings`` holds rejected revisions too, so they can be saved and looked at; ``final`` is the best accepted.
    """

    trail: Trail
    first: Painting
    final: Painting
    paintings: dict[int, Painting] = field(default_factory=dict)
    output: Path | None = None  # where ``artaug.paint`` wrote the run, when it wrote one


# ---- the loop -----------------------------------------------------------------------------------------------------


def run(
    prompt: str,
    *,
    painter: Painter,
    critic: Critic | None,
    judge: Judge,
    config: Config,
    seed: int = 0,
    on_event: Callable[[Event], None] | None = None,
    provenance: dict[str, Any] | None = None,
) -> LoopResult:
    """Paint ``prompt``, then up to ``config.loop.rounds`` rounds of critique → regional repaint → judgement."""
    emit = on_event or (lambda event: None)
    loop = config.loop

    # 1. The first painting. A broken one is re-rolled with the next seed, a bounded number of times.
    request = first_request(prompt, config.painter, seed)
    rerolls: list[str] = []
    first_cost = Cost()  # every attempt is paid for, including the broken ones
    for attempt in range(loop.max_rerolls + 1):
        emit(RoundStarted(0))
        first = painter.paint(request, progress=_stepper(emit, 0))
        first_cost = first_cost + first.cost
        problems = judge.check(first.image, first.latents)
        if not problems:
            break
        rerolls.append(f"seed {request.seed}: {'; '.join(problems)}")
        emit(Rerolled(request.seed, problems))
        if attempt < loop.max_rerolls:
            request = request.replace(seed=request.seed + 1)

    # 2. Score it: every later revision is measured against the best painting so far.
    first_scores = judge.scores(first.image, prompt)
    trail = Trail(
        prompt=prompt,
        first_request=first.request,
        first_scores=first_scores,
        first_cost=first_cost,
        rerolls=rerolls,
        provenance=dict(provenance or {}),
    )
    emit(Painted(0, first, first_scores, trail))
    best, best_scores = first, first_scores
    paintings = {0: first}
    if problems:
        trail.stopped = f"the first painting was still broken after {loop.max_rerolls} re-rolls"
        return _finish(LoopResult(trail, first, first, paintings), emit)

    # 3. The rounds: critique the best painting, repaint what the critic asked for, keep it only if the judge agrees.
    for index in range(1, loop.rounds + 1):
        started = time.perf_counter()
        emit(RoundStarted(index))
        critique = _critique(critic, best.image, prompt)
        emit(Critiqued(index, critique))
        record = Round(index=index, critique=critique)
        trail.rounds.append(record)

        if critique.error:
            record.reasons = [f"critic failed ({critique.error}): round skipped, painting kept"]
            record.cost = Cost(seconds=time.perf_counter() - started)
            emit(Decided(index, False, record.reasons, None, trail))
            continue
        if not critique.wants_changes:
            # An unusable answer is not a request for no change: say which it was (the parser's repairs tell).
            why = f"no usable edit in the critic's answer ({critique.repairs[-1]})" if critique.repairs else ""
            record.reasons = [why or "the critic asked for no change"]
            record.cost = Cost(seconds=time.perf_counter() - started)
            trail.stopped = f"round {index}: {record.reasons[0]}"
            emit(Decided(index, False, record.reasons, None, trail))
            break

        # Regional repaint or instruction edit (loop.fix): the trail says which ran, and why.
        record.request = revision_request(best.request, critique, loop)
        kind, why = choose_fix(critique, loop)
        record.fix = {"kind": kind, "reason": why}
        if kind == "edit":
            # An instruction edit starts from the best painting itself: earlier rounds' edits are already in it.
            record.request = record.request.replace(edits=record.request.edits[: len(critique.edits)])
            revision, details = painter.edit(record.request, best, loop.edit_seam, progress=_stepper(emit, index))
            record.fix.update(details)
        else:
            revision = painter.paint(record.request, init=best, progress=_stepper(emit, index))
        paintings[index] = revision
        verdict = judge.compare(
            best.image,
            revision.image,
            prompt,
            before_scores=best_scores,
            after_latents=revision.latents,
            first_scores=first_scores,
        )
        record.scores = dict(verdict.scores)
        record.problems = list(verdict.problems)
        record.accepted = verdict.accepted
        record.reasons = list(verdict.reasons)
        record.cost = Cost(
            transformer_passes=revision.cost.transformer_passes,
            steps=revision.cost.steps,
            seconds=time.perf_counter() - started,
        )
        emit(Decided(index, record.accepted, record.reasons, revision, trail))

        if record.accepted:
            best, best_scores = revision, record.scores
            trail.best = index
        else:
            # The critique of an unchanged image would ask the same again: stop instead of paying for it twice.
            trail.stopped = f"round {index}: revision rejected, rolled back to round {trail.best}"
            break
    else:
        trail.stopped = trail.stopped or f"ran all {loop.rounds} rounds"

    return _finish(LoopResult(trail, first, best, paintings), emit)


def iterate(prompt: str, **kwargs: Any) -> Iterator[Event]:
    """``run`` as a generator of events; the last one is ``Finished``. Exceptions are re-raised in the caller."""
    events: queue.Queue[Event | BaseException] = queue.Queue()

    def work() -> None:
        try:
            run(prompt, on_event=events.put, **kwargs)
        except BaseException as error:  # re-raised in the consumer's thread below
            events.put(error)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while True:
        item = events.get()
        if isinstance(item, BaseException):
            raise item
        yield item
        if isinstance(item, Finished):
            break
    thread.join()


# ---- helpers ------------------------------------------------------------------------------------------------------


def first_request(prompt: str, painter: PainterConfig, seed: int) -> PaintRequest:
    return PaintRequest(
        prompt=prompt,
        seed=seed,
        height=painter.height,
        width=painter.width,
        num_inference_steps=painter.num_inference_steps,
        guidance_scale=painter.guidance_scale,
        max_sequence_length=painter.max_sequence_length,
    )


def revision_request(base: PaintRequest, critique: Critique, loop: LoopConfig) -> PaintRequest:
    """Same seed and size as ``base``; the critique's edits (and rewritten global prompt) painted regionally.

    ``base`` is the best painting's request, so its edits are the ones accepted in earlier rounds. They are carried
    into the revision, except where a new edit covers most of an old one's box (the critic's newer word on that
    region wins): a revision re-denoises from the seed (all of it at ``strength`` 1.0), and without them an accepted
    fix would be painted over by the next round (measured in the closed world: ``artaug world bench``)."""
    edits = tuple(Edit(e.box, e.prompt, e.reason, e.label, loop.edit_weight) for e in critique.edits)
    carried = tuple(old for old in base.edits if not any(_covers(new.box, old.box) for new in edits))
    edits = (edits + carried)[:MAX_EDITS]
    prompt = critique.global_prompt if (loop.use_global_prompt and critique.global_prompt) else base.prompt
    return replace(
        base,
        prompt=prompt,
        edits=edits,
        regional=loop.regional,
        strength=loop.strength,
        blur_sigma=loop.blur_sigma,
        region_max_sequence_length=loop.region_max_sequence_length,
    )


def _covers(new: Box, old: Box) -> bool:
    """Whether ``new`` covers at least half of ``old``'s area."""
    width = min(new.x1, old.x1) - max(new.x0, old.x0)
    height = min(new.y1, old.y1) - max(new.y0, old.y0)
    return width > 0 and height > 0 and width * height >= 0.5 * old.area


def _critique(critic: Critic | None, image: Image.Image, prompt: str) -> Critique:
    """Ask the critic; any failure becomes an empty critique with the error recorded (the round is then skipped)."""
    if critic is None:
        return Critique(error="no critic configured")
    started = time.perf_counter()
    try:
        critique = critic.critique(image, prompt)
    except Exception as error:  # a dead endpoint or a crashed model must not end a long job
        critique = Critique(error=f"{type(error).__name__}: {error}")
    critique.seconds = critique.seconds or time.perf_counter() - started
    return critique


def _stepper(emit: Callable[[Event], None], index: int) -> Callable[[int, int], None]:
    return lambda step, total: emit(PaintStep(index, step, total))


def _finish(result: LoopResult, emit: Callable[[Event], None]) -> LoopResult:
    emit(Finished(result))
    return result
