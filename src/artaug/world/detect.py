"""The world's detector: colour segmentation and shape classification, robust to painted (blurry, off-colour) images.

1. Foreground: pixels that are saturated (``S > 0.3`` and ``V > 0.25`` in HSV) or dark (``V < 0.4``); the world's
   backgrounds are light and nearly grey. The image is box-filtered 3 x 3 first, so VAE speckle does not fragment it.
2. Each foreground pixel gets the palette colour of nearest hue (black when dark).
3. Connected foreground regions (8-neighbourhood) are objects; a region whose second colour holds a sizeable share is
   split by colour (two touching objects), otherwise it takes its majority colour (an off-colour rim stays one object).
4. The shape is the template (ellipse, rectangle, upward triangle fitted to the region's box) with the highest IoU;
   below ``MIN_SHAPE_IOU`` the region is a ``blob``, which matches no shape word.

Regions under ``MIN_AREA`` pixels (at 128 x 128) are noise: the smallest world object covers ~240.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image

from artaug.world.grammar import COLOURS
from artaug.world.scenes import SIZE, place_of

MIN_AREA = 60
MIN_SHAPE_IOU = 0.6
SPLIT_SHARE = 0.3  # a region is split by colour when its second colour covers this share of it
SATURATED, BRIGHT, DARK = 0.3, 0.25, 0.4
_HUES = {name: colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] for name, rgb in COLOURS.items() if name != "black"}
_NAMES = (*_HUES, "black")


@dataclass(frozen=True)
class Detection:
    """One object found in an image; ``box`` in pixels ``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive."""

    colour: str
    shape: str
    box: tuple[int, int, int, int]
    area: int
    shape_iou: float

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)

    def place(self, size: int = SIZE) -> str:
        return place_of(*self.centre, size=size)


def detect(image: Image.Image) -> list[Detection]:
    """Every object in ``image``, in reading order of their box centres (row-major)."""
    rgb = _smooth(np.asarray(image.convert("RGB"), dtype=np.float32) / 255)
    labels = colour_labels(rgb)
    found = []
    for region in _components(labels >= 0):
        for colour, mask in _split_by_colour(region, labels):
            found.append(_describe(mask, colour))
    return sorted(found, key=lambda d: (d.centre[1] // 8, d.centre[0]))


def _smooth(rgb: np.ndarray) -> np.ndarray:
    """3 x 3 box filter (edges replicated)."""
    padded = np.pad(rgb, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = rgb.shape[:2]
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9


def colour_labels(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel index into ``(*hue colours, black)``, or -1 for background; ``rgb`` is float in [0, 1]."""
    top, bottom = rgb.max(-1), rgb.min(-1)
    sat = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-6), 0)
    hue = _hue(rgb, top, bottom)
    hues = np.array(list(_HUES.values()))
    distance = np.abs(hue[..., None] - hues)
    nearest = np.minimum(distance, 1 - distance).argmin(-1)  # hue is circular
    labels = np.full(top.shape, -1, dtype=np.int64)
    labels[top < DARK] = len(_HUES)
    # Colour wins over darkness: a painted green often comes out dark, and a dark green is still green.
    coloured = (sat > SATURATED) & (top > BRIGHT)
    labels[coloured] = nearest[coloured]
    return labels


def _hue(rgb: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """HSV hue in [0, 1) (the hexcone formula of ``colorsys.rgb_to_hsv``), vectorised."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    span = np.maximum(top - bottom, 1e-6)
    hue = np.where(top == r, (g - b) / span, np.where(top == g, 2 + (b - r) / span, 4 + (r - g) / span))
    return (hue / 6) % 1.0


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Boolean masks of the 8-connected regions of ``mask``: labels spread as the neighbourhood minimum until
    stable (iterations bounded by the largest region's diameter, which the grid keeps small)."""
    h, w = mask.shape
    big = h * w + 1
    labels = np.where(mask, np.arange(h * w).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        neighbours = np.min([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)
        spread = np.where(mask, neighbours, big)
        if np.array_equal(spread, labels):
            break
        labels = spread
    return [labels == value for value in np.unique(labels[mask])]


def _split_by_colour(region: np.ndarray, labels: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """A region as one object of its majority colour, or, when a second colour is big, its per-colour parts."""
    if region.sum() < MIN_AREA:
        return []
    counts = np.bincount(labels[region], minlength=len(_NAMES))
    order = counts.argsort()[::-1]
    if counts[order[1]] < SPLIT_SHARE * region.sum():
        return [(_NAMES[order[0]], region)]
    parts = []
    for index in order[counts[order] >= MIN_AREA]:
        for part in _components(region & (labels == index)):
            if part.sum() >= MIN_AREA:
                parts.append((_NAMES[index], part))
    return parts


def _describe(mask: np.ndarray, colour: str) -> Detection:
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    crop = mask[y0:y1, x0:x1]
    ious = {name: _iou(crop, template) for name, template in _templates(x1 - x0, y1 - y0).items()}
    best = max(ious, key=ious.get)
    shape = best if ious[best] >= MIN_SHAPE_IOU else "blob"
    return Detection(colour, shape, (x0, y0, x1, y1), int(mask.sum()), round(ious[best], 3))


def _templates(w: int, h: int) -> dict[str, np.ndarray]:
    """The three world shapes rasterised into a ``w`` x ``h`` box (pixel centres, so they match ``render``)."""
    y, x = np.mgrid[0:h, 0:w]
    u, v = (x + 0.5) / w, (y + 0.5) / h  # 0..1 across the box
    return {
        "circle": (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25,
        "square": np.ones((h, w), dtype=bool),
        "triangle": np.abs(u - 0.5) <= v / 2,
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))
