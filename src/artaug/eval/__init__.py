"""Evaluation: paint prompt sets under several conditions side by side and score them, or score images that exist.

- ``evaluate(prompts, out, config, conditions=...)`` (``run.py``): base, + LoRA, + loop, + LoRA + loop, resumable;
- ``score_existing(folder, out, config)`` (``run.py``): an evaluation, a synth store, run folders or PNGs;
- ``load_prompt_set(spec)`` (``prompts.py``): files, ``datasets:...``, the named sets and their licences;
- ``load_metrics(names, config.eval)`` (``registry.py``): PickScore, CLIPScore, aesthetic, VQAScore, world, GenEval;
- ``bootstrap_mean``, ``compare`` (``stats.py``): bootstrap intervals, paired differences, win rates;
- ``gate(comparisons, ...)`` (``gate.py``): the bootstrap's keep-or-roll-back rule on a held-out evaluation.

Outputs: ``summary.json``, ``scores.jsonl``, ``report.html`` (self-contained) beside the ledger and the paintings.
"""

from artaug.eval.conditions import EvalCondition, default_conditions, parse_condition
from artaug.eval.gate import Decision, gate
from artaug.eval.metrics import Metric, Result, Sample, score_safely
from artaug.eval.prompts import PROMPT_SETS, PromptSet, load_prompt_set
from artaug.eval.registry import load_metrics
from artaug.eval.run import EvalResult, evaluate, score_existing
from artaug.eval.stats import Comparison, Estimate, bootstrap_mean, compare

__all__ = [
    "PROMPT_SETS",
    "Comparison",
    "EvalCondition",
    "Decision",
    "Estimate",
    "EvalResult",
    "Metric",
    "PromptSet",
    "Result",
    "Sample",
    "bootstrap_mean",
    "compare",
    "default_conditions",
    "evaluate",
    "gate",
    "load_metrics",
    "load_prompt_set",
    "parse_condition",
    "score_existing",
    "score_safely",
]
