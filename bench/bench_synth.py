"""Pair synthesis throughput with 1 and 2 workers on the tiny models, and one prompt's cost breakdown.

    python bench/bench_synth.py [--prompts 32] [--rounds 1] [--alignment] [--out /tmp/bench_synth]

Workers are separate ``artaug synth`` processes sharing one store (leases keep them apart), the way one would use the
CPUs or GPUs of one machine without Ray. Two throughputs are reported: end to end (launch to last exit, start-up and
model loading included) and steady state (first claim to last commit, from the ledger). The tiny models say nothing
about real speed: a FLUX.1-dev painting takes seconds on a GPU where the tiny one takes milliseconds, so on real
models the painting share dominates and start-up is amortised. This measures the engine's overhead and scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from artaug.synth.prompts import read_prompts, sample_prompts_path


def run_workers(workers: int, prompts: Path, store: Path, rounds: int, extra: list[str]) -> dict[str, float]:
    command = [sys.executable, "-m", "artaug.cli", "synth", str(prompts), "--out", str(store), "--tiny"]
    command += ["--rounds", str(rounds), "--no-progress", "-q", *extra]
    # One torch thread per worker in both runs: the tiny models are far too small for intra-op parallelism (on a
    # shared 2-core machine two threads per process made a prompt ~5x slower), and it keeps the comparison fair.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.time()
    procs = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        for _ in range(workers)
    ]
    codes = [p.wait() for p in procs]
    wall = time.time() - started
    if any(codes):
        raise RuntimeError(f"a worker failed: exit codes {codes}")
    db = sqlite3.connect(store / "ledger.sqlite")
    first_claim = db.execute("SELECT MIN(at) FROM claims").fetchone()[0]
    last_commit, done = db.execute("SELECT MAX(created), COUNT(*) FROM results WHERE status = 'done'").fetchone()
    timings = [json.loads(t) for (t,) in db.execute("SELECT timings FROM results WHERE status = 'done'")]
    db.close()
    steady = last_commit - first_claim
    return {
        "workers": workers,
        "pairs": done,
        "wall_s": wall,
        "pairs_per_hour_end_to_end": done / wall * 3600,
        "steady_s": steady,
        "pairs_per_hour_steady": done / steady * 3600,
        "timings": timings,
    }


def breakdown(timings: list[dict[str, float]]) -> dict[str, float]:
    total = sum(t["total"] for t in timings)
    parts = {k: sum(t.get(k, 0.0) for t in timings) / total for k in ("painting", "critique", "judging", "filtering")}
    parts["other (loop, PNG, pairing)"] = 1.0 - sum(parts.values())
    parts["seconds per prompt"] = total / len(timings)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32, help="prompts from the built-in sample set")
    parser.add_argument("--rounds", type=int, default=1, help="loop rounds per prompt")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_synth"))
    parser.add_argument("--alignment", action="store_true", help="judge with the tiny CLIP's alignment scorer")
    args = parser.parse_args()
    extra = []
    if args.alignment:
        from artaug.tiny.clip import tiny_clip_path

        extra = ["--set", "judge.alignment=true", "--set", f"judge.alignment_clip={tiny_clip_path()}"]

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    prompts = args.out / "prompts.txt"
    prompts.write_text("\n".join(r.prompt for r in read_prompts(sample_prompts_path())[: args.prompts]) + "\n")
    judge = "tiny-CLIP alignment" if args.alignment else "broken-image gate only"
    print(f"{args.prompts} prompts, {args.rounds} round(s), tiny models at 64 px / 2 steps; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; judge: {judge}")  # fmt: skip

    results = [run_workers(w, prompts, args.out / f"store-{w}", args.rounds, extra) for w in (1, 2)]
    for r in results:
        print(
            f"{r['workers']} worker(s): {r['pairs']} prompts in {r['wall_s']:.1f}s end to end "
            f"({r['pairs_per_hour_end_to_end']:.0f} pairs/h), {r['steady_s']:.1f}s steady "
            f"({r['pairs_per_hour_steady']:.0f} pairs/h)"
        )
    one, two = results
    print(
        f"ratio 2 workers / 1 worker: {two['pairs_per_hour_end_to_end'] / one['pairs_per_hour_end_to_end']:.2f}x "
        f"end to end, {two['pairs_per_hour_steady'] / one['pairs_per_hour_steady']:.2f}x steady"
    )
    # What the store adds around process_prompt (claim, PNG encoding, fsync, rename, commit), from the 1-worker run.
    work = sum(t["total"] for t in one["timings"]) / one["pairs"]
    overhead = one["steady_s"] / one["pairs"] - work
    print(f"store overhead per prompt (1 worker): {overhead * 1000:.0f} ms on top of {work * 1000:.0f} ms of work")
    print("cost breakdown of a prompt (1 worker, mean over prompts):")
    for name, value in breakdown(one["timings"]).items():
        print(f"  {name:<28} {value:.3f}" if name.startswith("seconds") else f"  {name:<28} {value:6.1%}")


if __name__ == "__main__":
    main()
