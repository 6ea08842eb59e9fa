"""``artaug eval`` end to end on the tiny painter: four conditions side by side, resuming after an interruption and
after SIGKILL with nothing lost or scored twice, scoring what exists (run folders, a synth store, GenEval's sample
folders, an evaluation in place), the self-contained report, the prompt sets, and bad input stopped at the door."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artaug.cli import main
from artaug.config import load_config
from artaug.eval import EvalCondition, Result, evaluate, load_prompt_set, score_existing
from artaug.eval.generate import Painters
from artaug.synth.prompts import PromptRecord
from artaug.tiny import TINY_SETTINGS
from helpers import AlwaysEditsCritic

PROMPTS = [PromptRecord("fox", "a red fox <b>in</b> the snow", 5), PromptRecord("cat", "a cat on a couch", 6),
           PromptRecord("sea", "a boat at sea", 7)]  # fmt: skip
CONFIG = load_config(None, {**TINY_SETTINGS, "loop.rounds": 1, "eval.seeds": 2, "eval.resamples": 200,
                            "eval.progress": False})  # fmt: skip


class Brightness:
    """A scripted metric: mean brightness in [0, 1]; counts every image it is asked to score."""

    name = "brightness"

    def __init__(self, stop_after: int | None = None) -> None:
        self.seen, self.stop_after = 0, stop_after

    def score(self, samples):
        if self.stop_after is not None and self.seen >= self.stop_after:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while scoring
        self.seen += len(samples)
        return [Result(float(np.asarray(s.image.convert("L")).mean() / 255)) for s in samples]


class StoppingPainter:
    """The tiny painter, interrupted (as by Ctrl-C) after ``stop_after`` paintings."""

    def __init__(self, painter, stop_after: int | None = None) -> None:
        self.painter, self.stop_after, self.count = painter, stop_after, 0

    def __getattr__(self, name):
        return getattr(self.painter, name)

    def paint(self, request, init=None, progress=None):
        if self.stop_after is not None and self.count >= self.stop_after:
            raise KeyboardInterrupt
        self.count += 1
        return self.painter.paint(request, init=init, progress=progress)


@pytest.fixture(scope="module")
def painter(tiny_painter_dir):
    from artaug.painter import FluxPainter

    return FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory) -> str:
    from artaug.train.lora_io import save_lora

    g = torch.Generator().manual_seed(0)
    modules = {f"transformer_blocks.0.attn.to_{x}": (32, 32) for x in "qkv"}
    lora = {m: (torch.randn(4, i, generator=g), torch.randn(o, 4, generator=g), 1.0) for m, (i, o) in modules.items()}
    return str(save_lora(tmp_path_factory.mktemp("lora"), lora))


def painters_of(painter) -> Painters:
    from artaug.judge import Judge

    return Painters(lambda config: painter, lambda config: (AlwaysEditsCritic(), Judge()))


def conditions(lora: str) -> list[EvalCondition]:
    return [EvalCondition("base"), EvalCondition("lora", (lora,)), EvalCondition("loop", loop=True),
            EvalCondition("lora+loop", (lora,), True)]  # fmt: skip


def test_four_conditions_side_by_side(painter, lora_file, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(PROMPTS, out, CONFIG, conditions=conditions(lora_file), painters=painters_of(painter),
                      metrics={"brightness": Brightness()})  # fmt: skip

    # 1. Every condition x prompt x seed painted once and scored once; the files a person opens are there.
    assert result.painted == 4 * 3 * 2 and result.scored == 24
    lines = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(lines) == 24 and len({(x["condition"], x["prompt_id"], x["seed"]) for x in lines}) == 24
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conditions"] == ["base", "lora", "loop", "lora+loop"] and summary["reference"] == "base"
    base = summary["metrics"]["brightness"]["base"]
    assert base["difference"] == {"mean": 0.0, "low": 0.0, "high": 0.0, "n": 3} and base["n"] == 3

    # 2. The cost of a prompt: one painting of 2 steps; the loop adds one revision and one VLM call.
    cost = summary["cost"]
    assert cost["base"]["transformer_passes_per_prompt"] == 2 and cost["base"]["vlm_calls_per_prompt"] == 0
    assert cost["loop"]["transformer_passes_per_prompt"] > 2 and cost["loop"]["vlm_calls_per_prompt"] == 1
    assert cost["lora"]["seconds_per_prompt"] > 0

    # 3. The LoRA changes the paintings, and the painter is back to its base afterwards (unfused).
    image = lambda c, p="fox", s=5: np.asarray(Image.open(out / f"images/{c}/{p}-s{s}.png"), dtype=float)  # noqa: E731
    assert np.abs(image("lora") - image("base")).max() > 0
    from artaug.loop import first_request

    again = np.asarray(painter.paint(first_request(PROMPTS[0].prompt, CONFIG.painter, 5)).image, dtype=float)
    assert np.abs(again - image("base")).max() == 0

    # 4. The report opens offline: nothing is fetched, the images are embedded, text from elsewhere is escaped.
    report = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", report)
    assert report.count("data:image/jpeg;base64,") == 12 and "&lt;b&gt;in&lt;/b&gt;" in report
    assert "<svg" in report and all(c in report for c in ("lora+loop", "transformer passes"))

    # 5. Running it again resumes a finished evaluation: nothing painted or scored, the same summary.
    again = evaluate(PROMPTS, out, CONFIG, conditions=conditions(lora_file), painters=painters_of(painter),
                     metrics={"brightness": Brightness()})  # fmt: skip
    assert (again.painted, again.scored) == (0, 0) and again.summary == result.summary


def test_an_interrupted_evaluation_resumes_with_nothing_lost_or_done_twice(painter, tmp_path):
    out, conds = (
        tmp_path / "eval",
        [EvalCondition("base"), EvalCondition("b", overrides={"painter.guidance_scale": "1.0"})],
    )

    # 1. Ctrl-C after 5 of the 12 paintings: those 5 are committed.
    with pytest.raises(KeyboardInterrupt):
        evaluate(PROMPTS, out, CONFIG, conditions=conds, painters=painters_of(StoppingPainter(painter, 5)),
                 metrics={"brightness": Brightness()})  # fmt: skip
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("images/*/*.png")}
    assert len(first) == 5

    # 2. Ctrl-C while scoring, after the first batch of 8 was committed. The rest was painted with one painter load:
    #    another guidance scale is a painting setting, not another painter.
    loads, painters = [], painters_of(painter)
    painters.load_painter = lambda settings: loads.append(settings) or painter
    with pytest.raises(KeyboardInterrupt):
        evaluate(PROMPTS, out, CONFIG.updated({"eval.batch_size": 8}), conditions=conds, painters=painters,
                 metrics={"brightness": Brightness(stop_after=8)})  # fmt: skip
    assert len(loads) == 1
    assert all(out.joinpath("images").rglob(name) for name in first)

    # 3. The resumed run paints and scores only what is missing; the first paintings were not made again.
    metric = Brightness()
    result = evaluate(
        PROMPTS, out, CONFIG, conditions=conds, painters=painters_of(painter), metrics={"brightness": metric}
    )
    assert result.painted == 0 and metric.seen == 4 and result.scored == 4
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("images/*/*.png") if p.name in first} == first
    with sqlite3.connect(out / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT condition || prompt_id || seed) FROM items").fetchone() == (
            12,
            12,
        )
        assert db.execute("SELECT COUNT(*) FROM scores").fetchone() == (12,)


def test_a_killed_evaluation_resumes_with_nothing_lost_or_scored_twice(tmp_path):
    """SIGKILL in the middle of painting, for real: the command run again finishes the job."""
    out = tmp_path / "eval"
    command = [sys.executable, "-m", "artaug.cli", "eval", "--tiny", "--prompts", "sample", "--limit", "6",
               "--seeds", "4", "--out", str(out), "--no-progress", "--metrics", "clipscore"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    painted, deadline = 0, time.monotonic() + 120
    while painted < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        painted = _count(out, "items")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 3 <= painted < 24, "the kill should land in the middle of painting"

    assert main(command[3:]) == 0
    with sqlite3.connect(out / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT condition || prompt_id || seed) FROM items").fetchone() == (
            24,
            24,
        )
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT prompt_id || seed) FROM scores").fetchone() == (24, 24)
    assert len(list(out.glob("images/base/*.png"))) == 24 and not list(out.glob("images/base/.*"))


def _count(out: Path, table: str) -> int:
    try:
        with sqlite3.connect(f"file:{out / 'ledger.sqlite'}?mode=ro", uri=True, timeout=1) as db:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return 0


# --- scoring what exists -------------------------------------------------------------------------------------------


def test_score_run_folders_and_an_evaluation_in_place(painter, tmp_path):
    from artaug.judge import Judge
    from artaug.loop.components import Components
    from artaug.loop.paint import paint

    components = Components(painter, AlwaysEditsCritic(), Judge())
    for record in PROMPTS[:2]:
        paint(
            record.prompt, config=CONFIG, seed=record.seed, output=tmp_path / "runs" / record.id, components=components
        )
    result = score_existing(tmp_path / "runs", tmp_path / "scored", CONFIG, metrics={"brightness": Brightness()})
    summary = result.summary
    assert summary["conditions"] == ["first", "final"] and summary["prompts"] == 2 and result.scored == 4
    assert summary["cost"]["first"]["transformer_passes_per_prompt"] == 2
    assert summary["cost"]["final"]["vlm_calls_per_prompt"] == 1

    # The scored folder is an evaluation itself: another metric is added in place, nothing is scored twice.
    metric = Brightness()
    again = score_existing(tmp_path / "scored", None, CONFIG, metrics={"brightness": Brightness(), "other": metric})
    assert again.scored == 4 and metric.seen == 4 and set(again.summary["metrics"]) == {"brightness", "other"}


def test_score_a_synth_store_as_before_and_after(tmp_path):
    from artaug.synth.store import PairDraft, Store
    from artaug.types import Cost, PaintRequest, Trail

    with Store(tmp_path / "store") as store:
        store.add_prompts(PROMPTS)
        for record in store.claim(3):
            trail = Trail(record.prompt, PaintRequest(prompt=record.prompt, seed=record.seed, height=16, width=16),
                          first_cost=Cost(4, 4, 1.0))  # fmt: skip
            images = {"r0": Image.new("RGB", (16, 16), (40, 40, 40)), "r1": Image.new("RGB", (16, 16), (90, 90, 90))}
            store.commit(record.id, images=images, trail=trail.to_dict(),
                         pairs=[PairDraft(1, "r0", "r1", {}, True, [])])  # fmt: skip
    result = score_existing(tmp_path / "store", tmp_path / "out", CONFIG, metrics={"brightness": Brightness()})
    after = result.summary["metrics"]["brightness"]["after"]
    assert result.summary["conditions"] == ["before", "after"] and after["win_rate"] == 1.0
    assert after["difference"]["mean"] == pytest.approx(50 / 255)


def test_score_genevals_sample_folders(tmp_path):
    for index, prompt in enumerate(["a photo of a cat", "a photo of two dogs"]):
        folder = tmp_path / "geneval" / f"{index:05d}"
        (folder / "samples").mkdir(parents=True)
        meta = {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": prompt}
        (folder / "metadata.jsonl").write_text(json.dumps(meta))
        for k in range(2):
            Image.new("RGB", (8, 8), (k * 100, 0, 0)).save(folder / "samples" / f"{k:04d}.png")
    result = score_existing(tmp_path / "geneval", tmp_path / "out", CONFIG, metrics={"brightness": Brightness()})
    assert result.scored == 4 and result.summary["prompts"] == 2
    assert set(result.summary["metrics"]["brightness"]["images"]["categories"]) == {"single_object", "overall"}


# --- prompt sets ----------------------------------------------------------------------------------------------------


def test_prompt_sets_from_files_datasets_and_names(tmp_path):
    import datasets

    (tmp_path / "p.csv").write_text("caption,seed\na fox,3\na cat,4\n")
    assert [(r.prompt, r.seed) for r in load_prompt_set(tmp_path / "p.csv")] == [("a fox", 3), ("a cat", 4)]
    datasets.Dataset.from_dict({"Prompt": ["a fox", "a cat"], "Category": ["animals", "animals"]}).save_to_disk(
        str(tmp_path / "ds")
    )
    records = load_prompt_set(f"datasets:{tmp_path / 'ds'}::Prompt")
    assert [r.prompt for r in records] == ["a fox", "a cat"] and records[0].id == load_prompt_set(tmp_path / "p.csv")[
        0
    ].id
    world = load_prompt_set("world")
    assert len(world) == 48 and {r.meta["tag"] for r in world} >= {"counting", "position", "color_attr"}
    assert len(load_prompt_set("sample")) >= 5
    with pytest.raises(FileNotFoundError, match="does not ship with artaug"):
        load_prompt_set("geneval")
    with pytest.raises(ValueError, match="no column"):
        load_prompt_set(f"datasets:{tmp_path / 'ds'}::Caption")


# --- the command line ----------------------------------------------------------------------------------------------


def test_help_lists_the_eval_settings(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and "--metrics" in text and "default: clipscore,aesthetic" in text


def test_eval_sets_lists_licences(capsys):
    assert main(["eval", "sets"]) == 0
    text = capsys.readouterr().out
    assert "licence: Apache-2.0" in text and "geneval" in text and "not bundled" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--condition", "x=lora"], "is not base, loop, lora=FILE"),
        (["--condition", "a b=base"], "condition name"),
        (["--lora", "missing.safetensors"], "missing.safetensors does not exist"),
        (["--metrics", "imagereward"], "eval.metrics"),
        (["--set", "eval.geneval_detections=none.jsonl", "--metrics", "geneval"], "none.jsonl does not exist"),
        (["--set", "loop.rounds=0", "--condition", "a=loop"], "loop.rounds is 0"),
    ],
)
def test_bad_input_is_one_error_line_and_leaves_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code = main(["eval", "--prompts", "sample", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_prompt_set_errors_say_what_to_do(tmp_path, capsys):
    assert main(["eval", "--prompts", "drawbench", "--out", str(tmp_path / "o")]) == 2
    assert "download the sheet as CSV" in capsys.readouterr().err
    assert main(["eval", "score", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "holds no evaluation" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("not an evaluation")
    assert main(["eval", "--prompts", "sample", "--out", str(tmp_path / "junk")]) == 2
    assert "holds files but no artaug evaluation" in capsys.readouterr().err
