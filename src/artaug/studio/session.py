"""The studio's work, without any web page: one ``Studio`` (models loaded once, one painter lock) and one
``Session`` per browser tab (the run in progress).

A session is the loop of ``artaug.loop.run`` with a person deciding each step: paint → (ask the critic) → repaint
exactly the boxes on screen → the judge's verdict → the person accepts or rejects. It uses the loop's own pieces
(``first_request``, ``revision_request``, ``Judge.compare``) and feeds the loop's events to a ``RunFolder``, so the
run folder and ``trail.json`` are the ones ``artaug paint`` writes, and ``artaug replay`` re-renders them. A round
whose boxes or prompts a person changed has the person as its critic (``Critique.model``). An accepted revision is
committed to the studio's synth store as a (before, after) pair with provenance ``person``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artaug.config import Config
from artaug.loop import Decided, LoopResult, Painted, first_request, revision_request
from artaug.loop.components import Components
from artaug.loop.runfolder import RunFolder, free_output
from artaug.studio.boxes import boxes_to_edits, person_critique, same_edits
from artaug.studio.pairs import commit_person_pair
from artaug.types import Critique, Painting, Round, Trail

if TYPE_CHECKING:
    from artaug.judge import Verdict

Progress = Callable[[int, int], None]
MAX_SESSIONS = 64  # browser tabs remembered at once; the oldest idle one is forgotten first


class Cancelled(Exception):
    """The person pressed Cancel: the painting stopped between two denoising steps."""


@dataclass
class Pending:
    """A revision painted and judged, waiting for the person's accept or reject."""

    round: Round
    painting: Painting
    verdict: Verdict


class Studio:
    """What every browser tab shares: the config, the models (loaded once), and one lock on the painter."""

    def __init__(self, config: Config, components: Components) -> None:
        self.config = config
        self.components = components
        self.output = Path(config.studio.output).resolve()
        self.store = Path(config.studio.store).resolve()
        self.person = config.studio.person.strip()
        self.lock = threading.Lock()  # the queue runs one painter job at a time; this holds for direct calls too
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._sessions_lock = threading.Lock()

    @classmethod
    def load(cls, config: Config) -> Studio:
        """Load the painter, the judge and (unless ``studio.use_critic`` is off) the critic, once."""
        return cls(config, Components.load(config, with_critic=config.studio.use_critic))

    @property
    def has_critic(self) -> bool:
        return self.components.critic is not None

    def session(self, key: str) -> Session:
        """The session of browser tab ``key`` (created on first use)."""
        with self._sessions_lock:
            session = self._sessions.pop(key, None) or Session(self)
            self._sessions[key] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            return session


class Session:
    """One person's run: the trail so far, its paintings, the critic's last suggestion and the pending revision."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.cancel = threading.Event()
        self.config: Config = studio.config
        self.trail: Trail | None = None
        self.paintings: dict[int, Painting] = {}
        self.best = 0
        self.writer: RunFolder | None = None
        self.run_id = ""
        self.suggested: Critique | None = None
        self.pending: Pending | None = None
        self.pairs: list[str] = []  # ids of the store pairs this session committed

    @property
    def folder(self) -> Path | None:
        return self.writer.path if self.writer is not None else None

    @property
    def best_painting(self) -> Painting:
        if self.trail is None:
            raise ValueError("paint a first painting before critiquing or repainting")
        return self.paintings[self.best]

    # -- 1. paint ---------------------------------------------------------------------------------------------------

    def paint(
        self, prompt: str, seed: int, height: int, width: int, steps: int, progress: Progress | None = None
    ) -> tuple[Painting, list[str]]:
        """Start a new run with a first painting; returns it and the judge's problems with it (empty if sound).

        Settings are checked (as ``painter.height`` ...) before the painter runs; the run folder appears only once the
        painting exists.
        """
        # 1. settings, checked where they are born
        overrides = {"painter.height": height, "painter.width": width, "painter.num_inference_steps": steps}
        config = self.studio.config.updated(overrides)
        request = first_request(prompt, config.painter, int(seed))
        components = self.studio.components

        # 2. paint (one job on the painter at a time), then judge whether it is sound and score it
        self.cancel.clear()
        with self.studio.lock:
            first = components.painter.paint(request, progress=self._stepper(progress))
            problems = components.judge.check(first.image, first.latents)
            scores = components.judge.scores(first.image, prompt)

        # 3. a new run: the run folder and trail.json exactly as ``artaug paint`` writes them
        self.config, self.paintings, self.best = config, {0: first}, 0
        self.suggested = self.pending = None
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        provenance = {**components.provenance(), "studio": {"person": self.studio.person, "run": self.run_id}}
        self.trail = Trail(prompt=prompt, first_request=first.request, first_scores=scores, first_cost=first.cost,
                           provenance=provenance)  # fmt: skip
        if problems:
            self.trail.rerolls.append(f"seed {request.seed}: {'; '.join(problems)} (kept: the person decides)")
        self.writer = RunFolder(free_output(self.studio.output / f"{self.run_id}-{_slug(prompt)}"), config)
        self.writer.on_event(Painted(0, first, scores, self.trail))
        self._finish("first painting")
        return first, problems

    # -- 2. critique ------------------------------------------------------------------------------------------------

    def critique(self) -> Critique:
        """Ask the critic about the best painting so far; an answer that failed comes back with ``error`` set."""
        critic = self.studio.components.critic
        best = self.best_painting
        if critic is None:
            raise ValueError("no critic is loaded (studio.use_critic is off): draw the boxes yourself")
        started = time.perf_counter()
        with self.studio.lock:
            try:
                critique = critic.critique(best.image, self.trail.prompt)
            except Exception as error:  # a dead endpoint or a crashed model is reported, not fatal to the app
                critique = Critique(error=f"{type(error).__name__}: {error}")
        critique.seconds = critique.seconds or time.perf_counter() - started
        self.suggested = critique if not critique.error else None
        return critique

    # -- 3. repaint -------------------------------------------------------------------------------------------------

    def repaint(
        self,
        boxes: Any,
        global_prompt: str = "",
        regional: str | None = None,
        strength: float | None = None,
        progress: Progress | None = None,
    ) -> Pending:
        """Repaint exactly ``boxes`` (the editor's pixel boxes, labels = local prompts) on the best painting so far,
        and judge it. The revision waits for ``decide``; a pending one is rejected first ("repainted again")."""
        # 1. the round's critique: the critic's own when the boxes on screen are still its answer, else the person's
        best = self.best_painting
        width, height = best.image.size
        loop = self.config.updated(
            {k: v for k, v in {"loop.regional": regional, "loop.strength": strength}.items() if v is not None}
        ).loop
        suggested = self.suggested
        known = suggested.edits if suggested is not None else ()
        edits, repairs = boxes_to_edits(boxes, width, height, weight=loop.edit_weight, known=known)
        wanted = global_prompt.strip() or None
        if not edits and not wanted:
            raise ValueError("nothing to repaint: draw a box and type what it should become, or ask the critic")
        if (
            suggested is not None
            and same_edits(edits, suggested.edits, width, height)
            and (wanted == suggested.global_prompt or (wanted is None and not loop.use_global_prompt))
        ):
            critique = suggested
        else:
            critique = person_critique(edits, wanted, self.studio.person, repairs, suggested)
        if self.pending is not None:
            self.decide(False, why="repainted again before deciding")

        # 2. the revision: same seed, the loop's own request, from the best painting
        record = Round(index=len(self.trail.rounds) + 1, critique=critique)
        record.request = revision_request(best.request, critique, loop)
        started = time.perf_counter()
        self.cancel.clear()
        painter, judge = self.studio.components.painter, self.studio.components.judge
        with self.studio.lock:
            revision = painter.paint(record.request, init=best, progress=self._stepper(progress))
            before_scores = self.trail.first_scores if self.best == 0 else self._round(self.best).scores
            verdict = judge.compare(
                best.image, revision.image, self.trail.prompt, before_scores=before_scores,
                after_latents=revision.latents, first_scores=self.trail.first_scores,
            )  # fmt: skip
        record.scores, record.problems = dict(verdict.scores), list(verdict.problems)
        record.cost = revision.cost.__class__(
            revision.cost.transformer_passes, revision.cost.steps, time.perf_counter() - started
        )
        self.pending = Pending(record, revision, verdict)
        return self.pending

    # -- 4. decide --------------------------------------------------------------------------------------------------

    def decide(self, accept: bool, why: str = "") -> tuple[Round, str | None]:
        """The person's verdict on the pending revision; returns the round and the store pair committed (accepted).

        The round joins the trail with the person's decision (the judge's verdict and reasons kept beside it), the
        run folder is brought up to date, and an accepted revision becomes the best painting and a store pair.
        """
        pending = self.pending
        if pending is None:
            raise ValueError("there is no revision waiting for a decision: repaint first")
        record, verdict = pending.round, pending.verdict
        judged = "accepted" if verdict.accepted else "rejected"
        decision = f"{self.studio.person} {'accepted' if accept else 'rejected'} the revision (the judge {judged} it)"
        record.accepted = accept
        record.reasons = [decision + (f": {why}" if why else ""), *verdict.reasons]
        before = self.best
        self.trail.rounds.append(record)
        self.paintings[record.index] = pending.painting
        if accept:
            # The critic's last answer was about the painting this revision replaced.
            self.best, self.trail.best, self.suggested = record.index, record.index, None
        self.pending = None
        self.writer.on_event(Decided(record.index, accept, record.reasons, pending.painting, self.trail))
        self._finish(f"round {record.index}: {decision}")
        pair = self._commit_pair(before, record) if accept else None
        return record, pair

    def cancel_now(self) -> None:
        """Stop the painting in progress at its next step."""
        self.cancel.set()

    # -- helpers ----------------------------------------------------------------------------------------------------

    def result(self) -> LoopResult:
        return LoopResult(self.trail, self.paintings[0], self.paintings[self.best], dict(self.paintings), self.folder)

    def _finish(self, stopped: str) -> None:
        # final.png, the contact sheet and trail.json describe the run as it stands after every step.
        self.trail.stopped = f"studio: {stopped}"
        self.writer.finish(self.result())

    def _round(self, index: int) -> Round:
        return next(r for r in self.trail.rounds if r.index == index)

    def _stepper(self, progress: Progress | None) -> Progress:
        def step(done: int, total: int) -> None:
            if self.cancel.is_set():
                raise Cancelled("cancelled: the painting stopped; nothing was recorded")
            if progress is not None:
                progress(done, total)

        return step

    def _commit_pair(self, before: int, record: Round) -> str:
        pair_id = commit_person_pair(self, before, record)
        self.pairs.append(pair_id)
        return pair_id


def _slug(prompt: str, length: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:length].strip("-") or "painting"
