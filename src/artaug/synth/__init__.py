"""Pair synthesis at scale: prompts → the loop → filtered (before, after) pairs in a crash-safe store → exports.

- ``prompts.py``: prompt files → ``PromptRecord``s with stable ids and seeds;
- ``store.py``: the SQLite ledger and image files (crash-safe, leases, read-only readers);
- ``work.py``: ``process_prompt``, the per-prompt job a worker runs; ``filters.py``: the pair filters;
- ``run.py``: ``synthesize``, the orchestrator (in process or on Ray, ``ray_backend.py``);
- ``stats.py`` and ``export.py``: what a store holds, and the layouts trainers read.

``read_pairs`` and the prompt readers import without torch (trainers and exporters use them); the rest loads the
models' code on first use.
"""

from __future__ import annotations

from typing import Any

from artaug.synth.prompts import PromptRecord, read_prompts, sample_prompts_path
from artaug.synth.store import PairRecord, Store, read_pairs

_LAZY = {
    "PairResult": "artaug.synth.work",
    "SynthComponents": "artaug.synth.work",
    "process_prompt": "artaug.synth.work",
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
