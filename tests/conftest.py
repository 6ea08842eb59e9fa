"""Shared fixtures: tiny random-weight models in the real folder layouts, built once per machine and cached.

The folders come from ``artaug.tiny`` (cached under ``$ARTAUG_CACHE`` or ``~/.cache/artaug``); the build is atomic,
so pytest-xdist workers may ask for them at the same time. Engineers: append your fixtures below, keep these.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from artaug.tiny import tiny_critic_path, tiny_painter_path


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models gain nothing from threads, and pytest-xdist already runs one worker per core: a second thread
    per worker only contends (3-5x slower on a loaded 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_painter_dir() -> Path:
    """A tiny FLUX folder: ``FluxPipeline.from_pretrained(tiny_painter_dir)`` loads it like FLUX.1-dev."""
    return tiny_painter_path()


@pytest.fixture(scope="session")
def tiny_critic_dir() -> Path:
    """A tiny Qwen2-VL folder for ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained``."""
    return tiny_critic_path("qwen2-vl")


@pytest.fixture(scope="session")
def tiny_critic25_dir() -> Path:
    """A tiny Qwen2.5-VL folder for ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained``."""
    return tiny_critic_path("qwen2.5-vl")


@pytest.fixture(scope="session")
def tiny_clip_dir() -> Path:
    """A tiny CLIP (vision + text) folder for ``CLIPModel`` / ``CLIPProcessor.from_pretrained``, built with the tiny
    painter's CLIP tokenizer; the judge's scorers load it like ``openai/clip-vit-large-patch14``."""
    from artaug.tiny.clip import tiny_clip_path

    return tiny_clip_path()


@pytest.fixture(scope="session")
def tiny_qwen_image_dir() -> Path:
    """A tiny Qwen-Image folder: ``QwenImagePipeline.from_pretrained(tiny_qwen_image_dir)`` loads it like
    ``Qwen/Qwen-Image``."""
    return tiny_painter_path("qwen-image")


@pytest.fixture(autouse=True, scope="session")
def library_log_handlers():
    """diffusers and transformers give their root loggers a ``StreamHandler`` bound to ``sys.stderr`` as it is when
    their logging is first configured. If that happens inside a test using ``capsys``, the handler keeps the closed
    capture stream and a later test's log record fails with "I/O operation on closed file". Configure both once, at
    session start, before any capture of a test."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.get_logger("diffusers")
    transformers.utils.logging.get_logger("transformers")
