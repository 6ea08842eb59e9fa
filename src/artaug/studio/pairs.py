"""The studio and the synth store: accepted revisions become pairs with provenance ``person``, and a person reviews
the store's pairs (before/after with boxes, local prompts, scores, filter verdicts), each verdict one ledger row.

Reading goes through ``Store(readonly=True)`` and images through ``artaug.files.open_image``: a store may come from
elsewhere. Writing goes through the store's own ``commit`` and ``review``, so its crash-safety rules hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from artaug.critic import draw_critique
from artaug.files import open_image
from artaug.synth.filters import PairEvidence, drop_reasons, evaluate, similarity_function
from artaug.synth.prompts import PromptRecord
from artaug.synth.store import LEDGER, PairDraft, PairRecord, Store
from artaug.synth.work import score_table
from artaug.types import Critique, Edit

if TYPE_CHECKING:
    from PIL import Image

    from artaug.types import Round


def commit_person_pair(session: Any, before: int, record: Round) -> str:
    """Commit (best painting before ``record``, its accepted revision) to the studio's store; returns the pair id.

    ``session`` is the ``artaug.studio.session.Session`` whose round it is (not imported here: it imports this).

    The synth filters run as for any pair (their verdicts are recorded), and the person's acceptance is committed in
    the same transaction: the pair is accepted whatever the filters say (see ``artaug.synth.store``).
    """
    # 1. evidence for the filters, from the judge's scores in the trail
    studio, trail = session.studio, session.trail
    a, b = session.paintings[before].image, session.paintings[record.index].image
    judge, filters = studio.components.judge, session.config.synth.filters
    before_scores = trail.first_scores if before == 0 else next(r for r in trail.rounds if r.index == before).scores
    evidence = PairEvidence(
        revised=True,
        before_scores=before_scores,
        after_scores=record.scores,
        before_problems=judge.check(a),
        after_problems=judge.check(b),
        similarity=similarity_function(filters)(a, b),
    )
    kept, verdicts = evaluate(evidence, filters)

    # 2. the pair, its provenance and the person's acceptance, in one commit
    prompt_id = f"studio-{session.run_id}-r{record.index}"
    meta = {
        "edits": [e.to_dict() for e in record.request.edits],
        "global_prompt": record.request.prompt,
        "critic": record.critique.model,
        "decision": list(record.reasons),
        "run": str(session.folder),
        "first_seed": trail.first_request.seed,
        "cost": record.cost.to_dict(),
        "dropped": drop_reasons(verdicts),
    }
    draft = PairDraft(
        round=record.index,
        before=f"r{before}",
        after=f"r{record.index}",
        scores=score_table(before_scores, record.scores, evidence.similarity),
        kept=kept,
        verdicts=[v.to_dict() for v in verdicts],
        meta=meta,
        reviewer=studio.person,
    )
    with Store(studio.store, sweep=False) as store:
        store.add_prompts([PromptRecord(prompt_id, trail.prompt, trail.first_request.seed, {"source": "studio"})])
        store.commit(
            prompt_id,
            images={f"r{before}": a, f"r{record.index}": b},
            pairs=[draft],
            trail=trail.to_dict(),
            provenance={"source": "studio", "person": studio.person},
        )
    return f"{prompt_id}#{record.index}"


# -- review ---------------------------------------------------------------------------------------------------------


def list_pairs(store_dir: str | Path) -> list[PairRecord]:
    """Every pair of the store, rejected ones included (a person may change their mind); [] if there is no store."""
    if not (Path(store_dir) / LEDGER).is_file():
        return []
    with Store(store_dir, readonly=True) as store:
        return store.pairs()


def record_verdict(store_dir: str | Path, pair_id: str, verdict: str, person: str) -> None:
    """Commit a person's verdict (``accepted`` / ``rejected``) on ``pair_id`` to the store's ledger."""
    with Store(store_dir, sweep=False) as store:
        store.review(pair_id, verdict, person)


def pair_images(pair: PairRecord, scale: int = 1) -> tuple[Image.Image, Image.Image]:
    """The pair's before image, and its after image with the boxes and local prompts that made it (both enlarged
    ``scale`` times, nearest pixel)."""
    before = open_image(pair.before, what=f"before image of pair {pair.id}")
    after = open_image(pair.after, what=f"after image of pair {pair.id}")
    if scale > 1:
        before, after = (im.resize((im.width * scale, im.height * scale), resample=0) for im in (before, after))
    edits = pair_edits(pair)
    return before, draw_critique(after, Critique(edits=edits)) if edits else after


def pair_edits(pair: PairRecord) -> list[Edit]:
    """The edits recorded with a pair (a ledger is untrusted: unreadable ones are left out)."""
    edits = []
    for data in pair.meta.get("edits", []) if isinstance(pair.meta.get("edits"), list) else []:
        try:
            edits.append(Edit.from_dict(data))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return edits


def describe_pair(pair: PairRecord, position: int, total: int) -> str:
    """Markdown for one pair: prompt, who made it, the verdicts, the local prompts, the scores and the filters."""
    review = pair.review
    state = f"**{review['verdict']}** by {review['reviewer']}" if review else "not reviewed"
    lines = [
        f"### Pair {position + 1} of {total}: `{pair.id}`",
        f"**Prompt:** {_md(pair.prompt)}  ",
        f"**Made by:** {pair.provenance} · **filters:** {'kept' if pair.kept else 'dropped'} · **review:** {state} · "
        f"**used for training:** {'yes' if pair.accepted else 'no'}",
    ]
    edits = pair_edits(pair)
    if edits:
        lines.append("")
        lines += [f"{i + 1}. {_md(e.prompt)}" for i, e in enumerate(edits)]
    if pair.scores:
        lines += ["", "| score | value |", "|---|---|"]
        lines += [f"| {_md(k)} | {v:.4f} |" for k, v in sorted(pair.scores.items()) if isinstance(v, (int, float))]
    filters = pair.meta.get("filters")
    if isinstance(filters, list) and filters:
        lines += ["", "| filter | verdict | value | threshold |", "|---|---|---|---|"]
        lines += [_filter_row(v) for v in filters if isinstance(v, dict)]
    return "\n".join(lines)


def _filter_row(verdict: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else _md(str(value if value is not None else ""))

    return f"| {cell(verdict.get('name'))} | {cell(verdict.get('status'))} | {cell(verdict.get('value'))} | " + (
        f"{cell(verdict.get('threshold'))} |"
    )


def _md(text: str) -> str:
    # Text from a ledger or a critic is shown, never interpreted: no HTML, links or table breaks.
    out = " ".join(str(text).split())
    for char in "\\`*_{}[]<>()#|!":
        out = out.replace(char, "\\" + char)
    return out
