"""Prompt readers, pair filters, image similarity, exports and stats, on small synthetic images (no models)."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from artaug.synth.export import MANIFEST, SIDECAR, export
from artaug.synth.filters import FilterConfig, PairEvidence, evaluate, pixel_correlation, ssim
from artaug.synth.prompts import PromptRecord, default_seed, read_prompts, sample_prompts_path
from artaug.synth.stats import collect, plot
from artaug.synth.store import PairDraft, Store, read_pairs

# -- readers ----------------------------------------------------------------------------------------------------------


def write_prompts(tmp_path: Path, suffix: str) -> Path:
    rows = [{"prompt": "a red fox", "id": "fox", "seed": 7}, {"prompt": "a blue whale"}]
    path = tmp_path / f"prompts{suffix}"
    if suffix == ".txt":
        path.write_text("# comment\na red fox\n\n  a blue whale  \n")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif suffix == ".csv":
        path.write_text("id,prompt,seed\nfox,a red fox,7\n,a blue whale,\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": ["a red fox", "a blue whale"], "id": ["fox", None], "seed": [7, None]}), path)
    return path


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".parquet"])
def test_readers_give_the_same_records(tmp_path: Path, suffix: str) -> None:
    records = read_prompts(write_prompts(tmp_path, suffix))
    assert [r.prompt for r in records] == ["a red fox", "a blue whale"]
    whale = records[1]
    assert whale.id.startswith("p") and whale.seed == default_seed(whale.id)
    if suffix != ".txt":
        assert (records[0].id, records[0].seed) == ("fox", 7)
    # Ids and seeds depend on the record only: reading again gives the same ones.
    assert read_prompts(write_prompts(tmp_path, suffix)) == records


def test_duplicate_prompts_get_their_own_ids_and_duplicate_ids_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("a cat\na cat\na cat\n")
    ids = [r.id for r in read_prompts(path)]
    assert len(set(ids)) == 3 and ids[1] == ids[0] + "-2"
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n')
    with pytest.raises(ValueError, match="duplicate id 'x'"):
        read_prompts(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.jsonl", '{"prompt": "ok"}\nnot json\n', r"p.jsonl:2 is not valid JSON"),
        ("p.jsonl", '{"prompt": ""}\n', "empty or missing prompt"),
        ("p.csv", "title\nhello\n", "no prompt column"),
        ("p.csv", "prompt,seed\nhello,abc\n", "seed 'abc' is not an integer"),
        ("p.yaml", "prompt: x\n", "unsupported prompt file"),
    ],
)
def test_bad_prompt_files_say_where(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        read_prompts(tmp_path / name)


def test_sample_prompts_ship_with_the_package() -> None:
    records = read_prompts(sample_prompts_path())
    assert len(records) >= 30 and len({r.id for r in records}) == len(records)


# -- filters ----------------------------------------------------------------------------------------------------------

SOUND = {"before_problems": [], "after_problems": []}


@pytest.mark.parametrize(
    ("evidence", "config", "kept", "statuses"),
    [
        # every filter passes
        (
            dict(
                revised=True,
                before_scores={"aesthetic": 5, "alignment": 30},
                after_scores={"aesthetic": 5.5, "alignment": 29.5},
                similarity=0.8,
                **SOUND,
            ),
            {},
            True,
            ["pass"] * 5,
        ),  # fmt: skip
        # aesthetic gain below δ
        (
            dict(
                revised=True,
                before_scores={"aesthetic": 5, "alignment": 30},
                after_scores={"aesthetic": 5.1, "alignment": 30},
                similarity=0.8,
                **SOUND,
            ),
            {"min_aesthetic_gain": 0.2},
            False,
            ["pass", "pass", "fail", "pass", "pass"],
        ),  # fmt: skip
        # alignment dropped by more than ε
        (
            dict(
                revised=True,
                before_scores={"aesthetic": 5, "alignment": 30},
                after_scores={"aesthetic": 6, "alignment": 28},
                similarity=0.8,
                **SOUND,
            ),
            {},
            False,
            ["pass", "pass", "pass", "fail", "pass"],
        ),  # fmt: skip
        # a different scene
        (
            dict(
                revised=True,
                before_scores={"aesthetic": 5, "alignment": 30},
                after_scores={"aesthetic": 6, "alignment": 30},
                similarity=0.1,
                **SOUND,
            ),
            {},
            False,
            ["pass", "pass", "pass", "pass", "fail"],
        ),  # fmt: skip
        # broken after image; not revised
        (
            dict(
                revised=False,
                before_scores={},
                after_scores={},
                similarity=1.0,
                before_problems=[],
                after_problems=["near-black"],
            ),
            {},
            False,
            ["fail", "fail", "not_scored", "not_scored", "pass"],
        ),  # fmt: skip
        # no scores at all: not scored is recorded, and it drops the pair unless told otherwise
        (
            dict(revised=True, before_scores={}, after_scores={}, similarity=0.9, **SOUND),
            {},
            False,
            ["pass", "pass", "not_scored", "not_scored", "pass"],
        ),  # fmt: skip
        (
            dict(revised=True, before_scores={}, after_scores={}, similarity=0.9, **SOUND),
            {"keep_not_scored": True},
            True,
            ["pass", "pass", "not_scored", "not_scored", "pass"],
        ),  # fmt: skip
        # filters turned off
        (
            dict(revised=False, before_scores={}, after_scores={}, similarity=None),
            {
                "revised": False,
                "broken_gate": False,
                "min_aesthetic_gain": None,
                "max_alignment_drop": None,
                "min_similarity": None,
            },
            True,
            ["off"] * 5,
        ),  # fmt: skip
        # the broken gate did not run
        (
            dict(
                revised=True,
                before_scores={"aesthetic": 1, "alignment": 1},
                after_scores={"aesthetic": 2, "alignment": 1},
                similarity=0.9,
            ),
            {},
            False,
            ["pass", "not_scored", "pass", "pass", "pass"],
        ),  # fmt: skip
    ],
)
def test_filter_matrix(evidence: dict, config: dict, kept: bool, statuses: list[str]) -> None:
    got_kept, verdicts = evaluate(PairEvidence(**evidence), FilterConfig(**config))
    assert [v.status for v in verdicts] == statuses
    assert [v.name for v in verdicts] == ["revised", "not_broken", "aesthetic_gain", "alignment_kept", "same_scene"]
    assert got_kept is kept


def test_clip_similarity_needs_a_model() -> None:
    with pytest.raises(ValueError, match="needs clip_model"):
        FilterConfig(similarity="clip")


def scene(shift: int = 0, color: tuple[int, int, int] = (200, 60, 40), size: int = 96) -> Image.Image:
    im = Image.new("RGB", (size, size), (30, 90, 160))
    draw = ImageDraw.Draw(im)
    draw.rectangle((10 + shift, 20, 50 + shift, 70), fill=color)
    draw.ellipse((55, 10, 90, 45), fill=(240, 220, 80))
    return im


@pytest.mark.parametrize("measure", [ssim, pixel_correlation])
def test_similarity_orders_same_scene_above_other_scene(measure) -> None:
    base = scene()
    recoloured = scene(color=(210, 80, 50))  # a local improvement: same scene
    other = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    assert measure(base, base) == pytest.approx(1.0)
    assert 1.0 > measure(base, recoloured) > measure(base, scene(shift=30)) > measure(base, other)
    assert measure(base, other) < 0.3


def test_clip_similarity_on_a_tiny_clip(tiny_clip_dir: Path) -> None:
    from artaug.synth.filters import ClipSimilarity

    measure = ClipSimilarity(str(tiny_clip_dir))
    assert measure(scene(), scene()) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= measure(scene(), scene(shift=30)) < 1.0


# -- a store with synthetic pairs, exports and stats ------------------------------------------------------------------


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    config = FilterConfig(min_aesthetic_gain=0.1)
    with Store(root) as store:
        store.add_prompts([PromptRecord(f"p{i}", f"a scene number {i}", i) for i in range(5)])
        for record in store.claim(4):  # p4 stays pending
            i = record.seed
            before, after = scene(), scene(shift=i * 2, color=(200 + 10 * i, 60, 40))
            evidence = PairEvidence(
                revised=True,
                before_scores={"aesthetic": 5.0, "alignment": 30.0},
                after_scores={"aesthetic": 5.0 + 0.1 * i - 0.15, "alignment": 30.0 - 0.5 * (3 - i)},
                before_problems=[],
                after_problems=[],
                similarity=ssim(before, after),
            )
            kept, verdicts = evaluate(evidence, config)
            scores = {"aesthetic.delta": 0.1 * i - 0.15, "similarity": evidence.similarity}
            meta = {"thresholds": {"aesthetic.delta": 0.1, "similarity": 0.5}}
            draft = PairDraft(1, "r0", "r1", scores, kept, [v.to_dict() for v in verdicts], meta)
            store.commit(record.id, images={"r0": before, "r1": after}, pairs=[draft], trail={"i": i})
    return root


def test_stats_count_kept_and_dropped_by_reason(store_dir: Path, tmp_path: Path) -> None:
    stats = collect(store_dir)
    pairs = read_pairs(store_dir)
    kept = sum(p.kept for p in pairs)
    assert stats.counts["pairs"] == 4 and stats.counts["kept"] == kept and stats.counts["pending"] == 1
    expected = Counter(
        f"{v['name']}: {v['status'].replace('_', ' ')}"
        for p in pairs
        if not p.kept
        for v in p.meta["filters"]
        if v["status"] not in ("pass", "off")
    )
    assert stats.dropped_by_reason == expected
    # aesthetic deltas -0.15, -0.05, 0.05, 0.15: three below δ = 0.1; alignment drops 1.5, 1, 0.5, 0: one above ε = 1
    assert stats.dropped_by_reason["aesthetic_gain: fail"] == 3
    assert stats.dropped_by_reason["alignment_kept: fail"] == 1
    assert [p.kept for p in pairs] == [False, False, False, True]
    assert stats.thresholds == {"aesthetic.delta": 0.1, "similarity": 0.5}
    text = stats.format()
    assert "pairs 4: kept" in text and "aesthetic_gain: fail" in text and "pending 1" in text
    png = plot(stats, tmp_path / "stats.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 200


def test_export_imagefolder_loads_with_datasets(store_dir: Path, tmp_path: Path) -> None:
    import datasets

    out = export(store_dir, tmp_path / "hf", "imagefolder", kept_only=False)
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    pairs = read_pairs(store_dir)
    assert ds.num_rows == len(pairs) == 4
    rows = sorted(ds, key=lambda r: r["pair_id"])
    for row, pair in zip(rows, pairs, strict=True):
        assert row["pair_id"] == pair.id and row["prompt"] == pair.prompt
        assert np.array_equal(np.asarray(row["before"]), np.asarray(Image.open(pair.before)))
        assert np.array_equal(np.asarray(row["after"]), np.asarray(Image.open(pair.after)))
    assert_sidecar(out, pairs)


def test_export_kohya_pairs_by_stem(store_dir: Path, tmp_path: Path) -> None:
    out = export(store_dir, tmp_path / "kohya", "kohya")
    kept = read_pairs(store_dir, kept_only=True)
    assert kept, "the fixture must keep some pairs"
    for side in ("before", "after"):
        stems = sorted(p.stem for p in (out / side).glob("*.png"))
        assert stems == sorted(p.stem for p in (out / side).glob("*.txt")) == sorted(p.meta["stem"] for p in kept)
    for pair in kept:
        assert (out / "before" / f"{pair.meta['stem']}.txt").read_text().strip() == pair.prompt
        assert (out / "after" / f"{pair.meta['stem']}.png").read_bytes() == pair.after.read_bytes()
    assert_sidecar(out, kept)
    with pytest.raises(FileExistsError):
        export(store_dir, out, "kohya")


def test_export_webdataset_shards(store_dir: Path, tmp_path: Path) -> None:
    import webdataset as wds

    out = export(store_dir, tmp_path / "wds", "webdataset", kept_only=False, shard_size=3)
    shards = sorted(str(p) for p in out.glob("pairs-*.tar"))
    assert len(shards) == 2
    with tarfile.open(shards[0]) as tar:
        assert len(tar.getnames()) == 3 * 4
    samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("pil"))
    pairs = read_pairs(store_dir)
    assert [s["__key__"] for s in samples] == [p.meta["stem"] for p in pairs]
    for sample, pair in zip(samples, pairs, strict=True):
        assert sample["txt"] == pair.prompt and sample["json"]["pair_id"] == pair.id
        assert np.array_equal(np.asarray(sample["after.png"]), np.asarray(Image.open(pair.after)))
    assert_sidecar(out, pairs)


def assert_sidecar(out: Path, pairs: list) -> None:
    rows = [json.loads(line) for line in (out / SIDECAR).read_text().splitlines()]
    assert [r["pair_id"] for r in rows] == [p.id for p in pairs]
    for row, pair in zip(rows, pairs, strict=True):
        assert row["store_before"] == str(pair.before) and row["store_after"] == str(pair.after)
        assert row["meta"]["filters"] == pair.meta["filters"] and row["seed"] == pair.seed
        assert row["trail"] == {"i": pair.seed}  # the fixture's trail of that prompt
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["pairs"] == len(pairs)
