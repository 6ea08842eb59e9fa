"""artaug: a painter and a critic that revise region by region, and the training that teaches the painter."""

from artaug.types import Box, Cost, Critique, Edit, Painting, PaintRequest, Round, Trail

__version__ = "0.1.0"

__all__ = ["Box", "Cost", "Critique", "Edit", "PaintRequest", "Painting", "Round", "Trail", "__version__"]
