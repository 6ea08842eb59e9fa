"""The metrics registry: each name ``artaug.config.EVAL_METRICS`` lists, with the code that loads it.

- ``pickscore``: human preference (Kirstain et al. 2023, "Pick-a-Pic"), ``exp(logit_scale) * cos(image, text)``;
  ``yuvalkirstain/PickScore_v1`` with the ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` processor.
- ``clipscore``: prompt alignment (Hessel et al. 2021), ``100 * max(cos, 0)``: the judge's ``ClipAlignmentScorer``
  on ``openai/clip-vit-large-patch14``.
- ``aesthetic``: the LAION aesthetic predictor v2 (about 1-10): the judge's ``AestheticScorer``, CLIP ViT-L/14 + head.
- ``vqascore``: P("Yes") to "Does this figure show ...?" (Lin et al. 2024) with a Qwen-family VLM in process or behind
  an endpoint; ``artaug.eval.vqa``.
- ``world``: the closed world's all-requirements rule, ``artaug.world.metric.WorldScorer`` (no weights).
- ``geneval``: GenEval's rules over the detections an external detector job wrote; ``artaug.eval.geneval``.

ImageReward and HPSv2.1 are not here; docs/eval.md says why. Models load through ``from_pretrained`` from a hub id or
a local folder, and a CLIP checkpoint that several metrics name is loaded once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from artaug.config import EvalConfig
from artaug.eval.metrics import Metric, PickScore, ScorerMetric, load_clip

if TYPE_CHECKING:
    from artaug.judge.scorers import ClipBundle

ClipLoader = Callable[[str], "ClipBundle"]


def _pickscore(config: EvalConfig, clip: ClipLoader) -> Metric:
    return PickScore.from_pretrained(
        config.pickscore_model, config.pickscore_processor, config.device, config.batch_size
    )


def _clipscore(config: EvalConfig, clip: ClipLoader) -> Metric:
    from artaug.judge.scorers import ClipAlignmentScorer

    return ScorerMetric("clipscore", ClipAlignmentScorer(clip(config.clip_model), batch_size=config.batch_size))


def _aesthetic(config: EvalConfig, clip: ClipLoader) -> Metric:
    from artaug.judge.scorers import AestheticHead, AestheticScorer

    scorer = AestheticScorer(clip(config.aesthetic_clip), AestheticHead.load(config.aesthetic_head), config.batch_size)
    return ScorerMetric("aesthetic", scorer)


def _vqascore(config: EvalConfig, clip: ClipLoader) -> Metric:
    from artaug.eval.vqa import VQAScore

    return VQAScore.from_config(config)


def _world(config: EvalConfig, clip: ClipLoader) -> Metric:
    from artaug.world.metric import WorldScorer

    return ScorerMetric("world", WorldScorer(partial=config.world_partial))


def _geneval(config: EvalConfig, clip: ClipLoader) -> Metric:
    from artaug.eval.geneval import GenEvalMetric

    return GenEvalMetric.from_file(config.geneval_detections)


LOADERS: dict[str, Callable[[EvalConfig, ClipLoader], Metric]] = {
    "pickscore": _pickscore,
    "clipscore": _clipscore,
    "aesthetic": _aesthetic,
    "vqascore": _vqascore,
    "world": _world,
    "geneval": _geneval,
}


def load_metrics(names: tuple[str, ...], config: EvalConfig) -> dict[str, Metric]:
    """Load the named metrics (``ValueError`` for an unknown name); CLIPs shared by several load once."""
    unknown = [name for name in names if name not in LOADERS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; eval.metrics knows {', '.join(LOADERS)}")
    clips: dict[str, ClipBundle] = {}

    def clip(id_or_dir: str) -> ClipBundle:
        if id_or_dir not in clips:
            clips[id_or_dir] = load_clip(id_or_dir, id_or_dir, config.device)
        return clips[id_or_dir]

    return {name: LOADERS[name](config, clip) for name in names}
