"""The world's language: scene specs, the prompt grammar that writes and reads them, and the fixed prompt sets.

A *spec* says what a painting must show: objects (shape, optional colour, optional place on a 3 x 3 grid, count) and
optionally one spatial relation between two objects. Its prompt is plain English in GenEval's templates (Ghosh et al.
2023, "GenEval: An Object-Focused Framework for Evaluating Text-to-Image Alignment"), e.g.::

    a circle                                          single_object
    a circle and a triangle at the bottom right       two_object
    three squares                                     counting
    a red circle                                      colors
    a blue square to the left of a triangle           position
    a red circle at the top left and a blue square    color_attr

``to_prompt`` and ``parse_prompt`` are inverse on every valid spec. ``prompt_sets()`` gives the fixed, disjoint prompt
sets: a prompt's split is decided by a hash of its scene (so "A and B" and "B and A" fall in the same split), which
makes the sets independent of enumeration order and stable across versions.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from dataclasses import dataclass, field

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "yellow": (238, 196, 20),
    "green": (40, 160, 60),
    "blue": (30, 90, 220),
    "purple": (150, 60, 190),
    "black": (28, 28, 28),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# The 3 x 3 grid, row-major: name -> (row, column).
PLACES: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (0, 1),
    "top right": (0, 2),
    "left": (1, 0),
    "center": (1, 1),
    "right": (1, 2),
    "bottom left": (2, 0),
    "bottom": (2, 1),
    "bottom right": (2, 2),
}
RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "above", "below")
NUMBERS: dict[str, int] = {"a": 1, "two": 2, "three": 3, "four": 4}
EMPTY_PROMPT = "a plain background"
CATEGORIES: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
SPLITS: tuple[str, ...] = ("train", "synth", "eval")

_WORDS = {n: w for w, n in NUMBERS.items()}
_PLACE_ALTS = "|".join(sorted(PLACES, key=len, reverse=True))  # longest first: "top left" before "top"
_OBJECT = re.compile(
    rf"(?P<number>{'|'.join(NUMBERS)}) (?:(?P<colour>{'|'.join(COLOURS)}) )?"
    rf"(?P<shape>{'|'.join(SHAPES)})(?P<plural>s?)"
    rf"(?: (?:at the (?P<place>{_PLACE_ALTS})|in the (?P<centre>center)))?"
)


@dataclass(frozen=True)
class ObjectSpec:
    """``count`` objects of one ``shape``; ``colour`` and ``place`` (a cell of the 3 x 3 grid) when the prompt says."""

    shape: str
    colour: str | None = None
    place: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if self.colour is not None and self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {tuple(COLOURS)} or None, got {self.colour!r}")
        if self.place is not None and self.place not in PLACES:
            raise ValueError(f"place must be one of {tuple(PLACES)} or None, got {self.place!r}")
        if self.count not in _WORDS:
            raise ValueError(f"count must be 1..4, got {self.count!r}")
        if self.count > 1 and self.place is not None:
            raise ValueError("a counted group has no single place (one grid cell holds one object)")

    def phrase(self) -> str:
        """``a red circle at the top left``, ``three squares``: the object's words in the grammar."""
        words = [
            _WORDS[self.count],
            *([self.colour] if self.colour else []),
            self.shape + ("s" if self.count > 1 else ""),
        ]
        if self.place == "center":
            words.append("in the center")
        elif self.place is not None:
            words.append(f"at the {self.place}")
        return " ".join(words)


@dataclass(frozen=True)
class SceneSpec:
    """What a painting must show: objects of distinct shapes, optionally ``relation`` of objects[0] to objects[1]."""

    objects: tuple[ObjectSpec, ...] = field(default_factory=tuple)
    relation: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        shapes = [o.shape for o in self.objects]
        if len(set(shapes)) != len(shapes):
            raise ValueError(f"objects of one prompt have distinct shapes, got {shapes}")
        places = [o.place for o in self.objects if o.place is not None]
        if len(set(places)) != len(places):
            raise ValueError(f"two objects cannot share the place {places}")
        if sum(o.count for o in self.objects) > len(PLACES):
            raise ValueError(f"at most {len(PLACES)} objects fit the grid")
        if self.relation is not None:
            if self.relation not in RELATIONS:
                raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}")
            if len(self.objects) != 2 or any(o.count != 1 or o.place is not None for o in self.objects):
                raise ValueError("a relation links exactly two single objects without places")

    @property
    def category(self) -> str:
        """The GenEval category the spec tests (``empty`` for a plain background)."""
        if not self.objects:
            return "empty"
        if self.relation is not None:
            return "position"
        if len(self.objects) == 1:
            only = self.objects[0]
            return "counting" if only.count > 1 else "colors" if only.colour else "single_object"
        return "color_attr" if any(o.colour for o in self.objects) else "two_object"


def to_prompt(spec: SceneSpec) -> str:
    """The spec in words: object phrases joined by ``and``, or ``A <relation> B``."""
    if not spec.objects:
        return EMPTY_PROMPT
    joiner = f" {spec.relation} " if spec.relation else " and "
    return joiner.join(o.phrase() for o in spec.objects)


def parse_prompt(prompt: str) -> SceneSpec:
    """Read a world prompt back into its spec; ``ValueError`` for text outside the grammar."""
    text = " ".join(prompt.lower().split())
    if text == EMPTY_PROMPT:
        return SceneSpec()
    for relation in RELATIONS:
        parts = text.split(f" {relation} ")
        if len(parts) == 2:
            return SceneSpec(tuple(_parse_object(p) for p in parts), relation)
    return SceneSpec(tuple(_parse_object(p) for p in text.split(" and ")))


def _parse_object(text: str) -> ObjectSpec:
    match = _OBJECT.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not an object phrase of the world grammar (e.g. 'a red circle at the top left')"
        )
    count = NUMBERS[match["number"]]
    if (count > 1) != bool(match["plural"]):
        raise ValueError(f"{text!r}: number and plural disagree")
    return ObjectSpec(match["shape"], match["colour"], match["place"] or match["centre"], count)


# ------------------------------------------------------------------------------------------------ prompt sets


def scene_key(spec: SceneSpec) -> str:
    """One text per scene, whatever the word order: sorted object phrases, relations read left-to-right/top-down."""
    objects, relation = list(spec.objects), spec.relation
    if relation in ("to the right of", "below"):
        objects.reverse()
        relation = {"to the right of": "to the left of", "below": "above"}[relation]
    phrases = [o.phrase() for o in objects]
    return f" {relation} ".join(phrases) if relation else " and ".join(sorted(phrases))


def split_of(spec: SceneSpec) -> str:
    """``train`` (1/2), ``synth`` (1/4) or ``eval`` (1/4), by a hash of the scene key: fixed and disjoint."""
    bucket = int(hashlib.sha256(scene_key(spec).encode()).hexdigest()[:8], 16) % 4
    return "eval" if bucket == 0 else "synth" if bucket == 1 else "train"


def _maybe(values) -> list:
    return [None, *values]


def enumerate_category(category: str) -> list[SceneSpec]:
    """Every spec of one GenEval category in the world, in a fixed order."""
    colours, places, pairs = list(COLOURS), list(PLACES), list(itertools.permutations(SHAPES, 2))
    specs: list[SceneSpec] = []
    if category in ("single_object", "colors"):
        for shape, place in itertools.product(SHAPES, _maybe(places)):
            for colour in [None] if category == "single_object" else colours:
                specs.append(SceneSpec((ObjectSpec(shape, colour, place),)))
    elif category == "counting":
        for n, shape, colour in itertools.product((2, 3, 4), SHAPES, _maybe(colours)):
            specs.append(SceneSpec((ObjectSpec(shape, colour, count=n),)))
    elif category == "position":
        for (a, b), relation, ca, cb in itertools.product(pairs, RELATIONS, _maybe(colours), _maybe(colours)):
            specs.append(SceneSpec((ObjectSpec(a, ca), ObjectSpec(b, cb)), relation))
    elif category in ("two_object", "color_attr"):
        colour_pairs = [(None, None)] if category == "two_object" else itertools.permutations(colours, 2)
        for (a, b), (ca, cb) in itertools.product(pairs, list(colour_pairs)):
            for pa, pb in itertools.product(_maybe(places), _maybe(places)):
                if pa is None or pa != pb:
                    specs.append(SceneSpec((ObjectSpec(a, ca, pa), ObjectSpec(b, cb, pb))))
    else:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
    return specs


def _hash_order(prompt: str) -> str:
    return hashlib.sha256(f"order:{prompt}".encode()).hexdigest()


@functools.cache
def split_prompts(category: str, split: str) -> tuple[str, ...]:
    """Every prompt of ``category`` in ``split``, in a fixed pseudo-random order (computed once per process)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    prompts = [to_prompt(s) for s in enumerate_category(category) if split_of(s) == split]
    return tuple(sorted(prompts, key=_hash_order))


@dataclass(frozen=True)
class EvalItem:
    """One held-out painting to make: a prompt, its category and the seed it is painted with."""

    prompt: str
    category: str
    seed: int


def eval_items(per_category: int = 60, min_items: int = 24, quick: bool = False) -> list[EvalItem]:
    """The held-out set: up to ``per_category`` distinct eval prompts per category, in hash order; a category with
    fewer prompts (single_object and counting are small in this world) is cycled with new seeds to ``min_items``.
    ``quick`` is the fixed subset of the first 8 items of each category (48 in all)."""
    items: list[EvalItem] = []
    for category in CATEGORIES:
        prompts = split_prompts(category, "eval")[:per_category]
        count = 8 if quick else max(len(prompts), min_items)
        for i in range(count):
            prompt = prompts[i % len(prompts)]
            seed = int(_hash_order(f"{prompt}#{i // len(prompts)}")[:8], 16)
            items.append(EvalItem(prompt, category, seed))
    return items
