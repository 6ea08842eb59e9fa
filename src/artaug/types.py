"""The nouns every part of artaug speaks.

Parts exchange these objects and nothing else (see DESIGN.md). They are plain dataclasses that round-trip through
JSON with ``to_dict`` / ``from_dict``; images and tensors are the only fields that do not serialise, and they are
marked as such.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from PIL import Image

RegionalMode = Literal["attention", "blend"]
REGIONAL_MODES: tuple[str, ...] = ("attention", "blend")
# Box conventions of critic answers (``artaug.critic.parse``): Qwen2-VL / Qwen3-VL think in 0..1000, Qwen2.5-VL in
# pixels of the image as its processor resized it.
CONVENTIONS: tuple[str, ...] = ("auto", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "json-1000", "json-pixels")
# Bounds on what any source (a VLM, a cache file, a trail, a person) can put into a request.
MAX_EDITS = 16
MAX_PROMPT_CHARS = 4000  # the global prompt: T5 reads at most 512 tokens
MAX_LOCAL_PROMPT_CHARS = 1000
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in normalised image coordinates: ``0 <= x0 < x1 <= 1`` and ``0 <= y0 < y1 <= 1``.

    ``(0, 0)`` is the top-left corner of the image, x grows to the right and y downwards, exactly like pixel
    coordinates divided by the image's width and height. A box is always valid: the constructor raises
    ``ValueError`` otherwise. Untrusted text (a VLM's answer) is repaired into boxes by the critic's parser, never
    here.
    """

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError(f"box coordinates must be finite numbers, got {values}")
        if not (0.0 <= self.x0 < self.x1 <= 1.0 and 0.0 <= self.y0 < self.y1 <= 1.0):
            raise ValueError(
                f"box {values} is not inside the image: need 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
                "(normalised coordinates, origin top-left)"
            )
        for name in ("x0", "y0", "x1", "y1"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_pixels(cls, x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box:
        """A box from pixel corners of a ``width`` x ``height`` image."""
        return cls(x0 / width, y0 / height, x1 / width, y1 / height)

    def to_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Pixel corners (rounded outwards, so the box never shrinks to nothing)."""
        return (
            math.floor(self.x0 * width),
            math.floor(self.y0 * height),
            math.ceil(self.x1 * width),
            math.ceil(self.y1 * height),
        )

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Box:
        return cls(data["x0"], data["y0"], data["x1"], data["y1"])


@dataclass(frozen=True)
class Edit:
    """One revision request: what the region inside ``box`` should become.

    ``prompt`` describes the region's desired end state ("warm golden rim light on the couple"), not an instruction
    ("make it warmer"). ``weight`` is ``s_i``: how strongly this edit's local prompt counts inside its box against
    the global one. Blend mode: the partition formula's weight of its prediction; attention mode: the factor on the
    attention image tokens in the box pay its text. The ArtAug reference examples used 10.
    """

    box: Box
    prompt: str
    reason: str = ""
    label: str = ""
    weight: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("an edit needs a non-empty local prompt")
        if len(self.prompt) > MAX_LOCAL_PROMPT_CHARS:
            raise ValueError(f"a local prompt may have at most {MAX_LOCAL_PROMPT_CHARS} characters")
        if not isinstance(self.reason, str) or not isinstance(self.label, str):
            raise ValueError("an edit's reason and label must be text")
        w = self.weight
        if isinstance(w, bool) or not (isinstance(w, (int, float)) and math.isfinite(w) and 0 < w <= 1000):
            raise ValueError(f"edit weight must be a finite number in (0, 1000], got {w!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.box.to_dict(),
            "prompt": self.prompt,
            "reason": self.reason,
            "label": self.label,
            "weight": self.weight,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Edit:
        return cls(
            box=Box.from_dict(data["box"]),
            prompt=data["prompt"],
            reason=data.get("reason", ""),
            label=data.get("label", ""),
            weight=data.get("weight", data.get("strength", 10.0)),  # "strength" in trails written before 0.2
        )


@dataclass
class Critique:
    """What the critic said about one painting, after validation.

    ``raw`` is the critic's text exactly as received; ``repairs`` lists every change the parser made to it (a clamped
    box, a dropped edit, ...), so nothing is silently corrected. ``error`` is set when no usable answer came back
    (endpoint down, timeout): the critique is then empty and the loop skips the round.
    """

    edits: list[Edit] = field(default_factory=list)
    global_prompt: str | None = None
    raw: str = ""
    convention: str = "auto"
    repairs: list[str] = field(default_factory=list)
    template_version: str = ""
    model: str = ""
    image_size: tuple[int, int] | None = None
    processed_size: tuple[int, int] | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def wants_changes(self) -> bool:
        return bool(self.edits) or bool(self.global_prompt)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["edits"] = [e.to_dict() for e in self.edits]
        data["repairs"] = list(self.repairs)
        for key in ("image_size", "processed_size"):
            data[key] = list(data[key]) if data[key] is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Critique:
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        kwargs["edits"] = [Edit.from_dict(e) for e in data.get("edits", [])]
        for key in ("image_size", "processed_size"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


@dataclass(frozen=True)
class PaintRequest:
    """Everything that determines a painting. Argument names and defaults follow diffusers' ``FluxPipeline``.

    ``seed`` N means ``torch.Generator("cpu").manual_seed(N)``, so a request without edits reproduces diffusers'
    own output. ``strength`` < 1 starts a revision partway through the schedule from a previous painting's latents
    (like image-to-image); 1.0 re-denoises from the seed's noise, the published ArtAug way.
    """

    prompt: str
    seed: int = 0
    height: int = 1024
    width: int = 1024
    num_inference_steps: int = 28
    guidance_scale: float = 3.5
    max_sequence_length: int = 512
    edits: tuple[Edit, ...] = ()
    regional: RegionalMode = "attention"
    blur_sigma: float = 0.0
    region_max_sequence_length: int = 64
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("prompt must be a non-empty string")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt has {len(self.prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed")
        if self.regional not in REGIONAL_MODES:
            raise ValueError(f"regional must be one of {REGIONAL_MODES}, got {self.regional!r}")
        for name in ("seed", "height", "width", "num_inference_steps", "max_sequence_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("guidance_scale", "strength", "blur_sigma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, 2**63 - 1], got {self.seed}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
        object.__setattr__(self, "edits", tuple(self.edits))
        if len(self.edits) > MAX_EDITS or not all(isinstance(e, Edit) for e in self.edits):
            raise ValueError(f"a request holds at most {MAX_EDITS} Edit objects, got {len(self.edits)}")

    def replace(self, **changes: Any) -> PaintRequest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["edits"] = [e.to_dict() for e in self.edits]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaintRequest:
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        kwargs["edits"] = tuple(Edit.from_dict(e) for e in data.get("edits", []))
        return cls(**kwargs)


@dataclass
class Cost:
    """What a painting cost. ``transformer_passes`` counts every sequence of every batch, per denoising step."""

    transformer_passes: int = 0
    steps: int = 0
    seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.transformer_passes + other.transformer_passes,
            self.steps + other.steps,
            self.seconds + other.seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cost:
        return cls(**data)


@dataclass
class Painting:
    """A rendered image with the request that made it and its cost.

    ``latents`` (packed, final, before VAE decoding) lets a revision start partway through the schedule without
    re-encoding the image; it is not serialised.
    """

    image: Image.Image
    request: PaintRequest
    cost: Cost = field(default_factory=Cost)
    model: str = ""
    latents: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (the image itself is stored as a file by whoever persists it)."""
        return {"request": self.request.to_dict(), "cost": self.cost.to_dict(), "model": self.model}


@dataclass
class Round:
    """One critique → repaint → judge round of the loop.

    ``fix`` says how the round fixed what the critic asked for (``artaug.loop.fixes``): ``{"kind": "regional" |
    "edit", "reason": why}``, plus for an instruction edit the instruction, the editor, its settings and the image
    tokens it attended to. Trails written before fixes existed have none: their rounds were regional.
    """

    index: int
    critique: Critique
    request: PaintRequest | None = None
    scores: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    accepted: bool = False
    reasons: list[str] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    image_path: str | None = None
    fix: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "critique": self.critique.to_dict(),
            "request": self.request.to_dict() if self.request is not None else None,
            "scores": dict(self.scores),
            "problems": list(self.problems),
            "accepted": self.accepted,
            "reasons": list(self.reasons),
            "cost": self.cost.to_dict(),
            "image_path": self.image_path,
            "fix": dict(self.fix),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Round:
        return cls(
            index=data["index"],
            critique=Critique.from_dict(data["critique"]),
            request=PaintRequest.from_dict(data["request"]) if data.get("request") else None,
            scores=dict(data.get("scores", {})),
            problems=list(data.get("problems", [])),
            accepted=data.get("accepted", False),
            reasons=list(data.get("reasons", [])),
            cost=Cost.from_dict(data.get("cost", {})),
            image_path=data.get("image_path"),
            fix=dict(data.get("fix") or {}),
        )


@dataclass
class Trail:
    """A whole run of the loop for one prompt: the first painting, every round, and which painting won.

    ``best`` is the index of the round whose painting is the final one; 0 means the first painting (round indices
    start at 1). ``first_request`` is the request that made the first painting (after any re-rolls of broken
    first paintings, which are listed in ``rerolls``).
    """

    prompt: str
    first_request: PaintRequest
    first_scores: dict[str, float] = field(default_factory=dict)
    first_cost: Cost = field(default_factory=Cost)
    rounds: list[Round] = field(default_factory=list)
    best: int = 0
    rerolls: list[str] = field(default_factory=list)
    stopped: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def total_cost(self) -> Cost:
        total = self.first_cost
        for r in self.rounds:
            total = total + r.cost
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "first_request": self.first_request.to_dict(),
            "first_scores": dict(self.first_scores),
            "first_cost": self.first_cost.to_dict(),
            "rounds": [r.to_dict() for r in self.rounds],
            "best": self.best,
            "rerolls": list(self.rerolls),
            "stopped": self.stopped,
            "provenance": self.provenance,
            "total_cost": self.total_cost.to_dict(),
            "cost_relative_to_first": self.relative_cost(),
        }

    def relative_cost(self) -> dict[str, Any]:
        """Each round's and the whole run's transformer passes and seconds, as multiples of the first painting's."""

        def ratio(cost: Cost) -> dict[str, float | None]:
            first = self.first_cost
            return {
                "transformer_passes": cost.transformer_passes / first.transformer_passes
                if first.transformer_passes
                else None,
                "seconds": cost.seconds / first.seconds if first.seconds else None,
            }

        return {"rounds": {str(r.index): ratio(r.cost) for r in self.rounds}, "total": ratio(self.total_cost)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trail:
        return cls(
            prompt=data["prompt"],
            first_request=PaintRequest.from_dict(data["first_request"]),
            first_scores=dict(data.get("first_scores", {})),
            first_cost=Cost.from_dict(data.get("first_cost", {})),
            rounds=[Round.from_dict(r) for r in data.get("rounds", [])],
            best=data.get("best", 0),
            rerolls=list(data.get("rerolls", [])),
            stopped=data.get("stopped", ""),
            provenance=dict(data.get("provenance", {})),
        )
