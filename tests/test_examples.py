"""Every script under examples/ runs offline with --tiny, in a fresh interpreter, and writes what it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY = ["--tiny", "--size", "64", "--steps", "2"]


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def ok(process: subprocess.CompletedProcess) -> str:
    assert process.returncode == 0, f"exit {process.returncode}\n{process.stdout}\n{process.stderr[-3000:]}"
    return process.stdout


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, tiny_painter_dir, tiny_critic_dir) -> Path:
    # The fixtures build the tiny models into the shared cache first; the subprocesses then only load them.
    folder = tmp_path_factory.mktemp("loop") / "run"
    stdout = ok(run_example("critique_loop.py", *TINY, "--rounds", "2", "--output", str(folder), cwd=folder.parent))
    assert f"run folder: {folder}" in stdout
    return folder


def test_paint_with_edits_writes_plain_blend_and_attention(tmp_path, tiny_painter_dir):
    stdout = ok(run_example("paint_with_edits.py", *TINY, "--output", str(tmp_path), cwd=tmp_path))
    images = {name: np.asarray(Image.open(tmp_path / f"{name}.png")) for name in ("plain", "blend", "attention")}
    assert all(image.shape == (64, 64, 3) for image in images.values())
    # The same seed repainted with two edits must change the picture, in either mode.
    assert not np.array_equal(images["plain"], images["blend"])
    assert not np.array_equal(images["plain"], images["attention"])
    # Cost per painting at 2 steps: plain and attention 1 pass per step, blend 1 + 2 distinct prompts per step.
    passes = {line.split()[0]: int(line.split()[1]) for line in stdout.splitlines() if "transformer passes" in line}
    assert passes == {"plain": 2, "blend": 6, "attention": 2}


def test_critique_loop_writes_a_complete_run_folder(run_folder):
    for name in ("round_00.png", "final.png", "trail.json", "contact_sheet.png", "config.toml"):
        assert (run_folder / name).is_file(), name
    trail = json.loads((run_folder / "trail.json").read_text())
    request = trail["first_request"]
    assert (request["height"], request["width"], request["num_inference_steps"]) == (64, 64, 2)
    assert 1 <= len(trail["rounds"]) <= 2 and trail["stopped"]
    assert trail["first_cost"]["transformer_passes"] == 2


def test_replay_run_reproduces_the_run_and_flags_a_changed_image(run_folder, tmp_path):
    stdout = ok(run_example("replay_run.py", str(run_folder / "trail.json"), cwd=tmp_path))
    assert "replay identical" in stdout

    # Tamper with the stored first painting: replay must notice and exit 1.
    first = run_folder / "round_00.png"
    pixels = np.asarray(Image.open(first)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(first)
    process = run_example("replay_run.py", str(run_folder / "trail.json"), "--tiny", cwd=tmp_path)
    assert process.returncode == 1, process.stdout + process.stderr[-2000:]
    assert (
        "replay DIFFERS" in process.stdout and "first painting (round_00.png): 1/4096 pixels differ" in process.stdout
    )


def test_bench_loop_measures_two_accepted_rounds_of_four_edits(tmp_path, tiny_painter_dir):
    # The loop benchmark (bench/bench_loop.py) at toy size: it exits 1 unless every run had its two accepted rounds
    # of 4 edits; passes follow the painter's rules (4 steps: the default strength 0.8 starts at step int(4 - 3.2) = 0,
    # so it runs all 4, as 1.0 does; blend 1 + N per step, N = 4 in round 1 and 8 in round 2, which carries round 1's
    # edits; at 4 steps blend at the default strength costs what the published setting does).
    script = EXAMPLES.parent / "bench" / "bench_loop.py"
    process = subprocess.run(
        [sys.executable, str(script), "--size", "64", "--steps", "4"], capture_output=True, text=True, timeout=300
    )
    stdout = ok(process)
    assert "published: 15.00x one plain generation in transformer passes" in stdout
    assert "default: 3.00x one plain generation in transformer passes" in stdout
    blend = next(line.split() for line in stdout.splitlines() if line.startswith("blend "))
    assert blend[3:5] == ["60", "15.00"] and blend[-2:] == ["[True,", "True]"]


@pytest.mark.slow
def test_the_gpu_benchmark_proves_itself_on_the_cpu(tmp_path):
    """bench/gpu.sh --smoke: every part of the GPU script (steps of every implementation, the compiled painter's
    recompiles, the loop, a training step, the JSON) on narrow widths, so GPU minutes are never spent debugging."""
    out = tmp_path / "out"
    process = subprocess.run(
        [str(EXAMPLES.parent / "bench" / "gpu.sh"), "--smoke", "--steps", "1"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OUT": str(out), "PYTHON": sys.executable},
    )  # fmt: skip
    stdout = ok(process)
    results = json.loads((out / "gpu.json").read_text())
    assert results["compiled"]["recompiles_after_warm_up"] == 0
    assert results["loop"]["rounds_accepted"] == 2 and results["loop"]["edits_per_round"] == [4, 4]
    # 8 steps; the default strength 0.8 starts a revision at step int(8 - 6.4) = 1: 7 steps a round, twice.
    assert results["loop"]["passes_ratio"] == pytest.approx((8 + 7 + 7) / 8)
    assert {"attention lse x4", "attention grouped x4", "attention mask x4", "blend x4"} <= set(results["steps_table"])
    assert results["train"]["step_seconds"] > 0 and "targets (issue 13):" in stdout
    assert results["fp8"]["available"] and results["fp8"]["plain_seconds"] > 0
