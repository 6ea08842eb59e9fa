"""The critic's instructions: versioned template files shipped in ``artaug/critic/templates``.

A template is plain text with three placeholders (``$prompt``, ``$max_edits``, ``$coordinates``) filled by
``string.Template``, so a painting prompt containing braces or dollars cannot break it. Its version is the file name
plus a hash of its text (``json-v1@1a2b3c4d``): editing a template changes the version, which lands in every
``Critique.template_version`` and in the critique cache key.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

# The newest template of each form; older files stay in the package so old runs can be reproduced by name.
ALIASES = {"json": "json-v1", "grounding": "grounding-v1"}

# How the template asks for coordinates, by box convention: Qwen2-VL and Qwen3-VL think in 0..1000, Qwen2.5-VL in
# absolute pixels of the image as its processor resized it (which it sees; the caller records that size).
COORDINATES = {
    "pixels": "absolute pixel coordinates of the image as you see it (origin at the top-left corner)",
    "1000": "coordinates normalised to 0-1000 of the image's width and height (origin at the top-left corner)",
}


@dataclass(frozen=True)
class Template:
    """One instruction template: its name (``json-v1``), its text and its answer form (``json`` or ``grounding``)."""

    name: str
    text: str

    @property
    def form(self) -> str:
        return "grounding" if self.name.startswith("grounding") else "json"

    @property
    def version(self) -> str:
        return f"{self.name}@{hashlib.sha256(self.text.encode()).hexdigest()[:8]}"

    def render(self, prompt: str, max_edits: int = 4, pixels: bool = False) -> str:
        """The instruction for one painting prompt; ``pixels`` asks for absolute pixel boxes (Qwen2.5-VL)."""
        values = {"prompt": prompt, "max_edits": max_edits, "coordinates": COORDINATES["pixels" if pixels else "1000"]}
        return string.Template(self.text).safe_substitute(values)


def load_template(name_or_path: str | Path | Template = "json") -> Template:
    """A packaged template by name (``json``, ``grounding``, ``json-v1``, ...) or a template file by path."""
    if isinstance(name_or_path, Template):
        return name_or_path
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    packaged = resources.files("artaug.critic") / "templates" / f"{name}.txt"
    if packaged.is_file():
        return Template(name, packaged.read_text(encoding="utf-8"))
    path = Path(name_or_path)
    if path.is_file():
        return Template(path.stem, path.read_text(encoding="utf-8"))
    raise ValueError(
        f"unknown critic template {name_or_path!r}: use one of {', '.join(available_templates())} or a file path"
    )


def available_templates() -> list[str]:
    folder = resources.files("artaug.critic") / "templates"
    return sorted([*ALIASES, *(p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt"))])


def response_schema(max_edits: int) -> dict[str, Any]:
    """The JSON schema of the ``json`` templates' answer, for servers that constrain output (``response_format``)."""
    edit = {
        "type": "object",
        "properties": {
            "box": {"type": "array", "items": {"type": "number"}},
            "prompt": {"type": "string"},
            "reason": {"type": "string"},
        },
        "required": ["box", "prompt", "reason"],
        "additionalProperties": False,
    }
    return {
        "name": "critique",
        "description": f"At most {max_edits} regional edits and an optional rewritten global prompt.",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "edits": {"type": "array", "items": edit},
                "global_prompt": {"type": ["string", "null"]},
            },
            "required": ["edits", "global_prompt"],
            "additionalProperties": False,
        },
    }
