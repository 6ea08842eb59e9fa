"""Tiny random-weight models in the real folder layouts, built offline, for demos and tests.

``tiny_painter_path(family)`` and ``tiny_critic_path(variant)`` build once into a cache folder
(``$ARTAUG_CACHE`` or ``~/.cache/artaug``, under ``tiny/``) and return it; ``build_tiny_painter(folder, family)`` and
``build_tiny_critic(folder, variant)`` write a fresh copy anywhere. Painter families: ``flux`` (FLUX.1-dev, the
default), ``flux-schnell``, ``qwen-image``, and the instruction editors ``flux-kontext`` and ``qwen-image-edit``.
The folders load through the same ``from_pretrained`` calls as the real hub ids. They prove plumbing, shapes and
invariants, never image quality.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

# Bump whenever a builder's output changes, so cached folders from older builders are not reused.
BUILDER_VERSION = "1"
CRITIC_VARIANTS = ("qwen2-vl", "qwen2.5-vl")
PAINTER_FAMILIES = ("flux", "flux-schnell", "qwen-image", "flux-kontext", "qwen-image-edit")
# The built-in tiny models at a tiny size (``--tiny``): plumbing demos, tests and benchmarks, nothing about beauty.
TINY_SETTINGS = {
    "painter.height": 64,
    "painter.width": 64,
    "painter.num_inference_steps": 2,
    "painter.max_sequence_length": 16,
    "loop.region_max_sequence_length": 16,
    "critic.max_new_tokens": 32,
}


def cache_dir() -> Path:
    """Where artaug keeps built artefacts: ``$ARTAUG_CACHE``, else ``~/.cache/artaug``."""
    return Path(os.environ.get("ARTAUG_CACHE") or Path.home() / ".cache" / "artaug")


def _cached_build(name: str, build: Callable[[Path], Path]) -> Path:
    # Build in a temporary sibling and rename it into place: rename is atomic, so a reader (or a second pytest-xdist
    # worker racing us) sees either no folder or a complete one. The loser of a race discards its copy.
    final = cache_dir() / "tiny" / f"{name}-{BUILDER_VERSION}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def tiny_painter_path(family: str = "flux") -> Path:
    """The cached tiny painter folder of ``family`` (built on first use); FLUX.1-dev's layout by default."""
    if family not in PAINTER_FAMILIES:
        raise ValueError(f"unknown tiny painter family {family!r}; choose one of {', '.join(PAINTER_FAMILIES)}")
    return _cached_build(family, lambda folder: build_tiny_painter(folder, family))


def tiny_critic_path(variant: str = "qwen2-vl") -> Path:
    """The cached tiny Qwen2-VL (``"qwen2-vl"``) or Qwen2.5-VL (``"qwen2.5-vl"``) folder, built on first use."""
    from artaug.tiny.critic import build_tiny_critic

    if variant not in CRITIC_VARIANTS:
        raise ValueError(f"unknown tiny critic variant {variant!r}; choose one of {', '.join(CRITIC_VARIANTS)}")
    return _cached_build(variant, lambda folder: build_tiny_critic(folder, variant))


def tiny_overrides() -> dict[str, object]:
    """Config overrides that point painter and critic at the tiny models (built on first use) at a tiny size."""
    return {**TINY_SETTINGS, "painter.model": str(tiny_painter_path()), "critic.model": str(tiny_critic_path())}


def build_tiny_painter(folder: str | Path, family: str = "flux") -> Path:
    """Write a fresh tiny painter folder of ``family`` to ``folder``; see :mod:`artaug.tiny.painter` (FLUX) and
    :mod:`artaug.tiny.qwen_image`."""
    if family not in PAINTER_FAMILIES:
        raise ValueError(f"unknown tiny painter family {family!r}; choose one of {', '.join(PAINTER_FAMILIES)}")
    if family.startswith("qwen-image"):
        from artaug.tiny.qwen_image import build_tiny_qwen_image

        return build_tiny_qwen_image(folder, edit=family == "qwen-image-edit")
    from artaug.tiny.painter import build_tiny_painter as build

    return build(folder, family)


def build_tiny_critic(folder: str | Path, variant: str = "qwen2-vl") -> Path:
    """Write a fresh tiny Qwen2-VL / Qwen2.5-VL folder to ``folder``; see :mod:`artaug.tiny.critic`."""
    from artaug.tiny.critic import build_tiny_critic as build

    return build(folder, variant)


__all__ = [
    "BUILDER_VERSION",
    "CRITIC_VARIANTS",
    "PAINTER_FAMILIES",
    "TINY_SETTINGS",
    "build_tiny_critic",
    "build_tiny_painter",
    "cache_dir",
    "tiny_critic_path",
    "tiny_overrides",
    "tiny_painter_path",
]
