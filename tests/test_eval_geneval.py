"""GenEval's scoring rules on synthetic detections: counting, colour, position, attribute binding, thresholds, and
the metric reading the detector job's file inside a whole ``eval score`` run."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from artaug.cli import main
from artaug.config import load_config
from artaug.eval import Sample, score_existing, score_safely
from artaug.eval.geneval import (
    Detected,
    GenEvalMetric,
    check_metadata,
    evaluate,
    kept_detections,
    read_detections,
    relative_position,
)
from artaug.pngmeta import save_png
from artaug.synth.prompts import read_prompts

# Lines in the format of GenEval's prompts/evaluation_metadata.jsonl.
COUNT3 = {"tag": "counting", "prompt": "a photo of three apples",
          "include": [{"class": "apple", "count": 3}], "exclude": [{"class": "apple", "count": 4}]}  # fmt: skip
RED_CAR = {
    "tag": "colors",
    "prompt": "a photo of a red car",
    "include": [{"class": "car", "count": 1, "color": "red"}],
}
DOG_RIGHT_OF_CAT = {
    "tag": "position",
    "prompt": "a photo of a dog right of a cat",
    "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
}
BINDING = {
    "tag": "color_attr",
    "prompt": "a photo of a red car and a blue bench",
    "include": [{"class": "car", "count": 1, "color": "red"}, {"class": "bench", "count": 1, "color": "blue"}],
}


def box(x: float, y: float, size: float = 20, score: float = 0.95, color: str | None = None) -> Detected:
    return Detected((x, y, x + size, y + size), score, color)


def verdict(metadata: dict, objects: dict[str, list[Detected]]) -> bool:
    return evaluate(kept_detections(objects, metadata["tag"]), check_metadata(metadata))[0]


@pytest.mark.parametrize(
    ("found", "correct"),
    [(3, True), (2, False), (4, False)],  # exactly three: two is too few, four trips the exclude clause
)
def test_counting(found, correct):
    assert verdict(COUNT3, {"apple": [box(30 * i, 0) for i in range(found)]}) is correct


def test_counting_uses_the_strict_threshold():
    objects = {"apple": [box(0, 0), box(30, 0), box(60, 0, score=0.5)]}  # 0.5 passes 0.3 but not counting's 0.9
    assert not verdict(COUNT3, objects)
    assert len(kept_detections(objects, "colors")["apple"]) == 3


def test_colour_is_judged_on_the_most_confident_detections():
    assert verdict(RED_CAR, {"car": [box(0, 0, color="red")]})
    assert not verdict(RED_CAR, {"car": [box(0, 0, color="blue")]})
    # The most confident car decides, however many red ones the detector also saw.
    assert not verdict(RED_CAR, {"car": [box(0, 0, score=0.99, color="green"), box(40, 0, score=0.6, color="red")]})


def test_position_follows_genevals_relative_position():
    cat = box(10, 40)
    assert verdict(DOG_RIGHT_OF_CAT, {"cat": [cat], "dog": [box(70, 40)]})
    assert not verdict(DOG_RIGHT_OF_CAT, {"cat": [cat], "dog": [box(10, 90)]})  # below, not right of
    assert not verdict(DOG_RIGHT_OF_CAT, {"dog": [box(70, 40)]})  # no cat: no target
    assert relative_position(box(0, 0), box(0, 0)) == set()  # overlapping boxes stand in no relation
    assert relative_position(box(100, 100), box(0, 0)) == {"right of", "below"}


def test_attribute_binding_needs_each_colour_on_its_own_object():
    assert verdict(BINDING, {"car": [box(0, 0, color="red")], "bench": [box(50, 0, color="blue")]})
    assert not verdict(BINDING, {"car": [box(0, 0, color="blue")], "bench": [box(50, 0, color="red")]})


@pytest.mark.parametrize(
    "bad",
    [{"prompt": "x"}, {"tag": "colors", "include": [{"class": "car"}]},
     {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "teal"}]},
     {"tag": "position", "include": [{"class": "dog", "count": 1, "position": ["left of", 0]}]}],
)  # fmt: skip
def test_malformed_metadata_is_refused(bad):
    with pytest.raises(ValueError):
        check_metadata(bad)


def test_detections_file_is_checked_line_by_line(tmp_path):
    path = tmp_path / "detections.jsonl"
    path.write_text(json.dumps({"image": "a.png", "objects": [{"class": "car", "box": [0, 0, 1], "score": 1}]}))
    with pytest.raises(ValueError, match=r"detections.jsonl:1"):
        read_detections(path)
    with pytest.raises(FileNotFoundError, match="detector job"):
        read_detections(tmp_path / "missing.jsonl")


def test_the_metric_needs_a_line_per_image_and_colours_when_asked(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"image": "x.png", "objects": [{"class": "car", "box": [0, 0, 9, 9], "score": 0.9}]}))
    metric = GenEvalMetric.from_file(path)
    image = Image.new("RGB", (8, 8))
    out = score_safely(metric, [Sample(image, "p", RED_CAR, "x.png"), Sample(image, "p", RED_CAR, "y.png")])
    assert "no 'color'" in out[0] and "no line for image 'y.png'" in out[1]


def test_geneval_through_eval_score(tmp_path):
    """Prompts in GenEval's metadata format, images with their prompt in their metadata, detections from a file: the
    summary has the per-tag accuracies and GenEval's overall (their mean)."""
    source = tmp_path / "images"
    cases = [(COUNT3, {"apple": [[30 * i, 0, 30 * i + 20, 20, 0.95] for i in range(3)]}),
             (RED_CAR, {"car": [[0, 0, 20, 20, 0.95, "blue"]]}),
             (DOG_RIGHT_OF_CAT, {"cat": [[10, 40, 30, 60, 0.9]], "dog": [[70, 40, 90, 60, 0.9]]})]  # fmt: skip
    lines = []
    for i, (metadata, objects) in enumerate(cases):
        name = f"{i:05d}.png"
        provenance = {"prompt": metadata["prompt"], "seed": 0}
        save_png(Image.new("RGB", (100, 100), "white"), source / "flux" / name, metadata["prompt"], provenance)
        rows = [{"class": c, "box": d[:4], "score": d[4], **({"color": d[5]} if len(d) > 5 else {})}
                for c, found in objects.items() for d in found]  # fmt: skip
        lines.append(json.dumps({"image": f"flux/{name}", "objects": rows}))
    detections = tmp_path / "detections.jsonl"
    detections.write_text("\n".join(lines) + "\n")
    config = load_config(None, {"eval.metrics": "geneval", "eval.geneval_detections": str(detections),
                                "eval.progress": False, "eval.resamples": 100})  # fmt: skip
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(c[0]) + "\n" for c in cases))
    prompts = read_prompts(tmp_path / "metadata.jsonl")  # GenEval's clauses land in each record's meta
    result = score_existing(source, tmp_path / "out", config, prompts=prompts)
    row = result.summary["metrics"]["geneval"]["flux"]
    assert row["categories"] == {"colors": 0.0, "counting": 1.0, "position": 1.0, "overall": pytest.approx(2 / 3)}
    assert row["mean"] == pytest.approx(2 / 3) and row["failures"] == 0

    # The same through the command line, where --prompts lends the metadata.
    argv = ["eval", "score", str(source), "--out", str(tmp_path / "cli"), "--prompts",
            str(tmp_path / "metadata.jsonl"), "--metrics", "geneval", "--set",
            f"eval.geneval_detections={detections}", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["metrics"]["geneval"]["flux"]["categories"]["overall"] == pytest.approx(2 / 3)
