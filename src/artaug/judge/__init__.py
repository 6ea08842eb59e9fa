"""The judge: a broken-image gate that needs no model, scorers behind one signature, and the acceptance rule.

- ``check(image, latents=None) -> list[str]``: why an image looks broken (empty if sound).
- ``AestheticScorer``, ``ClipAlignmentScorer``: ``score(images, prompts) -> list[float]``.
- ``PairwiseVLMJudge(critic).prefer(before, after, prompt) -> float``: the critic's preference for the revision.
- ``Judge.from_config(JudgeConfig(...), critic=None).compare(before, after, prompt) -> Verdict``.
"""

from artaug.config import BrokenConfig, JudgeConfig
from artaug.judge.broken import check
from artaug.judge.scorers import (
    AestheticHead,
    AestheticScorer,
    ClipAlignmentScorer,
    ClipBundle,
    PairwiseResult,
    PairwiseVLMJudge,
    Scorer,
    parse_choice,
)
from artaug.judge.verdict import Judge, Verdict

__all__ = [
    "AestheticHead",
    "AestheticScorer",
    "BrokenConfig",
    "ClipAlignmentScorer",
    "ClipBundle",
    "Judge",
    "JudgeConfig",
    "PairwiseResult",
    "PairwiseVLMJudge",
    "Scorer",
    "Verdict",
    "check",
    "parse_choice",
]
