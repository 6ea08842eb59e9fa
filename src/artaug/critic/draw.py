"""Draw a critique onto its painting: each edit's box with its number and local prompt, the global prompt below."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

from artaug.types import Critique

COLORS = [(255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120), (255, 120, 255), (255, 150, 60)]


def draw_critique(image: Image.Image, critique: Critique, font_size: int | None = None) -> Image.Image:
    """A new RGB image: the painting with the critique's boxes and prompts drawn on it (the input is untouched)."""
    width, height = image.size
    size = font_size or max(10, min(width, height) // 40)
    font = ImageFont.load_default(size=size)
    footer = _footer_lines(critique, width, size)
    canvas = Image.new("RGB", (width, height + len(footer) * (size + 4) + (6 if footer else 0)), (20, 20, 20))
    canvas.paste(image.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    line = max(1, min(width, height) // 200)
    for i, edit in enumerate(critique.edits):
        color = COLORS[i % len(COLORS)]
        x0, y0, x1, y1 = edit.box.to_pixels(width, height)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=color, width=line)
        label = _fit(f"{i + 1}. {edit.prompt}", draw, font, max(x1 - x0, width // 3))
        tx, ty = x0 + line, max(0, y0 + line)
        box = draw.textbbox((tx, ty), label, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=color, font=font)
    for j, text in enumerate(footer):
        draw.text((4, height + 3 + j * (size + 4)), text, fill=(230, 230, 230), font=font)
    return canvas


def _footer_lines(critique: Critique, width: int, size: int) -> list[str]:
    chars = max(20, int(width / (0.6 * size)))
    lines = []
    if critique.global_prompt:
        lines += textwrap.wrap(f"global: {critique.global_prompt}", chars)
    if critique.error:
        lines += textwrap.wrap(f"critic failed: {critique.error}", chars)
    elif not critique.wants_changes:
        lines.append("no changes")
    return lines[:6]


def _fit(text: str, draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, max_width: int) -> str:
    """Shorten with an ellipsis until the label fits ``max_width`` pixels."""
    while len(text) > 4 and draw.textlength(text, font=font) > max_width:
        text = text[: len(text) - max(4, len(text) // 8)].rstrip() + "..."
    return text
