"""Could a short dream tell an RNN that freezes from one that moves? Frame difference of dreams' later frames.

    python benchmarks/rollout_stillness.py rnn-levers/enduro--default+* --seeds 4 --frames 2000

For each cell (a `presets.py` or `rnn_levers.py` folder with summary.json), dreams `--frames` frames from each
of `--seeds` random held-out frames and prints the mean absolute frame difference (grey levels) over the second
half of each, beside the source's and the frame-difference ratio of the cell's own 10,000-frame evaluation.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamvid import load  # noqa: E402
from dreamvid.metrics import consecutive_diffs  # noqa: E402
from common import machine  # noqa: E402


def late_stillness(cell: Path, seeds: int, frames: int) -> list[float]:
    """Mean frame difference of the last half of `frames`-long dreams from seeds 0..seeds-1."""
    dreamer = load(cell / "run", device="cpu")
    means = []
    for seed in range(seeds):
        latents = dreamer.session(seed=seed).next_latents(frames)
        means.append(float(consecutive_diffs([dreamer.decode(latents[frames // 2:])]).mean()))
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", type=Path, nargs="+")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    print(machine(), flush=True)
    for cell in args.cells:
        motion = json.loads((cell / "summary.json").read_text())["metrics"]["motion"]
        means = late_stillness(cell, args.seeds, args.frames)
        print(f"{cell.name}: evaluation frame diff {motion['diff_ratio']:.2f}x the source's "
              f"({motion['source_diff_mean']:.2f}); late frame diff per dream "
              + " ".join(f"{m:.2f}" for m in means), flush=True)


if __name__ == "__main__":
    sys.exit(main())
