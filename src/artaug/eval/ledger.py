"""The evaluation ledger: one SQLite file (WAL) in the output folder, the only record of what is done.

Tables::

    meta    (key, value)                                      the evaluation's identity, to resume only the same one
    items   (condition, prompt_id, seed, prompt, path, ...)   one painting per condition x prompt x seed
    scores  (condition, prompt_id, seed, metric, value, ...)  one score (or failure) per painting and metric

The rule of the synthesis store (``artaug.synth.store``) holds here too: *the ledger is the only way in*. A
painting's PNG is written atomically (temporary name, rename) before its row is inserted, so a kill between the two
leaves a file no row names, which is painted again (to the same name) on resume; a kill after the insert loses
nothing. A score is one row, inserted once under its primary key: a resumed run computes only the missing ones, and
nothing is ever scored twice. Paths read back from the ledger are confined to the folder they belong to.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from artaug.files import confined, loads_json

LEDGER = "ledger.sqlite"
SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    condition TEXT NOT NULL, prompt_id TEXT NOT NULL, seed INTEGER NOT NULL, prompt TEXT NOT NULL,
    root TEXT NOT NULL, path TEXT, cost TEXT NOT NULL, meta TEXT NOT NULL, error TEXT, created REAL NOT NULL,
    PRIMARY KEY (condition, prompt_id, seed));
CREATE TABLE IF NOT EXISTS scores (
    condition TEXT NOT NULL, prompt_id TEXT NOT NULL, seed INTEGER NOT NULL, metric TEXT NOT NULL, value REAL,
    detail TEXT NOT NULL, error TEXT, seconds REAL NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (condition, prompt_id, seed, metric));
"""
ROOTS = ("out", "source")  # an item's image lies in the evaluation folder, or in the folder being scored


@dataclass
class Item:
    """One painting of the evaluation. ``path`` is relative to its ``root``; ``error`` says why there is no image.

    ``cost``: ``transformer_passes``, ``vlm_calls`` and ``seconds`` that painting it took (as far as known).
    ``meta``: the prompt record's metadata (GenEval's ``tag``/``include``/``exclude``, a world category, ...).
    """

    condition: str
    prompt_id: str
    seed: int
    prompt: str
    root: str = "out"
    path: str | None = None
    cost: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.condition, self.prompt_id, self.seed)


@dataclass
class Score:
    """One metric's verdict on one painting: a finite ``value``, or ``error`` (the failure, recorded)."""

    condition: str
    prompt_id: str
    seed: int
    metric: str
    value: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"condition": self.condition, "prompt_id": self.prompt_id, "seed": self.seed, "metric": self.metric,
                "value": self.value, "error": self.error, "detail": self.detail, "seconds": self.seconds}  # fmt: skip


class Ledger:
    """The ledger of the evaluation folder ``root`` (created on first use unless ``readonly``)."""

    def __init__(self, root: str | Path, *, readonly: bool = False) -> None:
        self.root = Path(root).resolve()
        path = self.root / LEDGER
        if readonly:
            if not path.is_file():
                raise FileNotFoundError(f"{self.root} is not an artaug evaluation (no {LEDGER}); run `artaug eval`")
            self._db = sqlite3.connect(read_only_uri(path), uri=True, check_same_thread=False)
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self._transaction() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{path} is not an artaug evaluation ledger ({error})") from None
        if row is None or row[0] != SCHEMA_VERSION:
            raise ValueError(f"{path} has evaluation schema {row and row[0]!r}; this artaug reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- identity --------------------------------------------------------------------------------------------------

    def claim_identity(self, identity: dict[str, Any]) -> None:
        """Record what this evaluation is (its inputs and settings), or check that a resumed run is the same one."""
        text = json.dumps(identity, sort_keys=True, default=str)
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('identity', ?)", (text,))
                return
        old, new = self.identity(), json.loads(text)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            raise ValueError(
                f"{self.root} holds an evaluation with other {', '.join(changed)}; resume it with the same inputs "
                "and settings, or choose a new --out"
            )

    def identity(self) -> dict[str, Any]:
        """What this evaluation is (empty before it is claimed)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        identity = loads_json(row[0], where=f"{self.root / LEDGER} identity") if row else {}
        if not isinstance(identity, dict):
            raise ValueError(f"{self.root / LEDGER} holds a malformed identity; choose a new --out")
        return identity

    # -- items -----------------------------------------------------------------------------------------------------

    def add_item(self, item: Item) -> None:
        """Record a painting (its image already written) or why it could not be made; never twice."""
        if item.root not in ROOTS:
            raise ValueError(f"item root must be one of {ROOTS}, got {item.root!r}")
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*item.key, item.prompt, item.root, item.path, _dumps(item.cost), _dumps(item.meta), item.error,
                 time.time()),
            )  # fmt: skip

    def items(self) -> list[Item]:
        rows = self._db.execute(
            "SELECT condition, prompt_id, seed, prompt, root, path, cost, meta, error FROM items ORDER BY rowid"
        ).fetchall()
        where = f"an item of {self.root / LEDGER}"
        return [Item(c, p, s, text, root, path, _loads(cost, where), _loads(meta, where), error)
                for c, p, s, text, root, path, cost, meta, error in rows]  # fmt: skip

    def done(self) -> set[tuple[str, str, int]]:
        return {tuple(row) for row in self._db.execute("SELECT condition, prompt_id, seed FROM items")}

    def image_path(self, item: Item, source: Path | None) -> Path:
        """The image file of ``item``: inside the evaluation folder, or inside the folder being scored."""
        if item.path is None:
            raise ValueError(f"{item.key} has no image ({item.error})")
        if item.root == "source":
            if source is None:
                raise ValueError(f"{item.key} names an image of the scored folder, but no folder was given")
            return confined(source, item.path, what=f"image named in {self.root / LEDGER}")
        return confined(self.root, item.path, what=f"image named in {self.root / LEDGER}")

    # -- scores ----------------------------------------------------------------------------------------------------

    def add_scores(self, scores: list[Score]) -> None:
        with self._transaction() as db:
            for s in scores:
                db.execute(
                    "INSERT OR IGNORE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (s.condition, s.prompt_id, s.seed, s.metric, s.value, _dumps(s.detail), s.error, s.seconds,
                     time.time()),
                )  # fmt: skip

    def scored(self, metric: str) -> set[tuple[str, str, int]]:
        rows = self._db.execute("SELECT condition, prompt_id, seed FROM scores WHERE metric = ?", (metric,))
        return {tuple(row) for row in rows}

    def scores(self) -> list[Score]:
        rows = self._db.execute(
            "SELECT condition, prompt_id, seed, metric, value, detail, error, seconds FROM scores ORDER BY rowid"
        ).fetchall()
        where = f"a score of {self.root / LEDGER}"
        return [Score(c, p, s, m, v, _loads(d, where), e, sec) for c, p, s, m, v, d, e, sec in rows]


def read_only_uri(path: Path) -> str:
    """A SQLite URI that opens ``path`` for reading only (quoted: a folder name may hold ``?`` or ``#``)."""
    return f"file:{quote(str(path))}?mode=ro"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, allow_nan=False)


def _loads(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        raise ValueError(f"{where} holds a malformed row")
    return loads_json(text, where=where)
