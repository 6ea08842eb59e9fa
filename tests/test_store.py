"""The synthesis store: atomic commits, invisible crash leftovers, leases between workers, read_pairs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artaug.synth.prompts import PromptRecord
from artaug.synth.store import LEDGER, LeaseLost, PairDraft, Store, read_pairs


def records(n: int) -> list[PromptRecord]:
    return [PromptRecord(id=f"p{i:03d}", prompt=f"prompt number {i}", seed=100 + i) for i in range(n)]


def image(value: int, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(value)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def commit_simple(store: Store, record: PromptRecord, *, kept: bool = True) -> None:
    store.commit(
        record.id,
        images={"r0": image(record.seed), "r1": image(record.seed + 1)},
        pairs=[PairDraft(1, "r0", "r1", {"aesthetic.delta": 0.5}, kept, [{"name": "x", "status": "pass"}])],
        trail={"prompt": record.prompt},
        timings={"painting": 1.0},
    )


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "images").rglob("*") if p.is_file()}


def test_commit_then_read_pairs(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        assert store.add_prompts(records(3)) == 3
        assert store.add_prompts(records(3)) == 0  # idempotent
        for record in store.claim(2):
            commit_simple(store, record, kept=record.id == "p000")
        assert store.counts() | {"leased": 0} == {
            "prompts": 3, "done": 2, "failed": 0, "pending": 1, "leased": 0, "pairs": 2, "kept": 1,
        }  # fmt: skip
        assert store.check() == []
    pairs = read_pairs(tmp_path)
    assert [p.id for p in pairs] == ["p000#1", "p001#1"]
    first = pairs[0]
    assert (first.prompt, first.seed, first.kept) == ("prompt number 0", 100, True)
    assert first.scores == {"aesthetic.delta": 0.5}
    assert first.meta["round"] == 1 and first.meta["prompt_id"] == "p000" and first.meta["filters"][0]["name"] == "x"
    assert np.array_equal(np.asarray(Image.open(first.before)), np.asarray(image(100)))
    assert np.array_equal(np.asarray(Image.open(first.after)), np.asarray(image(101)))
    assert [p.id for p in read_pairs(tmp_path, kept_only=True)] == ["p000#1"]


def test_read_pairs_refuses_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an artaug synth store"):
        read_pairs(tmp_path)


def test_same_id_with_another_prompt_is_an_error(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.add_prompts([PromptRecord("a", "one prompt", 1)])
        with pytest.raises(ValueError, match="already in"):
            store.add_prompts([PromptRecord("a", "another prompt", 1)])


def test_unsafe_ids_get_a_hashed_folder(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        record = PromptRecord("../../etc/passwd x", "p", 1)
        store.add_prompts([record])
        [claimed] = store.claim(1)
        commit_simple(store, claimed)
        pair = store.pairs()[0]
    assert pair.meta["prompt_id"] == record.id
    assert pair.before.parent.parent == tmp_path.resolve() / "images" and pair.before.parent.name.startswith("h")


def test_two_workers_never_hold_the_same_prompt(tmp_path: Path) -> None:
    a, b = Store(tmp_path, worker="a"), Store(tmp_path, worker="b")
    a.add_prompts(records(5))
    got_a = [r.id for r in a.claim(3)]
    got_b = [r.id for r in b.claim(3)]
    assert got_a == ["p000", "p001", "p002"] and got_b == ["p003", "p004"]
    assert b.claim(3) == []
    a.close(), b.close()


def test_an_expired_lease_is_taken_over_and_the_loser_cannot_commit(tmp_path: Path) -> None:
    slow = Store(tmp_path, worker="slow", lease_ttl=0.2)
    fast = Store(tmp_path, worker="fast", lease_ttl=60)
    slow.add_prompts(records(1))
    [record] = slow.claim(1)
    assert fast.claim(1) == []
    time.sleep(0.3)
    assert [r.id for r in fast.claim(1)] == ["p000"]
    with pytest.raises(LeaseLost, match="leased by fast"):
        commit_simple(slow, record)
    commit_simple(fast, record)
    with pytest.raises(LeaseLost, match="already committed"):
        commit_simple(slow, record)
    assert len(fast.pairs()) == 1 and fast.check() == [] and len(files_under(tmp_path)) == 2  # the loser wrote nothing
    # A file the ledger does not name in a committed prompt's folder (a zombie's late rename) is stray: invisible to
    # readers, kept by them, removed by the sweep of the next worker that opens the store.
    image(9).save(tmp_path / "images" / "p000" / "zombie-r1.png")
    assert fast.check() == ["stray file images/p000/zombie-r1.png (no ledger row names it)"]
    slow.close(), fast.close()
    assert len(read_pairs(tmp_path)) == 1 and len(files_under(tmp_path)) == 3
    with Store(tmp_path) as store:
        assert store.check() == []
        assert len(files_under(tmp_path)) == 2


def test_keep_alive_renews_leases(tmp_path: Path) -> None:
    with Store(tmp_path, worker="w", lease_ttl=0.3) as store, Store(tmp_path, worker="other") as other:
        store.add_prompts(records(1))
        store.claim(1)
        with store.keep_alive(every=0.05):
            time.sleep(0.6)
            assert other.claim(1) == []
        time.sleep(0.4)
        assert len(other.claim(1)) == 1


def test_a_killed_workers_lease_is_free_at_once(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.add_prompts(records(2))
    script = textwrap.dedent(
        f"""
        import sys, time
        from artaug.synth.store import Store
        store = Store({str(tmp_path)!r}, lease_ttl=3600)
        print(store.claim(1)[0].id, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "p000"
        with Store(tmp_path, lease_ttl=3600) as store:
            assert [r.id for r in store.claim(2)] == ["p001"]  # p000 is leased by a live process
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with Store(tmp_path, lease_ttl=3600) as store:
            assert [r.id for r in store.claim(1)] == ["p000"]  # ... which is now dead: no waiting for the expiry
    finally:
        child.kill()


def test_leftovers_of_a_crashed_commit_are_invisible_and_cleared_on_claim(tmp_path: Path) -> None:
    with Store(tmp_path, worker="crashed") as store:
        store.add_prompts(records(1))
        [record] = store.claim(1)
        folder = tmp_path / "images" / "p000"
        folder.mkdir(exist_ok=True)
        (folder / ".tmp-abc-r0.png").write_bytes(b"\x89PNG half")  # died while writing
        image(1).save(folder / "abc-r0.png")  # died after the rename, before the transaction
        assert store.pairs() == [] and store.counts()["done"] == 0
        assert sorted(store.check()) == [
            "stray file images/p000/.tmp-abc-r0.png (no ledger row names it)",
            "stray file images/p000/abc-r0.png (no ledger row names it)",
        ]
        store.release(record.id)
    with Store(tmp_path, worker="next") as store:
        [again] = store.claim(1)
        assert again.id == "p000" and files_under(tmp_path) == set()
        commit_simple(store, again)
        assert store.check() == []


def test_failures_are_recorded_once_and_can_be_retried(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.add_prompts(records(2))
        for r in store.claim(2):
            store.commit_failure(r.id, "RuntimeError: boom")
        assert store.counts()["failed"] == 2 and store.claim(1) == []
        assert [r["error"] for r in store.results()] == ["RuntimeError: boom"] * 2
        assert store.retry_failed() == 2
        assert len(store.claim(5)) == 2


def test_commit_is_one_transaction(tmp_path: Path) -> None:
    # A pair that names an image not given fails before the transaction: nothing of the prompt becomes visible.
    with Store(tmp_path) as store:
        store.add_prompts(records(1))
        [record] = store.claim(1)
        with pytest.raises(ValueError, match="names image 'r9'"):
            store.commit(record.id, images={"r0": image(0)}, pairs=[PairDraft(1, "r0", "r9", {}, True, [])], trail={})
        assert store.counts()["done"] == 0 and store.pairs() == []
    db = sqlite3.connect(tmp_path / LEDGER)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0
