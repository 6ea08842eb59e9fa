"""artaug: a painter and a critic that revise region by region, and the training that teaches the painter."""

from artaug.types import Box, Cost, Critique, Edit, Painting, PaintRequest, Round, Trail

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``artaug.paint`` (the main job as a function) imports torch and diffusers: load it only when asked for.
    if name == "paint":
        from artaug.loop.paint import paint

        return paint
    raise AttributeError(f"module 'artaug' has no attribute {name!r}")


__all__ = ["Box", "Cost", "Critique", "Edit", "PaintRequest", "Painting", "Round", "Trail", "__version__", "paint"]
