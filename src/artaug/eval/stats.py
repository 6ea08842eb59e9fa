"""The statistics of an evaluation: means with bootstrap intervals, paired differences and win rates.

The unit of resampling is the prompt (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", percentile
interval): a prompt's paintings over several seeds are averaged first, because paintings of one prompt are not
independent of each other. Two conditions are compared *paired*, prompt by prompt, on the prompts both have a score
for, so the difference is not drowned by how much prompts differ from one another.

The resampling draws the same prompt indices for every comparison of one size (one seeded generator per call), and
the interval takes order statistics, never an interpolation between them. So the statistics keep exact invariants:
identical conditions give a difference of exactly 0 with the interval [0, 0]; swapping two conditions negates the
difference and mirrors its interval, to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A mean over prompts with its bootstrap percentile interval; ``n`` prompts went into it."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Condition B against reference A on the prompts both have: ``difference`` = mean of (B - A) per prompt with
    its interval, and ``win_rate`` = the share of prompts where B scores higher (ties count one half)."""

    difference: Estimate
    win_rate: float

    def to_dict(self) -> dict[str, object]:
        return {"difference": self.difference.to_dict(), "win_rate": self.win_rate}


def per_prompt(values: Mapping[tuple[str, int], float]) -> dict[str, float]:
    """``{(prompt id, seed): score}`` → ``{prompt id: mean over its seeds}``."""
    groups: dict[str, list[float]] = {}
    for (prompt_id, _), value in values.items():
        groups.setdefault(prompt_id, []).append(value)
    return {prompt_id: float(np.mean(scores)) for prompt_id, scores in sorted(groups.items())}


def bootstrap_mean(values: list[float], resamples: int, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """Mean of ``values`` with the bootstrap percentile interval at ``confidence``.

    Indices are drawn by a generator seeded with ``(seed, len(values))``, so two samples of the same size are
    resampled identically (paired), and the interval's ends are order statistics of the resampled means (the
    lower one rounded down, the upper one up), which keeps ``interval(-x) == -interval(x)[::-1]`` exact.
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng([seed, n])
    means = np.sort(x[rng.integers(0, n, size=(resamples, n))].mean(axis=1))
    tail = (1.0 - confidence) / 2 * (resamples - 1)
    low, high = means[math.floor(tail)], means[math.ceil(resamples - 1 - tail)]
    return Estimate(float(x.mean()), float(low), float(high), n)


def compare(
    reference: Mapping[str, float],
    candidate: Mapping[str, float],
    resamples: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Paired comparison of two ``{prompt id: score}`` maps on the prompts both have."""
    shared = sorted(set(reference) & set(candidate))
    differences = [candidate[key] - reference[key] for key in shared]
    wins = sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in differences)
    win_rate = wins / len(shared) if shared else math.nan
    return Comparison(bootstrap_mean(differences, resamples, confidence, seed), win_rate)
