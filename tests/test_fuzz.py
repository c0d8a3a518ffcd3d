"""Hundreds of broken videos through the real `dreamvid train`: byte flips, cut points, crafted timestamps and a
declared size no video has. Every case must end within seconds with exit 0, 1 or 2 and at most a one-line error (after any warnings),
never a traceback, with the process's memory bounded."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from synthetic import make_video, write_timed_video

CASES = 240
PEAK_RSS_MB = 2048


def seed_videos(folder: Path) -> list[Path]:
    """Small valid videos in each container dreamvid reads, and two crafted ones."""
    videos = [make_video(folder / f"seed{suffix}", n_frames=16, width=32, height=32)
              for suffix in (".mp4", ".mkv", ".webm", ".avi", ".gif", ".mov")]
    videos.append(write_timed_video(folder / "jump.mkv", [0.0, 0.04, 0.08, 1e6]))  # a frame a million s later (mp4 cannot stamp it)
    huge = folder / "huge.y4m"   # declares 10000 x 10000 frames (100 megapixels), holds a few bytes of one
    huge.write_bytes(b"YUV4MPEG2 W10000 H10000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096))
    return videos + [huge]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption: flipped bytes, a cut, a zeroed stretch or a repeated stretch."""
    data = bytearray(data)
    kind = rng.choice(("flip", "cut", "zero", "repeat"))
    if kind == "flip":
        for _ in range(rng.randint(1, 24)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "cut":
        data = data[:rng.randrange(len(data))]
    else:
        start = rng.randrange(len(data))
        length = rng.randint(1, max(1, len(data) // 8))
        if kind == "zero":
            data[start:start + length] = bytes(len(data[start:start + length]))
        else:
            data[start:start] = data[start:start + length]
    return bytes(data)


def test_broken_videos_end_in_seconds_with_one_line_and_no_traceback(tmp_path):
    seeds = seed_videos(tmp_path)
    rng = random.Random(0)
    cases = list(seeds)
    for index in range(CASES - len(seeds)):
        seed = rng.choice(seeds)
        case = tmp_path / f"case{index}{seed.suffix}"
        case.write_bytes(mutate(seed.read_bytes(), rng))
        cases.append(case)
    listing, results = tmp_path / "cases.txt", tmp_path / "results.jsonl"
    listing.write_text("\n".join(map(str, cases)))
    worker = Path(__file__).with_name("fuzz_worker.py")
    done = subprocess.run([sys.executable, str(worker), str(listing), str(results), str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert done.returncode == 0 and len(rows) == len(cases) + 1, done.stderr[-2000:]
    outcomes = rows[:-1]
    bad = [r for r in outcomes if r["code"] not in (0, 1, 2) or r["traceback"] or r["error_lines"] > 1
           or r["seconds"] > 10]
    assert not bad, json.dumps(bad[:3], indent=1)
    assert rows[-1]["peak_rss_mb"] < PEAK_RSS_MB
    codes = [r["code"] for r in outcomes]
    print(f"\nfuzz: {len(outcomes)} videos, exit 0/1/2: {codes.count(0)}/{codes.count(1)}/{codes.count(2)}, "
          f"slowest {max(r['seconds'] for r in outcomes):.2f} s, peak RSS {rows[-1]['peak_rss_mb']} MB")
    by_name = {Path(r["video"]).name: r for r in outcomes}
    assert by_name["seed.mp4"]["code"] == 0 and by_name["jump.mkv"]["code"] == 1
    assert "jumps from" in by_name["jump.mkv"]["stderr"] and "10000x10000" in by_name["huge.y4m"]["stderr"]
    assert {1, 2} & {r["code"] for r in outcomes} and sum(r["code"] == 0 for r in outcomes) >= len(seeds) - 2
