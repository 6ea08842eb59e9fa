"""Pair synthesis at scale: prompts → the loop → filtered (before, after) pairs in a crash-safe store → exports.

``read_pairs`` and the prompt readers import without torch (trainers and exporters use them); ``process_prompt``,
``synthesize`` and the configs load the models' code on first use.
"""

from __future__ import annotations

from typing import Any

from artaug.store import PairRecord, Store, read_pairs
from artaug.synth.prompts import PromptRecord, read_prompts, sample_prompts_path

_LAZY = {
    "FilterConfig": "artaug.synth.filters",
    "PairResult": "artaug.synth.run",
    "SynthComponents": "artaug.synth.run",
    "SynthConfig": "artaug.synth.run",
    "load_synth_config": "artaug.synth.run",
    "process_prompt": "artaug.synth.run",
    "synthesize": "artaug.synth.run",
    "export": "artaug.synth.export",
}

__all__ = ["PairRecord", "PromptRecord", "Store", "read_pairs", "read_prompts", "sample_prompts_path", *_LAZY]


def __getattr__(name: str) -> Any:
    # Lazy: importing the loop pulls in torch, which read_pairs users should not pay for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'artaug.synth' has no attribute {name!r}")
