"""A run folder per prompt, kept consistent while the loop runs.

Layout: ``round_00.png`` (the first painting), ``round_NN.png`` (each revision, accepted or not), ``final.png``,
``trail.json``, ``contact_sheet.png`` and the resolved ``config.toml``. Every file is written to a temporary name and
renamed, and ``trail.json`` is rewritten after every round, so a run stopped by Ctrl-C (or a crash) leaves a folder
that describes exactly the rounds it completed.

Nothing is written before the first painting exists (a run that fails to load its models leaves nothing behind), and
an existing run is never silently overwritten: :func:`free_output` picks ``NAME-2``, ``NAME-3``... unless
``overwrite`` is asked for, which first clears the old run (and refuses to clear a folder that is not an artaug run).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from artaug.config import PAINT_SECTIONS, Config
from artaug.critic import draw_critique
from artaug.files import atomic_write, write_json
from artaug.loop.run import Decided, Event, Finished, LoopResult, Painted
from artaug.pngmeta import a1111_parameters, save_png
from artaug.provenance import versions
from artaug.types import Painting, Trail

RUN_MARKERS = ("trail.json", "config.toml")


def free_output(output: str | Path, overwrite: bool = False) -> Path:
    """Where a run asked to write ``output`` will write: ``output`` itself when it is free (or ``overwrite``),
    else the first free ``NAME-2``, ``NAME-3``... beside it. A ``.png`` output counts as taken when the image or its
    trail exists; a folder when it holds anything."""
    output = Path(output)
    if overwrite or not _taken(output):
        if overwrite and output.suffix.lower() != ".png" and _taken(output) and not is_run_folder(output):
            raise FileExistsError(
                f"--overwrite would clear {output}, which is not an artaug run folder (no trail.json or config.toml); "
                "choose another --output"
            )
        return output
    stem, suffix = (output.stem, output.suffix) if output.suffix.lower() == ".png" else (output.name, "")
    for n in range(2, 10_000):
        candidate = output.with_name(f"{stem}-{n}{suffix}")
        if not _taken(candidate):
            return candidate
    raise FileExistsError(f"{output} and 10,000 numbered variants exist; choose another --output")


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in RUN_MARKERS)


def _taken(output: Path) -> bool:
    if output.suffix.lower() == ".png":
        return output.exists() or output.with_name(f"{output.stem}.trail.json").exists()
    return output.exists() and (not output.is_dir() or any(output.iterdir()))


class RunFolder:
    """Writes a run's files as the loop's events arrive. Use ``folder.on_event`` as the loop's ``on_event``.

    ``RunFolder.for_output(path)`` picks the layout the CLI promises: a path ending in ``.png`` gets just that image
    with ``NAME.trail.json`` and ``NAME.config.toml`` beside it; any other path is a run folder. The folder is
    created (or, with ``overwrite``, cleared) when the first painting arrives, not before.
    """

    def __init__(
        self,
        path: str | Path,
        config: Config | None = None,
        single_image: str | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.single_image = single_image
        self.config = config
        self.overwrite = overwrite
        stem = Path(single_image).stem + "." if single_image else ""
        self.trail_name = f"{stem}trail.json"
        self.config_name = f"{stem}config.toml"
        self.trail: Trail | None = None
        self._opened = False

    @classmethod
    def for_output(cls, output: str | Path, config: Config | None = None, overwrite: bool = False) -> RunFolder:
        output = Path(output)
        if output.suffix.lower() == ".png":
            return cls(output.parent, config, single_image=output.name, overwrite=overwrite)
        return cls(output, config, overwrite=overwrite)

    def _open(self) -> None:
        """Create the folder (clearing an old run first when overwriting) and write the resolved config."""
        if self._opened:
            return
        if self.overwrite and not self.single_image and is_run_folder(self.path):
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            self.config.dump(self.path / self.config_name, sections=PAINT_SECTIONS)
        self._opened = True

    @property
    def trail_path(self) -> Path:
        return self.path / self.trail_name

    @property
    def final_path(self) -> Path:
        return self.path / (self.single_image or "final.png")

    def on_event(self, event: Event) -> None:
        if isinstance(event, Painted) and event.round == 0:
            self._open()
            self.trail = event.trail
            if self.single_image:
                self.trail.provenance["files"] = {"final": self.single_image}
            else:
                self.trail.provenance["files"] = {"first": "round_00.png", "final": "final.png"}
                self.save_painting(event.painting, "round_00.png")
            self.write_trail()
        elif isinstance(event, Decided):
            self.trail = event.trail
            if event.painting is not None and not self.single_image:
                name = f"round_{event.round:02d}.png"
                self.save_painting(event.painting, name)
                event.trail.rounds[-1].image_path = name
            self.write_trail()
        elif isinstance(event, Finished):
            self.finish(event.result)

    def interrupted(self, why: str) -> None:
        """Record why the run ended early; the files already written describe the completed rounds."""
        if self.trail is not None and self._opened:
            self.trail.stopped = why
            self.write_trail()

    def save_painting(self, painting: Painting, name: str) -> None:
        provenance = {**painting.request.to_dict(), "model": painting.model, "versions": versions()}
        save_png(painting.image, self.path / name, a1111_parameters(painting.request, painting.model), provenance)

    def write_trail(self) -> None:
        if self.trail is not None and self._opened:
            write_json(self.trail_path, self.trail.to_dict())

    def finish(self, result: LoopResult) -> None:
        self._open()
        self.trail = result.trail
        self.save_painting(result.final, self.final_path.name)
        self.write_trail()
        if self.single_image:
            return
        sheet = contact_sheet(result)
        atomic_write(self.path / "contact_sheet.png", lambda file: sheet.save(file, format="PNG"))


def contact_sheet(result: LoopResult, tile: int = 320) -> Image.Image:
    """Every round side by side: the image the round produced, the boxes and local prompts that asked for it."""
    trail = result.trail
    tiles = [_tile(result.first.image, None, _caption(0, "first painting", trail.first_scores), tile)]
    for record in trail.rounds:
        painting = result.paintings.get(record.index)
        verdict = "accepted" if record.accepted else ("rejected" if painting is not None else "no repaint")
        if record.index == trail.best and record.index > 0:
            verdict += " (final)"
        caption = _caption(record.index, verdict, record.scores, record.reasons)
        image = painting.image if painting is not None else result.final.image
        tiles.append(_tile(image, record.critique if painting is not None else None, caption, tile))
    sheet = Image.new("RGB", (tile * len(tiles), max(t.height for t in tiles)), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, (i * tile, 0))
    return sheet


def _tile(image: Image.Image, critique: Any, caption: list[str], size: int) -> Image.Image:
    scale = size / max(image.size)
    shown = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.NEAREST
    )
    if critique is not None and critique.edits:
        shown = draw_critique(shown, critique)
    line_height = 12
    tile = Image.new("RGB", (size, size + line_height * (len(caption) + 1)), "white")
    tile.paste(shown, ((size - shown.width) // 2, 0))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(caption):
        draw.text((4, size + 4 + i * line_height), line[: size // 6], fill="black")
    return tile


def _caption(index: int, verdict: str, scores: dict[str, float], reasons: list[str] | None = None) -> list[str]:
    lines = [f"round {index}: {verdict}"]
    if scores:
        lines.append(", ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items())))
    lines.extend((reasons or [])[:3])
    return lines
