"""The judge: is a revision sound, and is it not worse? One config, one ``compare``, one ``Verdict`` with its reasons.

Acceptance rule (the loop issue): the revision is kept iff
1. it is not broken (:func:`artaug.judge.broken.check`),
2. its aesthetic score is not lower than before by more than ``aesthetic_epsilon``,
3. its CLIP alignment with the prompt is not lower than before by more than ``alignment_epsilon``,
4. and, when the pairwise judge is enabled, the critic prefers it: ``preference > pairwise_threshold``.

Scorers are off by default, so the offline demo needs no CLIP: the judge is then the broken-image gate alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artaug.judge.broken import BrokenConfig, check
from artaug.judge.scorers import (
    DEFAULT_AESTHETIC_HEAD,
    DEFAULT_CLIP,
    AestheticScorer,
    ClipAlignmentScorer,
    ClipBundle,
    Critic,
    PairwiseVLMJudge,
    Scorer,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class JudgeConfig:
    """Which scorers run and how much worse a revision may score before it is rolled back."""

    aesthetic: bool = field(
        default=False, metadata={"help": "Run the LAION aesthetic predictor v2 (needs CLIP L/14)."}
    )
    aesthetic_clip: str = field(default=DEFAULT_CLIP, metadata={"help": "CLIP for the aesthetic head: hub id or dir."})
    aesthetic_head: str = field(
        default=DEFAULT_AESTHETIC_HEAD,
        metadata={"help": "Aesthetic MLP head: a local .pth/.safetensors file or 'owner/repo/file' on the hub."},
    )
    aesthetic_epsilon: float = field(
        default=0.1,
        metadata={"help": "Largest aesthetic drop (1-10 scale) a revision may have and still be accepted."},
    )
    alignment: bool = field(default=False, metadata={"help": "Run CLIP text-image alignment (CLIPScore x100)."})
    alignment_clip: str = field(default=DEFAULT_CLIP, metadata={"help": "CLIP for alignment: hub id or dir."})
    alignment_epsilon: float = field(
        default=1.0,
        metadata={"help": "Largest alignment drop (CLIPScore points, 0-100) a revision may have and be accepted."},
    )
    pairwise: bool = field(
        default=False, metadata={"help": "Ask the critic VLM which image is better, in both orders (2 calls)."}
    )
    pairwise_threshold: float = field(
        default=0.5,
        metadata={"help": "Accept only if the pairwise preference for the revision is above this (0.5 = a tie)."},
    )
    pairwise_max_new_tokens: int = field(default=8, metadata={"help": "Tokens the critic may write per answer."})
    device: str | None = field(default=None, metadata={"help": "Device for CLIP scorers; default CUDA if present."})
    broken: BrokenConfig = field(default_factory=BrokenConfig, metadata={"help": "Broken-image gate thresholds."})

    def __post_init__(self) -> None:
        if isinstance(self.broken, dict):
            self.broken = BrokenConfig(**self.broken)
        if self.aesthetic_epsilon < 0 or self.alignment_epsilon < 0:
            raise ValueError("epsilons are allowed drops and must be >= 0")
        if not 0.0 <= self.pairwise_threshold < 1.0:
            raise ValueError(f"pairwise_threshold must be in [0, 1), got {self.pairwise_threshold}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JudgeConfig:
        """From a TOML table; unknown keys are an error, not silently ignored."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown judge config keys: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "broken"}
        data["broken"] = {f.name: getattr(self.broken, f.name) for f in fields(self.broken)}
        return {k: v for k, v in data.items() if v is not None}


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
    ) -> Verdict:
        """Accept or reject ``after_image`` as a revision of ``before_image``; every rule checked leaves a reason."""
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

        # 4. The pairwise judge (two VLM calls) only when the cheap rules have not already rejected.
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
        epsilons = {"aesthetic": self.config.aesthetic_epsilon, "alignment": self.config.alignment_epsilon}
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


def load_judge_config(path: str | Path) -> JudgeConfig:
    """A ``JudgeConfig`` from a TOML file (the whole file, or its ``[judge]`` table)."""
    import tomllib

    data = tomllib.loads(Path(path).read_text())
    return JudgeConfig.from_dict(data.get("judge", data))
