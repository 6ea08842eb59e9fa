"""``artaug paint`` as the main job, end to end on the tiny painter and the tiny Qwen2-VL critic; replay; demo."""

import json
import socket

from PIL import Image

from artaug.cli import main

TINY = ["--height", "128", "--width", "128", "--steps", "4", "--max-sequence-length", "16", "--seed", "1"]


def test_main_job_with_the_tiny_critic_then_replay(tiny_painter_dir, tiny_critic_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["paint", "a lighthouse at dusk", "--painter", str(tiny_painter_dir), "--critic", str(tiny_critic_dir),
                 "--rounds", "2", *TINY, "--output", str(run)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert f"run: {run}" in out and "total:" in out

    trail = json.loads((run / "trail.json").read_text())
    assert trail["provenance"]["painter"]["id"] == str(tiny_painter_dir)
    assert len(trail["provenance"]["painter"]["folder_digest"]) == 64
    assert trail["provenance"]["critic"]["id"] == str(tiny_critic_dir)
    assert trail["provenance"]["template_version"].startswith("grounding")
    assert trail["rounds"], "the critic was asked at least once"
    first_round = trail["rounds"][0]["critique"]
    assert first_round["raw"] and first_round["error"] is None and first_round["image_size"] == [128, 128]
    for name in ("round_00.png", "final.png", "contact_sheet.png", "config.toml"):
        assert (run / name).is_file(), name
    assert Image.open(run / "final.png").size == (128, 128)

    assert main(["replay", str(run / "trail.json")]) == 0
    assert "replay identical" in capsys.readouterr().out


def test_a_dead_critic_endpoint_skips_rounds_and_keeps_the_painting(tiny_painter_dir, tmp_path, capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    output = tmp_path / "dead.png"
    code = main(["paint", "a lighthouse", "--painter", str(tiny_painter_dir), "--critic", f"http://127.0.0.1:{port}/v1",
                 "--model", "qwen", "--set", "critic.max_retries=0", "--set", "critic.timeout=5", "--rounds", "2",
                 *TINY, "--output", str(output)])  # fmt: skip
    assert code == 0
    trail = json.loads((tmp_path / "dead.trail.json").read_text())
    assert len(trail["rounds"]) == 2 and trail["best"] == 0
    assert all(r["critique"]["error"] and not r["accepted"] for r in trail["rounds"])
    assert output.is_file()


def test_replay_reports_a_changed_image(tiny_painter_dir, tmp_path, capsys):
    output = tmp_path / "one.png"
    assert main(["paint", "a boat", "--painter", str(tiny_painter_dir), "--critic", "http://127.0.0.1:9/v1",
                 "--model", "m", "--set", "critic.max_retries=0", "--rounds", "1", *TINY,
                 "--output", str(output)]) == 0  # fmt: skip
    image = Image.open(output).convert("RGB")
    image.putpixel((0, 0), tuple(255 - v for v in image.getpixel((0, 0))))
    image.save(output)
    capsys.readouterr()
    assert main(["replay", str(tmp_path / "one.trail.json")]) == 1
    assert "1/16384 pixels differ" in capsys.readouterr().out


def test_demo_runs_offline(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo"), "--rounds", "1"]) == 0
    demo = tmp_path / "demo"
    for name in ("plain.png", "blend.png", "attention.png", "run/trail.json", "run/final.png", "run_notes/final.png"):
        assert (demo / name).is_file(), name
    notes = json.loads((demo / "run_notes" / "trail.json").read_text())
    assert [len(r["critique"]["edits"]) for r in notes["rounds"]] == [2]
    assert notes["rounds"][0]["request"]["edits"][0]["prompt"].startswith("a low golden sun")
    assert notes["provenance"]["template_version"].startswith("recorded@")
    out = capsys.readouterr().out
    assert "run_notes/" in out
    # The closed world: the trained painter's first painting has a square where a triangle belongs; the world critic
    # asks for the triangle by box and round 1 paints it, keeping the square; round 2's critique asks for nothing
    # (a fixed seed of the committed painter; the world part runs 2 rounds whatever --rounds says).
    world = json.loads((demo / "world_run" / "trail.json").read_text())
    asked = [[e["prompt"] for e in r["critique"]["edits"]] for r in world["rounds"]]
    assert asked == [["a triangle at the bottom"], []]
    assert world["rounds"][0]["accepted"]
    assert "world metric, first painting: wrong" in out and "world metric, final painting: correct" in out


def test_an_existing_run_is_never_silently_overwritten(tiny_painter_dir, tmp_path, capsys):
    from importlib.resources import files

    notes = str(files("artaug") / "data" / "demo_critique.txt")  # two rounds of edits, then "no changes"
    run = tmp_path / "run"
    base = ["paint", "a lighthouse", "--painter", str(tiny_painter_dir), "--critic", notes, *TINY]
    assert main([*base, "--rounds", "2", "--output", str(run)]) == 0
    assert {"round_01.png", "round_02.png"} <= {p.name for p in run.iterdir()}
    first = (run / "trail.json").read_bytes()

    # 1. Again into the same folder: a numbered sibling, the old run untouched.
    assert main([*base, "--rounds", "1", "--output", str(run)]) == 0
    assert f"writing {tmp_path / 'run-2'} instead" in capsys.readouterr().err
    assert (run / "trail.json").read_bytes() == first and (tmp_path / "run-2" / "trail.json").is_file()

    # 2. --overwrite clears the old run first: no round file of the longer run is left behind.
    assert main([*base, "--rounds", "1", "--output", str(run), "--overwrite"]) == 0
    assert "round_02.png" not in {p.name for p in run.iterdir()}
    assert json.loads((run / "trail.json").read_text())["first_request"]["seed"] == 1

    # 3. --overwrite never clears a folder that is not an artaug run.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    assert main([*base, "--rounds", "1", "--output", str(tmp_path / "mine"), "--overwrite"]) == 2
    assert "not an artaug run folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"

    # 4. One image: painting.png exists, so painting-2.png.
    single = tmp_path / "one.png"
    assert main([*base, "--rounds", "0", "--output", str(single)]) == 0
    assert main([*base, "--rounds", "0", "--output", str(single)]) == 0
    assert (tmp_path / "one-2.png").is_file()
