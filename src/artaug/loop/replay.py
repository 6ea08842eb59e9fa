"""Re-render a run from its trail, with no critic: the critic's answers are read back from the trail.

Replay repaints the first painting and every round's revision (each from the painting that was best at the time,
by the fix the round ran: regional repaint, or the recorded instruction edit with the painter's editor) and compares
the pixels with the files the run wrote. It also re-parses each critique's raw text and checks that
today's parser still reads the same edits, so a parser change that would alter old runs is caught too.

A trail may come from someone else: it is read with bounded JSON, and every image it names must lie inside the
trail's own folder (``artaug.files.confined``); the painter it names is shown before anything loads (the CLI
refuses hub ids unless asked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artaug.critic import parse_critique
from artaug.files import confined, open_image, read_json
from artaug.types import Painting, Trail


@dataclass
class ImageDiff:
    name: str
    max_abs: int
    differing_pixels: int
    total_pixels: int

    @property
    def identical(self) -> bool:
        return self.differing_pixels == 0


@dataclass
class ReplayReport:
    diffs: list[ImageDiff] = field(default_factory=list)
    parser_mismatches: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(d.identical for d in self.diffs) and not self.parser_mismatches and not self.missing

    def summary(self) -> str:
        lines = []
        for d in self.diffs:
            state = (
                "identical"
                if d.identical
                else f"{d.differing_pixels}/{d.total_pixels} pixels differ (max {d.max_abs})"
            )
            lines.append(f"{d.name}: {state}")
        lines += [f"parser: {m}" for m in self.parser_mismatches]
        lines += [f"missing: {m}" for m in self.missing]
        lines.append("replay identical" if self.identical else "replay DIFFERS")
        return "\n".join(lines)


def load_trail(path: str | Path) -> Trail:
    """A trail file, validated: bounded JSON, every request and edit checked, image names inside its folder."""
    path = Path(path)
    data = read_json(path, what="trail file")
    try:
        trail = Trail.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path} is not an artaug trail ({type(error).__name__}: {error})") from None
    files = trail.provenance.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ValueError(f"{path} is not an artaug trail (provenance.files is not a table of file names)")
    for name in [*files.values(), *(r.image_path for r in trail.rounds if r.image_path)]:
        confined(path.parent, name, what=f"image named in {path}")
    return trail


def trail_painter(trail: Trail, role: str = "painter") -> str:
    """The painter (or, with ``role="editor"``, the instruction editor) a trail names (hub id or folder), or ``""``."""
    model = trail.provenance.get(role, {})
    return model.get("id", "") if isinstance(model, dict) and isinstance(model.get("id", ""), str) else ""


def edit_rounds(trail: Trail) -> list[int]:
    """The rounds a trail fixed by instruction edit: replaying them needs the editor."""
    return [r.index for r in trail.rounds if r.request is not None and r.fix.get("kind") == "edit"]


def replay(trail_path: str | Path, painter) -> ReplayReport:
    """Re-render the run described by ``trail_path`` with ``painter`` and compare against the stored images."""
    trail_path = Path(trail_path)
    trail = load_trail(trail_path)
    folder = trail_path.parent
    files = trail.provenance.get("files", {})
    report = ReplayReport()

    # 1. The first painting.
    first = painter.paint(trail.first_request)
    _compare(report, folder, files.get("first"), first, "first painting")
    best = first

    # 2. Every round, from the painting that was best when it ran; critic answers come from the trail.
    for record in trail.rounds:
        critique = record.critique
        if critique.raw and critique.image_size:
            reparsed = parse_critique(
                critique.raw,
                image_size=critique.image_size,
                convention=critique.convention,
                processed_size=critique.processed_size,
            )
            if [e.box for e in reparsed.edits] != [e.box for e in critique.edits] or [
                e.prompt for e in reparsed.edits
            ] != [e.prompt for e in critique.edits]:
                report.parser_mismatches.append(f"round {record.index}: the raw critique now parses differently")
        if record.request is None:
            continue
        if record.fix.get("kind") == "edit":
            seam = record.fix.get("seam")
            if not isinstance(seam, int) or isinstance(seam, bool) or not 0 <= seam <= 512:
                raise ValueError(f"{trail_path}: round {record.index}'s edit seam {seam!r} is not 0..512 pixels")
            revision, _ = painter.edit(record.request, best, seam)
        else:
            revision = painter.paint(record.request, init=best)
        _compare(report, folder, record.image_path, revision, f"round {record.index}")
        if record.accepted:
            best = revision

    # 3. The final image must be the best accepted one.
    _compare(report, folder, files.get("final"), best, "final")
    return report


def _compare(report: ReplayReport, folder: Path, name: str | None, painting: Painting, label: str) -> None:
    if not name:
        return
    path = confined(folder, name, what="image named in the trail")
    if not path.is_file():
        report.missing.append(f"{label}: {path}")
        return
    try:
        stored = np.asarray(open_image(path, what=f"{label} image").convert("RGB"), dtype=np.int16)
    except ValueError as error:
        report.missing.append(f"{label}: {error}")
        return
    fresh = np.asarray(painting.image.convert("RGB"), dtype=np.int16)
    if stored.shape != fresh.shape:
        report.diffs.append(ImageDiff(f"{label} ({name})", 255, stored.shape[0] * stored.shape[1], fresh.size // 3))
        return
    delta = np.abs(stored - fresh)
    report.diffs.append(
        ImageDiff(
            f"{label} ({name})", int(delta.max()), int(delta.any(axis=-1).sum()), delta.shape[0] * delta.shape[1]
        )
    )
