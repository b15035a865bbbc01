"""scripts/preprocess.py: pure parts, bad inputs, resumability and the real thing.

Tests that need MediaPipe run when it imports here or ``$JAXHEAD_MEDIAPIPE_PYTHON`` names an
interpreter that has it (see docs/preprocess.md); the others replace the MediaPipe worker with
`preprocess_fixture.fake_mediapipe`.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from preprocess_fixture import FakeFace, face_template, fake_mediapipe, frame_value, write_clip

from jaxhead.data import video
from jaxhead.data.errors import MissingFileError
from jaxhead.preprocess import decode, landmarks, masks, mediapipe_worker, pipeline, pose
from jaxhead.preprocess.errors import PreprocessError

REPO = pathlib.Path(__file__).resolve().parents[1]


def _rotation(rng, max_deg):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _angle_deg(a, b):
    return np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1)))


def mediapipe_ready() -> bool:
    return bool(os.environ.get(pipeline.MEDIAPIPE_ENV)) or mediapipe_worker.available()


needs_mediapipe = pytest.mark.skipif(
    not mediapipe_ready(),
    reason=f"MediaPipe is not importable and ${pipeline.MEDIAPIPE_ENV} is unset",
)


def test_the_mediapipe_worker_imports_nothing_of_the_main_environment():
    import ast

    tree = ast.parse(pathlib.Path(mediapipe_worker.__file__).read_text())
    modules = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
               for alias in n.names}  # fmt: skip
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert modules <= {"__future__", "argparse", "os", "pathlib", "sys", "tempfile"} | {
        "cv2", "numpy", "mediapipe",
    }  # fmt: skip
    code = (
        "import sys, jaxhead.preprocess.mediapipe_worker; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jax', 'grain', 'orbax', 'flax', 'av', 'google')))"
    )
    env = dict(os.environ, PYTHONPATH=os.fspath(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- pure functions ------------------------------------------------------------------------------


def test_ibug68_map_is_68_distinct_face_mesh_points_in_mirror_pairs():
    index = landmarks.MEDIAPIPE_TO_IBUG68
    assert index.shape == (68,) and len(set(index.tolist())) == 68 and index.max() < 468
    # Mirror partners in iBUG (jaw 0<->16, brows 17<->26, eyes 36<->45, mouth 48<->54 ...)
    # map to Face Mesh points that are mirror pairs; on a real frame they sit at equal heights.
    assert landmarks.to_ibug68(np.zeros((2, 478, 3))).shape == (2, 68, 3)
    with pytest.raises(ValueError, match="Face Mesh points"):
        landmarks.to_ibug68(np.zeros((68, 2)))


def test_ibug68_map_on_real_face_mesh_landmarks(shared_data):
    path = shared_data / "real" / "sequences" / "echomimic_landmarks478.npy"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    marks = np.load(path)[:, :, :2]
    ibug = landmarks.to_ibug68(marks)  # [N, 68, 2]
    x, y = ibug[..., 0], ibug[..., 1]
    face_w = x[:, 16] - x[:, 0]
    # The jaw runs left to right over the chin (the far ends of a turned face's 3D jaw may not).
    assert (np.diff(x[:, 1:15], axis=1) > 0).all()
    assert (y[:, 8] >= y[:, :17].max(1) - 0.02 * face_w).all()  # the chin is the lowest jaw point
    assert (x[:, 36] < x[:, 39]).all() and (x[:, 39] < x[:, 42]).all()
    assert (x[:, 42] < x[:, 45]).all() and (x[:, 48] < x[:, 54]).all()
    assert (
        (y[:, 27] < y[:, 30]).all() and (y[:, 30] < y[:, 51]).all() and (y[:, 51] < y[:, 57]).all()
    )
    pairs = [(0, 16), (4, 12), (17, 26), (36, 45), (39, 42), (48, 54), (31, 35)]
    for a, b in pairs:  # mirror partners sit at about the same height (the faces are upright)
        assert np.median(np.abs(y[:, a] - y[:, b]) / face_w) < 0.08, (a, b)


def test_eye_aspect_ratio_ignores_head_rotation_and_drops_when_the_lids_close():
    face = face_template()
    rng = np.random.default_rng(0)
    ear = landmarks.eye_aspect_ratio(face)
    for _ in range(5):
        rot = _rotation(rng, 40)
        np.testing.assert_allclose(landmarks.eye_aspect_ratio(face @ rot.T * 3.0), ear, rtol=1e-9)
    closed = face.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        closed[landmarks.MEDIAPIPE_TO_IBUG68[upper]] = closed[landmarks.MEDIAPIPE_TO_IBUG68[lower]]
    assert landmarks.eye_aspect_ratio(closed) < 0.01 < ear


def test_blink_normalisation_maps_open_to_0_and_closed_to_1():
    ear = np.full(100, 0.3)
    ear[40:43] = [0.2, 0.05, 0.2]
    ear[70] = np.nan
    valid = np.ones(100, bool)
    valid[80] = False
    blink, refs = landmarks.blink_from_ear(ear, valid, closed_ratio=0.3)
    assert refs["open_ear"] == pytest.approx(0.3) and refs["closed_ear"] == pytest.approx(0.09)
    assert blink.dtype == np.float32 and blink.min() >= 0 and blink.max() <= 1
    assert blink[0] == 0 and blink[41] == 1 and blink[40] == pytest.approx(0.1 / 0.21, rel=1e-5)
    assert blink[70] == 0 and blink[80] == 0
    assert landmarks.count_blinks(blink) == 1
    assert landmarks.count_blinks([0, 0.9, 0.4, 0.9, 0.1, 0.8, 0]) == 2  # hysteresis
    with pytest.raises(ValueError, match="no valid frame"):
        landmarks.blink_from_ear(ear, np.zeros(100, bool))


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3))
    rot = _rotation(rng, 170)
    s, r, t = pose.umeyama(src, 2.5 * src @ rot.T + [1.0, -2.0, 3.0])
    assert s == pytest.approx(2.5) and _angle_deg(r, rot) < 1e-6
    np.testing.assert_allclose(t, [1.0, -2.0, 3.0], atol=1e-9)


def test_canonical_shape_and_pnp_recover_the_head_rotations_and_the_focal():
    face = FakeFace(yaw_deg=25.0, pitch_deg=12.0, head_scale=0.3, distance=4.0)
    width = height = 256
    marks = face.landmarks(40, width, height).astype(np.float64)
    _, rigid = pose.canonical_shape(marks)
    focal, curve = pose.estimate_focal(marks, rigid, width, height)
    assert focal == pytest.approx(face.focal(width), rel=0.05)
    assert list(curve) == sorted(curve)
    shape, _ = pose.canonical_shape(pose.unproject(marks, focal, width, height), rigid=rigid)
    assert shape.shape == (478, 3) and len(rigid) == 239
    eyes = np.linalg.norm(shape[33] - shape[263])
    assert eyes == pytest.approx(pose.EYE_CORNER_DISTANCE)
    # World axes: x from the right to the left eye, y up (forehead above chin), z out of the face.
    assert shape[263, 0] > shape[33, 0] and shape[10, 1] > shape[152, 1]
    nose_tip = landmarks.MEDIAPIPE_TO_IBUG68[30]
    assert shape[nose_tip, 2] > shape[234, 2]
    rots, trans, rmse = pose.solve_poses(shape[rigid], marks[:, rigid, :2], focal, width, height)
    assert np.nanmax(rmse) < 0.5
    truth = face.rotations(40)
    for i in range(0, 40, 3):  # relative rotations match (the world frame is the face's own)
        assert _angle_deg(rots[i] @ rots[0].T, truth[i] @ truth[0].T) < 0.5


def test_camera_to_world_is_the_opengl_inverse_of_the_head_pose():
    rng = np.random.default_rng(2)
    rots = np.stack([_rotation(rng, 30) for _ in range(4)])
    rots[0] = np.diag([1.0, -1.0, -1.0])  # the frontal pose: world z (out of the face) -> camera
    trans = rng.normal(size=(4, 3)) * 0.05 + [0, 0, 0.8]
    c2w = pose.camera_to_world(rots, trans)
    np.testing.assert_allclose(c2w[0, :3, :3], np.eye(3), atol=1e-12)
    assert c2w[0, 2, 3] > 0  # the frontal camera sits on +z looking along -z at the head
    k = pose.intrinsics(500.0, 200, 100)
    point = np.array([0.02, -0.03, 0.05])
    for i in range(4):
        cam_cv = rots[i] @ point + trans[i]
        expected = (k @ cam_cv)[:2] / cam_cv[2]
        w2c = np.linalg.inv(c2w[i])
        cam_gl = w2c[:3, :3] @ point + w2c[:3, 3]  # OpenGL: x right, y up, looking along -z
        got = [100 + 500 * cam_gl[0] / -cam_gl[2], 50 - 500 * cam_gl[1] / -cam_gl[2]]
        np.testing.assert_allclose(got, expected, atol=1e-9)
        projected = pose.project_opengl(point[None], c2w[i : i + 1], 500.0, 200, 100)
        np.testing.assert_allclose(projected[0, 0], expected, atol=1e-9)


def test_pose_smoothing_keeps_constants_and_ramps_reduces_noise_and_ignores_invalid_frames():
    n = 60
    valid = np.ones(n, bool)
    ramp = np.stack([np.linspace(0, 1, n), np.full(n, 2.0), np.zeros(n)], -1)
    out = pose.gaussian_smooth(ramp, valid, 1.5)
    np.testing.assert_allclose(out[6:-6], ramp[6:-6], atol=1e-12)  # linear in the interior
    rng = np.random.default_rng(3)
    noisy = ramp + rng.normal(scale=0.05, size=ramp.shape)
    assert np.std(pose.gaussian_smooth(noisy, valid, 1.5) - ramp) < 0.5 * np.std(noisy - ramp)
    wild = ramp.copy()
    wild[30] = 1e6
    valid[30] = False
    out = pose.gaussian_smooth(wild, valid, 1.5)
    # The invalid row's value has no weight; the row itself is filled from its neighbours.
    np.testing.assert_allclose(out[25:36], ramp[25:36], atol=0.01)
    np.testing.assert_array_equal(pose.gaussian_smooth(noisy, valid, 0.0), noisy)
    # Rotations: q and -q are one rotation; flipped signs must not cancel in the filter.
    rots = np.stack([_rotation(rng, 1) @ np.diag([1.0, -1.0, -1.0]) for _ in range(n)])
    smooth, _ = pose.smooth_poses(rots, np.zeros((n, 3)), np.ones(n, bool), 2.0)
    assert max(_angle_deg(a, b) for a, b in zip(smooth, rots, strict=True)) < 2.0
    quats = pose.rotation_to_quaternion(rots)
    np.testing.assert_allclose(pose.quaternion_to_rotation(-quats), rots, atol=1e-9)


def test_parsing_masks_use_the_peer_colours_and_reach_the_reader():
    size = 200
    marks = face_template() * 40 + [100, 90, 0]
    yy, xx = np.mgrid[:size, :size]
    hair = ((xx - 100) / 55) ** 2 + ((yy - 80) / 75) ** 2 <= 1
    shoulders = yy > 165
    person = (hair | shoulders).astype(np.float32)
    labels = masks.parse_frame(person, marks)
    assert labels[90, 100] == masks.HEAD and labels[20, 100] == masks.HEAD  # face, hair on top
    assert labels[190, 100] in (masks.NECK, masks.TORSO) and labels[190, 5] == masks.TORSO
    assert labels[5, 5] == masks.BACKGROUND and labels[100, 190] == masks.BACKGROUND
    parsing = masks.parsing_image(labels)
    for name, color in video.PARSING_COLORS.items():
        label = {"head": masks.HEAD, "neck": masks.NECK, "torso": masks.TORSO}[name]
        assert masks.LABEL_COLORS[label] == color
        np.testing.assert_array_equal(video.parsing_mask(parsing, (name,))[..., 0], labels == label)
    no_face = masks.parse_frame(person, None)
    assert set(np.unique(no_face)) == {masks.BACKGROUND, masks.TORSO}


def test_background_is_the_median_of_uncovered_pixels_and_inpaints_the_rest():
    rng = np.random.default_rng(4)
    background = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    frames, fgs = [], []
    for k in range(9):
        fg = np.zeros((40, 60), bool)
        fg[10:30, 5 + 5 * k : 15 + 5 * k] = True  # a moving block
        fg[0:6, 0:6] = True  # a corner that is never uncovered
        frame = background.copy()
        frame[fg] = 77
        frames.append(frame)
        fgs.append(fg)
    out, inpainted = masks.background_image(frames, fgs, margin=1)
    seen = np.ones((40, 60), bool)
    seen[0:7, 0:7] = False
    np.testing.assert_array_equal(out[seen], background[seen])
    assert 0 < inpainted < 0.05


# -- decoding ------------------------------------------------------------------------------------


def test_a_30_fps_video_is_resampled_to_25_fps_by_nearest_timestamp(tmp_path):
    path = write_clip(tmp_path / "clip30.mp4", num_frames=30, fps=30)
    got = []
    num, start = decode.decode_frames(path, 25, None, lambda i, rgb: got.append(int(rgb.mean())))
    assert num == 25 and start == 0
    # Output i at i/25 s takes the 30 fps frame nearest in time: round(i * 30 / 25), ties earlier.
    expected = [frame_value(int(np.ceil(i * 30 / 25 - 0.5))) for i in range(25)]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 2
    audio = decode.extract_audio(path, num, 25, start)
    assert audio.shape == (16000,) and np.abs(audio).max() > 0.1


def test_a_variable_frame_rate_video_maps_each_output_frame_to_the_nearest_source_frame(tmp_path):
    import fractions

    import av

    times_ms = [0, 30, 70, 100, 150, 160, 200, 290, 300, 330, 400, 410, 480]  # irregular
    path = tmp_path / "vfr.mp4"
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(100))
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for k, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(
                np.full((32, 32, 3), frame_value(k), np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    got = []
    num, start = decode.decode_frames(path, 25, None, lambda i, rgb: got.append(int(rgb.mean())))
    with av.open(os.fspath(path)) as container:  # the timestamps as the container stores them
        stamps = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert stamps[0] == 0.0 and len(stamps) == len(times_ms)
    end = stamps[-1] + (stamps[-1] - stamps[-2])
    assert num == int(np.ceil(end * 25 - 1e-9))
    for i, value in enumerate(got):  # nearest timestamp, ties to the earlier frame
        distance = np.abs(np.array(stamps) - i / 25)
        k = int(np.flatnonzero(distance <= distance.min() + 1e-9)[0])
        assert abs(value - frame_value(k)) <= 2, (i, k, value)


# -- bad inputs ----------------------------------------------------------------------------------


def _assert_nothing_written(out: pathlib.Path):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _run_cli(video_path, out, *extra, cwd=None):
    env = dict(os.environ, PYTHONPATH=os.fspath(REPO))
    command = [sys.executable, os.fspath(REPO / "scripts" / "preprocess.py"), os.fspath(video_path)]
    return subprocess.run(
        [*command, "--out", os.fspath(out), "--no_progress", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=cwd,
    )


def test_a_text_file_named_mp4_stops_with_a_clear_message_and_writes_nothing(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not frames\n" * 20)
    out = tmp_path / "data" / "notes"
    result = _run_cli(path, out)
    assert result.returncode == 1
    assert "notes.mp4: is not a video file FFmpeg can read" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_truncated_mp4_stops_with_a_clear_message_and_writes_nothing(tmp_path, shared_data):
    source = shared_data / "real" / "video" / "May_5s.mp4"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    path = tmp_path / "cut.mp4"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    out = tmp_path / "cut"
    with pytest.raises(PreprocessError, match=r"cut.mp4: starts like an MP4 .* truncated"):
        pipeline.preprocess(path, out, progress=False)
    _assert_nothing_written(out)


def test_a_truncated_streamable_mp4_is_caught_by_its_declared_duration(tmp_path):
    source = tmp_path / "fast.mp4"
    write_clip(source, num_frames=75, noise=True)  # noise: the cut falls mid-video
    remuxed = tmp_path / "fast_start.mp4"
    import av

    with (
        av.open(os.fspath(source)) as src,
        av.open(os.fspath(remuxed), "w", options={"movflags": "faststart"}) as dst,
    ):
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = remuxed.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index is at the front
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "half"
    with pytest.raises(PreprocessError, match="half.mp4: .*the file is truncated"):
        pipeline.preprocess(path, out, progress=False)
    _assert_nothing_written(out)


def test_a_video_without_audio_stops_with_a_clear_message_and_writes_nothing(tmp_path):
    path = write_clip(tmp_path / "silent.mp4", num_frames=10, audio=False)
    out = tmp_path / "silent"
    result = _run_cli(path, out)
    assert result.returncode == 1
    assert "silent.mp4: has no audio stream" in result.stderr and "ffmpeg -i" in result.stderr
    _assert_nothing_written(out)


@needs_mediapipe
def test_a_video_without_a_face_stops_with_a_clear_message_and_leaves_no_dataset(tmp_path):
    path = write_clip(tmp_path / "noise.mp4", num_frames=25, noise=True)
    out = tmp_path / "noise"
    with pytest.raises(PreprocessError, match="noise.mp4: MediaPipe Face Mesh found no face"):
        pipeline.preprocess(path, out, progress=False)
    _assert_nothing_written(out)


def test_missing_mediapipe_stops_with_the_commands_that_make_its_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(pipeline.MEDIAPIPE_ENV, raising=False)
    monkeypatch.setattr(mediapipe_worker, "available", lambda: False)
    path = write_clip(tmp_path / "clip.mp4", num_frames=10)
    with pytest.raises(PreprocessError, match="MediaPipe is not available") as error:
        pipeline.preprocess(path, tmp_path / "clip", progress=False)
    _assert_nothing_written(tmp_path / "clip")  # checked before the decoded folder appears
    assert 'pip install "mediapipe==0.10.14"' in str(error.value)
    assert "--mediapipe_python .venv-mediapipe/bin/python" in str(error.value)
    with pytest.raises(PreprocessError, match="interpreter does not exist"):
        pipeline.mediapipe_python(os.fspath(tmp_path / "no-such-python"))


def test_a_folder_that_is_not_a_preprocessing_folder_is_never_written_into(tmp_path):
    path = write_clip(tmp_path / "clip.mp4", num_frames=10)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("...")
    with pytest.raises(PreprocessError, match="holds no preprocess.json"):
        pipeline.preprocess(path, out, progress=False)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


# -- the whole pipeline with the MediaPipe stand-in ----------------------------------------------


@pytest.fixture
def fake_face(monkeypatch):
    face = FakeFace(missing=(5, 6))
    monkeypatch.setattr(pipeline, "run_mediapipe", fake_mediapipe(face))
    monkeypatch.setattr(pipeline, "mediapipe_python", lambda option: None)
    return face


def _mtimes(out: pathlib.Path) -> dict[str, int]:
    names = ["ori_imgs/0.jpg", "landmarks478.npy", "au.csv", "pose.npz", "parsing/0.png"]
    names += ["aud_mfcc.npy", "transforms_train.json"]
    return {name: (out / name).stat().st_mtime_ns for name in names}


def test_pipeline_output_loads_keeps_ids_and_resumes(tmp_path, fake_face, monkeypatch):
    path = write_clip(tmp_path / "clip.mp4", num_frames=40, size=128)
    out = tmp_path / "clip"
    state = pipeline.preprocess(path, out, progress=False, val_seconds=0.4)
    assert state["complete"] and list(state["steps"]) == list(pipeline.STEPS)
    valid = np.load(out / "valid.npy")
    assert valid.sum() == 38 and not valid[5] and not valid[6]
    marks = json.loads((out / "valid_frames.json").read_text())
    assert marks["missing_img_ids"] == [5, 6] and marks["num_frames"] == 40
    assert np.isnan(np.load(out / "landmarks478.npy")[5]).all()
    assert not (out / "ori_imgs" / "5.lms").exists() and (out / "ori_imgs" / "5.jpg").exists()
    assert state["steps"]["landmarks"]["blinks"] == 1
    assert state["steps"]["pose"]["focal"] == pytest.approx(fake_face.focal(128), rel=0.15)
    assert state["steps"]["pose"]["median_camera_reprojection_px"] < 0.5

    train = video.VideoDataset(out, "train", audio="auto", lr_factor=4, image_dir="ori_imgs")
    val = video.VideoDataset(out, "val", audio="aud_logmel.npy")
    assert train.audio_path.name == "aud_mfcc.npy" and len(train) + len(val) == 38
    assert val.img_ids.tolist() == list(range(30, 40))  # the last 0.4 s
    assert 5 not in train.img_ids.tolist() and 7 in train.img_ids.tolist()
    example = train[train.index_of(7)]  # ids never shift: frame 7 is the 7th source frame
    assert abs(example["image"].mean() * 255 - frame_value(7)) < 3
    assert example["landmarks"].shape == (68, 2) and example["mask"].mean() > 0.1
    assert 0.0 <= float(train[train.index_of(11)]["blink"]) <= 1.0
    assert float(train[train.index_of(11)]["blink"]) == pytest.approx(1.0)
    assert train.background().shape == (128, 128, 3)
    c2w = train.transforms.c2w
    np.testing.assert_allclose(c2w[:, 3], np.tile([0, 0, 0, 1], (len(c2w), 1)), atol=1e-6)
    assert (c2w[:, 2, 3] > 0).all()  # cameras in front of the face (+z), looking along -z

    # A second run skips every step and rewrites nothing.
    before = _mtimes(out)
    again = pipeline.preprocess(path, out, progress=False, val_seconds=0.4)
    assert again["steps"] == state["steps"] and _mtimes(out) == before
    # So does a copy of the video in another place with another modification time.
    copy = tmp_path / "elsewhere" / "clip.mp4"
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    os.utime(copy, (1_000_000, 1_000_000))
    again = pipeline.preprocess(copy, out, progress=False, val_seconds=0.4)
    assert again["steps"] == state["steps"] and _mtimes(out) == before

    # A changed late option re-runs only the steps from the one it belongs to.
    split = pipeline.preprocess(path, out, progress=False)
    assert split["steps"]["pose"] == state["steps"]["pose"]
    assert split["steps"]["finalize"]["val_frames"] == 40 - int(40 * 10 / 11)
    assert _mtimes(out)["aud_mfcc.npy"] == before["aud_mfcc.npy"]

    # A HuBERT checkpoint adds aud_hu.npy (re-running the audio features and the transforms only).
    from test_hubert import _numpy_checkpoint

    model = _numpy_checkpoint(tmp_path / "hubert", layout="base")
    hubert = pipeline.preprocess(path, out, progress=False, hubert_checkpoint=tmp_path / "hubert")
    assert hubert["steps"]["masks"] == state["steps"]["masks"]
    assert np.load(out / "aud_hu.npy").shape == (40, 2, model.config.hidden_size)
    # --redo re-runs a finished step and the later ones.
    redo = pipeline.preprocess(path, out, progress=False, redo="masks")
    assert redo["steps"]["pose"] == state["steps"]["pose"]
    assert redo["steps"]["masks"]["finished"] >= state["steps"]["masks"]["finished"]
    assert not (out / "aud_hu.npy").exists()  # the options of this run have no checkpoint
    assert _mtimes(out)["parsing/0.png"] > before["parsing/0.png"]

    # A different video (or decode option) for the same folder is refused.
    with pytest.raises(PreprocessError, match="is not overwritten"):
        pipeline.preprocess(path, out, progress=False, max_seconds=1.0)
    other = write_clip(tmp_path / "other.mp4", num_frames=41, size=128)
    with pytest.raises(PreprocessError, match="is not overwritten"):
        pipeline.preprocess(other, out, progress=False)


def test_an_interrupted_run_keeps_its_finished_steps_and_is_no_dataset(tmp_path, fake_face):
    path = write_clip(tmp_path / "clip.mp4", num_frames=30, size=128)
    out = tmp_path / "clip"

    def crash(self):
        raise RuntimeError("simulated crash in the audio features")

    original = pipeline.Run.step_audio_features
    pipeline.Run.step_audio_features = crash
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            pipeline.preprocess(path, out, progress=False)
    finally:
        pipeline.Run.step_audio_features = original
    state = json.loads((out / "preprocess.json").read_text())
    assert not state["complete"]
    assert [s for s in pipeline.STEPS if state["steps"].get(s, {}).get("status") == "done"] == [
        "decode", "mediapipe", "landmarks", "pose", "masks",
    ]  # fmt: skip
    assert state["steps"]["audio_features"]["status"] == "failed"
    assert not (out / "transforms_train.json").exists()
    with pytest.raises(MissingFileError, match="transforms_train.json"):
        video.VideoDataset(out)
    parsing = (out / "parsing" / "0.png").stat().st_mtime_ns
    state = pipeline.preprocess(path, out, progress=False)
    assert state["complete"] and (out / "parsing" / "0.png").stat().st_mtime_ns == parsing
    assert len(video.VideoDataset(out, "val", audio="aud_mfcc.npy")) == 30 - int(30 * 10 / 11)


def test_the_sync_stage_reads_the_output_when_every_frame_has_a_face(tmp_path, monkeypatch):
    from jaxhead.sync.data import load_video_clip

    monkeypatch.setattr(pipeline, "run_mediapipe", fake_mediapipe(FakeFace()))
    monkeypatch.setattr(pipeline, "mediapipe_python", lambda option: None)
    path = write_clip(tmp_path / "clip.mp4", num_frames=30, size=128)
    out = tmp_path / "clip"
    pipeline.preprocess(path, out, progress=False)
    clip = load_video_clip(out, "aud.wav", features="mfcc", window=5)
    assert clip.lips.shape == (30, 40) and clip.audio.shape[0] == 30
    clip = load_video_clip(out, "aud_mfcc.npy", window=5)
    assert clip.lips.shape == (30, 40) and clip.audio.shape[0] == 30


# -- MediaPipe: the real thing -------------------------------------------------------------------


@needs_mediapipe
def test_real_clip_end_to_end(tmp_path, shared_data):
    source = shared_data / "real" / "video" / "May_5s.mp4"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    out = tmp_path / "may"  # given relative to another working directory
    result = _run_cli(source, "may", "--max_seconds", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads((out / "preprocess.json").read_text())
    assert state["complete"] and state["steps"]["mediapipe"]["faces_found"] == 50
    dataset = video.VideoDataset(out, "train")
    assert len(dataset) == int(50 * 10 / 11)
    example = dataset[0]
    assert example["image"].shape == (512, 512, 3) and 0.05 < example["mask"].mean() < 0.8
    lms = example["landmarks"]
    assert (lms[:, 0] > 0).all() and (lms[:, 0] < 512).all()
    assert cv2.imread(os.fspath(out / "bc.jpg")).shape == (512, 512, 3)


def test_a_rejected_option_leaves_the_finished_dataset_untouched(tmp_path, fake_face):
    path = write_clip(tmp_path / "clip.mp4", num_frames=30, size=128)
    out = tmp_path / "clip"
    pipeline.preprocess(path, out, progress=False)
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    state = (out / "preprocess.json").read_text()
    with pytest.raises(PreprocessError, match="--val_seconds 5 is not shorter than the video"):
        pipeline.preprocess(path, out, progress=False, val_seconds=5.0)
    with pytest.raises(PreprocessError, match="--smooth_sigma must be >= 0"):
        pipeline.preprocess(path, out, progress=False, smooth_sigma=-1.0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files
    assert (out / "preprocess.json").read_text() == state
    assert len(video.VideoDataset(out, "val", audio="aud_mfcc.npy")) > 0
    # A new folder is refused before it is made.
    with pytest.raises(PreprocessError, match="--val_seconds"):
        pipeline.preprocess(path, tmp_path / "new", progress=False, val_seconds=5.0)
    assert not (tmp_path / "new").exists()
    # The preprocess.json of this version records the peers' parsing colours.
    assert json.loads(state)["steps"]["masks"]["parsing_colors"] == "peers"
