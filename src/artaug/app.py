"""The main job as one call: ``artaug.paint(prompt, ...)`` paints, critiques, repaints, judges and saves."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artaug.components import Components
from artaug.config import Config, apply_overrides, load_config
from artaug.loop import Decided, Event, Finished, LoopResult, PaintStep, Rerolled, RoundStarted, run

# Keyword shortcuts of ``paint`` and the config fields they set (names follow diffusers).
SHORTCUTS = {
    "painter": "painter.model",
    "critic": "critic.model",
    "rounds": "loop.rounds",
    "regional": "loop.regional",
    "strength": "loop.strength",
    "height": "painter.height",
    "width": "painter.width",
    "num_inference_steps": "painter.num_inference_steps",
    "guidance_scale": "painter.guidance_scale",
    "max_sequence_length": "painter.max_sequence_length",
}


def resolve_config(config: Config | str | Path | None, **shortcuts: Any) -> Config:
    """A ``Config`` from an object, a TOML path or the defaults, with keyword shortcuts applied on top."""
    unknown = set(shortcuts) - set(SHORTCUTS)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(SHORTCUTS)}")
    overrides = {SHORTCUTS[k]: v for k, v in shortcuts.items() if v is not None}
    if isinstance(config, Config):
        return apply_overrides(config, overrides)
    return load_config(config, overrides)


def paint(
    prompt: str,
    *,
    config: Config | str | Path | None = None,
    seed: int = 0,
    output: str | Path | None = None,
    components: Components | None = None,
    on_event: Callable[[Event], None] | None = None,
    **shortcuts: Any,
) -> LoopResult:
    """Paint ``prompt`` and revise it with the critic; returns the trail and its paintings.

    ``output`` ending in ``.png`` writes that image (its trail beside it); any other path becomes a run folder.
    Keyword shortcuts (``painter=``, ``critic=``, ``rounds=``, ``height=``, ...) override the config.
    """
    from artaug.runfolder import RunFolder

    config = resolve_config(config, **shortcuts)
    components = components or Components.load(config)
    writer = RunFolder.for_output(output, config) if output is not None else None

    def emit(event: Event) -> None:
        if writer is not None:
            writer.on_event(event)
        if on_event is not None:
            on_event(event)

    try:
        return run(
            prompt,
            painter=components.painter,
            critic=components.critic,
            judge=components.judge,
            config=config,
            seed=seed,
            on_event=emit,
            provenance=components.provenance(),
        )
    except KeyboardInterrupt:
        if writer is not None:
            writer.interrupted("interrupted (Ctrl-C): the files describe the rounds completed before it")
        raise


class ProgressPrinter:
    """Renders loop events as tqdm bars (one per painting) and one line per decision, on stderr."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.bar: Any = None

    def __call__(self, event: Event) -> None:
        from tqdm.auto import tqdm

        if isinstance(event, RoundStarted):
            self._close()
            label = "first painting" if event.round == 0 else f"round {event.round}"
            self.bar = tqdm(total=None, desc=label, unit="step", file=self.stream, leave=False)
        elif isinstance(event, PaintStep) and self.bar is not None:
            self.bar.total = event.total
            self.bar.update(event.step - self.bar.n)
        elif isinstance(event, Rerolled):
            self._print(f"seed {event.seed} gave a broken image ({'; '.join(event.problems)}): re-rolling")
        elif isinstance(event, Decided):
            self._close()
            state = "accepted" if event.accepted else "not accepted"
            self._print(f"round {event.round}: {state}" + (f" ({'; '.join(event.reasons)})" if event.reasons else ""))
        elif isinstance(event, Finished):
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _print(self, line: str) -> None:
        print(line, file=self.stream)
