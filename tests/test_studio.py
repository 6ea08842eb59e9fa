"""The studio's handlers, called directly on the tiny painter and the packaged critic notes: a person's run is written
as ``artaug paint`` writes it and replays, accepted revisions become person pairs, bad input becomes a message, and
the server keeps to its own folders and keeps API keys out of the page."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from artaug.cli import main
from artaug.config import load_config
from artaug.critic import RecordedCritic
from artaug.judge import Judge
from artaug.loop.components import Components
from artaug.loop.replay import replay
from artaug.painter import FluxPainter
from artaug.pngmeta import read_png_metadata
from artaug.studio import Studio
from artaug.studio.app import check_host, parse_auth, serve
from artaug.studio.boxes import boxes_to_edits, edits_to_boxes
from artaug.studio.handlers import Handlers, StudioError, painting_boxes
from artaug.synth.store import Store, read_pairs
from artaug.types import Box, Edit

NOTES = Path(str(files("artaug") / "data" / "demo_critique.txt"))
TAB = SimpleNamespace(session_hash="tab-1")
MOON = {"xmin": 300, "ymin": 60, "xmax": 470, "ymax": 200, "label": "a pale crescent moon"}  # editor pixels (x4)


@pytest.fixture(scope="module")
def painter(tiny_painter_dir):
    return FluxPainter.from_pretrained(str(tiny_painter_dir), device="cpu")


def studio_config(tmp_path: Path, **extra):
    return load_config(
        presets={
            "painter.model": "x/y", "critic.model": str(NOTES), "painter.height": 128, "painter.width": 128,
            "painter.num_inference_steps": 4, "painter.max_sequence_length": 16,
            "loop.region_max_sequence_length": 16, "studio.output": str(tmp_path / "runs"),
            "studio.store": str(tmp_path / "pairs"), **extra,
        }
    )  # fmt: skip


@pytest.fixture
def handlers(painter, tmp_path) -> Handlers:
    config = studio_config(tmp_path)
    return Handlers(Studio(config, Components(painter, RecordedCritic.from_file(NOTES), Judge())))


def test_a_person_edited_round_is_written_like_artaug_paint_and_becomes_a_person_pair(handlers, painter):
    steps = []
    editor, status, history, download = handlers.paint(
        "a red fox in the snow", 3, 128, 128, 4, TAB, progress=lambda s, **kw: steps.append(s)
    )
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]  # live progress, one call per denoising step
    assert editor["image"].size == (512, 512) and editor["boxes"] == [] and "Painted" in status
    assert history["choices"] == ["round 0: first painting"] and download.endswith("final.png")

    editor, revision_prompt, status = handlers.critique(editor, TAB)
    assert [b["label"] for b in editor["boxes"]][1].startswith("a red fox") and "asks for 2 change(s)" in status
    editor["boxes"] = [MOON, editor["boxes"][1]]  # the person deletes the sky box and draws a moon
    before, after, verdict, status = handlers.repaint(editor, revision_prompt, "attention", 0.5, TAB)
    assert "accept or reject" in status and "The judge accepts" in verdict and after.size == (512, 512)
    editor, status, history, download = handlers.decide(True, TAB)
    assert "accepted" in status and "provenance person" in status
    assert history["value"] == "round 1: accepted, 2 box(es) by the person"

    # The run folder: the files of `artaug paint`, the person as the critic, and it replays pixel for pixel.
    session = handlers.session(TAB)
    folder = session.folder
    assert {p.name for p in folder.iterdir()} >= {"round_00.png", "round_01.png", "final.png", "trail.json"}
    trail = json.loads((folder / "trail.json").read_text())
    (record,) = trail["rounds"]
    assert record["critique"]["model"] == "person" and record["accepted"] and trail["best"] == 1
    assert json.loads(record["critique"]["raw"])["edited_from"] == str(NOTES)
    assert record["reasons"][0] == "person accepted the revision (the judge accepted it)"
    assert replay(folder / "trail.json", painter).identical
    parameters, provenance = read_png_metadata(download)
    assert parameters.startswith("a red fox in the snow") and provenance["edits"]

    # The store: one pair, made and accepted by the person, with the moon's box exactly as drawn.
    (pair,) = read_pairs(session.studio.store, kept_only=True)
    assert pair.provenance == "person" and pair.review["reviewer"] == "person" and pair.accepted
    moon = Edit.from_dict(pair.meta["edits"][0])
    assert moon.prompt == "a pale crescent moon" and moon.box == Box(300 / 512, 60 / 512, 470 / 512, 200 / 512)
    assert pair.meta["critic"] == "person" and Image.open(pair.after).size == (128, 128)


def test_the_critics_boxes_unchanged_keep_the_critic_as_the_rounds_critic(handlers, painter):
    editor, *_ = handlers.paint("a red fox in the snow", 5, 128, 128, 4, TAB)
    editor, revision_prompt, _ = handlers.critique(editor, TAB)
    handlers.repaint(editor, revision_prompt, "blend", 0.5, TAB)
    handlers.decide(False, TAB)  # rejected: the best painting stays the first, no pair
    session = handlers.session(TAB)
    (record,) = session.trail.rounds
    assert record.critique.model == str(NOTES) and record.critique.image_size == (128, 128)
    assert [e.box for e in record.request.edits] == [e.box for e in session.trail.rounds[0].critique.edits]
    assert not record.accepted and session.trail.best == 0 and not (session.studio.store / "ledger.sqlite").exists()
    report = replay(session.folder / "trail.json", painter)
    assert report.identical and not report.parser_mismatches


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([{**MOON, "label": "  "}], "box 1 has no local prompt"),
        ([{**MOON, "xmin": float("nan")}], "not finite"),
        ([{**MOON, "xmin": True}], "not finite"),
        ([{**MOON, "xmax": 300}], "no area"),
        ([MOON] * 17, "at most 16"),
        ([], "nothing to repaint"),
        ("boxes", "must be a list"),
    ],
)
def test_bad_boxes_are_a_message_and_change_nothing(handlers, boxes, message):
    editor, *_ = handlers.paint("a fox", 1, 128, 128, 4, TAB)
    with pytest.raises(StudioError, match=message):
        handlers.repaint({"image": editor["image"], "boxes": boxes}, "", "attention", 0.4, TAB)
    session = handlers.session(TAB)
    assert session.pending is None and session.trail.rounds == []
    with pytest.raises(StudioError, match="no revision waiting"):
        handlers.decide(True, TAB)


def test_boxes_outside_the_painting_are_clamped_and_the_repair_recorded():
    edits, repairs = boxes_to_edits([{"xmin": -5, "ymin": 10, "xmax": 300, "ymax": 40, "label": "sky"}], 128, 128)
    assert edits[0].box == Box(0.0, 10 / 128, 1.0, 40 / 128) and "clamped" in repairs[0]
    critic = [Edit(Box(0.1, 0.2, 0.333, 0.5), "a fox", reason="dull")]
    shown = edits_to_boxes(critic, 128, 128)
    assert boxes_to_edits(shown, 128, 128, known=critic)[0] == critic  # unmoved: the critic's exact box and reason
    scaled = painting_boxes({"boxes": [{**shown[0], "xmin": shown[0]["xmin"] * 4}]}, Image.new("RGB", (128, 128)))
    assert scaled[0]["xmin"] == shown[0]["xmin"]


def test_bad_painting_settings_are_messages_before_the_painter_runs(handlers):
    for args, message in [((7, 128, 4), "painter.width"), ((128, 128, 0), "num_inference_steps")]:
        with pytest.raises(StudioError, match=message):
            handlers.paint("a fox", 1, args[0], args[1], args[2], TAB)
    with pytest.raises(StudioError, match="seed must be a whole number"):
        handlers.paint("a fox", 1.5, 128, 128, 4, TAB)
    with pytest.raises(StudioError, match="paint a first painting"):
        handlers.critique(None, TAB)
    assert not handlers.studio.output.exists()  # nothing written


def test_cancel_stops_the_painting_between_steps_and_writes_nothing(handlers):
    def press_cancel(step, **_):
        handlers.cancel(TAB)

    with pytest.raises(StudioError, match="cancelled"):
        handlers.paint("a fox", 1, 128, 128, 4, TAB, progress=press_cancel)
    assert not handlers.studio.output.exists()
    handlers.paint("a fox", 1, 128, 128, 4, TAB)  # the next job runs normally


def test_two_tabs_at_once_wait_for_the_one_painter(handlers):
    results, errors = [], []

    def tab(name):
        try:
            results.append(handlers.paint(f"a fox {name}", 1, 128, 128, 4, SimpleNamespace(session_hash=name)))
        except Exception as error:  # collected: the test fails below with it
            errors.append(error)

    threads = [threading.Thread(target=tab, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 3
    assert len({handlers.session(SimpleNamespace(session_hash=n)).folder for n in "abc"}) == 3


def test_an_artaug_png_opens_its_settings_and_other_uploads_are_refused(handlers, tmp_path):
    handlers.paint("a fox on a hill", 42, 128, 128, 4, TAB)
    png = handlers.session(TAB).folder / "round_00.png"
    assert handlers.open_png(str(png))[:5] == ("a fox on a hill", 42, 128, 128, 4)
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    (tmp_path / "notes.png").write_text("not an image")
    refused = [("photo.jpg", "not a PNG"), ("plain.png", "no artaug chunk"), ("notes.png", "not a readable")]
    for name, message in refused:
        with pytest.raises(StudioError, match=message):
            handlers.open_png(str(tmp_path / name))
    small = Handlers(Studio(studio_config(tmp_path, **{"studio.max_upload_mb": 0.0001}), handlers.studio.components))
    with pytest.raises(StudioError, match="at most"):
        small.open_png(str(png))


def test_review_commits_verdicts_that_exports_and_training_respect(handlers):
    for seed in (1, 2):
        editor, *_ = handlers.paint("a fox", seed, 128, 128, 4, TAB)
        handlers.repaint({"image": editor["image"], "boxes": [MOON]}, "", "attention", 0.4, TAB)
        handlers.decide(True, TAB)
    before, after, info, position = handlers.review_show(0)
    assert position == 0 and "Pair 1 of 2" in info and "**Made by:** person" in info and after.size == (512, 512)
    *shown, message = handlers.review_decide(0, "rejected")
    assert "rejected" in message and shown[3] == 1  # the next pair is shown
    assert "Pair 2 of 2" in handlers.review_show(5)[2]  # positions are clamped
    store = handlers.studio.store
    with Store(store, readonly=True) as ledger:
        assert ledger.review_counts() == {"accepted": 1, "rejected": 1}
    assert len(read_pairs(store)) == 1


def test_a_host_beyond_loopback_needs_a_login():
    check_host("127.0.0.1", None)
    check_host("0.0.0.0", ("ana", "secret"))
    with pytest.raises(ValueError, match="--auth USER:PASSWORD"):
        check_host("0.0.0.0", None)
    assert parse_auth("ana:se:cret", "--auth") == ("ana", "se:cret") and parse_auth("", "--auth") is None
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        parse_auth("ana", "--auth")


def test_the_command_refuses_a_remote_host_without_login_before_loading_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ARTAUG_STUDIO_AUTH", raising=False)
    code = main(["studio", "--host", "0.0.0.0", "--painter", "/no/such/folder", "--output", str(tmp_path / "o")])
    assert code == 2 and "painter.model" in capsys.readouterr().err  # settings first, then the login
    code = main(["studio", "--host", "0.0.0.0", "--critic", str(NOTES), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: studio.host 0.0.0.0") and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_server_serves_only_its_own_folders_and_never_an_api_key(painter, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-browsers-123")
    config = studio_config(tmp_path, **{"studio.port": 0, "critic.model": "http://127.0.0.1:9/v1"})
    studio = Studio(config, Components(painter, None, Judge()))
    app, url = serve(studio, block=False, quiet=True)
    try:
        page = _get(url)
        settings = _get(url + "config")
        assert "sk-test-not-for-browsers-123" not in page + settings and "OPENAI_API_KEY" in settings
        for path in ("/etc/passwd", str(Path("pyproject.toml").resolve()), str(tmp_path / "pairs" / "ledger.sqlite")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _get(url + "gradio_api/file=" + path)
            assert refused.value.code in (403, 404)
        # the queue: jobs on the models share one slot of concurrency 1
        painter_jobs = [fn for fn in app.fns.values() if fn.concurrency_id == "painter"]
        assert len(painter_jobs) == 5 and all(fn.concurrency_limit == 1 for fn in painter_jobs)
    finally:
        app.close()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8", "replace")
