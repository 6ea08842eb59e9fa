"""What each button of the studio does: plain functions of the widgets' values, testable without a browser.

Every handler takes the values Gradio passes (and ``request``, whose ``session_hash`` names the browser tab) and
returns the new values of its outputs, in the order ``artaug.studio.app`` wires them. A bad input or a failed step
becomes a message on the page (``gr.Error``/``gr.Warning`` in the app; :class:`StudioError` here), never a crash of
the server: one tab's mistake cannot break another's work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artaug.files import open_image
from artaug.pngmeta import PARAMETERS_KEY, PROVENANCE_KEY
from artaug.settings import ConfigError
from artaug.studio.boxes import edits_to_boxes
from artaug.studio.pairs import describe_pair, list_pairs, pair_images, record_verdict
from artaug.studio.session import Cancelled, Session, Studio
from artaug.types import PaintRequest

ProgressBar = Callable[..., Any]
VERDICT_KEYS = {"accepted": "accepted", "rejected": "rejected"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EDITOR_SIZE = 512  # small paintings are shown enlarged (by a whole factor, nearest pixel) so boxes can be drawn


class StudioError(ValueError):
    """A message for the person: what went wrong and what to do (shown on the page, never a traceback)."""


class Handlers:
    """The studio's event handlers, bound to one ``Studio`` (models and paths shared by every tab)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def session(self, request: Any) -> Session:
        return self.studio.session(getattr(request, "session_hash", None) or "default")

    # -- paint tab --------------------------------------------------------------------------------------------------

    def paint(
        self, prompt: str, seed: float, width: float, height: float, steps: float, request: Any = None,
        progress: ProgressBar | None = None,
    ) -> tuple[Any, ...]:  # fmt: skip
        """Paint → (editor value, status, history choices, best-painting download)."""
        session = self.session(request)
        try:
            first, problems = session.paint(
                prompt, _integer(seed, "seed"), _integer(height, "height"), _integer(width, "width"),
                _integer(steps, "steps"), progress=_bar(progress, "painting"),
            )  # fmt: skip
        except Cancelled as stop:
            raise StudioError(str(stop)) from None
        except (ValueError, ConfigError) as error:
            raise StudioError(str(error)) from None
        status = f"Painted in {first.cost.seconds:.1f} s. Ask the critic, or draw boxes and type what each becomes."
        if problems:
            status += f" The judge finds it broken ({'; '.join(problems)}): try another seed."
        return editor_value(first.image), status, *self._history(session), self._download(session)

    def cancel(self, request: Any = None) -> str:
        self.session(request).cancel_now()
        return "Cancelling: the painter stops at its next step."

    def critique(self, editor: dict | None, request: Any = None) -> tuple[Any, ...]:
        """Ask the critic → (editor value with its boxes, revision prompt, status)."""
        session = self.session(request)
        try:
            best = session.best_painting
            critique = session.critique()
        except ValueError as error:
            raise StudioError(str(error)) from None
        if critique.error:
            raise StudioError(f"the critic failed ({critique.error}); draw the boxes yourself or try again")
        boxes = edits_to_boxes(critique.edits, *best.image.size)
        notes = f" Repairs: {'; '.join(critique.repairs)}." if critique.repairs else ""
        status = (
            f"The critic ({critique.model}) asks for {len(boxes)} change(s) in {critique.seconds:.1f} s.{notes} Move, "
            "resize, delete or relabel the boxes, draw new ones, then repaint."
            if critique.wants_changes
            else f"The critic asks for no change.{notes} Draw boxes yourself to go on."
        )
        return editor_value(best.image, boxes), critique.global_prompt or "", status

    def repaint(
        self, editor: dict | None, global_prompt: str, regional: str, strength: float, request: Any = None,
        progress: ProgressBar | None = None,
    ) -> tuple[Any, ...]:  # fmt: skip
        """Repaint the boxes on screen → (before, after, verdict markdown, status)."""
        session = self.session(request)
        try:
            boxes = painting_boxes(editor, session.best_painting.image)
            pending = session.repaint(
                boxes, global_prompt or "", regional=regional, strength=_number(strength, "strength"),
                progress=_bar(progress, "repainting"),
            )  # fmt: skip
        except Cancelled as stop:
            raise StudioError(str(stop)) from None
        except (ValueError, ConfigError) as error:
            raise StudioError(str(error)) from None
        before = session.best_painting.image
        record = pending.round
        status = f"Round {record.index} painted; accept or reject it."
        return enlarged(before), enlarged(pending.painting.image), verdict_markdown(pending), status

    def decide(self, accept: bool, request: Any = None) -> tuple[Any, ...]:
        """Accept / Reject → (editor value, status, history choices, download)."""
        session = self.session(request)
        try:
            record, pair = session.decide(accept)
        except ValueError as error:
            raise StudioError(str(error)) from None
        best = session.best_painting
        boxes = [] if accept else edits_to_boxes(record.request.edits, *best.image.size)
        status = f"Round {record.index} {'accepted' if accept else 'rejected'}."
        if pair:
            status += f" Committed to the store as pair `{pair}` (provenance person)."
        return editor_value(best.image, boxes), status, *self._history(session), self._download(session)

    def show_round(self, choice: str | None, request: Any = None) -> tuple[Any, ...]:
        """History: one round's painting with its boxes, its description, and its PNG to download."""
        session = self.session(request)
        if session.trail is None or not choice:
            return None, "", None
        index = int(str(choice).split(":", 1)[0].removeprefix("round ").strip() or 0)
        if index not in session.paintings:
            raise StudioError(f"there is no painting of round {index} in this run")
        painting = session.paintings[index]
        from artaug.critic import draw_critique

        record = next((r for r in session.trail.rounds if r.index == index), None)
        image = enlarged(painting.image)
        if record is not None and record.request is not None and record.request.edits:
            image = draw_critique(image, record.critique)
        name = "round_00.png" if record is None else record.image_path
        path = session.folder / name if name else None
        return image, round_markdown(session, index), str(path) if path and path.is_file() else None

    def open_png(self, path: str | None) -> tuple[Any, ...]:
        """An uploaded artaug PNG → its prompt, seed, width, height and steps (checked: type, size, pixels)."""
        if not path:
            raise StudioError("no file was uploaded")
        limit = self.studio.config.studio.max_upload_mb * 1e6
        file = Path(path)
        if file.stat().st_size > limit:
            raise StudioError(f"the file is {file.stat().st_size / 1e6:.1f} MB; at most {limit / 1e6:g} MB")
        try:
            image = open_image(file, what="uploaded file")
        except ValueError as error:
            raise StudioError(str(error)) from None
        with file.open("rb") as handle:
            if handle.read(8) != PNG_SIGNATURE:
                raise StudioError("the uploaded image is not a PNG; open a PNG artaug wrote")
        from artaug.files import loads_json

        text = {k: v for k, v in image.info.items() if isinstance(v, str)}  # a PNG's text chunks
        try:
            provenance = loads_json(text.get(PROVENANCE_KEY, "null"), where="the PNG's artaug chunk")
            request = PaintRequest.from_dict(provenance.get("request", provenance))
        except (ValueError, TypeError, KeyError, AttributeError):
            has = "an A1111 parameters chunk only" if PARAMETERS_KEY in text else "no artaug chunk"
            raise StudioError(f"this PNG has {has}: open a PNG that artaug wrote") from None
        status = f"Opened the settings of a {request.width}x{request.height} painting; press Paint to paint it again."
        return request.prompt, request.seed, request.width, request.height, request.num_inference_steps, status

    # -- review tab -------------------------------------------------------------------------------------------------

    def review_show(self, position: float | None, step: int = 0) -> tuple[Any, ...]:
        """The store's pair at ``position + step`` → (before, after with boxes, markdown, new position)."""
        pairs = list_pairs(self.studio.store)
        if not pairs:
            return None, None, f"No pairs in {self.studio.store} yet: accepted revisions land here.", 0
        index = min(max(int(position or 0) + step, 0), len(pairs) - 1)
        pair = pairs[index]
        try:
            before, after = pair_images(pair, scale=_scale(open_image(pair.before, what=f"pair {pair.id}")))
        except ValueError as error:
            raise StudioError(str(error)) from None
        return before, after, describe_pair(pair, index, len(pairs)), index

    def review_decide(self, position: float | None, verdict: str) -> tuple[Any, ...]:
        """Accept / reject the pair shown (committed to the ledger), then show the next one."""
        pairs = list_pairs(self.studio.store)
        if not pairs:
            raise StudioError("there is no pair to review")
        index = min(max(int(position or 0), 0), len(pairs) - 1)
        try:
            record_verdict(self.studio.store, pairs[index].id, VERDICT_KEYS[verdict], self.studio.person)
        except (ValueError, KeyError) as error:
            raise StudioError(str(error)) from None
        shown = self.review_show(index, +1 if index + 1 < len(pairs) else 0)
        return *shown, f"Pair `{pairs[index].id}` {verdict} (committed to the store's ledger)."

    # -- helpers ----------------------------------------------------------------------------------------------------

    def _history(self, session: Session) -> tuple[Any, ...]:
        import gradio as gr

        choices = history_choices(session)
        return (gr.update(choices=choices, value=choices[-1] if choices else None),)

    def _download(self, session: Session) -> str | None:
        final = session.folder / "final.png" if session.folder else None
        return str(final) if final and final.is_file() else None


def enlarged(image: Any) -> Any:
    """A small painting enlarged by a whole factor (nearest pixel, nothing invented) to about ``EDITOR_SIZE``."""
    scale = _scale(image)
    return image.resize((image.width * scale, image.height * scale), resample=0) if scale > 1 else image


def editor_value(image: Any, boxes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The box editor's value: the painting (``enlarged``) and the boxes in its displayed pixels."""
    scale = _scale(image)
    corners = ("xmin", "ymin", "xmax", "ymax")
    return {"image": enlarged(image), "boxes": [{**b, **{k: b[k] * scale for k in corners}} for b in boxes or []]}


def painting_boxes(editor: dict | None, image: Any) -> list[dict[str, Any]]:
    """The editor's boxes in pixels of the painting ``image`` (undoing ``editor_value``'s enlargement)."""
    boxes = (editor or {}).get("boxes") or []
    if not isinstance(boxes, list):
        raise StudioError("the boxes must be a list")
    scale = _scale(image)
    corners = ("xmin", "ymin", "xmax", "ymax")
    out = []
    for box in boxes:
        if isinstance(box, dict) and all(_real(box.get(k)) for k in corners):
            box = {**box, **{k: box[k] / scale for k in corners}}
        out.append(box)  # anything malformed is refused, with its number, by boxes_to_edits
    return out


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scale(image: Any) -> int:
    return max(1, EDITOR_SIZE // max(image.size))


def history_choices(session: Session) -> list[str]:
    if session.trail is None:
        return []
    choices = ["round 0: first painting"]
    for r in session.trail.rounds:
        by = "person" if r.critique.model == session.studio.person else "critic"
        state = "accepted" if r.accepted else "rejected"
        choices.append(f"round {r.index}: {state}, {len(r.request.edits) if r.request else 0} box(es) by the {by}")
    return choices


def verdict_markdown(pending: Any) -> str:
    verdict = pending.verdict
    lines = [f"**The judge {'accepts' if verdict.accepted else 'rejects'} this revision.**", ""]
    lines += [f"- {reason}" for reason in verdict.reasons]
    if verdict.scores:
        lines += ["", "| score | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in verdict.scores.items()]
    cost = pending.round.cost
    lines += ["", f"{cost.steps} steps, {cost.transformer_passes} transformer passes, {cost.seconds:.1f} s."]
    return "\n".join(lines)


def round_markdown(session: Session, index: int) -> str:
    trail = session.trail
    if index == 0:
        request = trail.first_request
        return (
            f"**Round 0** (first painting): seed {request.seed}, {request.width}x{request.height}, "
            f"{request.num_inference_steps} steps. Run folder: `{session.folder}`"
        )
    record = next(r for r in trail.rounds if r.index == index)
    lines = [f"**Round {index}**: {'accepted' if record.accepted else 'rejected'}; critic: `{record.critique.model}`"]
    lines += [f"{i + 1}. {e.prompt}" for i, e in enumerate(record.critique.edits)]
    lines += [f"- {reason}" for reason in record.reasons]
    return "\n".join(lines)


def _integer(value: Any, name: str) -> int:
    number = _number(value, name)
    if number != int(number):
        raise StudioError(f"{name} must be a whole number, got {value}")
    return int(number)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StudioError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _bar(progress: ProgressBar | None, what: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda step, total: progress((step, total), desc=f"{what}: step {step} of {total}")
