"""Tests for the procedural head, speech synthesis and the synthetic VOCASET generator."""

import pickle
import time

import numpy as np
import pytest

from jaxhead.data import head_model, raster, speech, synthetic


def _frame_envelope(audio, sample_rate, fps, num_frames):
    hop = sample_rate / fps
    return np.array(
        [
            np.sqrt(np.mean(audio[int(k * hop) : int((k + 1) * hop)].astype(np.float64) ** 2))
            for k in range(num_frames)
        ]
    )


def _lagged_corr(x, y, lag):
    """corr(x[t], y[t + lag])."""
    if lag >= 0:
        return np.corrcoef(x[: len(x) - lag], y[lag:])[0, 1]
    return np.corrcoef(x[-lag:], y[: len(y) + lag])[0, 1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "voca"
    start = time.perf_counter()
    synthetic.generate(
        out, identities=2, sequences=2, seconds=3.0, seed=3, mesh_rows=24, mesh_cols=32
    )
    return out, time.perf_counter() - start


def test_generator_writes_vocaset_files_in_seconds(dataset):
    out, seconds = dataset
    assert seconds < 10.0
    verts = np.load(out / "data_verts.npy", mmap_mode="r")
    assert isinstance(verts, np.memmap) and verts.dtype == np.float32
    assert verts.shape[0] == 2 * 2 * 180 and verts.shape[2] == 3
    with open(out / "templates.pkl", "rb") as f:
        templates = pickle.load(f, encoding="latin1")
    with open(out / "raw_audio_fixed.pkl", "rb") as f:
        audio = pickle.load(f, encoding="latin1")
    with open(out / "subj_seq_to_idx.pkl", "rb") as f:
        index = pickle.load(f, encoding="latin1")
    subjects = sorted(templates)
    assert len(subjects) == 2 and all(
        s.startswith("FaceTalk_") and s.endswith("_TA") for s in subjects
    )
    assert sorted(index[subjects[0]]) == ["sentence01", "sentence02"]
    entry = audio[subjects[1]]["sentence02"]
    assert set(entry) == {"audio", "sample_rate"} and entry["sample_rate"] == 22_000
    assert len(entry["audio"]) == 3 * 22_000
    rows = sorted(index[subjects[1]]["sentence02"].items())
    assert rows[0][0] == 0 and len(rows) == 180
    assert templates[subjects[0]].shape == verts.shape[1:]
    # Head ~0.2 m tall without the neck, in metres like VOCASET.
    height = verts[0][:, 1].max() - verts[0][:, 1].min()
    assert 0.25 < height < 0.35 and np.abs(verts[0]).max() < 0.2
    f = np.load(out / "factors.npz")
    n = len(verts)
    for key in ("shape", "albedo", "illumination", "jaw_open", "lip_round", "blink"):
        assert f[key].shape[0] == n, key
    assert f["head_rotation"].shape == (n, 3) and f["head_translation"].shape == (n, 3)
    assert f["vertex_albedo"].shape == (2, verts.shape[1], 3)
    assert f["landmark_indices"].shape == (68,) and f["faces"].max() < verts.shape[1]
    # Factor rows follow the index: the row of (subject 1, sentence02, frame 7).
    row = index[subjects[1]]["sentence02"][7]
    assert (f["subject"][row], f["sentence"][row], f["frame"][row]) == (1, 1, 7)


def test_generator_is_deterministic_for_a_seed(tmp_path):
    kw = dict(identities=1, sequences=1, seconds=1.5, mesh_rows=16, mesh_cols=24)
    a = synthetic.generate(tmp_path / "a", seed=5, **kw)
    b = synthetic.generate(tmp_path / "b", seed=5, **kw)
    c = synthetic.generate(tmp_path / "c", seed=6, **kw)
    for name in ("data_verts.npy", "raw_audio_fixed.pkl", "subj_seq_to_idx.pkl", "templates.pkl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "data_verts.npy").read_bytes() != (c / "data_verts.npy").read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        synthetic.generate(tmp_path / "a", seed=5, **kw)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folders


def test_cli_writes_a_folder(tmp_path, capsys):
    synthetic.main(
        ["--out", str(tmp_path / "cli"), "--identities", "1", "--sequences", "1", "--seconds", "1"]
    )
    assert (tmp_path / "cli" / "data_verts.npy").is_file()
    assert "wrote" in capsys.readouterr().out


def test_mouth_follows_the_audio_envelope_with_the_lips_leading(dataset):
    out, _ = dataset
    f = np.load(out / "factors.npz")
    with open(out / "raw_audio_fixed.pkl", "rb") as fh:
        audio = pickle.load(fh, encoding="latin1")
    names = list(f["subject_names"])
    lags = np.arange(-8, 9)
    for s, q in [(0, 0), (1, 1)]:
        rows = (f["subject"] == s) & (f["sentence"] == q)
        jaw = f["jaw_open"][rows]
        entry = audio[names[s]][f"sentence{q + 1:02d}"]
        env = _frame_envelope(entry["audio"], entry["sample_rate"], 60, len(jaw))
        corr = np.array([_lagged_corr(jaw, env, int(k)) for k in lags])
        best = lags[np.argmax(corr)]
        assert corr.max() > 0.6
        # Lips lead by 1-2 frames at 25 fps (40-80 ms): 2-5 frames at 60 fps.
        assert 2 <= best <= 5, (best, corr)
        # Blinks are independent of the audio.
        blink = f["blink"][rows]
        assert abs(np.corrcoef(blink, env)[0, 1]) < 0.3


def test_bilabial_closures_shut_the_mouth_and_vowels_open_it():
    rng = np.random.default_rng(0)
    timeline = speech.sample_timeline(rng, 6.0)
    centres = 0.5 * (timeline.starts + timeline.ends)
    mouth = speech.mouth_trajectory(timeline, centres - 0.06, lip_lead=0.06)  # no lead: targets
    labels = np.array(timeline.labels)
    bilabial = np.isin(labels, list("bpm"))
    open_vowel = labels == "a"
    assert bilabial.any() and open_vowel.any()
    assert mouth[bilabial, 0].max() < 0.1
    assert mouth[open_vowel, 0].mean() > 0.6
    rounded = np.isin(labels, list("ou"))
    assert mouth[rounded, 1].mean() > mouth[np.isin(labels, list("aei")), 1].mean() + 0.4


def test_speech_audio_is_speech_like():
    rng = np.random.default_rng(1)
    timeline = speech.sample_timeline(rng, 3.0)
    audio = speech.synthesize(timeline, rng, 22_000, f0=150.0)
    assert audio.dtype == np.float32 and len(audio) == 66_000
    assert np.isclose(np.abs(audio).max(), 0.5)
    # Leading/trailing silence is quiet; voiced vowels carry a periodicity near f0.
    assert np.abs(audio[:4000]).max() < 0.02
    k = int(
        np.argmax(
            [
                (lab == "a") * (e - s)
                for lab, s, e in zip(timeline.labels, timeline.starts, timeline.ends, strict=True)
            ]
        )
    )
    seg = audio[int(timeline.starts[k] * 22_000) : int(timeline.ends[k] * 22_000)].astype(
        np.float64
    )
    seg -= seg.mean()
    ac = np.correlate(seg, seg, "full")[len(seg) - 1 :]
    period = np.argmax(ac[60:400]) + 60  # search 55-366 Hz
    assert 120.0 < 22_000 / period < 190.0


def test_blinks_and_head_motion_are_plausible():
    times = np.arange(60 * 20) / 60
    blink = speech.blink_trajectory(np.random.default_rng(0), times)
    onsets = np.sum((blink[1:] >= 0.99) & (blink[:-1] < 0.99))
    assert 2 <= onsets <= 12  # ~0.3 blinks/s over 20 s
    assert (blink == 0).mean() > 0.8
    rot, trans = speech.head_motion(np.random.default_rng(0), times)
    assert np.degrees(rot.std(0)).max() < 8 and np.degrees(rot.std(0)).min() > 0.5
    assert np.abs(np.diff(rot, axis=0)).max() < np.radians(1.0)  # smooth at 60 fps
    assert np.abs(trans).max() < 0.02


def test_head_expressions_move_the_right_landmarks():
    topo = head_model.build_topology(24, 36)
    lm = topo.landmark_indices
    assert len(set(lm.tolist())) == 68
    template = head_model.neutral_vertices(topo, head_model.sample_shape(np.random.default_rng(0)))
    expr = np.array([[0, 0, 0], [0.5, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    v = head_model.animate(topo, template, expr)
    lip_gap = np.linalg.norm(v[:, lm[62]] - v[:, lm[66]], axis=-1)
    assert lip_gap[0] < 1e-6 and lip_gap[0] < lip_gap[1] < lip_gap[2]
    assert 0.012 < lip_gap[2] < 0.035
    width = np.linalg.norm(v[:, lm[48]] - v[:, lm[54]], axis=-1)
    assert width[3] < 0.85 * width[0]  # rounding narrows the mouth
    lid_gap = np.linalg.norm(v[:, lm[37]] - v[:, lm[41]], axis=-1)
    assert lid_gap[0] > 0.004 and lid_gap[4] < 1e-6  # open eyes, closed on blink
    # The skull does not move with expressions.
    top = np.argmax(template[:, 1])
    np.testing.assert_allclose(v[:, top], np.repeat(template[None, top], 5, 0), atol=1e-7)


def test_head_pose_as_camera_motion_gives_the_same_projection():
    rng = np.random.default_rng(4)
    points = rng.uniform(-0.1, 0.1, (50, 3))
    rotvec, trans = np.radians([5.0, -12.0, 3.0]), np.array([0.004, -0.002, 0.01])
    rot = head_model.axis_angle_to_matrix(rotvec)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    c2w = raster.look_at([0.1, 0.05, 0.6], [0, 0, 0])
    intr = [300.0, 300.0, 64.0, 64.0]
    posed = head_model.pose_vertices(points, rotvec, trans)
    uv_world, _ = raster.project(posed, intr, c2w)
    uv_head, _ = raster.project(points, intr, head_model.camera_in_head_frame(c2w, rotvec, trans))
    np.testing.assert_allclose(uv_world, uv_head, atol=1e-9)
