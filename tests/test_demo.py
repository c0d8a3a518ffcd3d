"""`dreamvid demo` in a reduced mode: real Atari footage, a tiny model, a short dream, through the CLI."""
from __future__ import annotations

import subprocess
import sys

import av


def _frames_and_width(path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return len(frames), frames[0].width


def test_demo_reduced_writes_dream_and_side_by_side_preview(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "dreamvid", "demo", "-o", str(out), "--minutes", "0.15",
                             "--frames", "120", "--preset", "tiny", "--seconds", "2", "--quiet"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert str(out / "dream.mp4") in result.stdout and str(out / "preview.mp4") in result.stdout
    count, width = _frames_and_width(out / "dream.mp4")
    assert count == 30 and width == 256  # 2 s at Atari's 15 fps; 32 px upscaled to 256
    count, width = _frames_and_width(out / "preview.mp4")
    assert count > 0 and width == 3 * 256  # source | reconstruction | dream
    # A second run reuses the finished training and only dreams again.
    again = subprocess.run([sys.executable, "-m", "dreamvid", "demo", "-o", str(out), "--preset", "tiny",
                            "--seconds", "1", "--quiet"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert _frames_and_width(out / "dream.mp4")[0] == 15


def test_demo_keeps_a_file_of_the_users_that_has_one_of_its_names(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "dream.mp4").write_bytes(b"my own video")
    result = subprocess.run([sys.executable, "-m", "dreamvid", "demo", "-o", str(out), "--preset", "tiny",
                             "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "was not made by dreamvid demo" in result.stderr
    assert (out / "dream.mp4").read_bytes() == b"my own video" and not (out / "footage.mp4").exists()
