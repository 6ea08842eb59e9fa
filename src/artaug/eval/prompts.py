"""Prompt sets for evaluation: a user's file, a Hugging Face ``datasets`` dataset, or a named set.

``load_prompt_set(spec)`` reads:

- a file: ``.txt``, ``.jsonl``, ``.csv``, ``.parquet`` (``artaug.synth.prompts.read_prompts``: stable ids and seeds;
  extra keys such as GenEval's ``tag``/``include``/``exclude`` land in each record's ``meta``);
- ``datasets:NAME_OR_DIR[:SPLIT[:COLUMN]]``: ``datasets.load_dataset(NAME, split=SPLIT)``, or ``load_from_disk`` for
  a folder saved with ``save_to_disk``; the prompt column is COLUMN, else ``prompt``/``text``/``caption``;
- a name from :data:`PROMPT_SETS`. Only sets whose licence allows it ship with artaug, with their licence recorded
  here; the others are named with where to fetch them, and loading one says so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from artaug.synth.prompts import SUFFIXES, PromptRecord, read_prompts, sample_prompts_path


@dataclass(frozen=True)
class PromptSet:
    """A named prompt set: what it is, under which licence, and either how to load it (``load``) or how to get it."""

    name: str
    description: str
    licence: str
    source: str
    load: Callable[[], list[PromptRecord]] | None = None
    fetch: str = ""


def _world() -> list[PromptRecord]:
    # The closed world's fixed held-out subset: 8 prompts per GenEval category; the category is GenEval's tag.
    from artaug.world.grammar import eval_items

    return [PromptRecord(f"world-{i:03d}", item.prompt, item.seed, {"tag": item.category})
            for i, item in enumerate(eval_items(quick=True))]  # fmt: skip


PROMPT_SETS: dict[str, PromptSet] = {
    s.name: s
    for s in (
        PromptSet(
            "sample",
            "artaug's small varied set (demos and tests)",
            "Apache-2.0 (artaug's own)",
            "src/artaug/data/sample_prompts.txt",
            load=lambda: read_prompts(sample_prompts_path()),
        ),
        PromptSet(
            "world",
            "the closed world's held-out prompts, 8 per GenEval category; score with --metrics world",
            "Apache-2.0 (artaug's own)",
            "artaug.world.grammar.eval_items(quick=True)",
            load=_world,
        ),
        PromptSet(
            "geneval",
            "GenEval's 553 prompts with their metadata (Ghosh et al. 2023); score with geneval",
            "MIT (per its repository)",
            "https://github.com/djghosh13/geneval",
            fetch="git clone https://github.com/djghosh13/geneval, then "
            "--prompts geneval/prompts/evaluation_metadata.jsonl",
        ),
        PromptSet(
            "drawbench",
            "DrawBench's 200 prompts in 11 categories (Saharia et al. 2022, Imagen)",
            "no licence stated by the Imagen authors; not redistributed here",
            "the Imagen paper's DrawBench sheet",
            fetch="download the sheet as CSV (columns Prompts, Category), rename the prompt column to 'prompt', "
            "then --prompts drawbench.csv",
        ),
        PromptSet(
            "partiprompts",
            "PartiPrompts' 1,600 prompts (Yu et al. 2022, Parti)",
            "Apache-2.0 (per its repository)",
            "https://github.com/google-research/parti",
            fetch="--prompts datasets:nateraw/parti-prompts:train:Prompt on a machine with hub access, or the "
            "repository's PartiPrompts.tsv saved as CSV with a 'prompt' column",
        ),
        PromptSet(
            "hpdv2",
            "HPDv2's benchmark prompts in four styles (Wu et al. 2023, HPSv2)",
            "see its repository",
            "https://github.com/tgxs002/HPSv2",
            fetch="pip install hpsv2 in another environment, write hpsv2.benchmark_prompts('all') to a .txt, "
            "then --prompts that file",
        ),
    )
}


def load_prompt_set(spec: str | Path) -> list[PromptRecord]:
    """The prompts ``spec`` names (see the module docstring); a ``ValueError`` or ``FileNotFoundError`` says what to
    do when it names none."""
    text = str(spec)
    if text.startswith("datasets:"):
        return _from_datasets(text[len("datasets:") :])
    if text in PROMPT_SETS:
        chosen = PROMPT_SETS[text]
        if chosen.load is None:
            raise FileNotFoundError(
                f"the {text} prompt set does not ship with artaug ({chosen.licence}): {chosen.fetch}"
            )
        return chosen.load()
    if Path(text).suffix.lower() in SUFFIXES or Path(text).exists():
        return read_prompts(text)
    raise FileNotFoundError(
        f"--prompts {text!r} is neither a prompt file ({', '.join(SUFFIXES)}), a datasets:NAME spec, nor a known set "
        f"({', '.join(PROMPT_SETS)})"
    )


def _from_datasets(spec: str) -> list[PromptRecord]:
    """Rows of a ``datasets`` dataset through the same reader (and the same checks) as a Parquet prompt file."""
    try:
        import datasets
    except ImportError:
        raise ImportError("datasets:... prompt sets need the datasets package: pip install 'artaug[data]'") from None
    name, _, rest = spec.partition(":")
    split, _, column = rest.partition(":")
    if not name:
        raise ValueError("datasets: needs a dataset name or folder, e.g. datasets:nateraw/parti-prompts:train")
    try:
        if Path(name).is_dir():
            data = datasets.load_from_disk(name)
            data = data[split or next(iter(data))] if isinstance(data, datasets.DatasetDict) else data
        else:
            data = datasets.load_dataset(name, split=split or "train")
    except (OSError, ValueError, KeyError, FileNotFoundError) as error:
        raise FileNotFoundError(f"could not load the dataset {name!r} (split {split or 'default'}): {error}") from None
    if column:
        if column not in data.column_names:
            raise ValueError(f"dataset {name!r} has no column {column!r}; it has {', '.join(data.column_names)}")
        keep = [column] + [c for c in ("id", "seed") if c in data.column_names and c != column]
        data = data.select_columns(keep)
        data = data.rename_column(column, "prompt") if column != "prompt" else data
    with tempfile.TemporaryDirectory(prefix="artaug-prompts-") as folder:
        path = Path(folder) / f"{Path(name).name or 'dataset'}.parquet"
        data.to_parquet(str(path))
        return read_prompts(path)
