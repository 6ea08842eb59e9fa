"""The synthesis job: process_prompt on the tiny painter, workers sharing a store, the CLI, and kill safety."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from artaug.cli import main
from artaug.config import Config, load_config
from artaug.synth.filters import ssim
from artaug.synth.prompts import PromptRecord, read_prompts, sample_prompts_path
from artaug.synth.run import synthesize
from artaug.synth.store import PairDraft, Store, read_pairs
from artaug.synth.work import PairResult, SynthComponents, process_prompt
from artaug.tiny import TINY_SETTINGS
from helpers import AlwaysEditsCritic

TINY = {**TINY_SETTINGS}


@pytest.fixture(scope="module")
def tiny_components(tiny_painter_dir: Path, tiny_clip_dir: Path) -> SimpleNamespace:
    from artaug.judge import Judge, JudgeConfig
    from artaug.painter import FluxPainter

    # The real judge with the tiny CLIP's alignment scorer; no aesthetic head exists offline.
    judge = Judge.from_config(JudgeConfig(alignment=True, alignment_clip=str(tiny_clip_dir), device="cpu"))
    return SimpleNamespace(painter=FluxPainter.from_pretrained(str(tiny_painter_dir)), critic=AlwaysEditsCritic(),
                           judge=judge)  # fmt: skip


@pytest.mark.parametrize("all_rounds", [False, True])
def test_process_prompt_pairs_first_and_accepted_rounds(tiny_components: SimpleNamespace, all_rounds: bool) -> None:
    # strength 0.4: each round revises the previous painting (at 1.0 an identical second critique repaints the same)
    config = load_config(None, {**TINY, "loop.rounds": 2, "loop.strength": 0.4, "synth.all_rounds": all_rounds})
    components = SynthComponents(tiny_components, ssim)
    result = process_prompt(PromptRecord("fox", "a red fox in the snow", 5), components, config)
    assert result.error is None, result.error
    assert result.trail["first_request"]["seed"] == 5
    # The scripted edit is repainted and the judge (broken gate + alignment within ε) accepts both rounds.
    assert [r["index"] for r in result.trail["rounds"] if r["accepted"]] == [1, 2] and result.trail["best"] == 2
    links = [("r0", "r1"), ("r1", "r2")] if all_rounds else [("r0", "r2")]
    assert [(p.before, p.after) for p in result.pairs] == links
    scores = {0: result.trail["first_scores"], **{r["index"]: r["scores"] for r in result.trail["rounds"]}}
    for pair in result.pairs:
        before, after = int(pair.before[1:]), int(pair.after[1:])
        assert pair.scores["alignment.before"] == scores[before]["alignment"]
        assert pair.scores["alignment.delta"] == pytest.approx(
            scores[after]["alignment"] - scores[before]["alignment"]
        )
        a, b = (np.asarray(result.images[k], dtype=float) for k in (pair.before, pair.after))
        assert np.abs(a - b).max() > 0  # the revision repainted something ...
        assert pair.scores["similarity"] == pytest.approx(ssim(result.images[pair.before], result.images[pair.after]))
        verdicts = {v["name"]: v for v in pair.verdicts}
        assert verdicts["alignment_kept"]["status"] == "pass"
        assert verdicts["alignment_kept"]["value"] == pytest.approx(-pair.scores["alignment.delta"])
        # ... the aesthetic scorer is absent: recorded as not scored, and the pair is dropped for it, not passed
        assert verdicts["aesthetic_gain"]["status"] == "not_scored" and pair.kept is False
        assert pair.meta["dropped"] == ["aesthetic_gain: not scored"]
        assert pair.meta["edits"][0]["prompt"] == "a bright red square"
        assert pair.meta["thresholds"] == {"aesthetic.delta": 0.0, "alignment.delta": -1.0, "similarity": 0.5}
    for key in ("painting", "critique", "judging", "filtering", "total"):
        assert result.timings[key] >= 0
    assert result.timings["painting"] > 0 and result.timings["judging"] > 0
    assert result.timings["total"] >= sum(result.timings[k] for k in ("painting", "critique", "judging", "filtering"))


def test_process_prompt_reports_errors_instead_of_raising(tiny_components: SimpleNamespace) -> None:
    broken = SimpleNamespace(painter=None, critic=None, judge=tiny_components.judge)
    result = process_prompt(PromptRecord("x", "p", 1), SynthComponents(broken, ssim), load_config(None, TINY))
    assert result.error is not None and "AttributeError" in result.error and result.pairs == []


# -- workers sharing one store (fake work: the store's guarantees do not depend on the models) -----------------------


def fake_work(record: PromptRecord) -> PairResult:
    time.sleep(0.05)
    rng = np.random.default_rng(record.seed)
    before = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    after = Image.fromarray(255 - np.asarray(before))
    draft = PairDraft(1, "r0", "r1", {"x.delta": 1.0}, True, [])
    return PairResult(record, {"r0": before, "r1": after}, [draft], {"prompt": record.prompt}, {"total": 0.05})


def _worker(root: str) -> None:
    synthesize(None, root, Config().updated({"synth.lease_ttl": 30}), progress=False, work=fake_work)


def test_two_worker_processes_share_one_store(tmp_path: Path) -> None:
    prompts = [PromptRecord(f"p{i:02d}", f"prompt {i}", i) for i in range(16)]
    with Store(tmp_path) as store:
        store.add_prompts(prompts)
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_worker, args=(str(tmp_path),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store(tmp_path) as store:
        claims = store.claims()
        assert sorted(c[0] for c in claims) == [p.id for p in prompts]  # every prompt claimed exactly once
        assert len({c[1] for c in claims}) == 2  # by two different workers
        assert store.counts()["done"] == 16 and store.check() == []


def test_synthesize_resumes_and_counts(tmp_path: Path) -> None:
    prompts = [PromptRecord(f"p{i}", f"prompt {i}", i) for i in range(5)]
    first = synthesize(prompts, tmp_path, Config(), limit=2, progress=False, work=fake_work)
    assert (first.processed, first.counts["done"], first.counts["pending"]) == (2, 2, 3)
    second = synthesize(prompts, tmp_path, Config(), progress=False, work=fake_work)
    assert (second.processed, second.counts["done"]) == (3, 5)
    third = synthesize(prompts, tmp_path, Config(), progress=False, work=lambda r: pytest.fail("no work left"))
    assert third.processed == 0
    assert len(list((tmp_path / "runs").glob("*.toml"))) == 3  # the config of every invocation


def test_failed_prompts_are_recorded_and_retried(tmp_path: Path) -> None:
    prompts = [PromptRecord(f"p{i}", f"prompt {i}", i) for i in range(3)]

    def flaky(record: PromptRecord) -> PairResult:
        return PairResult(record, error="RuntimeError: boom") if record.id == "p1" else fake_work(record)

    summary = synthesize(prompts, tmp_path, Config(), progress=False, work=flaky)
    assert (summary.failed, summary.counts["failed"], summary.counts["done"]) == (1, 1, 2)
    summary = synthesize(None, tmp_path, Config(), retry_failed=True, progress=False, work=fake_work)
    assert (summary.processed, summary.counts["failed"], summary.counts["done"]) == (1, 0, 3)


def test_config_file_with_a_synth_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[loop]\nrounds = 1\n[synth]\nall_rounds = true\n[synth.filters]\nmin_similarity = 0.7\n")
    config = load_config(path, {"synth.filters.min_aesthetic_gain": "none", "synth.lease_ttl": "5"})
    assert config.loop.rounds == 1 and config.synth.all_rounds is True and config.synth.lease_ttl == 5.0
    assert config.synth.filters.min_similarity == 0.7 and config.synth.filters.min_aesthetic_gain is None
    with pytest.raises(ValueError, match="unknown setting synth.filters.nope"):
        load_config(None, {"synth.filters.nope": "1"})


# -- the CLI ----------------------------------------------------------------------------------------------------------


def test_cli_stats_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthesize([PromptRecord("a", "one", 1), PromptRecord("b", "two", 2)], tmp_path / "s", Config(),
               progress=False, work=fake_work)  # fmt: skip
    assert main(["synth", "stats", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "pairs 2: kept 2, dropped 0" in out and (tmp_path / "s" / "stats.png").is_file()
    assert main(["synth", "export", str(tmp_path / "s"), "--format", "kohya", "--to", str(tmp_path / "k")]) == 0
    assert sorted(p.name for p in (tmp_path / "k" / "after").iterdir()) == [
        "a_r1.png",
        "a_r1.txt",
        "b_r1.png",
        "b_r1.txt",
    ]
    assert main(["synth", "stats", str(tmp_path / "nothing")]) == 2
    with pytest.raises(SystemExit):
        main(["synth", "prompts.txt"])  # no --out


# -- kill safety: the real CLI on the tiny models, SIGKILLed at random moments ----------------------------------------


def _ledger_claims(root: Path) -> int:
    try:
        db = sqlite3.connect(root / "ledger.sqlite", timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_safety(tmp_path: Path, tiny_painter_dir: Path, tiny_critic_dir: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(r.prompt for r in read_prompts(sample_prompts_path())) + "\n")
    store = tmp_path / "store"
    command = [sys.executable, "-m", "artaug.cli", "synth", str(prompts), "--out", str(store), "--tiny"]
    command += [
        "--rounds",
        "1",
        "--no-progress",
        "-q",
        "--painter",
        str(tiny_painter_dir),
        "--critic",
        str(tiny_critic_dir),
        "--set",
        "painter.num_inference_steps=6",
    ]
    # One torch thread: 32 tiny prompts then take longer than the longest sleep, so the kills below land in every
    # phase of the work.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(1234)
    killed_mid_work = 0
    for attempt in range(10):
        before = _ledger_claims(store)
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if attempt % 2:
            time.sleep(rng.uniform(0.0, 8.0))  # anywhere, startup included (store open, sweep, registering prompts)
        else:
            # once it has claimed a prompt, anywhere in painting, critique, judging, image writing or the commit
            deadline = time.monotonic() + 60
            while _ledger_claims(store) == before and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.8))
        if child.poll() is None:
            killed_mid_work += _ledger_claims(store) > before
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert killed_mid_work >= 3, "the kills should interrupt real work"

    # Resume to the end, then: every prompt exactly once, every image opens, nothing half-written anywhere.
    assert (
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=300).returncode
        == 0
    )
    with Store(store) as s:
        results = s.results()
        assert sorted(r["prompt_id"] for r in results) == sorted(r.id for r in read_prompts(prompts))
        assert all(r["status"] == "done" for r in results)
        assert s.check() == []  # referenced images open; no stray or temporary file is left
        claims = Counter(c[0] for c in s.claims())
    assert sum(claims.values()) > len(results)  # some prompts were claimed again after a kill
    pairs = read_pairs(store)
    assert sorted(p.meta["prompt_id"] for p in pairs) == sorted(r["prompt_id"] for r in results)
    for pair in pairs:
        for path in (pair.before, pair.after):
            with Image.open(path) as im:
                im.load()
                assert im.size == (64, 64)
    assert not list((store / "images").rglob(".tmp-*"))
