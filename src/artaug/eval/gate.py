"""The keep-or-roll-back rule of the bootstrap cycle, decided on a held-out evaluation.

A candidate painter is kept only when, paired prompt by prompt against the current painter,

1. the chosen metric improved: the low end of its paired difference's bootstrap interval is above ``margin``
   (0 by default: the interval lies wholly above 0), and
2. no other metric got worse beyond ``epsilon``: the low end of each one's interval is at least ``-epsilon``
   (a non-inferiority test, in that metric's own units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from artaug.eval.stats import Comparison


@dataclass
class Decision:
    """Whether to keep the candidate, and one reason per metric that decided it."""

    accepted: bool
    reasons: list[str] = field(default_factory=list)


def gate(comparisons: dict[str, Comparison], chosen: str, epsilon: float = 0.0, margin: float = 0.0) -> Decision:
    """Apply the rule in the module docstring to ``{metric: candidate vs current}``."""
    if chosen not in comparisons:
        raise ValueError(f"the gate's metric {chosen!r} was not evaluated; evaluated: {', '.join(comparisons)}")
    reasons = []
    low = comparisons[chosen].difference.low
    better = not math.isnan(low) and low > margin
    reasons.append(f"{chosen}: interval low end {low:+.4g} {'>' if better else '<='} {margin:g}")
    accepted = better
    for name, comparison in comparisons.items():
        if name == chosen:
            continue
        low = comparison.difference.low
        ok = not math.isnan(low) and low >= -epsilon
        accepted &= ok
        reasons.append(f"{name}: interval low end {low:+.4g} {'>=' if ok else '<'} -{epsilon:g}")
    return Decision(accepted, reasons)
