"""The judge: is a revision sound, and is it not worse? One config, one ``compare``, one ``Verdict`` with its reasons.

Acceptance rule (the loop issue), in this one place: the revision is kept iff
1. it is not broken (:func:`artaug.judge.broken.check`),
2. its aesthetic score is not lower than before by more than ``aesthetic_epsilon``,
3. its CLIP alignment with the prompt is not lower than before by more than ``alignment_epsilon``,
4. no score has drifted below the *first* painting's by more than its epsilon (so small per-round losses cannot add
   up over many rounds),
5. and, when the pairwise judge is enabled, the critic prefers it: ``preference > pairwise_threshold``.

Scorers are off by default, so the offline demo needs no CLIP: the judge is then the broken-image gate alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from artaug.config import JudgeConfig
from artaug.judge.broken import check
from artaug.judge.scorers import AestheticScorer, ClipAlignmentScorer, ClipBundle, PairwiseVLMJudge, Scorer

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from artaug.critic import Critic


@dataclass
class Verdict:
    """The judge's decision on one revision.

    ``scores`` are the revision's own scores (keyed by scorer name, plus ``"pairwise"`` when asked), so the loop can
    pass them back as ``before_scores`` next round. ``reasons`` explain every rule that was checked, in order.
    """

    accepted: bool
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    preference: float | None = None


class Judge:
    """The broken-image gate plus whichever scorers the config enables; see the module docstring for the rule."""

    def __init__(
        self,
        config: JudgeConfig | None = None,
        scorers: list[Scorer] | None = None,
        pairwise: PairwiseVLMJudge | None = None,
    ) -> None:
        self.config = config or JudgeConfig()
        self.scorers = list(scorers or [])
        self.pairwise = pairwise
        if self.config.pairwise and pairwise is None:
            raise ValueError("the config enables the pairwise judge but no PairwiseVLMJudge (critic) was given")

    @classmethod
    def from_config(cls, config: JudgeConfig | None = None, critic: Critic | None = None) -> Judge:
        """Load the enabled scorers (one CLIP shared when both use the same checkpoint)."""
        config = config or JudgeConfig()
        clips: dict[str, ClipBundle] = {}

        def clip(id_or_dir: str) -> ClipBundle:
            if id_or_dir not in clips:
                clips[id_or_dir] = ClipBundle.from_pretrained(id_or_dir, device=config.device)
            return clips[id_or_dir]

        scorers: list[Scorer] = []
        if config.aesthetic:
            scorers.append(
                AestheticScorer.from_pretrained(head=config.aesthetic_head, clip=clip(config.aesthetic_clip))
            )
        if config.alignment:
            scorers.append(ClipAlignmentScorer(clip(config.alignment_clip)))
        if config.world:
            from artaug.world.metric import WorldScorer

            scorers.append(WorldScorer(partial=True))
        pairwise = None
        if config.pairwise:
            if critic is None:
                raise ValueError("judge.pairwise is on: pass the critic to Judge.from_config(config, critic=...)")
            pairwise = PairwiseVLMJudge(critic, max_new_tokens=config.pairwise_max_new_tokens)
        return cls(config, scorers, pairwise)

    def check(self, image: Image.Image, latents: torch.Tensor | None = None) -> list[str]:
        """The broken-image gate with this judge's thresholds."""
        return check(image, latents, self.config.broken)

    def scores(self, image: Image.Image, prompt: str) -> dict[str, float]:
        """Every enabled scorer's score of one image, keyed by scorer name (empty when none is enabled)."""
        return {scorer.name: scorer.score([image], [prompt])[0] for scorer in self.scorers}

    def compare(
        self,
        before_image: Image.Image,
        after_image: Image.Image,
        prompt: str,
        before_scores: dict[str, float] | None = None,
        after_latents: torch.Tensor | None = None,
        first_scores: dict[str, float] | None = None,
    ) -> Verdict:
        """Accept or reject ``after_image`` as a revision of ``before_image``; every rule checked leaves a reason.

        ``first_scores`` (the run's first painting) adds rule 4: no score may drift below the first painting's.
        """
        # 1. The gate: a broken revision is rejected before any model runs.
        problems = self.check(after_image, after_latents)
        if problems:
            return Verdict(accepted=False, reasons=[f"broken: {p}" for p in problems], problems=problems)
        reasons: list[str] = ["not broken"]
        accepted = True

        # 2. Score the revision; reuse the caller's scores of the before image where given.
        before_scores = dict(before_scores or {})
        missing = [s for s in self.scorers if s.name not in before_scores]
        for scorer in missing:
            before_scores[scorer.name] = scorer.score([before_image], [prompt])[0]
        after_scores = self.scores(after_image, prompt)

        # 3. Not worse by more than epsilon, per scorer.
        for scorer in self.scorers:
            epsilon = self.epsilon(scorer.name)
            ok, reason = _not_worse(scorer.name, before_scores[scorer.name], after_scores[scorer.name], epsilon)
            accepted &= ok
            reasons.append(reason)
        if not self.scorers:
            reasons.append("no scorers enabled: the broken-image gate alone decides")

        # 4. Not worse than the first painting either: small losses per round must not add up.
        for name in sorted(after_scores.keys() & (first_scores or {}).keys()):
            epsilon = self.epsilon(name)
            if after_scores[name] < first_scores[name] - epsilon:
                accepted = False
                first = first_scores[name]
                reasons.append(
                    f"{name} {after_scores[name]:.2f} fell below the first painting's {first:.2f} - {epsilon}"
                )

        # 5. The pairwise judge (two VLM calls) only when the cheap rules have not already rejected.
        preference = None
        if self.pairwise is not None:
            if accepted:
                result = self.pairwise.judge(before_image, after_image, prompt)
                preference = after_scores["pairwise"] = result.preference
                ok, reason = _pairwise_reason(result.preference, self.config.pairwise_threshold, result.unparsed)
                accepted &= ok
                reasons.append(reason)
            else:
                reasons.append("pairwise: not asked, already rejected")
        return Verdict(accepted=accepted, reasons=reasons, scores=after_scores, problems=[], preference=preference)

    def epsilon(self, name: str) -> float:
        """How much lower a revision may score on ``name`` and still be accepted (0 for scorers without one)."""
        epsilons = {
            "aesthetic": self.config.aesthetic_epsilon,
            "alignment": self.config.alignment_epsilon,
            "world": self.config.world_epsilon,
        }
        return epsilons.get(name, 0.0)


def _not_worse(name: str, before: float, after: float, epsilon: float) -> tuple[bool, str]:
    delta = after - before
    ok = delta >= -epsilon
    sign = ">=" if ok else "<"
    return ok, f"{name} {before:.2f} -> {after:.2f} ({delta:+.2f} {sign} {-epsilon:+.2f})"


def _pairwise_reason(preference: float, threshold: float, unparsed: list[str]) -> tuple[bool, str]:
    ok = preference > threshold
    verb, sign = ("prefers", ">") if ok else ("does not prefer", "<=")
    reason = f"pairwise {verb} the revision ({preference:.2f} {sign} {threshold:.2f})"
    if unparsed:
        reason += f"; {len(unparsed)} of 2 answers unparseable, counted as 0.5: {unparsed!r}"
    return ok, reason
