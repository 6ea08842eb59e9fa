"""The synthesis store: one folder holding a SQLite ledger (WAL) and the image files it points to.

Layout::

    DIR/ledger.sqlite            prompts, leases, claims, results, pairs, images
    DIR/images/<prompt>/<token>-r<k>.png

Crash safety rests on one rule: *the ledger is the only way in*. A prompt's images are written to temporary names,
fsynced and renamed into place, and only then does ONE transaction insert the prompt's result, its pairs and its image
list. A crash before that transaction leaves files that no ledger row names; they are invisible to every reader
(``pairs``, ``read_pairs``, the exports) and are removed by the next worker that claims the prompt, or by the sweep on
open for prompts already committed. A crash after it leaves a complete record.

Several workers share one store through leases: claiming a prompt inserts a lease row (worker, expiry) in the same
``BEGIN IMMEDIATE`` transaction that checks no result and no live lease exist, so two workers can never hold the same
prompt. A lease expires after ``lease_ttl`` seconds unless renewed (``keep_alive``); a lease held by a process on this
host that no longer exists is taken over at once, so a killed job resumes without waiting for the expiry. Committing
checks the lease is still ours, so a worker that lost its lease cannot add a second record for the prompt.

The folder must be on a local disk of the machine that writes it: SQLite's WAL needs shared memory, which network
filesystems do not provide. Workers on other machines go through Ray (the driver writes; see ``synth.ray_backend``).

A person's verdict on a pair (``review``: accepted or rejected, from the studio) is one more ledger row in the
append-only ``reviews`` table; the latest verdict on a pair counts. A pair is **accepted** when a person accepted it,
or when no person has reviewed it and the filters kept it; a pair a person rejected is never accepted, whatever the
filters said. ``read_pairs``, the exports and training read accepted pairs (``kept_only=True``), and never return a
rejected pair. Pairs a person made in the studio carry ``provenance`` ``"person"`` (synthesized ones ``"synth"``) and
are committed with the person's acceptance in the same transaction.

Readers (``read_pairs``, ``stats``, exports, training) open the store read-only (``Store(..., readonly=True)``): they
never write, so a store on read-only media or someone else's folder can be read. A ledger may have been edited by
someone else: every folder and image path it names must stay inside the store (``artaug.files.confined``), and its
JSON columns are read with bounded size and depth.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from artaug.files import atomic_write, confined, loads_json
from artaug.synth.prompts import PromptRecord

if TYPE_CHECKING:
    from PIL import Image

LEDGER = "ledger.sqlite"
IMAGES = "images"
TMP_PREFIX = ".tmp-"
SCHEMA_VERSION = 2
# Schema 2 added the ``reviews`` table; a schema-1 store gains it when it is next opened for writing, and read-only
# readers read a schema-1 store as one without reviews.
READABLE_SCHEMAS = ("1", "2")
VERDICTS = ("accepted", "rejected")
MAX_REVIEWER_CHARS = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, prompt TEXT NOT NULL, seed INTEGER NOT NULL,
    meta TEXT NOT NULL, folder TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    prompt_id TEXT PRIMARY KEY, worker TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS claims (prompt_id TEXT NOT NULL, worker TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    prompt_id TEXT PRIMARY KEY, status TEXT NOT NULL, worker TEXT NOT NULL, seconds REAL NOT NULL, error TEXT,
    trail TEXT, timings TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id TEXT PRIMARY KEY, prompt_id TEXT NOT NULL, round INTEGER NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL,
    scores TEXT NOT NULL, kept INTEGER NOT NULL, verdicts TEXT NOT NULL, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (path TEXT PRIMARY KEY, prompt_id TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, pair_id TEXT NOT NULL, verdict TEXT NOT NULL, reviewer TEXT NOT NULL,
    at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS reviews_pair ON reviews (pair_id);
CREATE INDEX IF NOT EXISTS pairs_prompt ON pairs (prompt_id);
CREATE INDEX IF NOT EXISTS images_prompt ON images (prompt_id);
"""

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class PairRecord:
    """One committed (before, after) pair, as trainers and exporters read it.

    ``before`` and ``after`` are absolute paths of PNG files inside the store. ``scores`` holds the judge's scores of
    both images and their deltas (``aesthetic.before``, ``aesthetic.after``, ``aesthetic.delta``, ...) and the
    image-image ``similarity``; ``kept`` is the filters' verdict; ``meta`` carries the provenance (prompt id, round,
    every filter's verdict, the edits that made ``after``, cost). ``provenance`` says who made the pair (``"synth"``
    or ``"person"``), ``review`` holds the latest person's verdict (``verdict``, ``reviewer``, ``at``) or None.
    """

    id: str
    prompt: str
    before: Path
    after: Path
    seed: int
    scores: dict[str, float] = field(default_factory=dict)
    kept: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: str = "synth"
    review: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        """A person accepted it, or nobody reviewed it and the filters kept it (see the module docstring)."""
        return self.review["verdict"] == "accepted" if self.review else self.kept


@dataclass
class PairDraft:
    """A pair about to be committed: ``before`` and ``after`` name entries of the commit's ``images``."""

    round: int
    before: str
    after: str
    scores: dict[str, float]
    kept: bool
    verdicts: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    # A person who made the pair (the studio): committed as accepted by them, with provenance "person".
    reviewer: str = ""


class LeaseLost(RuntimeError):
    """The worker's lease on a prompt expired and another worker took it (or committed it) meanwhile."""


class StoreLocked(OSError):
    """Another process held the ledger's write lock for longer than ``lock_timeout``."""


class Store:
    """A synthesis store in folder ``root`` (created if missing). One instance per thread; open as many as needed.

    ``sweep`` removes crash leftovers of committed prompts on open (workers do). ``readonly`` opens an existing
    store for reading only: nothing is created, swept or written (readers: stats, exports, training).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        lease_ttl: float = 600.0,
        worker: str | None = None,
        sweep: bool = True,
        readonly: bool = False,
        lock_timeout: float = 60.0,
    ) -> None:
        if lease_ttl <= 0 or lock_timeout < 0:
            raise ValueError(f"lease_ttl must be positive and lock_timeout >= 0, got {lease_ttl}, {lock_timeout}")
        self.lock_timeout = float(lock_timeout)
        self.root = Path(root).resolve()
        self.lease_ttl = float(lease_ttl)
        self.readonly = readonly
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker = worker or f"{self.host}:{self.pid}:{secrets.token_hex(3)}"
        if readonly:
            if not (self.root / LEDGER).is_file():
                raise FileNotFoundError(f"{self.root} is not an artaug synth store (no {LEDGER}); run `artaug synth`")
            self._db = _connect_readonly(self.root / LEDGER)
            self._check_schema()
            return
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"store {self.root} is a file; give a folder")
        (self.root / IMAGES).mkdir(parents=True, exist_ok=True)
        self._db = _connect(self.root / LEDGER, self.lock_timeout)
        self._init_schema()
        if sweep:
            self.sweep()

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_schema(self) -> None:
        with self._transaction():
            # executescript() would commit on its own; run the statements inside our transaction instead.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif str(row[0]) in READABLE_SCHEMAS:
                # Migration 1 -> 2 is additive: the reviews table was created just above, in this transaction.
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
        self._check_schema()

    def _check_schema(self) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{self.root / LEDGER} is not an artaug ledger ({error})") from None
        if row is None or str(row[0]) not in READABLE_SCHEMAS:
            found = "no schema" if row is None else f"schema {row[0]!r}"
            raise ValueError(f"{self.root} has store {found}; this artaug reads schemas {', '.join(READABLE_SCHEMAS)}")
        self._has_reviews = str(row[0]) != "1"
        # Every folder the ledger names is checked on open, before a job loads any model: a tampered ledger is found
        # here, not halfway through a run.
        for (folder,) in self._db.execute("SELECT folder FROM prompts"):
            _safe_folder(folder, f"a prompt of {self.root / LEDGER}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so check-then-insert sequences cannot interleave.
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            raise StoreLocked(
                f"the store {self.root} stayed locked by another process for {self.lock_timeout:g} s; is another "
                "artaug job writing to it?"
            ) from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- the queue -------------------------------------------------------------------------------------------------

    def add_prompts(self, records: Iterable[PromptRecord]) -> int:
        """Register prompts (idempotent). Returns how many were new. A known id with another prompt is an error."""
        added = 0
        with self._transaction() as db:
            for r in records:
                row = db.execute("SELECT prompt, seed FROM prompts WHERE id = ?", (r.id,)).fetchone()
                if row is not None:
                    if (row[0], row[1]) != (r.prompt, r.seed):
                        raise ValueError(
                            f"prompt id {r.id!r} is already in {self.root} with another prompt or seed "
                            f"({row[0]!r}, seed {row[1]}); give it a new id"
                        )
                    continue
                db.execute(
                    "INSERT INTO prompts (id, prompt, seed, meta, folder) VALUES (?, ?, ?, ?, ?)",
                    (r.id, r.prompt, r.seed, _dumps(r.meta), self._folder_name(r.id)),
                )
                added += 1
        return added

    def _folder_name(self, prompt_id: str) -> str:
        if _SAFE_ID.match(prompt_id):
            return prompt_id
        # Ids from user files may hold slashes or spaces; such prompts get a hashed folder, recorded in the ledger.
        return "h" + hashlib.sha256(prompt_id.encode()).hexdigest()[:16]

    def claim(self, n: int = 1) -> list[PromptRecord]:
        """Lease up to ``n`` prompts that have no result and no live lease, in the order they were added."""
        now = time.time()
        with self._transaction() as db:
            self._drop_dead_leases(db, now)
            rows = db.execute(
                """SELECT p.id, p.prompt, p.seed, p.meta, p.folder FROM prompts p
                   WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.prompt_id = p.id)
                     AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.prompt_id = p.id AND l.expires > ?)
                   ORDER BY p.seq LIMIT ?""",
                (now, n),
            ).fetchall()
            for prompt_id, *_ in rows:
                db.execute(
                    "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)",
                    (prompt_id, self.worker, self.host, self.pid, now + self.lease_ttl),
                )
                db.execute("INSERT INTO claims VALUES (?, ?, ?)", (prompt_id, self.worker, now))
        # We hold the lease now: whatever an earlier, crashed attempt left in the folder is garbage.
        for _, _, _, _, folder in rows:
            self._clear_uncommitted(folder, referenced=set())
        return [PromptRecord(id=r[0], prompt=r[1], seed=r[2], meta=_loads(r[3], "prompt meta")) for r in rows]

    def _drop_dead_leases(self, db: sqlite3.Connection, now: float) -> None:
        # A live lease of a process on this host that no longer exists (SIGKILL, OOM kill) is free at once.
        for prompt_id, pid in db.execute(
            "SELECT prompt_id, pid FROM leases WHERE host = ? AND expires > ? AND pid != ?", (self.host, now, self.pid)
        ).fetchall():
            if not _pid_alive(pid):
                db.execute("DELETE FROM leases WHERE prompt_id = ?", (prompt_id,))

    def renew(self) -> int:
        """Extend every lease this worker holds by ``lease_ttl``; returns how many."""
        with self._transaction() as db:
            expires = time.time() + self.lease_ttl
            cur = db.execute("UPDATE leases SET expires = ? WHERE worker = ?", (expires, self.worker))
        return cur.rowcount

    def release(self, prompt_id: str) -> None:
        """Give a lease back without a result (the prompt will be claimed again)."""
        with self._transaction() as db:
            db.execute("DELETE FROM leases WHERE prompt_id = ? AND worker = ?", (prompt_id, self.worker))

    @contextlib.contextmanager
    def keep_alive(self, every: float | None = None) -> Iterator[None]:
        """Renew this worker's leases from a background thread (its own connection) while the block runs."""
        stop = threading.Event()
        interval = every if every is not None else self.lease_ttl / 3

        def beat() -> None:
            db = _connect(self.root / LEDGER, self.lock_timeout)
            try:
                while not stop.wait(interval):
                    db.execute(
                        "UPDATE leases SET expires = ? WHERE worker = ?", (time.time() + self.lease_ttl, self.worker)
                    )
            finally:
                db.close()

        thread = threading.Thread(target=beat, name="artaug-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    # -- committing ------------------------------------------------------------------------------------------------

    def commit(
        self,
        prompt_id: str,
        *,
        images: dict[str, Image.Image],
        pairs: list[PairDraft],
        trail: dict[str, Any] | None,
        timings: dict[str, float] | None = None,
        seconds: float = 0.0,
        provenance: dict[str, Any] | None = None,
        worker: str | None = None,
    ) -> None:
        """Write ``images`` durably, then record the prompt's result, pairs and images in one transaction.

        ``worker`` names who computed the result (a Ray actor) when it is not this store's own worker.
        """
        folder = self._folder_of(prompt_id)
        token = secrets.token_hex(4)
        # 0. a worker that already lost its lease stops here instead of writing files nobody will read
        for draft in pairs:
            if draft.reviewer:
                _reviewer(draft.reviewer)
        with self._transaction() as db:
            self._check_lease(db, prompt_id)
        # 1. images: temp name, fsync, rename; nothing in the ledger points at them yet.
        paths: dict[str, str] = {}
        for name, image in images.items():
            if not re.match(r"^[A-Za-z0-9_-]+$", name):
                raise ValueError(f"image name {name!r} must be alphanumeric")
            rel = f"{IMAGES}/{folder}/{token}-{name}.png"
            _write_png_durably(image, self.root / rel, {"prompt_id": prompt_id, "image": name, **(provenance or {})})
            paths[name] = rel
        _fsync_dir(self.root / IMAGES / folder)
        for draft in pairs:
            for name in (draft.before, draft.after):
                if name not in paths:
                    raise ValueError(f"pair of round {draft.round} names image {name!r}, which was not given")
        # 2. one transaction: the lease must still be ours, then everything becomes visible at once.
        with self._transaction() as db:
            self._take_lease_back(db, prompt_id)
            db.execute(
                "INSERT INTO results VALUES (?, 'done', ?, ?, NULL, ?, ?, ?)",
                (prompt_id, worker or self.worker, seconds, _dumps(trail), _dumps(timings or {}), time.time()),
            )
            for name, rel in paths.items():
                db.execute("INSERT INTO images VALUES (?, ?, ?)", (rel, prompt_id, name))
            for draft in pairs:
                pair_id = f"{prompt_id}#{draft.round}"
                meta = {**draft.meta, "provenance": "person"} if draft.reviewer else draft.meta
                db.execute(
                    "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        pair_id,
                        prompt_id,
                        draft.round,
                        paths[draft.before],
                        paths[draft.after],
                        _dumps(draft.scores),
                        int(draft.kept),
                        _dumps(draft.verdicts),
                        _dumps(meta),
                    ),
                )
                if draft.reviewer:
                    db.execute(
                        "INSERT INTO reviews (pair_id, verdict, reviewer, at) VALUES (?, 'accepted', ?, ?)",
                        (pair_id, _reviewer(draft.reviewer), time.time()),
                    )

    def commit_failure(self, prompt_id: str, error: str, *, seconds: float = 0.0, worker: str | None = None) -> None:
        """Record that a prompt failed (it is then done, not retried, until ``retry_failed``)."""
        with self._transaction() as db:
            self._take_lease_back(db, prompt_id)
            db.execute(
                "INSERT INTO results VALUES (?, 'failed', ?, ?, ?, NULL, '{}', ?)",
                (prompt_id, worker or self.worker, seconds, error, time.time()),
            )

    def _take_lease_back(self, db: sqlite3.Connection, prompt_id: str) -> None:
        self._check_lease(db, prompt_id)
        db.execute("DELETE FROM leases WHERE prompt_id = ?", (prompt_id,))

    def _check_lease(self, db: sqlite3.Connection, prompt_id: str) -> None:
        # No lease at all is fine (it expired and nobody took the prompt): the result is still the only one.
        if db.execute("SELECT 1 FROM results WHERE prompt_id = ?", (prompt_id,)).fetchone():
            raise LeaseLost(f"prompt {prompt_id!r} was already committed by another worker")
        lease = db.execute("SELECT worker FROM leases WHERE prompt_id = ?", (prompt_id,)).fetchone()
        if lease is not None and lease[0] != self.worker:
            raise LeaseLost(f"prompt {prompt_id!r} is now leased by {lease[0]}")

    def retry_failed(self) -> int:
        """Forget failed results so their prompts are claimed again; returns how many."""
        with self._transaction() as db:
            return db.execute("DELETE FROM results WHERE status = 'failed'").rowcount

    def review(self, pair_id: str, verdict: str, reviewer: str) -> None:
        """Record a person's verdict (``"accepted"`` or ``"rejected"``) on a committed pair; the latest one counts."""
        if verdict not in VERDICTS:
            raise ValueError(f"a review verdict is one of {', '.join(VERDICTS)}, got {verdict!r}")
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is None:
                raise KeyError(f"pair {pair_id!r} is not in {self.root}")
            db.execute(
                "INSERT INTO reviews (pair_id, verdict, reviewer, at) VALUES (?, ?, ?, ?)",
                (pair_id, verdict, _reviewer(reviewer), time.time()),
            )

    # -- reading ---------------------------------------------------------------------------------------------------

    def pairs(self, *, kept_only: bool = False, include_rejected: bool = True) -> list[PairRecord]:
        """Every committed pair, in prompt order then round; ``kept_only``: only accepted ones (see the module
        docstring); ``include_rejected=False`` leaves out pairs a person rejected."""
        reviews = self._reviews()
        rows = self._db.execute(
            """SELECT pa.id, p.prompt, pa.before, pa.after, p.seed, pa.scores, pa.kept, pa.verdicts, pa.meta,
                       pa.prompt_id, pa.round, p.folder
                FROM pairs pa JOIN prompts p ON p.id = pa.prompt_id
                ORDER BY p.seq, pa.round"""
        ).fetchall()
        out = []
        for pair_id, prompt, before, after, seed, scores, kept, verdicts, meta, prompt_id, round_, folder in rows:
            where = f"pair {pair_id!r} in {self.root / LEDGER}"
            if not isinstance(round_, int) or not isinstance(prompt, str) or not isinstance(seed, int):
                raise ValueError(f"{where} has a malformed row (round, prompt or seed of the wrong type)")
            meta = _loads(meta, f"{where} meta")
            if not isinstance(meta, dict):
                raise ValueError(f"{where} meta is not a table")
            meta |= {
                "prompt_id": prompt_id,
                "round": round_,
                "stem": f"{_safe_folder(folder, where)}_r{round_}",
                "filters": _loads(verdicts, f"{where} verdicts"),
            }
            provenance = meta.get("provenance", "synth")
            record = PairRecord(
                id=pair_id,
                prompt=prompt,
                before=self._image_path(before, where),
                after=self._image_path(after, where),
                seed=seed,
                scores=_loads(scores, f"{where} scores"),
                kept=bool(kept),
                meta=meta,
                provenance=provenance if isinstance(provenance, str) else "synth",
                review=reviews.get(pair_id),
            )
            meta["review"] = record.review
            if kept_only and not record.accepted:
                continue
            if not include_rejected and record.review and record.review["verdict"] == "rejected":
                continue
            out.append(record)
        return out

    def _reviews(self) -> dict[str, dict[str, Any]]:
        """The latest verdict on each reviewed pair."""
        if not self._has_reviews:
            return {}
        rows = self._db.execute("SELECT pair_id, verdict, reviewer, at FROM reviews ORDER BY seq").fetchall()
        latest = {}
        for pair_id, verdict, reviewer, at in rows:
            if verdict not in VERDICTS or not isinstance(reviewer, str):
                raise ValueError(f"a review of pair {pair_id!r} in {self.root / LEDGER} is malformed ({verdict!r})")
            latest[pair_id] = {"verdict": verdict, "reviewer": reviewer, "at": at}
        return latest

    def _image_path(self, rel: Any, where: str) -> Path:
        """A ledger's image path: inside ``images/`` of this store, never anywhere else."""
        if not isinstance(rel, str):
            raise ValueError(f"{where} names an image path of the wrong type")
        path = confined(self.root, rel, what=f"image of {where}")
        if self.root / IMAGES not in path.parents:
            raise ValueError(f"{where} names {rel!r}, outside the store's {IMAGES}/ folder")
        return path

    def results(self) -> list[dict[str, Any]]:
        """One row per finished prompt: id, status, seconds, error, timings."""
        rows = self._db.execute(
            """SELECT r.prompt_id, r.status, r.worker, r.seconds, r.error, r.timings FROM results r
               JOIN prompts p ON p.id = r.prompt_id ORDER BY p.seq"""
        ).fetchall()
        keys = ("prompt_id", "status", "worker", "seconds", "error", "timings")
        return [{**dict(zip(keys, r, strict=True)), "timings": _loads(r[5], "timings")} for r in rows]

    def trail(self, prompt_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT trail FROM results WHERE prompt_id = ?", (prompt_id,)).fetchone()
        return _loads(row[0], f"trail of prompt {prompt_id!r}") if row and row[0] else None

    def counts(self) -> dict[str, int]:
        """prompts, done, failed, pending (no result yet), leased (live leases), pairs, kept."""

        def one(sql: str, *args: Any) -> int:
            return int(self._db.execute(sql, args).fetchone()[0])

        return {
            "prompts": one("SELECT COUNT(*) FROM prompts"),
            "done": one("SELECT COUNT(*) FROM results WHERE status = 'done'"),
            "failed": one("SELECT COUNT(*) FROM results WHERE status = 'failed'"),
            "pending": one(
                "SELECT COUNT(*) FROM prompts p WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.prompt_id = p.id)"
            ),
            "leased": one("SELECT COUNT(*) FROM leases WHERE expires > ?", time.time()),
            "pairs": one("SELECT COUNT(*) FROM pairs"),
            "kept": one("SELECT COUNT(*) FROM pairs WHERE kept = 1"),
        }

    def review_counts(self) -> dict[str, int]:
        """How many pairs a person accepted and rejected (latest verdict per pair)."""
        verdicts = [r["verdict"] for r in self._reviews().values()]
        return {"accepted": verdicts.count("accepted"), "rejected": verdicts.count("rejected")}

    def claims(self) -> list[tuple[str, str]]:
        """Every (prompt id, worker) claim ever made, in order: the audit trail of who worked on what."""
        return [(r[0], r[1]) for r in self._db.execute("SELECT prompt_id, worker FROM claims ORDER BY rowid")]

    def check(self) -> list[str]:
        """Integrity problems: referenced images missing or unreadable, stray files, duplicate results."""
        from PIL import Image

        problems = []
        referenced = {r[0] for r in self._db.execute("SELECT path FROM images")}
        for rel in sorted(referenced):
            try:
                with Image.open(self._image_path(rel, "ledger")) as im:
                    im.load()
            except Exception as e:  # any decoder error (or a path outside the store) means a broken entry
                problems.append(f"image {rel} does not open: {e}")
        for path in sorted((self.root / IMAGES).rglob("*")):
            if path.is_file() and path.relative_to(self.root).as_posix() not in referenced:
                problems.append(f"stray file {path.relative_to(self.root).as_posix()} (no ledger row names it)")
        duplicates = "SELECT prompt_id, COUNT(*) FROM results GROUP BY prompt_id HAVING COUNT(*) > 1"
        for prompt_id, n in self._db.execute(duplicates):
            problems.append(f"prompt {prompt_id} has {n} results")
        return problems

    # -- housekeeping ----------------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Remove files no ledger row names in the folders of committed prompts; returns how many.

        Folders of uncommitted prompts are left alone here (a live worker may be writing there); the worker that
        claims such a prompt clears its folder first.
        """
        removed = 0
        committed = dict(
            self._db.execute("SELECT p.folder, p.id FROM prompts p JOIN results r ON r.prompt_id = p.id").fetchall()
        )
        for entry in os.scandir(self.root / IMAGES):
            if entry.is_dir(follow_symlinks=False) and entry.name in committed:
                referenced = {
                    r[0].rsplit("/", 1)[-1]
                    for r in self._db.execute("SELECT path FROM images WHERE prompt_id = ?", (committed[entry.name],))
                }
                removed += self._clear_uncommitted(entry.name, referenced)
        return removed

    def _clear_uncommitted(self, folder: str, referenced: set[str]) -> int:
        removed = 0
        directory = self.root / IMAGES / _safe_folder(folder, f"a prompt folder in {self.root / LEDGER}")
        if directory.is_dir() and not directory.is_symlink():
            for entry in os.scandir(directory):
                if entry.is_file(follow_symlinks=False) and entry.name not in referenced:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def _folder_of(self, prompt_id: str) -> str:
        row = self._db.execute("SELECT folder FROM prompts WHERE id = ?", (prompt_id,)).fetchone()
        if row is None:
            raise KeyError(f"prompt {prompt_id!r} is not in {self.root}")
        folder = _safe_folder(row[0], f"prompt {prompt_id!r} in {self.root / LEDGER}")
        (self.root / IMAGES / folder).mkdir(exist_ok=True)
        return folder


def read_pairs(out_dir: str | Path, *, kept_only: bool = False) -> list[PairRecord]:
    """The committed pairs of the store in ``out_dir``, never one a person rejected; ``kept_only``: only accepted
    ones (a person accepted it, or nobody reviewed it and the filters kept it)."""
    # Readers never write: read-only (a job may be running on this store, or the store may be on read-only media).
    with Store(out_dir, readonly=True) as store:
        return store.pairs(kept_only=kept_only, include_rejected=False)


def _reviewer(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_REVIEWER_CHARS:
        raise ValueError(f"a reviewer is named by 1 to {MAX_REVIEWER_CHARS} characters, got {name!r}")
    return name.strip()


def _safe_folder(name: Any, where: str) -> str:
    """A prompt folder name from the ledger: one plain path component, as ``_folder_name`` makes them."""
    if not isinstance(name, str) or not _SAFE_ID.match(name) or name in (".", ".."):
        raise ValueError(f"{where} names the folder {name!r}, which is not a plain folder name inside the store")
    return name


def _loads(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        raise ValueError(f"{where} is not JSON text")
    return loads_json(text, where=where)


def _connect_readonly(path: Path) -> sqlite3.Connection:
    # Without a WAL file beside it, the ledger is complete in its main file and no writer is attached: it is opened
    # immutable, which reads without creating anything (a read-only connection in WAL mode would leave -shm/-wal
    # files in someone else's folder). With a WAL (a job is running, or was killed) mode=ro sees its commits; media
    # that cannot even hold the WAL's shared-memory file fall back to immutable.
    wal = path.with_name(path.name + "-wal").exists()
    for flags in ("mode=ro", "immutable=1") if wal else ("immutable=1",):
        db = sqlite3.connect(f"file:{quote(str(path))}?{flags}", uri=True, timeout=60.0, check_same_thread=False)
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return db
        except sqlite3.OperationalError:
            db.close()
        except sqlite3.DatabaseError as error:
            db.close()
            raise ValueError(f"{path} is not an artaug ledger ({error})") from None
    raise ValueError(f"cannot open {path} for reading (unreadable file or folder)")


def _connect(path: Path, lock_timeout: float = 60.0) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. WAL lets readers run beside the one writer;
    # synchronous=FULL makes each commit durable before it returns (the images were fsynced before it).
    try:
        db = sqlite3.connect(path, timeout=lock_timeout, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            raise StoreLocked(f"the store {path.parent} is locked by another process ({error})") from None
        raise
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{path} is not an artaug ledger ({error})") from None
    return db


def _write_png_durably(image: Image.Image, path: Path, info: dict[str, Any]) -> None:
    from PIL import PngImagePlugin

    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("artaug", json.dumps(info, default=str))
    atomic_write(path, lambda file: image.save(file, format="PNG", pnginfo=pnginfo))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) holds its pid but does no work any more.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)
