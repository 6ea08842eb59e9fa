"""Prompt files → ``PromptRecord``s: ``.txt`` (one per line), ``.jsonl``, ``.csv`` and ``.parquet``.

Every record gets a stable id and seed that depend only on the record itself, never on which worker or in which order
it runs, so a resumed or distributed job paints exactly what a single uninterrupted run would.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artaug.files import loads_json
from artaug.types import MAX_PROMPT_CHARS, MAX_SEED

PROMPT_COLUMNS = ("prompt", "text", "caption")
SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")


@dataclass(frozen=True)
class PromptRecord:
    """One unit of synthesis work: a prompt, its id in the store, and the seed of its first painting."""

    id: str
    prompt: str
    seed: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "seed": self.seed, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptRecord:
        return cls(id=data["id"], prompt=data["prompt"], seed=int(data["seed"]), meta=dict(data.get("meta", {})))


def default_seed(prompt_id: str) -> int:
    """A seed derived from the id alone (31 bits, so every backend's generator accepts it)."""
    return int.from_bytes(hashlib.sha256(prompt_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


def default_id(prompt: str) -> str:
    return "p" + hashlib.sha256(prompt.encode()).hexdigest()[:12]


def read_prompts(path: str | Path) -> list[PromptRecord]:
    """Read a prompt file; the format follows the suffix. Raises ``ValueError`` naming the line/row of bad input."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"unsupported prompt file {path.name!r}: expected one of {', '.join(SUFFIXES)}")
    try:
        if suffix == ".txt":
            rows = _read_txt(path)
        elif suffix == ".jsonl":
            rows = _read_jsonl(path)
        elif suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                rows = _from_table(list(csv.DictReader(f)), path)
        else:
            rows = _from_table(_read_parquet(path), path)
    except UnicodeDecodeError:
        raise ValueError(f"prompt file {path} is not UTF-8 text") from None
    except csv.Error as error:
        raise ValueError(f"prompt file {path} is not valid CSV ({error})") from None
    records = _to_records(rows, path)
    if not records:
        raise ValueError(f"prompt file {path} holds no prompts")
    return records


def sample_prompts_path() -> Path:
    """The small prompt set shipped with the package (for the demo and the tests)."""
    return Path(__file__).resolve().parent.parent / "data" / "sample_prompts.txt"


def _read_txt(path: Path) -> list[tuple[str, dict[str, Any]]]:
    # Blank lines and ``#`` comments are skipped; everything else is a prompt, verbatim apart from surrounding space.
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            rows.append((f"line {number}", {"prompt": text}))
    return rows


def _read_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        data = loads_json(line, where=f"{path}:{number}")
        if not isinstance(data, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object with a 'prompt' key")
        rows.append((f"line {number}", data))
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading .parquet prompt files needs pyarrow: pip install 'artaug[data]'") from None
    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"prompt file {path} is not a readable Parquet table ({error})") from None


def _from_table(rows: list[dict[str, Any]], path: Path) -> list[tuple[str, dict[str, Any]]]:
    # Tables name their prompt column in several ways; take the first known name and say so if none is there.
    columns = list(rows[0].keys()) if rows else []
    column = next((c for c in PROMPT_COLUMNS if c in columns), None)
    if rows and column is None:
        raise ValueError(f"{path}: no prompt column; expected one of {PROMPT_COLUMNS}, found {columns}")
    out = []
    for number, row in enumerate(rows, start=1):
        data = {k: v for k, v in row.items() if v not in (None, "")}
        data["prompt"] = row.get(column)
        out.append((f"row {number}", data))
    return out


def _to_records(rows: list[tuple[str, dict[str, Any]]], path: Path) -> list[PromptRecord]:
    records: list[PromptRecord] = []
    seen: dict[str, str] = {}
    for where, data in rows:
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{path} {where}: empty or missing prompt")
        prompt = prompt.strip()
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"{path} {where}: prompt of {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
        explicit = data.get("id")
        record_id = str(explicit).strip() if explicit not in (None, "") else default_id(prompt)
        if record_id in seen:
            if explicit not in (None, ""):
                raise ValueError(f"{path} {where}: duplicate id {record_id!r} (first at {seen[record_id]})")
            # The same prompt twice without ids: a second sample of it, with its own id and seed.
            n = 2
            while f"{record_id}-{n}" in seen:
                n += 1
            record_id = f"{record_id}-{n}"
        seen[record_id] = where
        seed = data.get("seed")
        try:
            seed = default_seed(record_id) if seed in (None, "") else int(seed)
            if isinstance(data.get("seed"), (bool, float)) or not 0 <= seed <= MAX_SEED:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"{path} {where}: seed {data.get('seed')!r} is not an integer in [0, 2**63 - 1]"
            ) from None
        meta = {k: v for k, v in data.items() if k not in ("prompt", "id", "seed")}
        records.append(PromptRecord(id=record_id, prompt=prompt, seed=seed, meta=meta))
    return records
