"""The store's review verdicts (schema 2) and pairs a person made: committed through the ledger, respected by
``read_pairs``, the exports and ``artaug train``; schema-1 stores migrate on open and stay readable read-only."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from artaug.cli import main
from artaug.synth.export import SIDECAR, export
from artaug.synth.prompts import PromptRecord
from artaug.synth.store import LEDGER, SCHEMA_VERSION, PairDraft, Store, read_pairs
from test_store import commit_simple, image, records


def make_store(root: Path, kept: tuple[bool, ...] = (True, True, False)) -> None:
    with Store(root) as store:
        store.add_prompts(records(len(kept)))
        for record, keep in zip(store.claim(len(kept)), kept, strict=True):
            commit_simple(store, record, kept=keep)


def ids(pairs) -> list[str]:
    return [p.id for p in pairs]


def test_review_verdicts_decide_what_is_accepted(tmp_path: Path) -> None:
    make_store(tmp_path)
    with Store(tmp_path) as store:
        store.review("p000#1", "rejected", "ana")  # kept by the filters, rejected by a person
        store.review("p002#1", "accepted", "ana")  # dropped by the filters, accepted by a person
        store.review("p001#1", "rejected", "ana")
        store.review("p001#1", "accepted", "bo")  # the latest verdict counts
        assert store.review_counts() == {"accepted": 2, "rejected": 1}
        with pytest.raises(KeyError, match="not in"):
            store.review("nope#1", "accepted", "ana")
        with pytest.raises(ValueError, match="verdict"):
            store.review("p000#1", "maybe", "ana")
        every = store.pairs()
    assert ids(every) == ["p000#1", "p001#1", "p002#1"]
    assert [p.accepted for p in every] == [False, True, True]
    assert every[1].review["reviewer"] == "bo" and every[1].meta["review"]["verdict"] == "accepted"
    assert ids(read_pairs(tmp_path, kept_only=True)) == ["p001#1", "p002#1"]
    assert ids(read_pairs(tmp_path)) == ["p001#1", "p002#1"]  # a rejected pair never comes out, even "all"


def test_exports_leave_rejected_pairs_out(tmp_path: Path) -> None:
    make_store(tmp_path / "store")
    with Store(tmp_path / "store") as store:
        store.review("p000#1", "rejected", "ana")
    out = export(tmp_path / "store", tmp_path / "kohya", "kohya", kept_only=False)
    rows = [json.loads(line) for line in (out / SIDECAR).read_text().splitlines()]
    assert [r["pair_id"] for r in rows] == ["p001#1", "p002#1"]
    assert [r["accepted"] for r in rows] == [True, False] and rows[0]["provenance"] == "synth"
    assert sorted(p.name for p in (out / "before").glob("*.png")) == ["p001_r1.png", "p002_r1.png"]
    kept = export(tmp_path / "store", tmp_path / "hf", "imagefolder")
    assert [json.loads(line)["pair_id"] for line in (kept / SIDECAR).read_text().splitlines()] == ["p001#1"]


def test_train_refuses_a_store_whose_pairs_were_all_rejected(tmp_path: Path, capsys) -> None:
    make_store(tmp_path / "store", kept=(True,))
    with Store(tmp_path / "store") as store:
        store.review("p000#1", "rejected", "ana")
    code = main(["train", str(tmp_path / "store"), "--painter", "x/y", "--out", str(tmp_path / "lora"), "--all-pairs"])
    assert code == 2 and "no pairs to train on" in capsys.readouterr().err
    assert not (tmp_path / "lora").exists()


def test_a_person_made_pair_is_committed_accepted_with_provenance_person(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.add_prompts([PromptRecord(id="studio-a-r1", prompt="a fox", seed=3)])
        draft = PairDraft(1, "r0", "r1", {}, False, [], {"edits": []}, reviewer="person")
        store.commit("studio-a-r1", images={"r0": image(1), "r1": image(2)}, pairs=[draft], trail={"x": 1})
        with pytest.raises(ValueError, match="reviewer"):
            bad = PairDraft(1, "r0", "r1", {}, False, [], {}, reviewer=" " * 3)
            store.add_prompts([PromptRecord(id="b", prompt="b", seed=0)])
            store.commit("b", images={"r0": image(1), "r1": image(2)}, pairs=[bad], trail=None)
        assert store.check() == []  # the refused commit wrote no image
    (pair,) = read_pairs(tmp_path, kept_only=True)
    assert pair.provenance == "person" and pair.review["reviewer"] == "person" and pair.accepted and not pair.kept


def test_a_schema_1_store_is_read_as_is_and_migrated_on_open_for_writing(tmp_path: Path) -> None:
    make_store(tmp_path)
    db = sqlite3.connect(tmp_path / LEDGER)
    db.execute("DROP TABLE reviews")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.commit()
    db.close()
    assert ids(read_pairs(tmp_path)) == ["p000#1", "p001#1", "p002#1"]  # read-only: no table needed, none created
    assert "reviews" not in _tables(tmp_path)
    with Store(tmp_path) as store:
        store.review("p000#1", "rejected", "ana")
    assert _schema(tmp_path) == str(SCHEMA_VERSION) == "2"
    assert ids(read_pairs(tmp_path)) == ["p001#1", "p002#1"]


def test_a_store_of_an_unknown_schema_is_refused(tmp_path: Path) -> None:
    make_store(tmp_path)
    db = sqlite3.connect(tmp_path / LEDGER)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="schema '99'"):
        read_pairs(tmp_path)


def test_a_tampered_review_row_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    make_store(tmp_path)
    db = sqlite3.connect(tmp_path / LEDGER)
    db.execute("INSERT INTO reviews (pair_id, verdict, reviewer, at) VALUES ('p000#1', 'kept!', 'x', 0)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="malformed"):
        read_pairs(tmp_path)


def _tables(root: Path) -> set[str]:
    db = sqlite3.connect(f"file:{root / LEDGER}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def _schema(root: Path) -> str:
    db = sqlite3.connect(f"file:{root / LEDGER}?mode=ro", uri=True)
    try:
        return db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    finally:
        db.close()
