"""Evaluation: scoring, flag ranges, the calibration ordering on real footage (a game and live action), the model
metrics through their interface, reports, compare and the eval entry point. (The pure metric functions:
test_metrics.py.) No trained model is needed except in the last test."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dreamvid import evaluation as E
from dreamvid.errors import UsageError
from dreamvid.evaluation import metrics as M
from dreamvid.evaluation.report import HEADLINE
from dreamvid.footage import atari_frames, packaged_clip
from dreamvid.video import read_frames, square_frame
from synthetic import moving_shapes

SIZE = 64


def _split(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Held-out = the last 10%, as the frame cache splits."""
    boundary = len(frames) - max(1, int(np.ceil(0.1 * len(frames))))
    return frames[:boundary], frames[boundary:]


@pytest.fixture(scope="module")
def shapes():
    frames = moving_shapes(200, SIZE, SIZE, seed=3)
    train, held = _split(frames)
    return train, held, E.prepare_source(train, held, 24)


# ---------------------------------------------------------------------------------------------- scoring


def test_identical_video_is_a_full_copy(shapes):
    train, _, src = shapes
    m = E.score(train, source=src)["metrics"]
    assert m["copying"]["copy_share"] == 1.0
    assert m["copying"]["longest_run_frames"] == len(train)
    assert m["copying"]["novelty"] == pytest.approx(0.0)
    assert m["motion"]["diff_ratio"] == pytest.approx(1.0)
    assert m["motion"]["diff_wasserstein"] == pytest.approx(0.0, abs=1e-6)
    assert m["sharpness"]["ratio"] == pytest.approx(1.0)
    assert m["coverage"]["visited_share"] == 1.0 and m["coverage"]["js_divergence"] == pytest.approx(0.0)
    assert m["realism"]["ratio"] < 1.0  # training frames are closer to the training patches than unseen ones


def test_blurred_copy_is_less_sharp_and_less_real(shapes):
    train, _, src = shapes
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in train])
    sharp = E.score(train, source=src)["metrics"]
    soft = E.score(blurred, source=src)["metrics"]
    assert soft["sharpness"]["ratio"] < 0.6 * sharp["sharpness"]["ratio"]
    assert soft["realism"]["ratio"] > sharp["realism"]["ratio"]


def test_noise_is_novel_and_unrealistic(shapes):
    _, _, src = shapes
    noise = np.random.default_rng(0).integers(0, 256, (120, SIZE, SIZE, 3), dtype=np.uint8)
    m = E.score(noise, source=src)["metrics"]
    assert m["copying"]["copy_share"] == 0.0 and m["copying"]["longest_run_frames"] == 0
    assert m["realism"]["ratio"] > 3
    assert m["motion"]["flicker_ratio"] > 1


def test_frozen_dream_makes_no_replay_run(shapes):
    train, _, src = shapes
    frozen = np.repeat(train[50:51], 40, axis=0)
    m = E.score(frozen, source=src)["metrics"]
    assert m["copying"]["copy_share"] == 1.0  # each frame is a copy ...
    assert m["copying"]["longest_run_frames"] == 1  # ... but nothing is played on
    assert m["motion"]["frozen_share"] == 1.0 and m["motion"]["diff_mean"] == 0.0


def test_diversity_is_zero_for_identical_dreams_and_grows_for_different_ones(shapes):
    train, _, src = shapes
    same = E.score(train[:40], source=src, diversity_dreams=[train[:20]] * 3)["metrics"]
    assert same["diversity"]["normalized"] == pytest.approx(0.0)
    diverse = E.score(train[:40], source=src, diversity_dreams=[train[:20], train[60:80], train[120:140]])["metrics"]
    assert diverse["diversity"]["normalized"] > 0.3


def test_drift_sees_a_dream_that_fades_to_black(shapes):
    train, _, src = shapes
    steady = np.concatenate([train] * 3)
    fading = (steady * np.linspace(1, 0.1, len(steady))[:, None, None, None]).astype(np.uint8)
    assert E.score(steady, source=src)["metrics"]["drift"]["max_ratio"] < 2
    fade = E.score(fading, source=src)["metrics"]["drift"]
    assert fade["max_ratio"] > 3 and fade["worst"] in ("brightness", "sharpness", "motion")


def test_score_rejects_bad_input(shapes):
    _, _, src = shapes
    with pytest.raises(UsageError):
        E.score(np.zeros((10, 32, 32, 3), np.uint8), source=src)  # wrong size
    with pytest.raises(UsageError):
        E.score(np.zeros((1, SIZE, SIZE, 3), np.uint8), source=src)  # one frame
    with pytest.raises(UsageError):
        E.score(np.zeros((10, SIZE, SIZE, 3), np.float32), source=src)


# ---------------------------------------------------------------------------------------------- calibration


def test_flag_ranges_sit_halfway_to_the_defect_and_fall_back():
    def cal(**values):  # {reference: {"group.name": value}} -> calibrate's shape
        return {name: {"metrics": {k.split(".")[0]: {k.split(".")[1]: v} for k, v in numbers.items()}}
                for name, numbers in values.items()}

    shows = E.flag_ranges(cal(blurred={"realism.ratio": 5.0, "sharpness.ratio": 0.02}))
    assert shows["realism.ratio"] == [None, 3.0]  # halfway from 1 (held-out) to the blurred replay's 5
    assert shows["sharpness.ratio"] == [0.51, 2.0]  # low: halfway to blurred; high: no reference, the fixed bound
    assert shows["diversity.normalized"] == [None, None]  # no texture to anchor it, and no fallback
    hides = E.flag_ranges(cal(blurred={"realism.ratio": 1.05}))
    assert hides["realism.ratio"] == [None, 1.5]  # blurred does not look blurred on this footage: the fallback
    near = E.flag_ranges(cal(texture={"diversity.normalized": 0.3}, replay={"diversity.normalized": 0.2}))
    assert near["diversity.normalized"] == [0.25, None]  # halfway, and the margin (0.05) from the anchor
    flags = E.flags_for({"realism": {"ratio": 3.5}, "sharpness": {"ratio": 1.0}}, shows)
    assert flags == [{"metric": "realism.ratio", "value": 3.5, "range": [None, 3.0], "side": "high"}]
    assert E.get({"realism": {"ratio": 3.5}}, "realism.ratio") == 3.5 and E.get({}, "motion.diff_ratio") is None


def _atari():
    frames = np.stack([square_frame(f, SIZE) for f in atari_frames("enduro", n_frames=400, seed=0)])
    return frames, 15.0


def _live_action():
    return np.stack(list(read_frames(packaged_clip("bikes"), size=SIZE))), 25.0


@pytest.mark.parametrize("footage", [_atari, _live_action], ids=["atari-enduro", "live-bikes"])
def test_calibration_orders_the_reference_dreams(footage):
    frames, fps = footage()
    train, held = _split(frames)
    src = E.prepare_source(train, held, fps)
    cal = E.calibrate(src, len(train), seed=0)
    ranges = E.flag_ranges(cal)
    m = {name: r["metrics"] for name, r in cal.items()}
    flags = {name: {f["metric"] for f in E.flags_for(r["metrics"], ranges)} for name, r in cal.items()}
    realism = {name: v["realism"]["ratio"] for name, v in m.items()}

    # replay: most realistic (a frozen real frame may beat it on patches, as docs/metrics.md says; shuffled
    # and texture show the very same frames, so they tie with it within sampling noise, about +-15%) and
    # fully copied.
    assert realism["replay"] < 0.7, realism  # clearly more realistic than unseen held-out footage (1.0)
    assert realism["replay"] < 0.5 * realism["blurred"], realism
    assert realism["replay"] <= 1.5 * min(realism["shuffled"], realism["texture"]), realism
    assert m["replay"]["copying"]["copy_share"] == 1.0
    assert m["replay"]["copying"]["longest_run_frames"] == len(train)
    assert "copying.copy_share" in flags["replay"]
    assert not any(k.startswith(("motion.", "sharpness.")) for k in flags["replay"]), flags["replay"]

    # frozen: no motion at all.
    assert m["frozen"]["motion"]["diff_ratio"] == 0.0
    assert m["frozen"]["motion"]["frozen_share"] == 1.0
    assert m["frozen"]["motion"]["flow_ratio"] < 0.05
    assert {"motion.diff_ratio", "motion.frozen_share"} <= flags["frozen"]

    # shuffled: wrong motion (far too much change per frame, a distribution far from the source's).
    assert m["shuffled"]["motion"]["diff_ratio"] > 2.0
    assert m["shuffled"]["motion"]["diff_wasserstein_rel"] > 3 * max(m["replay"]["motion"]["diff_wasserstein_rel"],
                                                                     m["texture"]["motion"]["diff_wasserstein_rel"])
    assert m["shuffled"]["motion"]["flicker_ratio"] > 2.0
    assert "motion.diff_ratio" in flags["shuffled"]
    assert m["shuffled"]["copying"]["longest_run_frames"] <= 3

    # blurred: less realistic and less sharp than replay.
    assert realism["blurred"] > realism["replay"]
    assert m["blurred"]["sharpness"]["ratio"] < 0.5
    assert "sharpness.ratio" in flags["blurred"]

    # texture: copies long runs (a second or more), where shuffled copies single frames.
    texture_run = m["texture"]["copying"]["longest_run_frames"]
    assert texture_run >= fps and texture_run >= 5 * m["shuffled"]["copying"]["longest_run_frames"]
    assert m["texture"]["copying"]["copy_share"] == 1.0
    assert 0.5 < m["texture"]["motion"]["diff_ratio"] < 1.5  # ... with the source's own motion between jumps

    # diversity: deterministic references give none, random ones some.
    assert m["replay"]["diversity"]["normalized"] == pytest.approx(0.0)
    assert m["shuffled"]["diversity"]["normalized"] > m["texture"]["diversity"]["normalized"] > 0


# ---------------------------------------------------------------------------------------------- model metrics


class MapPersistence:
    """A second model family in miniature, through `LatentModels`: latents are (3, 8, 8) maps (each frame
    area-averaged), and the dream model predicts that nothing changes (NLL: half the squared error)."""
    device = torch.device("cpu")

    def __init__(self, size: int):
        self.size = size

    def encode(self, frames):
        small = np.stack([cv2.resize(f, (8, 8), interpolation=cv2.INTER_AREA) for f in frames])
        return torch.from_numpy(small.astype(np.float32) / 255).permute(0, 3, 1, 2)

    def decode(self, z):
        big = F.interpolate(z, size=(self.size, self.size), mode="nearest")
        return (big.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()

    def initial_state(self, batch):
        return None

    def step(self, z, state):
        return (z,), state

    def mean(self, params):
        return params[0]

    def nll(self, params, z):
        return 0.5 * ((params[0] - z) ** 2).flatten(1).sum(1)


def test_model_metrics_take_any_latent_shape_through_the_interface(shapes):
    _, held, _ = shapes
    models = MapPersistence(SIZE)
    assert isinstance(models, E.LatentModels)
    still = np.repeat(held[:1], 30, axis=0)  # nothing changes: the persistence model is exactly right
    pred = E.prediction(models, [still, held], context=4)
    assert pred["teacher_forced"]["steps"] == 29 + len(held) - 1
    exact = E.prediction(models, [still], context=4)
    assert exact["teacher_forced"]["mse"] == 0 and exact["teacher_forced"]["nll"] == 0
    assert exact["open_loop"]["8"]["mse"] == 0 and exact["open_loop"]["32"] is None  # 30 frames: too short for 32
    assert exact["open_loop"]["1"]["psnr"] == pytest.approx(exact["open_loop"]["8"]["psnr"])  # the same frame
    assert pred["teacher_forced"]["mse"] > 0  # the moving shapes do change
    recon, frames = E.reconstruction(models, [held])
    assert frames.shape == held.shape and 10 < recon["psnr"] < 60 and 0 < recon["ssim"] < 1
    # predicting a still frame is reconstructing it
    assert E.reconstruction(models, [still])[0]["psnr"] == pytest.approx(exact["teacher_forced"]["psnr"], rel=1e-5)


# ---------------------------------------------------------------------------------------------- reports


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, shapes):
    train, held, _ = shapes
    out = tmp_path_factory.mktemp("report") / "first"
    report = E.report_from_frames(train[::-1].copy(), train, held, 24, out=out, seed=0,
                                  diversity_dreams=[train[:16], train[40:56], train[90:106]],
                                  meta={"run_dir": "runs/first"})
    return out, report


def test_report_files_and_json(report_dir):
    out, report = report_dir
    data = json.loads((out / "report.json").read_text())  # strict JSON: no NaN/Infinity
    assert data["metrics"]["copying"]["copy_share"] == report["metrics"]["copying"]["copy_share"]
    assert set(data["calibration"]) == set(M.REFERENCE_NAMES)
    assert data["ranges"]["motion.diff_ratio"][0] is not None
    # a reversed replay: every frame copied, motion of the source's size, no frozen frames
    assert data["metrics"]["copying"]["copy_share"] == 1.0
    assert not any(f["metric"].startswith("motion.") for f in data["flags"])
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 10 and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html
    for _, label, _ in HEADLINE:
        assert label in html


def test_compare_table_and_html(tmp_path, report_dir):
    out, _ = report_dir
    # A second report: the first one with a frozen dream's motion numbers, flagged by the first's ranges.
    second = json.loads((out / "report.json").read_text())
    second["metrics"]["motion"].update(frozen_share=1.0, diff_ratio=0.0)
    second["flags"] = E.flags_for(second["metrics"], second["ranges"])
    (tmp_path / "run2" / "eval").mkdir(parents=True)
    (tmp_path / "run2" / "eval" / "report.json").write_text(json.dumps(second))
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "report.json").write_text(json.dumps(second))
    table = E.compare([out, tmp_path / "second" / "report.json", tmp_path / "run2"], html=tmp_path / "cmp.html")
    lines = table.splitlines()
    assert lines[0].split()[1:] == ["first", "second", "run2"]
    frozen_row = next(line for line in lines if line.startswith("frozen share"))
    assert frozen_row.split()[-4:] == ["1.00", "!", "1.00", "!"]  # flagged in the frozen ones only
    assert "!" not in frozen_row.split()[2:-4]
    assert (tmp_path / "cmp.html").read_text().count("<table") >= 4
    with pytest.raises(UsageError, match="exists"):   # the page is the user's now
        E.compare([out], html=tmp_path / "cmp.html")
    E.compare([out], html=tmp_path / "cmp.html", force=True)
    with pytest.raises(UsageError):
        E.compare([tmp_path / "missing"])
    with pytest.raises(UsageError):
        E.compare([])


def test_evaluate_argument_errors(tmp_path):
    with pytest.raises(UsageError):
        E.evaluate(tmp_path / "nope")
    with pytest.raises(UsageError):
        E.evaluate(tmp_path, temperature=0)
    with pytest.raises(UsageError):
        E.evaluate(tmp_path, frames=-5)
    with pytest.raises(UsageError):
        E.evaluate(tmp_path, dream=tmp_path / "missing.mp4")
    with pytest.raises(UsageError):
        E.evaluate(tmp_path, dream=tmp_path)
    with pytest.raises(UsageError):  # not a run
        E.evaluate(tmp_path, frames=10)


# ---------------------------------------------------------------------------------------------- a real run


def test_evaluate_a_tiny_run_end_to_end(tmp_path):
    import dreamvid
    from synthetic import make_video

    clip = make_video(tmp_path / "clip.mp4", n_frames=260, width=48, height=48)
    run = tmp_path / "run"
    dreamvid.train(clip, run, preset="tiny", vae_epochs=2, rnn_epochs=2, progress=False)
    report = E.evaluate(run, frames=240, temperature=1.0, seed=0, progress=False)
    m = report["metrics"]
    assert (run / "eval" / "report.json").is_file() and (run / "eval" / "report.html").is_file()
    assert report["meta"]["dream_frames"] == 240 and report["meta"]["size"] == 32
    assert 5 < m["reconstruction"]["psnr"] < 60 and 0 < m["reconstruction"]["ssim"] <= 1
    pred = m["prediction"]
    assert np.isfinite(pred["teacher_forced"]["nll"]) and pred["teacher_forced"]["steps"] == 25  # 26 held out
    assert pred["open_loop"]["1"]["starts"] > 0 and pred["open_loop"]["8"]["starts"] > 0
    assert pred["open_loop"]["32"] is None  # held-out sequence too short for 16 context + 32 steps
    assert m["diversity"]["dreams"] == E.DIVERSITY_DREAMS and m["diversity"]["normalized"] >= 0
    assert set(report["calibration"]) == set(M.REFERENCE_NAMES)
    # The same run scoring a given video: the source clip itself, read at the run's size, is a full copy.
    replay = E.evaluate(run, dream=clip, out=tmp_path / "replay", progress=False)
    assert replay["meta"]["dream"] == str(clip) and replay["meta"]["dream_frames"] == 260
    with pytest.raises(UsageError, match="report.json exists"):   # another folder's report is kept
        E.evaluate(run, dream=clip, out=tmp_path / "replay", progress=False)
    assert replay["metrics"]["copying"]["copy_share"] > 0.9
    reprojected = E.evaluate(run, frames=60, seed=0, reproject=True, out=tmp_path / "reprojected", progress=False)
    assert reprojected["meta"]["reproject"] is True and reprojected["meta"]["dream"].endswith(", re-projected")
    assert reprojected["meta"]["dream_frames"] == 60 and report["meta"]["reproject"] is False
    with pytest.raises(UsageError):  # a given video is scored as it is
        E.evaluate(run, dream=clip, reproject=True, out=tmp_path / "both", progress=False)
    # a run folder resolves to RUN_DIR/eval/report.json
    assert E.compare([run, tmp_path / "replay"]).splitlines()[0].split()[1:] == ["run", "replay"]
