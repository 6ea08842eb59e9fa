"""Painting an evaluation: every condition x prompt x seed the ledger does not hold yet.

Conditions are painted one after another, so a LoRA is loaded and fused once per condition (and unfused after it,
which restores the base painter exactly), and the painter is loaded again only when a condition changes the
``[painter]`` section itself. A condition without the loop paints once, as a user would (no re-roll, no judge); a
loop condition runs ``artaug.loop.run``, and its final painting is the one scored. Each painting's PNG carries its
prompt and settings (``parameters``) and its provenance (condition, cost, the loop's trail).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artaug.config import Config
from artaug.eval.conditions import EvalCondition
from artaug.eval.ledger import Item, Ledger
from artaug.synth.prompts import PromptRecord
from artaug.types import Trail

IMAGES = "images"
# [painter] settings a painting reads (``first_request``); every other one shapes the loaded painter itself.
PAINT_ONLY = ("height", "width", "num_inference_steps", "guidance_scale", "max_sequence_length")
_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class Painters:
    """The models the conditions need, loaded when first needed: ``load_painter(painter_config)`` and
    ``load_helpers(config)`` (critic, judge) can be replaced, e.g. by already loaded ones."""

    load_painter: Callable[[Any], Any]
    load_helpers: Callable[[Config], tuple[Any, Any]]
    painter: Any = None
    painter_key: str = ""
    helpers: tuple[Any, Any] | None = None
    helpers_key: str = ""

    @classmethod
    def from_configs(cls) -> Painters:
        def helpers(config: Config) -> tuple[Any, Any]:
            from artaug.critic import critic_from_config
            from artaug.judge import Judge

            critic = critic_from_config(config.critic)
            return critic, Judge.from_config(config.judge, critic=critic)

        from artaug.painter import load_painter

        return cls(load_painter, helpers)

    def painter_for(self, config: Config) -> Any:
        """The painter of ``config``, loaded again only when a setting that loading depends on changed (a condition
        that only paints differently, say another guidance scale, keeps the loaded one)."""
        key = json.dumps({k: v for k, v in config.painter.to_dict().items() if k not in PAINT_ONLY}, sort_keys=True)
        if self.painter is None or key != self.painter_key:
            self.painter, self.painter_key = None, ""  # let the old weights go before the new ones load
            self.painter, self.painter_key = self.load_painter(config.painter), key
        return self.painter

    def critic_and_judge(self, config: Config) -> tuple[Any, Any]:
        """The critic and judge of ``config``'s ``[critic]`` and ``[judge]``, loaded again when those change."""
        key = json.dumps(config.to_dict(sections=("critic", "judge")), sort_keys=True)
        if self.helpers is None or key != self.helpers_key:
            self.helpers, self.helpers_key = None, ""
            self.helpers, self.helpers_key = self.load_helpers(config), key
        return self.helpers


def image_name(condition: str, prompt_id: str, seed: int) -> str:
    """``images/<condition>/<prompt id>-s<seed>.png``; ids that are not plain file names are hashed."""
    stem = prompt_id if _SAFE_STEM.match(prompt_id) else "h" + hashlib.sha256(prompt_id.encode()).hexdigest()[:16]
    return f"{IMAGES}/{condition}/{stem}-s{seed}.png"


def paint_missing(
    ledger: Ledger,
    out: Path,
    prompts: list[PromptRecord],
    conditions: list[EvalCondition],
    configs: dict[str, Config],
    seeds: int,
    painters: Painters,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Paint and record every (condition, prompt, seed) the ledger lacks; returns how many were painted.

    A painting that fails is recorded with its error (the evaluation goes on); out-of-memory and interrupts stop it.
    """
    done = ledger.done()
    painted = 0
    for condition in conditions:
        todo = [
            (r, r.seed + k) for r in prompts for k in range(seeds) if (condition.name, r.id, r.seed + k) not in done
        ]
        if not todo:
            continue
        config = configs[condition.name]
        painter = painters.painter_for(config)
        for i, path in enumerate(condition.loras):
            painter.load_lora(path, adapter_name=f"eval{i}")
        if condition.loras:
            painter.fuse_lora()
        try:
            for record, seed in todo:
                ledger.add_item(_paint_one(out, condition, config, record, seed, painter, painters))
                painted += 1
                progress(1)
        finally:
            if condition.loras:
                painter.unload_lora()  # unfuse: the next condition starts from the base painter
    return painted


def _paint_one(
    out: Path,
    condition: EvalCondition,
    config: Config,
    record: PromptRecord,
    seed: int,
    painter: Any,
    painters: Painters,
) -> Item:
    from artaug.loop import first_request, run
    from artaug.pngmeta import a1111_parameters, painting_provenance, save_png

    item = Item(condition.name, record.id, seed, record.prompt, meta=dict(record.meta))
    started = time.perf_counter()
    try:
        if config.loop.rounds == 0:
            painting, trail = painter.paint(first_request(record.prompt, config.painter, seed)), None
            passes = painting.cost.transformer_passes
        else:
            critic, judge = painters.critic_and_judge(config)
            result = run(record.prompt, painter=painter, critic=critic, judge=judge, config=config, seed=seed)
            painting, trail = result.final, result.trail
            passes = trail.total_cost.transformer_passes
    except Exception as error:  # one prompt that cannot be painted must not end the evaluation
        if type(error).__name__ == "OutOfMemoryError":
            raise
        item.error = f"painting failed: {type(error).__name__}: {error}"
        return item
    item.cost = {"transformer_passes": passes, "vlm_calls": vlm_calls(trail), "seconds": time.perf_counter() - started}
    extra = {"condition": condition.describe(), "eval_cost": item.cost}
    if trail is not None:
        extra["trail"] = trail.to_dict()
    item.path = image_name(condition.name, record.id, seed)
    parameters = a1111_parameters(painting.request, painting.model)
    save_png(painting.image, out / item.path, parameters, painting_provenance(painting, **extra))
    return item


def vlm_calls(trail: Trail | None) -> int:
    """VLM calls a loop run made: one critique per round (unless no critic ran), two per pairwise judgement."""
    if trail is None:
        return 0
    calls = 0
    for record in trail.rounds:
        calls += record.critique.error != "no critic configured"
        calls += 2 * ("pairwise" in record.scores)
    return calls
