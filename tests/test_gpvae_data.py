"""The GP-VAE's ``videos`` source (folders of scripts/preprocess.py) and the speaker split, on
small preprocessed folders the tests write themselves."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx
from scipy.spatial.transform import Rotation

from jaxhead.audio.io import save_wav
from jaxhead.data.errors import DatasetError, FeatureShapeError, MissingFileError
from jaxhead.gpvae import data as data_lib
from jaxhead.gpvae import models, readers, stage
from jaxhead.gpvae.kernels import gp_prior_covariance
from jaxhead.gpvae.step import cme_loss, vae_loss
from jaxhead.train.workdir import config_differences, config_to_json

FPS = 25
CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "gpvae.py"


def load_config(arg=None):
    spec = importlib.util.spec_from_file_location("gpvae_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def head_motion(num, seed=0):
    """Known head poses ``[num, 6]``: slow rotations (rad) and translations (m)."""
    t = np.arange(num) / FPS
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 6)
    amp = np.array([0.2, 0.3, 0.1, 0.01, 0.01, 0.02])
    offset = np.array([0.0, 0.0, 0.0, 0.0, 0.0, -0.5])
    return offset + amp * np.sin(2 * np.pi * 0.3 * t[:, None] + phase)


def write_folder(
    root: pathlib.Path,
    name: str,
    num: int = 100,
    *,
    seed: int = 0,
    valid: np.ndarray | None = None,
    audio_frames: float | None = None,
) -> tuple[pathlib.Path, np.ndarray, np.ndarray]:
    """A minimal preprocessed folder; returns it, the true head poses and the blink signal.

    ``c2w`` is the camera-to-head matrix, the inverse of the head pose (as preprocess writes it);
    frames without a face get NaN matrices and blink 0 (what the reader must not use).
    """
    folder = root / name
    folder.mkdir(parents=True)
    pose = head_motion(num, seed)
    rot = Rotation.from_rotvec(pose[:, :3]).as_matrix()
    c2w = np.tile(np.eye(4), (num, 1, 1))
    c2w[:, :3, :3] = np.swapaxes(rot, 1, 2)
    c2w[:, :3, 3] = -np.einsum("nji,nj->ni", rot, pose[:, 3:])
    blink = np.zeros(num, np.float32)
    blink[10:14] = 1.0
    blink[60:63] = 0.8
    valid = np.ones(num, bool) if valid is None else valid
    c2w[~valid] = np.nan
    np.savez(folder / "pose.npz", c2w=c2w.astype(np.float32), focal=600.0)
    np.save(folder / "blink.npy", np.where(valid, blink, 0.0).astype(np.float32))
    np.save(folder / "valid.npy", valid)
    samples = int(round((num if audio_frames is None else audio_frames) / FPS * 16_000))
    t = np.arange(samples) / 16_000
    wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    save_wav(folder / "aud.wav", wave.astype(np.float32))
    (folder / "transforms_train.json").write_text(json.dumps({"fps": FPS, "frames": []}))
    return folder, pose, blink


def videos_config(paths, **overrides):
    data = ml_collections.ConfigDict(
        {
            "source": "videos",
            "paths": tuple(str(p) for p in paths),
            "fps": 25.0,
            "max_gap_frames": 5,
            "heldout_groups": (),
            "held_out_fraction": 0.2,
        }
    )
    data.update(overrides)
    return data


# --- the reader ------------------------------------------------------------------------------


def test_video_folder_pose_round_trip_blink_and_audio(tmp_path):
    folder, pose, blink = write_folder(tmp_path, "anna")
    (seq,) = readers.read_video_folder(folder)
    assert seq.group == "anna" and seq.name == str(folder)
    # c2w = inverse head pose: the reader gives the known rotations and translations back.
    np.testing.assert_allclose(seq.pose, pose, atol=2e-5)
    np.testing.assert_allclose(seq.blink, blink)
    assert seq.audio.shape == (100, readers.AUDIO_DIM) and np.all(np.isfinite(seq.audio))
    assert seq.features.shape == (100, readers.FEATURE_DIM)
    # The same convention as the AD-NeRF transforms reader on the same matrices.
    c2w = np.load(folder / "pose.npz")["c2w"]
    frames = [{"transform_matrix": m.tolist()} for m in c2w]
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": frames}))
    adnerf = readers.read_adnerf_transforms(tmp_path / "transforms.json")
    np.testing.assert_allclose(seq.pose, adnerf.pose, atol=1e-6)


def test_video_folder_interpolates_short_gaps_and_splits_at_long_ones(tmp_path):
    valid = np.ones(100, bool)
    valid[:2] = False  # leading: dropped
    valid[40:43] = False  # 3 frames <= max_gap 5: interpolated
    valid[70:80] = False  # 10 frames: the sequence is split
    valid[98:] = False  # trailing: dropped
    folder, pose, blink = write_folder(tmp_path, "bo", valid=valid)
    blink[41] = 0.9  # a value the reader never sees (the frame has no face)
    first, second = readers.read_video_folder(folder, max_gap_frames=5)
    assert first.name == f"{folder}[2:70]" and second.name == f"{folder}[80:98]"
    assert first.group == second.group == "bo"
    np.testing.assert_allclose(first.pose[:38], pose[2:40], atol=2e-5)
    np.testing.assert_allclose(second.pose, pose[80:98], atol=2e-5)
    # Frames 40-42 from their neighbours 39 and 43: translation and blink linearly, rotation by
    # slerp (≈ linear in axis-angle for these small steps).
    w = np.array([1, 2, 3]) / 4
    lerp = (1 - w)[:, None] * pose[39] + w[:, None] * pose[43]
    np.testing.assert_allclose(first.pose[38:41, 3:], lerp[:, 3:], atol=1e-6)
    np.testing.assert_allclose(first.pose[38:41, :3], lerp[:, :3], atol=1e-3)
    np.testing.assert_allclose(first.blink[38:41], (1 - w) * blink[39] + w * blink[43])
    # Audio: features of the whole clip, cut like the frames.
    full = readers.read_video_folder(write_folder(tmp_path, "full")[0])[0].audio
    np.testing.assert_allclose(first.audio, full[2:70], atol=1e-6)
    assert second.audio.shape == (18, readers.AUDIO_DIM)
    # max_gap_frames=0: every gap splits.
    assert len(readers.read_video_folder(folder, max_gap_frames=0)) == 3


def test_video_folder_errors_name_the_file_and_the_fix(tmp_path):
    short, _, _ = write_folder(tmp_path, "short_audio", audio_frames=75)  # 3 s of audio, 4 s video
    with pytest.raises(DatasetError, match=r"aud\.wav.*3\.000 s.*100 frames.*preprocess"):
        readers.read_video_folder(short)
    ok, _, _ = write_folder(tmp_path, "ok", audio_frames=100.4)  # within one frame: accepted
    assert len(readers.read_video_folder(ok)[0]) == 100
    missing, _, _ = write_folder(tmp_path, "no_blink")
    (missing / "blink.npy").unlink()
    with pytest.raises(MissingFileError, match=r"blink\.npy.*scripts/preprocess\.py"):
        readers.read_video_folder(missing)
    wrong, _, _ = write_folder(tmp_path, "wrong_blink")
    np.save(wrong / "blink.npy", np.zeros(90, np.float32))
    with pytest.raises(FeatureShapeError, match=r"blink\.npy.*\[90\].*\[100\]"):
        readers.read_video_folder(wrong)
    with pytest.raises(MissingFileError, match="config.data.paths"):
        readers.read_video_folder(tmp_path / "absent")
    with pytest.raises(DatasetError, match="config.data.fps=25"):
        readers.read_video_folder(ok, fps=30.0)
    faceless, _, _ = write_folder(tmp_path, "faceless", valid=np.zeros(100, bool))
    with pytest.raises(DatasetError, match="no frame has a face"):
        readers.read_video_folder(faceless)


# --- the speaker split ---------------------------------------------------------------------


def test_heldout_speakers_are_never_trained_on(tmp_path):
    paths = [write_folder(tmp_path, name, seed=i)[0] for i, name in enumerate("abc")]
    train, held = data_lib.load_sequences(videos_config(paths, heldout_groups=("c",)))
    assert sorted(s.group for s in train) == ["a", "b"] and [s.group for s in held] == ["c"]
    assert len(held[0]) == 100 and all(len(s) == 100 for s in train)  # whole sequences
    # The training windows come from a and b only: none equals a window of c.
    batches = data_lib.WindowIterator(train, 16, 8, 0, readers.AUDIO_DIM)
    held_windows = {held[0].features[t : t + 16].tobytes() for t in range(85)}
    for _ in range(20):
        for window in next(batches)["h"]:
            assert window.tobytes() not in held_windows
    # None named: the tail of every sequence, as the files source does.
    train, held = data_lib.load_sequences(videos_config(paths))
    assert [len(s) for s in train] == [80] * 3 and [len(s) for s in held] == [20] * 3
    assert [s.group for s in held] == ["a", "b", "c"]


def _held_out_end(folder: pathlib.Path, first: int, num: int) -> None:
    """transforms_val.json of a preprocessed folder whose frames ``first`` … ``num - 1`` are held
    out (what scripts/preprocess.py --val_seconds writes)."""
    frames = [{"img_id": i, "aud_id": i} for i in range(first, num)]
    (folder / "transforms_val.json").write_text(json.dumps({"fps": FPS, "frames": frames}))


def test_video_split_holds_out_each_folders_own_heldout_end(tmp_path):
    valid = np.ones(100, bool)
    valid[20:30] = False  # split into parts [0:20] and [30:100]; the cut falls in the second
    a, pose_a, _ = write_folder(tmp_path, "a", valid=valid)
    b, pose_b, _ = write_folder(tmp_path, "b", num=60, seed=1)
    _held_out_end(a, 85, 100)
    _held_out_end(b, 45, 60)
    train, held = data_lib.load_sequences(videos_config([a, b], held_out_split="video"))
    assert [(s.group, s.start, len(s)) for s in train] == [
        ("a", 0, 20),
        ("a", 30, 55),
        ("b", 0, 45),
    ]
    assert [(s.group, s.start, len(s)) for s in held] == [("a", 85, 15), ("b", 45, 15)]
    np.testing.assert_allclose(held[0].pose, pose_a[85:], atol=2e-5)  # exactly those frames
    np.testing.assert_allclose(train[2].pose, pose_b[:45], atol=2e-5)
    # A part wholly inside the held-out end is held out whole.
    _held_out_end(a, 10, 100)
    train, held = data_lib.load_sequences(videos_config([a], held_out_split="video"))
    assert [(s.start, len(s)) for s in train] == [(0, 10)]
    assert [(s.start, len(s)) for s in held] == [(10, 10), (30, 70)]
    # The split needs the folder's transforms_val.json, video folders and no held-out speakers.
    (b / "transforms_val.json").unlink()
    with pytest.raises(MissingFileError, match="transforms_val.json"):
        data_lib.load_sequences(videos_config([b], held_out_split="video"))
    with pytest.raises(ValueError, match="no config.data.heldout_groups"):
        data_lib.load_sequences(videos_config([a], held_out_split="video", heldout_groups=("a",)))
    with pytest.raises(ValueError, match="held_out_split='halves'"):
        data_lib.load_sequences(videos_config([a], held_out_split="halves"))
    _held_out_end(a, 0, 100)  # nothing left to train on
    with pytest.raises(ValueError, match="0 training"):
        data_lib.load_sequences(videos_config([a], held_out_split="video"))


def test_heldout_speaker_errors(tmp_path):
    paths = [write_folder(tmp_path, name, seed=i)[0] for i, name in enumerate("ab")]
    with pytest.raises(ValueError, match=r"\['zed'\].*speakers are \['a', 'b'\]"):
        data_lib.load_sequences(videos_config(paths, heldout_groups=("zed",)))
    with pytest.raises(ValueError, match="leave at least one"):
        data_lib.load_sequences(videos_config(paths, heldout_groups=("a", "b")))
    with pytest.raises(ValueError, match="needs config.data.paths"):
        data_lib.load_sequences(videos_config([]))
    synthetic = videos_config([], source="synthetic", heldout_groups=("a",))
    with pytest.raises(ValueError, match="data.held_out"):
        data_lib.load_sequences(synthetic)
    with pytest.raises(ValueError, match="max_gap_frames=-1"):
        data_lib.load_sequences(videos_config(paths, max_gap_frames=-1))


def test_heldout_speakers_of_pose_files(tmp_path):
    """The same split for data.source=files: a pose file's group is its stem."""
    for i, name in enumerate(("ann", "bob")):
        pose = head_motion(60, seed=i)
        euler = Rotation.from_rotvec(pose[:, :3]).as_euler("xyz", degrees=True)
        np.save(tmp_path / f"{name}.npy", np.concatenate([euler, pose[:, 3:]], -1))
    paths = [tmp_path / "ann.npy", tmp_path / "bob.npy"]
    data = videos_config(paths, source="files", heldout_groups=("bob",))
    train, held = data_lib.load_sequences(data)
    assert [s.group for s in train] == ["ann"] and [s.group for s in held] == ["bob"]


def test_added_config_keys_keep_old_runs_resumable():
    config = ml_collections.ConfigDict(
        {
            "data": {"source": "synthetic", "heldout_groups": (), "max_gap_frames": 5},
            "model": {"width": 64, "relative_pose": False},
        }
    )
    new = config_to_json(config)
    # a run made before the keys existed
    old = {"data": {"source": "synthetic"}, "model": {"width": 64}}
    assert config_differences(old, new, added=stage.ADDED_KEYS) == []
    changed = config_to_json(config)
    changed["data"]["heldout_groups"] = ["c"]
    assert config_differences(old, changed, added=stage.ADDED_KEYS) == [
        ("data.heldout_groups", "<absent>", ["c"])
    ]


def test_cameras_of_head_poses_invert_the_reader():
    pose = head_motion(20, seed=4)
    c2w = readers.c2w_from_head_pose(pose)
    np.testing.assert_allclose(readers.head_pose_from_c2w(c2w), pose, atol=1e-9)
    # the camera sits where the head's inverse puts it: the head's origin is t in front of it
    head_origin_in_camera = pose[:, 3:]
    camera_in_head = c2w[:, :3, 3]
    rot = Rotation.from_rotvec(pose[:, :3]).as_matrix()
    np.testing.assert_allclose(
        np.einsum("nij,nj->ni", rot, camera_in_head) + head_origin_in_camera, 0.0, atol=1e-9
    )


def test_mirrored_pose_is_the_head_reflected_left_right():
    """The mirrored axis-angle and translation are those of (M R M, M t), M = diag(-1, 1, 1):
    computed here from the rotation matrices, independently of the sign rule."""
    pose = head_motion(50, seed=2)
    blink = np.linspace(0, 1, 50).astype(np.float32)
    audio = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    seq = readers.PoseSequence("s", pose.astype(np.float32), blink, audio, "ann")
    flipped = data_lib.mirrored(seq)
    mirror = np.diag([-1.0, 1.0, 1.0])
    rot = mirror @ Rotation.from_rotvec(pose[:, :3]).as_matrix() @ mirror
    np.testing.assert_allclose(
        flipped.pose[:, :3], Rotation.from_matrix(rot).as_rotvec(), atol=1e-6
    )
    np.testing.assert_allclose(flipped.pose[:, 3:], pose[:, 3:] @ mirror, atol=1e-7)
    np.testing.assert_array_equal(flipped.blink, blink)  # eyes and speech as they were
    np.testing.assert_array_equal(flipped.audio, audio)
    assert flipped.group == "ann" and flipped.name == "s[mirrored]"
    np.testing.assert_array_equal(data_lib.mirrored(flipped).pose, seq.pose)  # an involution
    # a head turned to its left, mirrored, turns to its right by the same angle
    turned = readers.PoseSequence("t", np.array([[0, 0.3, 0, 0.05, 0, -1]], np.float32),
                                  np.zeros(1, np.float32))  # fmt: skip
    np.testing.assert_allclose(data_lib.mirrored(turned).pose, [[0, -0.3, 0, -0.05, 0, -1]])


# --- the stage on video folders --------------------------------------------------------------


def test_stage_trains_on_video_folders_and_evaluates_the_heldout_speaker(tmp_path):
    config = load_config("smoke")
    paths = [write_folder(tmp_path / "data", name, seed=i)[0] for i, name in enumerate("abc")]
    with config.unlocked():
        config.data.update(
            source="videos", paths=tuple(str(p) for p in paths), heldout_groups=("c",),
            window=16, bop=4, batch_size=8,
        )  # fmt: skip
        config.model.update(width=16, heads=2, relative_pose=True)
        config.train.update(steps=4, checkpoint_every=4, log_every=2, progress=False)
        config.train.async_checkpoints = False
        config.eval.update(num_samples=2, max_sequences=2, plot_sequences=1)
    stage.train(config, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results["num_sequences"] == 1  # speaker c only
    for key in ("d_rot", "d_pos", "d_rot_hold", "velocity_ratio", "velocity_ratio_long",
                "velocity_ratio_samples", "blinks_per_s_ground_truth", "d_rot_linear",
                "d_pos_linear"):  # fmt: skip
        assert np.isfinite(results[key]), key
    # The truth of c: onsets at frames 10 and 60 of 4 s, one interval of 2 s, closures of 4 and 3
    # frames.
    assert results["blinks_per_s_ground_truth"] == pytest.approx(2 / 4.0)
    assert results["blink_interval_mean_s_ground_truth"] == pytest.approx(2.0)
    assert results["blink_closure_s_ground_truth"] == pytest.approx((4 + 3) / 2 / FPS)
    assert results["blink_interval_cv_ground_truth"] is None  # one interval: no CV (NaN -> null)
    for key in ("blink_interval_mean_s_generated", "blink_closure_s_generated"):
        assert key in results


def test_mirror_augmentation_and_the_validation_curve(tmp_path):
    """``data.mirror`` trains on every sequence and its mirror image; ``train.eval_every`` logs
    held-out and training-window D-Rot / D-Pos against steps (the memorisation gap)."""
    config = load_config("smoke")
    paths = [write_folder(tmp_path / "data", name, seed=i)[0] for i, name in enumerate("abc")]
    with config.unlocked():
        config.data.update(
            source="videos", paths=tuple(str(p) for p in paths), heldout_groups=("c",),
            window=16, bop=4, batch_size=8, mirror=True,
        )  # fmt: skip
        config.model.update(width=16, heads=2, relative_pose=True)
        config.train.update(steps=4, checkpoint_every=4, log_every=2, progress=False, eval_every=2)
        config.train.async_checkpoints = False
        config.eval.update(num_samples=2, max_sequences=2, plot_sequences=1)
    task = stage.build_task(config, None)
    assert len(task.data._h) == 4  # a, b and their mirror images; c is held out
    np.testing.assert_allclose(
        task.data._h[2][:, :6], task.data._h[0][:, :6] * data_lib.MIRROR_SIGNS
    )
    stage.train(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    curve = [r for r in records if "val_d_rot" in r]
    assert [r["step"] for r in curve] == [2, 4]
    for key in ("val_d_rot", "val_d_pos", "val_d_rot_hold", "val_train_d_rot", "val_train_d_pos",
                "val_velocity_ratio"):  # fmt: skip
        assert all(np.isfinite(r[key]) for r in curve), key
    # the hold baseline does not depend on the model: the same at every step
    assert curve[0]["val_d_rot_hold"] == curve[1]["val_d_rot_hold"]


# --- pose files beside video folders (data.source=mixed) ---------------------------------------


def test_mixed_source_reads_folders_and_pose_files_and_pose_files_have_no_blink(tmp_path):
    folder, _, blink = write_folder(tmp_path / "data", "ann", num=80)
    pose = head_motion(60, seed=3)
    euler = Rotation.from_rotvec(pose[:, :3]).as_euler("xyz", degrees=True)
    np.save(tmp_path / "bob.npy", np.concatenate([euler, pose[:, 3:]], -1))
    data = videos_config([folder, tmp_path / "bob.npy"], source="mixed", heldout_groups=("ann",))
    train, held = data_lib.load_sequences(data)
    assert [s.group for s in train] == ["bob"] and [s.group for s in held] == ["ann"]
    assert np.isnan(train[0].blink).all() and train[0].audio is None  # not measured
    np.testing.assert_array_equal(held[0].blink, blink)
    assert held[0].audio is not None
    # The normaliser's blink statistics come from the frames that have a blink signal.
    mean, std = data_lib.normalizer(train + held)
    assert np.isfinite(mean).all() and np.isfinite(std).all()
    np.testing.assert_allclose([mean[6], std[6]], [blink.mean(), blink.std()], rtol=1e-5)
    mean, std = data_lib.normalizer(train)  # no blink anywhere: mean 0, std 1
    assert (mean[6], std[6]) == (0.0, 1.0)
    with pytest.raises(ValueError, match="'mixed'"):
        data_lib.load_sequences(videos_config([folder], source="both"))


def test_unmeasured_values_are_left_out_of_both_losses():
    """With ``known`` 0 on the blink channel, its target values do not change either loss."""
    spec = models.ModelSpec(latent_dim=3, width=16, depth=1, heads=2, cme_depth=1, feature_dim=7,
                            audio_dim=data_lib.AUDIO_DIM)  # fmt: skip
    model = models.SequenceVAE(spec, nnx.Rngs(0))
    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 12, 7)).astype(np.float32)
    other = h.copy()
    other[..., 6] = rng.normal(size=(2, 12))
    audio = rng.normal(size=(2, 12, data_lib.AUDIO_DIM)).astype(np.float32)
    known = np.ones_like(h)
    known[..., 6] = 0.0
    prior = gp_prior_covariance(12, 1.0, 8.0, 1e-3)
    key = jax.random.key(0)
    for loss in (
        lambda x, k: vae_loss(model, x, key, prior, 0.1, k)[0],
        lambda x, k: cme_loss(model, x, audio, key, prior, 0.1, 4, k)[0],
    ):
        # The encoders read the unmeasured channel as the mean (0), as the train step feeds it.
        a = np.where(known > 0, h, 0.0)
        b = np.where(known > 0, other, 0.0)
        assert float(loss(a, known)) == float(loss(b, known))
        assert float(loss(h, None)) != float(loss(other, None))
