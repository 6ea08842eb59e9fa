"""Procedural scenes: a spec laid out on the 3 x 3 grid and rendered to a 128 x 128 image, deterministically.

``layout(spec, rng)`` fills in everything the prompt leaves open (colour, cell, size, a small jitter) and returns a
``Scene`` of concrete ``Shape``s; ``render(scene)`` draws it anti-aliased (4x supersampling) on a light, plain or
softly textured background. ``describe(scene)`` writes the scene's full caption, every attribute named.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from artaug.world.grammar import COLOURS, PLACES, ObjectSpec, SceneSpec

SIZE = 128  # pixels of a world image (a multiple of 16, as FLUX needs)
CELL = SIZE / 3
MIN_EXTENT, MAX_EXTENT = 26, 36  # object width in pixels: at least ~3 latent pixels, at most ~5/6 of a cell
JITTER = 2  # pixels an object's centre may stray from its cell's centre; keeps a gap of >= 2 px between objects
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Shape:
    """One drawn object: ``extent`` is its width (and height) in pixels, ``(cx, cy)`` its box centre."""

    shape: str
    colour: str
    cx: float
    cy: float
    extent: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        half = self.extent / 2
        return (self.cx - half, self.cy - half, self.cx + half, self.cy + half)

    @property
    def place(self) -> str:
        return place_of(self.cx, self.cy)


@dataclass(frozen=True)
class Scene:
    """Objects on a background: ``background`` is the base RGB, ``texture`` the amplitude of its soft noise."""

    shapes: tuple[Shape, ...]
    background: tuple[int, int, int]
    texture: float
    seed: int


def place_of(x: float, y: float, size: int = SIZE) -> str:
    """The grid cell a point lies in."""
    row, col = min(int(3 * y / size), 2), min(int(3 * x / size), 2)
    return next(name for name, rc in PLACES.items() if rc == (row, col))


def cell_box(place: str, size: int = SIZE) -> tuple[float, float, float, float]:
    """Pixel corners ``(x0, y0, x1, y1)`` of a grid cell."""
    row, col = PLACES[place]
    return (col * size / 3, row * size / 3, (col + 1) * size / 3, (row + 1) * size / 3)


def relation_holds(relation: str, a: str, b: str) -> bool:
    """Whether cell ``a`` is clearly ``relation`` of cell ``b``: offset along the relation's axis larger than across
    it (exact diagonals are ambiguous under GenEval's test once jitter is added, so they do not count)."""
    (ra, ca), (rb, cb) = PLACES[a], PLACES[b]
    dx, dy = ca - cb, ra - rb
    along, across = {"to the left of": (-dx, dy), "to the right of": (dx, dy), "above": (-dy, dx), "below": (dy, dx)}[
        relation
    ]
    return along > abs(across)


def layout(spec: SceneSpec, rng: random.Random) -> Scene:
    """A concrete scene satisfying ``spec``: open colours and cells drawn from ``rng``, sizes and jitter too."""
    cells = _assign_cells(spec, rng)
    shapes = []
    for obj, places in zip(spec.objects, cells, strict=True):
        for place in places:
            shapes.append(_draw_shape(obj, place, rng))
    tint = rng.randint(-8, 8), rng.randint(-8, 8), rng.randint(-8, 8)
    background = tuple(int(v + t) for v, t in zip((232, 230, 222), tint, strict=True))
    texture = rng.choice([0.0, rng.uniform(2.0, 5.0)])
    return Scene(tuple(shapes), background, texture, rng.randrange(2**31))


def _assign_cells(spec: SceneSpec, rng: random.Random) -> list[list[str]]:
    """Cells for every object: fixed places first, then relations, then the rest at random among free cells."""
    taken = {o.place for o in spec.objects if o.place}
    if spec.relation is not None:
        pairs = [(a, b) for a in PLACES for b in PLACES if a != b and relation_holds(spec.relation, a, b)]
        a, b = rng.choice(pairs)
        return [[a], [b]]
    out = []
    for obj in spec.objects:
        if obj.place:
            out.append([obj.place])
            continue
        free = [p for p in PLACES if p not in taken]
        chosen = rng.sample(free, obj.count)
        taken |= set(chosen)
        out.append(chosen)
    return out


def _draw_shape(obj: ObjectSpec, place: str, rng: random.Random) -> Shape:
    x0, y0, x1, y1 = cell_box(place)
    colour = obj.colour or rng.choice(list(COLOURS))
    extent = rng.uniform(MIN_EXTENT, MAX_EXTENT)
    cx = (x0 + x1) / 2 + rng.uniform(-JITTER, JITTER)
    cy = (y0 + y1) / 2 + rng.uniform(-JITTER, JITTER)
    return Shape(obj.shape, colour, cx, cy, extent)


def render(scene: Scene, size: int = SIZE) -> Image.Image:
    """Draw the scene: background (with soft value noise if textured), then each shape, anti-aliased."""
    big = size * SUPERSAMPLE
    canvas = Image.fromarray(_background(scene, size)).resize((big, big), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    shade = random.Random(scene.seed)
    for s in scene.shapes:
        x0, y0, x1, y1 = (v * SUPERSAMPLE * size / SIZE for v in s.box)
        rgb = tuple(min(255, max(0, c + shade.randint(-10, 10))) for c in COLOURS[s.colour])
        if s.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=rgb)
        elif s.shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=rgb)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=rgb)
    return canvas.resize((size, size), Image.Resampling.BOX)


def _background(scene: Scene, size: int) -> np.ndarray:
    base = np.broadcast_to(np.array(scene.background, dtype=np.float32), (size, size, 3))
    if scene.texture <= 0:
        return base.astype(np.uint8)
    # Value noise: a coarse random grid upsampled smoothly, the same offset on all channels (a paper-like texture).
    coarse = np.random.default_rng(scene.seed).standard_normal((size // 16, size // 16)).astype(np.float32)
    noise = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
    return np.clip(base + scene.texture * noise[..., None], 0, 255).astype(np.uint8)


def describe(scene: Scene) -> SceneSpec:
    """The scene's complete spec: every shape with its colour and cell (shapes of one kind: the first one placed,
    the others need distinct shapes, so a scene with repeated shapes is described as counted groups)."""
    by_shape: dict[str, list[Shape]] = {}
    for s in scene.shapes:
        by_shape.setdefault(s.shape, []).append(s)
    objects = []
    for shape, group in by_shape.items():
        colours = {s.colour for s in group}
        colour = colours.pop() if len(colours) == 1 else None
        place = group[0].place if len(group) == 1 else None
        objects.append(ObjectSpec(shape, colour, place, len(group)))
    return SceneSpec(tuple(objects))
