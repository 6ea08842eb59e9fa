"""The main job as one call: ``artaug.paint(prompt, ...)`` paints, critiques, repaints, judges and saves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from artaug.config import Config, load_config, option_names
from artaug.loop.components import Components
from artaug.loop.run import Event, LoopResult, run

# The settings ``artaug paint`` offers as flags and ``artaug.paint`` as keywords (names from the config fields).
PAINT_SETTINGS = (
    "painter.model",
    "critic.model",
    "critic.served_model",
    "loop.rounds",
    "painter.num_inference_steps",
    "painter.height",
    "painter.width",
    "painter.guidance_scale",
    "painter.max_sequence_length",
    "loop.regional",
    "loop.strength",
    "loop.edit_weight",
    "loop.blur_sigma",
    "loop.region_max_sequence_length",
    "painter.dtype",
    "painter.device",
    "painter.offload",
    "painter.attention_impl",
    "painter.lora",
    "painter.memory",
    "painter.compile",
    "loop.fix",
    "painter.editor",
)


def resolve_config(config: Config | str | Path | None, **options: Any) -> Config:
    """A validated ``Config`` from an object, a TOML path or the defaults, with keyword options applied on top
    (``painter=``, ``rounds=``, ``height=``, ...: the names of ``artaug paint``'s flags)."""
    names = option_names(PAINT_SETTINGS)
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(names)}")
    overrides = {names[k]: v for k, v in options.items() if v is not None}
    if isinstance(config, Config):
        return config.updated(overrides)
    return load_config(config, overrides)


def paint(
    prompt: str,
    *,
    config: Config | str | Path | None = None,
    seed: int = 0,
    output: str | Path | None = None,
    overwrite: bool = False,
    components: Components | None = None,
    on_event: Callable[[Event], None] | None = None,
    **options: Any,
) -> LoopResult:
    """Paint ``prompt`` and revise it with the critic; returns the trail and its paintings.

    ``output`` ending in ``.png`` writes that image (its trail beside it); any other path becomes a run folder. An
    existing output is kept: the run goes to ``NAME-2``... unless ``overwrite``. Keyword options (``painter=``,
    ``critic=``, ``rounds=``, ``height=``, ...) override the config.
    """
    from artaug.loop.runfolder import RunFolder, free_output

    config = resolve_config(config, **options)
    writer = target = None
    if output is not None:
        target = free_output(output, overwrite)
        writer = RunFolder.for_output(target, config, overwrite=overwrite)
    components = components or Components.load(config)

    def emit(event: Event) -> None:
        if writer is not None:
            writer.on_event(event)
        if on_event is not None:
            on_event(event)

    try:
        result = run(
            prompt,
            painter=components.painter,
            critic=components.critic,
            judge=components.judge,
            config=config,
            seed=seed,
            on_event=emit,
            provenance=components.provenance(),
        )
        result.output = target
        return result
    except KeyboardInterrupt:
        if writer is not None:
            writer.interrupted("interrupted (Ctrl-C): the files describe the rounds completed before it")
        raise
    except Exception as error:
        if writer is not None:
            writer.interrupted(f"stopped by an error ({type(error).__name__}: {error})")
        raise
