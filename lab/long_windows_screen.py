"""Screen: does the dream model, trained on longer windows, leave River Raid's respawn pause? (issue 19, freezing)

River Raid's source pauses 23-24 frames at each respawn (39 pauses, 18% of its training frames), on a straight
empty river. A dream that reaches one never leaves it (frozen share 0.76-0.93): the map does not change, so
only the motion model's memory could say the pause is over, and it learns from 16-step windows that never hold
a whole pause. Here the dream-model stage is retrained with `--seq-len` (48) instead: every pause fits in a
window with the frames around it. Each retrained run also dreams with the motion model fed the layout it drew
rather than the drawn map's (lab/layout_feedback_screen.py), since a pause the motion model has ended may still
look the same on a straight river. Retraining and scoring as lab/two_maps_screen.py (control rows there).

    python lab/long_windows_screen.py /tmp/res10-own/riverraid--default--seed0/run ... --seq-len 48

Screened 2026-12-07 (150 s, 2,000-frame dreams; control rows in lab/two_maps_screen.py): River Raid seed 0 /
seed 1 frozen share 0.93 / 0.97 -> 0.99 / 0.98 (fed its own g: 0.98 / 0.68), frame diff 0.080 / 0.052 -> 0.038 /
0.043. Longer windows freeze it further: not kept (Enduro not run).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layout_feedback_screen import layout_feedback  # noqa: E402
from two_maps_screen import KEYS, retrain  # noqa: E402


def set_seq_len(run: Path, seq_len: int) -> Path:
    """A copy of `run` whose dream-model windows are `seq_len` steps."""
    config = json.loads((run / "config.json").read_text())
    config["rnn"]["seq_len"] = seq_len
    (run / "config.json").write_text(json.dumps(config, indent=2))
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--own", type=float, nargs="+", default=[0.0, 1.0])
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-long-") as work:
            again = Path(work) / "long"
            retrain(run, again, args.seconds, prepare=lambda path: set_seq_len(path, args.seq_len))
            for own in args.own:
                with layout_feedback(own):
                    dream = np.stack(list(dreamvid.load(again, device="cpu").dream(frames=args.frames, seed=seed)))
                metrics = score(dream, source=source)["metrics"]
                row = {f"{group}.{key}": round(float(metrics[group][key]), 3) for group, key in KEYS}
                print(json.dumps({"run": name, "variant": f"seq_len {args.seq_len}, own g {own}", **row}), flush=True)


if __name__ == "__main__":
    main()
