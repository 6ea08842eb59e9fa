"""Images that already exist, as evaluation items: an evaluation folder, a synth store, run folders, or PNGs.

``discover(folder)`` recognises, in this order:

- an **evaluation folder** (``ledger.sqlite`` of ``artaug eval``): its items, as they are;
- a **synth store** (``ledger.sqlite`` of ``artaug synth``): conditions ``before`` (each prompt's first painting)
  and ``after`` (its last accepted revision), with the costs of the trail (one painting, and the whole loop);
- **GenEval's sample folders** (``NNNNN/metadata.jsonl`` + ``NNNNN/samples/*.png``, as its generation scripts
  write them): one condition, ``images``, with each prompt's metadata;
- **run folders** of ``artaug paint`` (a folder with ``trail.json``, or a folder of them): conditions ``first``
  (``round_00.png``) and ``final`` (``final.png``);
- a folder of **PNGs** whose metadata names their prompt (artaug's provenance chunk, or A1111's ``parameters``, as
  written by A1111, Forge and ComfyUI savers): one condition per sub-folder (``images`` for PNGs at the top).

Every file named inside something read here (a ledger, a trail) must lie inside ``folder``; items keep paths
relative to it. Items of one prompt share its id (a hash of the prompt text) and are told apart by seed.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from artaug.eval.ledger import LEDGER, Item, Ledger, read_only_uri
from artaug.files import confined, loads_json, read_json
from artaug.synth.prompts import default_id
from artaug.types import Trail

MAX_PNGS = 1_000_000
_SEED = re.compile(r"(?:^|,\s*)Seed:\s*(\d{1,19})\b")


def discover(folder: str | Path) -> tuple[str, list[Item]]:
    """``(kind, items)`` of the images in ``folder`` (see the module docstring); ``ValueError`` if it holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images, runs, a synth store or an evaluation")
    if (folder / LEDGER).is_file():
        if _is_eval_ledger(folder / LEDGER):
            with Ledger(folder, readonly=True) as ledger:
                items = [i for i in ledger.items() if i.path is not None]
            for item in items:
                item.root = "source"
            return "evaluation", items
        return "synth store", _synth_items(folder)
    if geneval := sorted(p.parent for p in folder.glob("*/metadata.jsonl") if (p.parent / "samples").is_dir()):
        return "GenEval samples", [item for sub in geneval for item in _geneval_items(folder, sub)]
    runs = [folder] if (folder / "trail.json").is_file() else sorted(p.parent for p in folder.glob("*/trail.json"))
    if runs:
        return "run folders", [item for run in runs for item in _run_items(folder, run)]
    items = _png_items(folder)
    if not items:
        raise ValueError(
            f"{folder} holds no evaluation, synth store, run folder (trail.json) or PNG naming its prompt"
        )
    return "PNG folder", items


def _is_eval_ledger(path: Path) -> bool:
    db = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        return (
            db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'scores'").fetchone() is not None
        )
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{path} is not a readable ledger ({error})") from None
    finally:
        db.close()


def _synth_items(folder: Path) -> list[Item]:
    from artaug.synth.store import Store

    items = []
    with Store(folder, readonly=True) as store:
        by_prompt: dict[str, list[Any]] = {}
        for pair in store.pairs():
            by_prompt.setdefault(pair.meta["prompt_id"], []).append(pair)
        for prompt_id, pairs in by_prompt.items():
            trail = _trail(store.trail(prompt_id), f"trail of prompt {prompt_id!r} in {folder}")
            first, last = pairs[0], pairs[-1]
            for name, path, cost in (
                ("before", first.before, _first_cost(trail)),
                ("after", last.after, _cost(trail)),
            ):
                rel = path.relative_to(folder.resolve()).as_posix()
                items.append(Item(name, prompt_id, first.seed, first.prompt, "source", rel, cost))
    return items


def _run_items(root: Path, run: Path) -> list[Item]:
    trail = _trail(read_json(run / "trail.json", what="trail"), f"{run / 'trail.json'}")
    if trail is None:
        return []
    files = trail.provenance.get("files", {}) if isinstance(trail.provenance.get("files"), dict) else {}
    prompt_id, seed = default_id(trail.prompt), trail.first_request.seed
    items = []
    for name, key, default, cost in (("first", "first", "round_00.png", _first_cost(trail)),
                                     ("final", "final", "final.png", _cost(trail))):  # fmt: skip
        path = confined(run, str(files.get(key, default)), what=f"image named in {run / 'trail.json'}")
        if path.is_file():
            rel = path.relative_to(root.resolve()).as_posix()
            items.append(Item(name, prompt_id, seed, trail.prompt, "source", rel, cost))
    return items


def _geneval_items(root: Path, folder: Path) -> list[Item]:
    """GenEval's layout: ``NNNNN/metadata.jsonl`` (one prompt's metadata) and ``NNNNN/samples/NNNN.png``."""
    meta = loads_json((folder / "metadata.jsonl").read_bytes(), where=f"{folder / 'metadata.jsonl'}")
    if not (isinstance(meta, dict) and isinstance(meta.get("prompt"), str) and meta["prompt"].strip()):
        raise ValueError(f"{folder / 'metadata.jsonl'} names no prompt (GenEval's metadata has a 'prompt' key)")
    prompt = meta["prompt"].strip()
    items = []
    for seed, path in enumerate(sorted((folder / "samples").glob("*.png"))):
        rel = confined(root, path.relative_to(root).as_posix(), what="GenEval sample").relative_to(root.resolve())
        items.append(Item("images", f"{folder.name}", seed, prompt, "source", rel.as_posix(), {}, meta))
    return items


def _png_items(folder: Path) -> list[Item]:
    from artaug.pngmeta import read_png_metadata

    items, seen = [], set()
    paths = sorted(folder.glob("*.png")) + sorted(folder.glob("*/*.png"))
    for path in paths[:MAX_PNGS]:
        try:  # a link that leads out of the folder is not one of its images
            rel = path.resolve().relative_to(folder.resolve()).as_posix()
            parameters, provenance = read_png_metadata(path)
        except (OSError, ValueError, SyntaxError):
            continue  # outside, or not a readable PNG (which cannot name its prompt either)
        prompt, seed, cost = _prompt_of(parameters, provenance)
        if not prompt:
            continue
        condition = path.parent.name if path.parent != folder else "images"
        prompt_id = default_id(prompt)
        while (condition, prompt_id, seed) in seen:  # the same prompt and seed twice: another sample of it
            seed += 1
        seen.add((condition, prompt_id, seed))
        items.append(Item(condition, prompt_id, seed, prompt, "source", rel, cost))
    return items


def _prompt_of(parameters: str | None, provenance: dict[str, Any] | None) -> tuple[str, int, dict[str, float]]:
    """Prompt, seed and cost from artaug's provenance, else from A1111's ``parameters`` text."""
    if isinstance(provenance, dict) and isinstance(provenance.get("prompt"), str):
        seed = provenance.get("seed")
        cost = provenance.get("eval_cost") or provenance.get("cost") or {}
        return provenance["prompt"].strip(), seed if isinstance(seed, int) else 0, _numbers(cost)
    if not parameters:
        return "", 0, {}
    # A1111: the prompt, then optionally "Negative prompt: ...", then one line of "Key: value, ..." settings.
    lines = parameters.strip().splitlines()
    settings = lines[-1] if len(lines) > 1 and "Steps:" in lines[-1] else ""
    body = lines[:-1] if settings else lines
    prompt_lines = [line for line in body if not line.startswith("Negative prompt:")]
    match = _SEED.search(settings)
    return "\n".join(prompt_lines).strip(), int(match.group(1)) if match else 0, {}


def _trail(data: Any, where: str) -> Trail | None:
    if data is None:
        return None
    try:
        return Trail.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{where} is not an artaug trail ({type(error).__name__}: {error})") from None


def _first_cost(trail: Trail | None) -> dict[str, float]:
    if trail is None:
        return {}
    return {"transformer_passes": trail.first_cost.transformer_passes, "vlm_calls": 0,
            "seconds": trail.first_cost.seconds}  # fmt: skip


def _cost(trail: Trail | None) -> dict[str, float]:
    from artaug.eval.generate import vlm_calls

    if trail is None:
        return {}
    total = trail.total_cost
    return {"transformer_passes": total.transformer_passes, "vlm_calls": vlm_calls(trail), "seconds": total.seconds}


def _numbers(cost: Any) -> dict[str, float]:
    if not isinstance(cost, dict):
        return {}
    return {k: float(v) for k, v in cost.items() if k in ("transformer_passes", "vlm_calls", "seconds")
            and isinstance(v, (int, float)) and not isinstance(v, bool)}  # fmt: skip
