"""Re-render a run folder from its trail.json alone and check that every image comes out pixel for pixel the same.

    python examples/replay_run.py runs/examples/critique_loop/trail.json
    python examples/replay_run.py runs/examples/critique_loop/trail.json --tiny   # with the tiny offline painter

No critic is needed: the critic's raw answers are read back from the trail (and re-parsed, so a parser change that
would alter old runs shows up too). Exits 1 when anything differs.
"""

import argparse
import sys
from pathlib import Path

from artaug.loop.replay import load_trail, replay, trail_painter
from artaug.painter import FluxPainter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trail", type=Path, help="trail.json of a run folder")
    parser.add_argument("--tiny", action="store_true", help="repaint with the tiny offline painter")
    parser.add_argument("--painter", default=None, help="hub id or folder; default: the painter the trail names")
    args = parser.parse_args()

    # 1. The painter the run used (or the one given)
    trail = load_trail(args.trail)
    if args.tiny:
        from artaug.tiny import tiny_painter_path

        args.painter = str(tiny_painter_path())
    painter_id = args.painter or trail_painter(trail)
    if not painter_id:
        parser.error("the trail names no painter: pass --painter")
    painter = FluxPainter.from_pretrained(painter_id)

    # 2. Repaint every painting of the trail and compare with the files in the run folder
    print(f"replaying {len(trail.rounds)} round(s) of {trail.prompt!r} with {painter_id}")
    report = replay(args.trail, painter)
    print(report.summary())
    return 0 if report.identical else 1


if __name__ == "__main__":
    sys.exit(main())
