"""The interaction loop: paint → critique → repaint → judge, N rounds, with rollback; and what surrounds one run.

- ``run(prompt, painter=, critic=, judge=, config=)`` (``run.py``): the loop itself, top to bottom, with typed
  progress events; ``iterate`` yields the same events;
- ``Components.load(config)`` (``components.py``): the painter, critic and judge a config names, loaded once;
- ``paint(prompt, ...)`` (``paint.py``): the main job as one call, writing a run folder;
- ``RunFolder`` (``runfolder.py``): PNGs, ``trail.json`` and a contact sheet, consistent after every round;
- ``replay`` (``replay.py``): re-render a run from its trail and report any pixel difference.
"""

from artaug.loop.run import (
    Critiqued,
    Decided,
    Event,
    Finished,
    LoopResult,
    Painted,
    Painter,
    PaintStep,
    Rerolled,
    RoundStarted,
    first_request,
    iterate,
    revision_request,
    run,
)

__all__ = [
    "Critiqued",
    "Decided",
    "Event",
    "Finished",
    "LoopResult",
    "PaintStep",
    "Painted",
    "Painter",
    "Rerolled",
    "RoundStarted",
    "first_request",
    "iterate",
    "revision_request",
    "run",
]
