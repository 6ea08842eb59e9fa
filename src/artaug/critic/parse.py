"""Everything a VLM writes is untrusted text: this module is the one boundary where it becomes a ``Critique``.

``parse_critique`` reads the answer forms the Qwen family and OpenAI-compatible servers produce:

- Qwen2-VL referring grounding,
  ``<|object_ref_start|>label<|object_ref_end|><|box_start|>(x0,y0),(x1,y1)<|box_end|>`` (0..1000), several per
  answer, interleaved with prose; Qwen-VL's older ``<ref>label</ref><box>(x0,y0),(x1,y1)</box>`` spelling too;
- the same after a decoder or server stripped the special tokens: ``label(x0,y0),(x1,y1)``;
- JSON, bare or fenced, a list or a single object: the project's schema
  ``{"edits": [{"box": [x0,y0,x1,y1], "prompt": ..., "reason": ...}], "global_prompt": ...}`` (0..1000), and
  Qwen2.5-VL / Qwen3-VL ``[{"bbox_2d": [...], "label": ...}]`` in processed-image pixels or 0..1000.

Whatever the text, it returns a ``Critique`` whose boxes are valid ``Box`` objects in [0, 1] of the original image;
every change made on the way (a clamped box, swapped corners, a dropped edit, a guessed coordinate space) is
written to ``Critique.repairs``. It never raises on any text; only a wrong *argument* (an unknown convention, a
non-positive image size) raises ``ValueError``, because that is the caller's bug, not the model's.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any

from artaug.types import CONVENTIONS, Box, Critique, Edit

PIXEL_CONVENTIONS = ("qwen2.5-vl", "json-pixels")
MAX_TEXT_CHARS = 100_000  # longer answers are truncated (an oversized answer must not stall the loop)
MAX_PROMPT_CHARS = 400  # a local prompt feeds a text encoder of ~64 tokens; longer text is noise
MAX_JSON_STARTS = 400  # bound on the positions tried when salvaging JSON from prose or a truncated answer

# Bounded character classes (no ``.*?`` across the whole text) keep every regex linear on hostile input.
_NUM = r"[-+]?(?:\d{1,12}(?:\.\d{0,12})?|\.\d{1,12})"
_PAIR = rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
_CORNERS = re.compile(rf"{_PAIR}\s*,?\s*(?:to\s*)?{_PAIR}")
_GROUNDING = re.compile(
    r"<\|object_ref_start\|>(?P<label>[^<]{0,2000})<\|object_ref_end\|>"
    r"|<\|box_start\|>(?P<coords>[^<]{0,300})<\|box_end\|>"
)
_OLD_TAGS = {"<ref>": "<|object_ref_start|>", "</ref>": "<|object_ref_end|>", "<box>": "<|box_start|>"}
_OLD_TAGS["</box>"] = "<|box_end|>"
_SPECIAL = re.compile(r"<\|[^<>|]{0,40}\|>|<\||\|>|</?(?:ref|box|quad)>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_GLOBAL_LINE = re.compile(
    r"^[ \t*#>-]{0,8}(?:global(?:[ _]prompt)?|whole[- ]image(?:[ _]prompt)?)[ \t*]{0,4}[:=]"
    r"[ \t]{0,8}(?P<p>[^\n]{1,2000})$",
    re.IGNORECASE | re.MULTILINE,
)
_NO_CHANGES = re.compile(r"\bno[ _-]?(?:changes?|edits?)\b|\bnothing (?:to|should|needs to) (?:be )?change", re.I)
_BULLET = re.compile(r"^(?:[-*•>#]+|\d{1,3}[.):])\s*")
_REASON_PREFIX = re.compile(r"^(?:[-–—:;,.|]+\s*)?(?:reason\s*[:=-]\s*|because\s+)?", re.I)

BOX_KEYS = ("box", "bbox_2d", "bbox", "box_2d", "coordinates", "region")
PROMPT_KEYS = ("prompt", "desired", "desired_state", "description", "label", "text", "caption")
LIST_KEYS = ("edits", "regions", "objects", "boxes", "items", "annotations", "results")
GLOBAL_KEYS = ("global_prompt", "global", "rewritten_prompt")


@dataclass
class _Candidate:
    """One box-with-text found in the answer, before coordinates are interpreted."""

    coords: Any
    prompt: Any
    reason: Any = ""
    label: Any = ""
    where: str = ""
    key: str = "box"  # which JSON key held the box ("grounding" for the token forms)


def parse_critique(
    text: Any,
    image_size: tuple[int, int],
    convention: str = "auto",
    processed_size: tuple[int, int] | None = None,
    max_edits: int | None = None,
) -> Critique:
    """Parse a critic's answer into a validated ``Critique``. Never raises on any ``text``.

    Args:
        text: the model's answer, exactly as received (kept as ``Critique.raw``).
        image_size: ``(width, height)`` of the original image, in pixels.
        convention: how to read coordinates: ``auto``, ``qwen2-vl`` (0..1000), ``qwen2.5-vl`` (pixels of the image
            as the processor resized it), ``qwen3-vl`` (0..1000), ``json-1000`` or ``json-pixels``.
        processed_size: ``(width, height)`` of the image the model actually saw (after the processor's resize, or
            as sent to a server); pixel conventions are read against it.
        max_edits: keep at most this many edits (the rest are dropped, and that is recorded).
    """
    width, height = _check_size(image_size, "image_size")
    if processed_size is not None:
        processed_size = _check_size(processed_size, "processed_size")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if max_edits is not None and (not isinstance(max_edits, int) or max_edits < 0):
        raise ValueError(f"max_edits must be a non-negative int or None, got {max_edits!r}")

    raw = text if isinstance(text, str) else ""
    critique = Critique(raw=raw, convention=convention, image_size=(width, height), processed_size=processed_size)
    try:
        _parse_into(critique, text, convention, max_edits)
    except Exception as exc:  # the safety net behind the contract; tests assert it is never reached
        critique.edits, critique.global_prompt = [], None
        critique.repairs.append(f"internal parser failure ({type(exc).__name__}: {exc}); answer ignored")
    return critique


def _parse_into(critique: Critique, text: Any, convention: str, max_edits: int | None) -> None:
    # 1. Make it a bounded string.
    text = _as_text(text, critique.repairs)
    if len(text) > MAX_TEXT_CHARS:
        critique.repairs.append(f"answer of {len(text)} characters truncated to {MAX_TEXT_CHARS}")
        text = text[:MAX_TEXT_CHARS]
    for old, new in _OLD_TAGS.items():
        text = text.replace(old, new)

    # 2. Find candidate edits: grounding tokens, then JSON, then the token-stripped grounding form.
    candidates: list[_Candidate] = []
    global_prompt: Any = None
    form = "none"
    if "<|box_start|>" in text:
        candidates, form = _grounding_candidates(text, critique.repairs), "grounding"
    if not candidates and ("{" in text or "[" in text):
        value = _find_json(text, critique.repairs)
        if value is not None:
            candidates, global_prompt, understood = _json_candidates(value, critique.repairs)
            form = "json" if understood or candidates or global_prompt is not None else form
    if not candidates and form != "json":
        candidates = _stripped_candidates(text)
        form = "stripped" if candidates else form
    if global_prompt is None and form != "json":
        match = _GLOBAL_LINE.search(text)
        global_prompt = match.group("p") if match else None

    # 3. Interpret coordinates and validate every edit.
    space, scale = _coordinate_space(candidates, convention, critique)
    edits: list[Edit] = []
    for cand in candidates:
        edit = _to_edit(cand, scale, critique)
        if edit is not None:
            edits.append(edit)
    edits = _dedupe(edits, critique.repairs)
    if max_edits is not None and len(edits) > max_edits:
        critique.repairs.append(f"kept the first {max_edits} of {len(edits)} edits (max_edits={max_edits})")
        edits = edits[:max_edits]
    critique.edits = edits
    critique.global_prompt = _clean_global(global_prompt, critique.repairs)
    if convention == "auto" and candidates:
        critique.convention = space

    # 4. Say so when nothing usable came out of a non-empty answer that did not ask for "no changes".
    if not critique.wants_changes and not candidates and form != "json":
        if not text.strip():
            critique.repairs.append("empty answer")
        elif not _NO_CHANGES.search(text):
            critique.repairs.append("no edits, global prompt or 'no changes' found in the answer")


def _check_size(size: Any, name: str) -> tuple[int, int]:
    try:
        w, h = size
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (width, height), got {size!r}") from None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in (w, h)):
        raise ValueError(f"{name} must be two positive ints (width, height), got {size!r}")
    return int(w), int(h)


def _as_text(text: Any, repairs: list[str]) -> str:
    if isinstance(text, str):
        return text
    if text is None:
        repairs.append("answer was None")
        return ""
    if isinstance(text, bytes | bytearray):
        repairs.append("answer was bytes; decoded as UTF-8 with replacement")
        return bytes(text).decode("utf-8", errors="replace")
    repairs.append(f"answer was a {type(text).__name__}, not text; read its str()")
    return str(text)


# --- finding candidates ---------------------------------------------------------------------------------------------


def _grounding_candidates(text: str, repairs: list[str]) -> list[_Candidate]:
    """Qwen2-VL grounding: a ref label followed by one or more boxes; trailing prose on the line is the reason."""
    found: list[_Candidate] = []
    label, label_end = None, 0
    for match in _GROUNDING.finditer(text):
        if match.group("label") is not None:
            label, label_end = match.group("label"), match.end()
            continue
        where = f"box {len(found) + 1}"
        before = text[label_end : match.start()]
        if label is None or "\n" in before:  # a box with no ref of its own: the prose before it names the region
            label = before.rsplit("\n", 1)[-1]
            if label.strip():
                repairs.append(f"{where}: no ref label; used the text before it")
        rest = text[match.end() : match.end() + 500].split("\n", 1)[0].split("<|", 1)[0]
        reason = _REASON_PREFIX.sub("", rest.strip())
        found.append(_Candidate(match.group("coords"), label, reason, label, where, "grounding"))
        label_end = match.end()  # a following box of the same ref reuses the label
    return found


def _stripped_candidates(text: str) -> list[_Candidate]:
    """``label(x0,y0),(x1,y1)``: what a server leaves of grounding tokens; the label is the line's text before it."""
    found, prev_end = [], 0
    matches = list(_CORNERS.finditer(text))
    for i, match in enumerate(matches):
        label = text[prev_end : match.start()].rsplit("\n", 1)[-1]
        line_end = text.find("\n", match.end())
        line_end = len(text) if line_end < 0 else line_end
        last_on_line = i + 1 == len(matches) or matches[i + 1].start() > line_end
        rest = text[match.end() : min(line_end, match.end() + 500)] if last_on_line else ""
        coords = [float(match.group(i)) for i in (1, 2, 3, 4)]
        where = f"box {len(found) + 1}"
        found.append(_Candidate(coords, label, _REASON_PREFIX.sub("", rest.strip()), label, where, "grounding"))
        prev_end = match.end()
    return found


def _find_json(text: str, repairs: list[str]) -> Any:
    """The answer's JSON value: the whole text, a fenced block, or JSON embedded in prose; salvaged when broken."""
    stripped = text.strip()
    for attempt in _json_texts(stripped):
        value = _loads(attempt)
        if value is not None:
            return value
        fixed = re.sub(r",(\s*[\]}])", r"\1", attempt)
        if fixed != attempt and (value := _loads(fixed)) is not None:
            repairs.append("removed trailing commas from the JSON")
            return value
    # Prose around JSON, or JSON cut off mid-way (max_new_tokens): decode every complete value we can find.
    pieces, pos, tries, broken = [], 0, 0, None
    decoder = json.JSONDecoder()
    while tries < MAX_JSON_STARTS:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            break
        start, tries = min(starts), tries + 1
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            broken = start if broken is None and text[start] == "{" else broken
            pos = start + 1
            continue
        if isinstance(value, dict) and value or isinstance(value, list) and any(isinstance(v, dict) for v in value):
            pieces.append(value)  # lists of bare numbers are boxes torn out of a broken object: not an answer
        pos = max(end, start + 1)
    if not pieces:
        return None
    where = f"; broken or cut off at character {broken}" if broken is not None else ""
    if len(pieces) > 1 or broken is not None:
        repairs.append(f"answer was not one JSON value{where}; salvaged {len(pieces)} complete JSON piece(s)")
    if len(pieces) == 1 and _looks_whole(pieces[0]):
        return pieces[0]
    items: list[Any] = []
    for piece in pieces:
        items.extend(piece if isinstance(piece, list) else [piece])
    return items


def _json_texts(text: str) -> list[str]:
    texts = [text]
    parts = text.split("```")
    for block in parts[1::2]:  # the odd parts are inside fences
        block = block.strip()
        if block[:4].lower() == "json":
            block = block[4:]
        texts.append(block.strip())
    return texts


def _loads(text: str) -> Any:
    if not text or text[0] not in "[{":
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _looks_whole(value: Any) -> bool:
    """A lone embedded JSON value counts as the answer when it has the answer's shape, not when it is one box."""
    if isinstance(value, dict):
        return any(k in value for k in (*LIST_KEYS, *GLOBAL_KEYS, *BOX_KEYS, "no_changes"))
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def _json_candidates(value: Any, repairs: list[str]) -> tuple[list[_Candidate], Any, bool]:
    """Edits, global prompt, and whether the value had an answer's shape (``{"edits": []}`` says "no changes")."""
    global_prompt, items, understood = None, None, isinstance(value, list)
    if isinstance(value, dict):
        understood = any(k in value for k in (*LIST_KEYS, *GLOBAL_KEYS, *BOX_KEYS, "no_changes"))
        global_prompt = next((value[k] for k in GLOBAL_KEYS if k in value), None)
        if any(k in value for k in BOX_KEYS):
            items = [value]
        else:
            key = next((k for k in LIST_KEYS if k in value), None)
            if key is None:  # an unknown wrapper: take its first list of objects
                key = next((k for k, v in value.items() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
            items = value.get(key, []) if key is not None else []
            if not isinstance(items, list):
                repairs.append(f"'{key}' was a {type(items).__name__}, not a list; ignored")
                items = []
    elif isinstance(value, list):
        items = value
    else:
        return [], None, False
    found = []
    for i, item in enumerate(items):
        where = f"edit {i + 1}"
        if not isinstance(item, dict):
            repairs.append(f"{where}: not an object ({type(item).__name__}); dropped")
            continue
        key = next((k for k in BOX_KEYS if k in item), None)
        prompt = next((item[k] for k in PROMPT_KEYS if k in item and item[k] not in (None, "")), None)
        label = item.get("label", "")
        if key is None:
            repairs.append(f"{where}: no box; dropped")
            continue
        found.append(_Candidate(item[key], prompt, item.get("reason", ""), label, where, key))
    return found, global_prompt, understood


# --- coordinates ----------------------------------------------------------------------------------------------------


def _coordinate_space(
    candidates: list[_Candidate], convention: str, critique: Critique
) -> tuple[str, tuple[float, float]]:
    """Which space the answer's numbers are in, as (name, (x scale, y scale)) that divide them into [0, 1]."""
    pixels = critique.processed_size or critique.image_size
    if convention in PIXEL_CONVENTIONS or (
        convention == "auto" and critique.processed_size and any(c.key == "bbox_2d" for c in candidates)
    ):
        if critique.processed_size is None and candidates:
            critique.repairs.append(
                f"pixel coordinates but no processed_size given: read against the original {pixels[0]}x{pixels[1]}"
            )
        return ("qwen2.5-vl" if convention == "auto" else convention), pixels
    if convention != "auto":
        return convention, (1000.0, 1000.0)
    values = [v for c in candidates for v in _flat_numbers(c.coords)]
    if values and max(values) > 1000:
        critique.repairs.append(
            f"auto: coordinates above 1000 (max {max(values):g}); read as pixels of {pixels[0]}x{pixels[1]}"
        )
        return "json-pixels", pixels
    if values and max(values) <= 1.0 and any(v != int(v) for v in values):
        critique.repairs.append("auto: every coordinate within 0..1 with fractions; read as normalised 0..1")
        return "auto", (1.0, 1.0)
    grounding = any(c.key == "grounding" for c in candidates)
    return ("qwen2-vl" if grounding else "json-1000"), (1000.0, 1000.0)


def _flat_numbers(coords: Any) -> list[float]:
    out = []
    for v in _flatten(coords)[:8]:
        number = _number(v)
        if number is not None:
            out.append(abs(number))
    return out


def _flatten(coords: Any) -> list[Any]:
    if isinstance(coords, dict):
        for names in (("x0", "y0", "x1", "y1"), ("x1", "y1", "x2", "y2"), ("xmin", "ymin", "xmax", "ymax")):
            if all(n in coords for n in names):
                return [coords[n] for n in names]
        return []
    if isinstance(coords, str):
        corners = _CORNERS.fullmatch(coords.strip())
        if corners:
            return list(corners.groups())
        return re.findall(r"[^\s,()\[\]]+", coords[:300])
    if isinstance(coords, list | tuple):
        if len(coords) == 2 and all(isinstance(p, list | tuple) and len(p) == 2 for p in coords):
            return [coords[0][0], coords[0][1], coords[1][0], coords[1][1]]
        return list(coords)
    return [coords]


def _number(value: Any) -> float | None:
    """A finite float from a JSON number or numeric string; None for anything else (bools, NaN, words, ...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value) if not isinstance(value, int) or abs(value) < 10**300 else math.inf
    elif isinstance(value, str) and re.fullmatch(_NUM, value.strip()):
        number = float(value.strip())
    else:
        return None
    return number if math.isfinite(number) else None


def _to_edit(cand: _Candidate, scale: tuple[float, float], critique: Critique) -> Edit | None:
    """Validate one candidate into an ``Edit``: four real numbers, a box inside the image, a non-empty prompt."""
    where, repairs = cand.where or "edit", critique.repairs
    raw = _flatten(cand.coords)
    if isinstance(cand.coords, str) and cand.key != "grounding":
        repairs.append(f"{where}: box given as text {cand.coords[:60]!r}; read its numbers")
    if isinstance(cand.coords, str) and cand.key == "grounding" and not _CORNERS.fullmatch(cand.coords.strip()):
        repairs.append(f"{where}: box text {cand.coords[:60]!r} is not (x0,y0),(x1,y1); read its numbers")
    numbers = [_number(v) for v in raw]
    if len(raw) != 4 or any(n is None for n in numbers):
        repairs.append(f"{where}: box {_short(cand.coords)} is not four numbers; dropped")
        return None
    if any(isinstance(v, str) for v in raw) and not isinstance(cand.coords, str):
        repairs.append(f"{where}: numbers given as strings in box {_short(cand.coords)}; converted")
    box = _to_box(numbers, scale, critique.image_size, where, repairs)
    if box is None:
        return None
    prompt = _clean_prompt(cand.prompt, where, repairs)
    if not prompt:
        return None
    reason = _clean(cand.reason) if isinstance(cand.reason, str) else ""
    if cand.reason not in ("", None) and not isinstance(cand.reason, str):
        repairs.append(f"{where}: reason is not text; ignored")
    label = _clean(cand.label)[:MAX_PROMPT_CHARS] if isinstance(cand.label, str) else ""
    return Edit(box=box, prompt=prompt, reason=reason[:1000], label=label)


def _to_box(
    numbers: list[float], scale: tuple[float, float], image_size: tuple[int, int], where: str, repairs: list[str]
) -> Box | None:
    x0, y0, x1, y1 = numbers[0] / scale[0], numbers[1] / scale[1], numbers[2] / scale[0], numbers[3] / scale[1]
    if x0 > x1 or y0 > y1:
        repairs.append(f"{where}: corners out of order in {_short(numbers)}; reordered")
        x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    clamped = [min(max(v, 0.0), 1.0) for v in (x0, y0, x1, y1)]
    if clamped != [x0, y0, x1, y1]:
        repairs.append(f"{where}: box {_short(numbers)} reaches outside the image; clamped")
    x0, y0, x1, y1 = clamped
    width, height = image_size
    if (x1 - x0) * width < 1.0 or (y1 - y0) * height < 1.0:  # under one pixel of the original: nothing to repaint
        repairs.append(f"{where}: box {_short(numbers)} is empty or thinner than a pixel; dropped")
        return None
    return Box(x0, y0, x1, y1)


def _clean(text: str) -> str:
    text = _CONTROL.sub(" ", _SPECIAL.sub(" ", text))
    return " ".join(text.split()).strip(" \"'`:;,.-*")


def _clean_prompt(prompt: Any, where: str, repairs: list[str]) -> str:
    if prompt is None or prompt == "":
        repairs.append(f"{where}: no prompt; dropped")
        return ""
    if not isinstance(prompt, str):
        repairs.append(f"{where}: prompt is a {type(prompt).__name__}, not text; dropped")
        return ""
    cleaned = _clean(_BULLET.sub("", prompt.strip()))
    if not cleaned:
        repairs.append(f"{where}: prompt {prompt[:40]!r} is empty after cleaning; dropped")
        return ""
    if len(cleaned) > MAX_PROMPT_CHARS:
        repairs.append(f"{where}: prompt of {len(cleaned)} characters cut to {MAX_PROMPT_CHARS}")
        cleaned = cleaned[:MAX_PROMPT_CHARS].rstrip()
    return cleaned


def _clean_global(value: Any, repairs: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        repairs.append(f"global prompt is a {type(value).__name__}, not text; ignored")
        return None
    cleaned = _clean(value)
    if cleaned.lower() in ("", "none", "null", "n/a", "no changes", "no change"):
        return None
    if len(cleaned) > 4 * MAX_PROMPT_CHARS:
        repairs.append(f"global prompt of {len(cleaned)} characters cut to {4 * MAX_PROMPT_CHARS}")
        cleaned = cleaned[: 4 * MAX_PROMPT_CHARS].rstrip()
    return cleaned


def _dedupe(edits: list[Edit], repairs: list[str]) -> list[Edit]:
    seen, kept = set(), []
    for edit in edits:
        key = (round(edit.box.x0, 4), round(edit.box.y0, 4), round(edit.box.x1, 4), round(edit.box.y1, 4), edit.prompt)
        if key in seen:
            repairs.append(f"duplicate edit {edit.prompt[:40]!r} dropped")
            continue
        seen.add(key)
        kept.append(edit)
    return kept


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
