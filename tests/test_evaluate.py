"""The evaluation suite of a trained NeRF run (nerf.evaluate.evaluate_workdir, scripts/evaluate.py)
and video runs end to end: configs/video.py:smoke on a fixture folder -> train -> evaluate."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
from types import SimpleNamespace

import av
import numpy as np
import pytest
from video_fixture import write_video_fixture

from jaxhead.audio.io import save_wav
from jaxhead.data import video_frames
from jaxhead.eval import face_mesh as face_mesh_lib
from jaxhead.face import blink_from_ear, mouth_opening
from jaxhead.gpvae import readers
from jaxhead.nerf import evaluate, poses, render_video

ROOT = pathlib.Path(__file__).resolve().parents[1]


def no_face_mesh(monkeypatch):
    monkeypatch.setenv("JAXHEAD_MEDIAPIPE_PYTHON", "/nonexistent/mediapipe/python")


def test_face_mesh_without_an_environment_is_not_computed(monkeypatch):
    no_face_mesh(monkeypatch)
    with pytest.raises(face_mesh_lib.FaceMeshUnavailable, match=face_mesh_lib.NO_FACE_MESH):
        face_mesh_lib.face_mesh(np.zeros((2, 32, 32, 3), np.float32))


def test_generated_pose_round_trips_through_the_cameras():
    c2w = np.tile(np.eye(4, dtype=np.float32), (3, 1, 1))
    c2w[:, 2, 3] = 1.2
    distance = poses.frontal_distance(c2w)
    rng = np.random.default_rng(0)
    pose = np.concatenate([rng.uniform(-0.3, 0.3, (5, 3)), rng.uniform(-0.05, 0.05, (5, 3))], 1)
    cameras = poses.posed_cameras(pose.astype(np.float32), distance)
    assert np.allclose(poses.head_poses(cameras, distance), pose, atol=1e-5)


def test_recentered_removes_the_drift_and_keeps_the_fast_motion():
    t = np.arange(250)[:, None] / 25.0  # 10 s at 25 fps
    fast = 0.05 * np.sin(2 * np.pi * 1.5 * t)  # 1.5 Hz nodding
    drift = 0.03 * t  # 0.3 rad over 10 s
    pose = np.tile(fast + drift, (1, 6))
    rest = np.full(6, 0.2)
    out = poses.recentered(pose, rest, window=100)  # 4 s
    inner = slice(50, 200)  # away from the edges, where the average is of real frames
    np.testing.assert_allclose(out[inner].mean(0), rest, atol=5e-3)  # the drift is gone
    kept = np.corrcoef(out[inner, 0] - rest[0], fast[inner, 0])[0, 1]
    assert kept > 0.95 and np.std(out[inner, 0]) == pytest.approx(np.std(fast[inner]), rel=0.1)
    np.testing.assert_allclose(poses.recentered(pose, rest, window=1), pose, atol=1e-6)


def test_mouth_opening_gap_filling_and_trace_plot(tmp_path):
    points = np.zeros((4, 478, 3))
    points[:, 33, 0], points[:, 263, 0] = 0.0, 10.0  # eye corners 10 px apart
    points[:, 14, 1] = [0.0, 2.0, 5.0, 1.0]  # lower inner lip moves down
    assert np.allclose(mouth_opening(points), [0.0, 0.2, 0.5, 0.1])
    series = np.array([[0.0], [np.nan], [4.0], [np.nan]])
    assert np.allclose(face_mesh_lib.fill_gaps(series)[:, 0], [0.0, 2.0, 4.0, 4.0])
    traces = {
        "fps": 25.0,
        "psnr": np.ones(10),
        "mouth_pred": np.ones(10),
        "blink_truth": np.ones(10),
    }
    path = evaluate.plot_traces(tmp_path / "t.png", traces, "test")
    assert path.stat().st_size > 1000
    with np.load(path.with_suffix(".npz")) as saved:  # the traces beside the plot
        assert sorted(saved.files) == sorted(traces)
        np.testing.assert_array_equal(saved["mouth_pred"], traces["mouth_pred"])


def test_ear_blinks_keep_the_eye_closure_the_detector_reads(monkeypatch):
    # The EAR of each sequence, normalised by its own open level (blink_from_ear), is what the
    # detector thresholds: a render whose eyes shut to only ~0.4 of the way is not a blink.
    fps = 25.0
    truth_ear = np.full(50, 0.3)
    truth_ear[20:23] = [0.15, 0.09, 0.15]
    pred_ear = np.full(50, 0.3)
    pred_ear[20:23] = [0.24, 0.2, 0.24]
    monkeypatch.setattr(evaluate, "eye_aspect_ratio", lambda points: points)
    held = [SimpleNamespace(rows=np.arange(50))]
    traces = {}
    out = evaluate._ear_blinks(held, [pred_ear], [truth_ear], fps, traces)
    assert out["truth_ear"] == pytest.approx(fps / 50) and out["rendered_ear"] == 0
    np.testing.assert_allclose(traces["eyes_truth"], blink_from_ear(truth_ear)[0])
    np.testing.assert_allclose(traces["eyes_pred"], blink_from_ear(pred_ear)[0])
    assert traces["eyes_truth"].max() == pytest.approx(1.0)
    assert 0.3 < traces["eyes_pred"].max() < 0.5


def test_face_mesh_finds_the_face_of_a_real_frame(shared_data):
    if not os.environ.get("JAXHEAD_MEDIAPIPE_PYTHON"):
        pytest.skip("set JAXHEAD_MEDIAPIPE_PYTHON to a MediaPipe environment's python")
    with av.open(str(shared_data / "real" / "video" / "May_5s.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    points = face_mesh_lib.face_mesh(frame[None].astype(np.float32) / 255.0)
    assert points.shape == (1, 478, 3) and np.isfinite(points).all()
    assert 0 < points[0, :, 0].min() and points[0, :, 0].max() < frame.shape[1]


def speaking_fixture(tmp_path: pathlib.Path, val_frames: int):
    """A 64 x 64 fixture folder: 12 training frames, ``val_frames`` held out, a 1 s tone."""
    fixture = write_video_fixture(
        tmp_path / "person", train_ids=list(range(12)), val_ids=list(range(12, 12 + val_frames)),
        height=64, width=64,
    )  # fmt: skip
    t = np.arange(16000) / 16000
    save_wav(fixture.root / "aud.wav", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32))
    return fixture


def video_config(root: pathlib.Path, cache: pathlib.Path, variant: str = "smoke"):
    spec = importlib.util.spec_from_file_location("video_config", ROOT / "configs" / "video.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    with config.unlocked():
        config.data.root = str(root)
        config.data.cache_dir = str(cache)
        config.mesh.data = 1
        config.train.update(progress=False, steps=2, log_every=1, checkpoint_every=2)
        config.sync.train = False
    return config


@pytest.mark.slow
def test_video_smoke_run_trains_renders_and_evaluates(tmp_path, monkeypatch):
    from jaxhead.data.media import write_video
    from jaxhead.nerf import stage

    no_face_mesh(monkeypatch)
    fixture = speaking_fixture(tmp_path, val_frames=8)
    workdir = tmp_path / "run"
    stage.train(video_config(fixture.root, tmp_path / "cache"), workdir)
    during = json.loads((workdir / "eval.json").read_text())["val"]
    assert during["frames"] == 8
    # A video has no jaw parameter: the mouth's motion is measured against the true frames.
    assert during["mouth_motion_reference"] == "truth" and "mouth_motion_r_truth" not in during

    results = evaluate.evaluate_workdir(workdir)
    val = results["val"]
    assert 0 < val["psnr"] < 60 and -1 <= val["ssim"] <= 1 and val["frames"] == 8
    assert val["lpips"] == {"lpips": None, "reason": val["lpips"]["reason"]}
    assert "weights not configured" in val["lpips"]["reason"]
    assert val["fid"]["fid"] is None and "InceptionV3" in val["fid"]["reason"]
    assert val["lmd"]["lmd"] is None and face_mesh_lib.NO_FACE_MESH in val["lmd"]["reason"]
    assert val["mouth_opening"]["r"] is None
    assert val["sync"]["confidence"] is None
    assert val["syncnet"] == {"syncnet_confidence": None, "reason": "weights not configured"}
    assert val["blinks_per_second"]["truth_signal"] >= 0
    assert (workdir / val["plot"]).exists()
    table = (workdir / "eval.md").read_text()
    assert "not computed: weights not configured" in table and "val.psnr" in table

    # The run's cameras <-> head poses in the GP-VAE's frame (the tracker's camera, its units):
    # the run keeps the scene scale it put on the tracker's translations.
    trained = render_video.load_trained(workdir)
    config = trained.config
    assert trained.scene_scale == pytest.approx(video_frames.scene_scale_of(config.data))
    raw = json.loads((fixture.root / "transforms_train.json").read_text())["frames"]
    raw_c2w = np.asarray([f["transform_matrix"] for f in raw[:3]], np.float64)
    track = trained.run.tracks["c2w"][:3]
    np.testing.assert_allclose(
        trained.poses_of_cameras(track), readers.head_pose_from_c2w(raw_c2w), atol=1e-5
    )
    np.testing.assert_allclose(
        trained.cameras_of_poses(trained.poses_of_cameras(track)), track, atol=1e-5
    )

    # A generated pose (what --pose_from gpvae scores): D-Rot / D-Pos vs the tracked pose; the
    # held-out sequence's own first frames are the generator's BOP.
    starts = []

    def generated(workdir, audio=None, num_frames=None, fps=25.0, seed=0, bop=None, bop_fps=None):
        starts.append((bop, bop_fps))
        pose = np.repeat(bop[:1, :6], num_frames, 0)
        pose[:, 1] += np.linspace(-0.1, 0.1, num_frames)
        return pose, np.zeros(num_frames, np.float32)

    monkeypatch.setattr(render_video, "generate_pose_blink", generated)
    gen = evaluate.evaluate_workdir(workdir, pose_from="gpvae", gpvae_workdir="gp")
    scores = gen["val_gpvae_pose"]
    assert np.isfinite(scores["d_rot"]) and np.isfinite(scores["d_pos"])
    assert gen["val"]["psnr"] == val["psnr"]  # merged into eval.json beside the first results
    ((bop, bop_fps),) = starts
    assert bop.shape == (8, 7) and bop_fps == config.data.fps
    source, (rows,) = render_video.heldout_sequences(trained, "val")
    truth = trained.poses_of_cameras(np.stack([source[int(r)]["c2w"] for r in rows]))
    np.testing.assert_allclose(bop[:, :6], truth, atol=1e-5)
    speech = (0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)).astype(np.float32)
    frames = render_video.drive(trained, speech)
    assert frames.shape == (12, 64, 64, 3) and np.isfinite(frames).all()
    # New speech with a generated pose (render.py --pose_from gpvae): the run's first training
    # frames are the BOP, and the pose renders through the run's own cameras.
    pose_blink = render_video.generated_pose_blink(trained, "gp", speech, 12)
    bop, bop_fps = starts[-1]
    first = render_video.identity_rows(trained, 0)[: len(bop)]
    np.testing.assert_allclose(
        bop[:, :6], trained.poses_of_cameras(trained.run.tracks["c2w"][first]), atol=1e-5
    )
    np.testing.assert_allclose(bop[:, 6], trained.run.tracks["blink"][first])
    posed = render_video.drive(trained, speech, pose_blink=pose_blink)
    # --pose_recenter_s: the slow motion replaced by the identity's mean training pose
    rest = trained.poses_of_cameras(
        trained.run.tracks["c2w"][render_video.identity_rows(trained, 0)]
    )
    kept, _ = render_video.generated_pose_blink(trained, "gp", speech, 12, recenter_s=0.2)
    np.testing.assert_allclose(kept, poses.recentered(pose_blink[0], rest.mean(0), 5), atol=1e-6)
    assert posed.shape == frames.shape and np.isfinite(posed).all()
    side_by_side, audio = render_video.held_out_sequence(trained, 0)
    assert side_by_side.shape == (8, 64, 128, 3)
    assert audio is not None and len(audio) == 8 * 16000 // 25
    video = write_video(tmp_path / "out.mp4", side_by_side, 25, audio)
    with av.open(str(video)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}


def test_full_frame_smoke_run_scores_frame_and_face_and_drives(tmp_path, monkeypatch):
    """``configs/video.py:smoke,frame=full``: whole frames over the static background, the
    head+camera field; the held-out scores add the face crop's; new speech renders full frames
    over the run's own background (kept in conditions.npz)."""
    from jaxhead.nerf import conditions, stage

    no_face_mesh(monkeypatch)
    fixture = speaking_fixture(tmp_path, val_frames=4)
    config = video_config(fixture.root, tmp_path / "cache", "smoke,frame=full")
    assert config.model.space == "head+camera" and config.data.frame == "full"
    with config.unlocked():
        config.data.crop.box = (16, 8, 32)
    workdir = tmp_path / "run"
    stage.train(config, workdir)
    val = json.loads((workdir / "eval.json").read_text())["val"]
    assert val["frames"] == 4 and np.isfinite(val["face_psnr"]) and val["face_psnr"] != val["psnr"]
    assert np.isfinite(val["neck_band_psnr"]) and np.isfinite(val["head_rest_psnr"])
    assert np.isfinite(val["body_psnr"]) and np.isfinite(val["background_psnr"])
    assert "whole frames" in evaluate.evaluate_workdir(workdir)["data"]["note"]
    run = conditions.read_run_conditions(workdir)
    assert run.background.shape == (128, 128, 3) and run.background.dtype == np.uint8
    trained = render_video.load_trained(workdir)
    assert trained.setup.full_frame
    speech = (0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)).astype(np.float32)
    frames = render_video.drive(trained, speech)
    assert frames.shape == (12, 128, 128, 3) and np.isfinite(frames).all()


def test_blink_control_renders_open_and_closed_and_compares_the_eye_aspect_ratios(monkeypatch):
    """The renders' EAR with the blink input at 0 and at the training frames' largest value,
    against the true frames' closure (a fake renderer whose eyes close with the input and a
    fake Face Mesh reading the eye opening off the image)."""
    import types

    from jaxhead.face import LEFT_EYE, RIGHT_EYE

    def points(opening):  # an eye 1 wide whose lids are `opening` apart (EAR = opening)
        p = np.zeros((478, 3))
        for eye in (RIGHT_EYE, LEFT_EYE):
            p[eye] = [[0, 0, 0], [0.25, -opening / 2, 0], [0.75, -opening / 2, 0],
                      [1, 0, 0], [0.75, opening / 2, 0], [0.25, opening / 2, 0]]  # fmt: skip
        return p

    def fake_render(trained, source, rows, replace):
        opening = 0.3 * (1.0 - replace["blink"])  # the input closes the eyes linearly
        return types.SimpleNamespace(
            pred=np.broadcast_to(opening[:, None, None, None], (len(rows), 2, 2, 3))
        )

    monkeypatch.setattr(evaluate, "render_sequence", fake_render)
    monkeypatch.setattr(
        evaluate,
        "face_mesh",
        lambda frames, python=None: np.stack([points(f[0, 0, 0]) for f in frames]),
    )
    trained = types.SimpleNamespace(
        run=types.SimpleNamespace(tracks={"blink": np.array([0.1, 0.5, 0.2], np.float32)})
    )
    held = types.SimpleNamespace(rows=np.arange(20))
    truth = [np.stack([points(v) for v in [0.3] * 18 + [0.06, 0.3]])]
    out = evaluate._blink_control(trained, None, held, truth, None)
    assert out["frames"] == evaluate.BLINK_CONTROL_FRAMES and out["blink_input"] == 0.5
    assert out["rendered_ear_open"] == pytest.approx(0.3)
    assert out["rendered_ear_closed"] == pytest.approx(0.15)
    assert out["closure"] == pytest.approx(0.5)
    assert out["truth_closure"] == pytest.approx(0.8)  # 1 - 0.06 / 0.3
    # No face in the renders: not computed, never a number.
    monkeypatch.setattr(
        evaluate, "face_mesh", lambda frames, python=None: np.full((len(frames), 478, 3), np.nan)
    )
    assert evaluate._blink_control(trained, None, held, truth, None)["closure"] is None
