"""Video frames for the NeRF stage: fixed crop, matte, cameras, audio windows, splits, cache."""

from __future__ import annotations

import numpy as np
import pytest
from video_fixture import image_value, write_video_fixture

from jaxhead.audio import spectral
from jaxhead.audio.io import load_audio, save_wav
from jaxhead.data import video_frames
from jaxhead.data.errors import DatasetError
from jaxhead.data.pipeline import validate_example

HEAD_RGB = np.array([200, 120, 90]) / 255.0


def speech(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    fixture = write_video_fixture(tmp_path / "person")
    save_wav(fixture.root / "aud.wav", speech())
    return fixture


def config_for(fixture, cache, **overrides):
    config = video_frames.video_frames_config()
    config.root = str(fixture.root)
    config.cache_dir = str(cache)
    config.resolution, config.lr_resolution = 16, 4
    config.crop.box = (0, 0, 32)  # the left 32 x 32 square of the 32 x 40 frames
    config.update(overrides)
    return config


def test_frames_are_cropped_matted_and_follow_the_frame_spec(folder, tmp_path):
    config = config_for(folder, tmp_path / "cache")
    frames = video_frames.load_frames(config, "train", progress=False)
    assert len(frames) == len(folder.train_ids)
    example = frames[0]
    validate_example(example)
    assert example["image"].shape == (16, 16, 3) and example["image_lr"].shape == (4, 4, 3)
    assert example["mask"].shape == (16, 16, 1) and example["mask_lr"].shape == (4, 4, 1)
    assert int(example["row"]) == 0 and int(example["sequence_index"]) == 0
    assert frames.arrays["frame"].tolist() == folder.train_ids
    # The crop halves the 32-pixel square: intrinsics shift by (x0, y0) = 0 and scale by 0.5.
    fx, fy, cx, cy = example["intrinsics"]
    assert np.allclose([fx, fy, cx, cy], [folder.focal / 2, folder.focal / 2, 10.0, 8.0])
    # Inside the head mask the frame's head colour; outside it white (the frame's grey is gone).
    # Head + neck are kept (the fixture paints only the head ellipse in the head colour).
    mask = example["mask"][..., 0]
    head = folder.head_mask[:, :32].reshape(16, 2, 16, 2).mean(axis=(1, 3)) == 1.0
    outside = mask < 0.01
    assert head.any() and outside.any() and np.all(mask[head] > 0.99)
    assert np.abs(example["image"][head] - HEAD_RGB).max() < 0.08  # JPEG chroma
    assert np.abs(example["image"][outside] - 1.0).max() < 0.01
    neck = (mask > 0.99) & ~head
    assert neck.any() and np.abs(example["image"][neck] - 1.0).min() > 0.1  # the neck is kept
    lms = folder.landmarks[folder.train_ids[0]]
    assert np.allclose(example["landmarks"], lms * 0.5, atol=1e-4)
    # Blink: AU45 of the frame's img_id (clip to [0, 2], / 2).
    expected = np.clip(folder.au45[folder.train_ids], 0, 2) / 2
    assert np.allclose(frames.arrays["blink"], expected, atol=1e-4)
    # Consecutive img_ids are one run.
    assert frames.next_index(0) == 1 and frames.next_index(len(frames) - 1) is None
    assert [r.tolist() for r in frames.sequence_rows()] == [list(range(len(frames)))]


def test_audio_windows_are_the_log_mels_of_the_track_at_each_frame(folder, tmp_path):
    config = config_for(folder, tmp_path / "cache")
    frames = video_frames.load_frames(config, "val", progress=False)
    wave, _ = load_audio(folder.root / "aud.wav")  # 16-bit, as written
    feats = spectral.log_mel(wave)
    windows = np.asarray(spectral.window_features(feats, 15, 25.0, 80.0, 16))  # 80 Hz mels
    assert frames.arrays["audio"].shape == (len(folder.val_ids), 16, 80)
    assert np.allclose(frames.arrays["audio"], windows[folder.val_ids], atol=1e-5)
    ((rows, samples, numbers),) = video_frames.audio_tracks(config, frames)
    assert rows.tolist() == list(range(len(folder.val_ids)))
    assert samples.dtype == np.float32 and len(samples) == 16000
    assert numbers.tolist() == folder.val_ids


def test_scene_is_scaled_to_the_crop(folder, tmp_path):
    config = config_for(folder, tmp_path / "cache")
    frames = video_frames.load_frames(config, "train", progress=False)
    distances = np.linalg.norm([folder.c2w[i][:3, 3] for i in folder.train_ids], axis=-1)
    scale = 0.2 / (0.5 * 32 * np.median(distances) / folder.focal)
    assert frames.scene_scale == pytest.approx(scale, rel=1e-5)
    c2w = frames.arrays["c2w"][0]
    truth = folder.c2w[folder.train_ids[0]]
    assert np.allclose(c2w[:3, :3], truth[:3, :3]) and np.allclose(c2w[:3, 3], truth[:3, 3] * scale)
    with config.unlocked():
        config.normalize_scene = False
    raw = video_frames.load_frames(config, "train", progress=False)
    assert np.allclose(raw.arrays["c2w"][0], truth)


def test_seconds_split_pools_both_files_and_holds_out_the_end(folder, tmp_path):
    # ids 3..14 at 25 fps: the last 0.16 s = 4 frames (11..14); train before 0.32 s = ids 3..7.
    config = config_for(folder, tmp_path / "cache", val_seconds=0.16, train_seconds=0.32)
    val = video_frames.load_frames(config, "val", progress=False)
    train = video_frames.load_frames(config, "train", progress=False)
    assert val.arrays["frame"].tolist() == [11, 12, 13, 14]
    assert train.arrays["frame"].tolist() == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="overlaps"):
        video_frames.load_frames(
            config_for(folder, tmp_path / "c2", val_seconds=0.2, train_seconds=0.5), "train"
        )
    with pytest.raises(ValueError, match="no held-out views"):
        video_frames.load_frames(config, "val_views")


def test_cache_is_reused_and_keyed_by_settings(folder, tmp_path, monkeypatch):
    config = config_for(folder, tmp_path / "cache", max_frames=3)
    first = video_frames.load_frames(config, "train", progress=False)
    assert len(first) == 3
    monkeypatch.setattr(video_frames, "prepare_split", lambda *a, **k: pytest.fail("re-prepared"))
    again = video_frames.load_frames(config, "train", progress=False)
    assert np.array_equal(again.arrays["image"], first.arrays["image"])
    with config.unlocked():
        config.max_frames = 2
    assert video_frames.cache_path(config, "train") != video_frames.cache_path(
        config_for(folder, tmp_path / "cache", max_frames=3), "train"
    )


def test_missing_root_or_audio_says_what_to_run(folder, tmp_path):
    config = config_for(folder, tmp_path / "cache")
    with config.unlocked():
        config.root = ""
    with pytest.raises(DatasetError, match="scripts/preprocess.py"):
        video_frames.load_frames(config, "train")
    (folder.root / "aud.wav").unlink()
    with pytest.raises(DatasetError, match="aud.wav"):
        video_frames.load_frames(config_for(folder, tmp_path / "cache"), "train")


def test_crop_box_covers_the_moving_face():
    face = np.array([[100, 100], [200, 100], [150, 220]], np.float64)  # 100 x 120 box
    landmarks = np.stack([face + [dx, 0] for dx in (0, 10, 20)])  # moves 20 px right
    x0, y0, side = video_frames.crop_box(landmarks, scale=2.0, shift_y=-0.1)
    assert side == 2 * 120 + 20
    assert (x0 + side / 2, y0 + side / 2) == pytest.approx((160, 160 - 12), abs=0.5)
    image = np.zeros((50, 60, 3), np.float32)
    out = video_frames.crop_resize(image, (-10, -10, 40), 20, fill=1.0)
    assert out.shape == (20, 20, 3) and out[0, 0, 0] == 1.0 and out[10, 10, 0] == 0.0


def test_full_frames_keep_the_whole_unmatted_frame_with_its_background(folder, tmp_path):
    """``data.frame="full"``: the 40 x 32 frame's own square (40 px, 4 rows of white padding
    above and below), nothing matted, the person mask (head + neck + torso), the static
    background ``bc.jpg`` the same way, and the head crop's box in the output's pixels."""
    config = config_for(folder, tmp_path / "cache", frame="full", resolution=20, lr_resolution=4)
    config.mask_parts = ("head", "neck", "torso")
    config.crop.box = (4, 2, 16)  # the head crop (face-crop scores)
    frames = video_frames.load_frames(config, "train", progress=False)
    assert frames.full_frame and frames.crop == (0, -4, 40)
    assert frames.face_box == (2, 3, 8)  # ((4 - 0) / 2, (2 + 4) / 2, 16 / 2)
    example = frames[0]
    validate_example(example)
    assert example["image"].shape == (20, 20, 3) and frames.background.shape == (20, 20, 3)
    assert "background" not in example  # one constant of the run, not copied into every frame
    fx, fy, cx, cy = example["intrinsics"]
    assert np.allclose([fx, cx, cy], [folder.focal / 2, 10.0, (16 + 4) / 2])
    grey = video_frames.crop_resize(
        np.full((32, 40, 3), 1.0, np.float32), frames.crop, 20, fill=0.0
    )[..., 0]
    inside = grey > 0.99  # rows 2..17 of the output come from the frame
    assert inside[2:18].all() and not inside[:2].any() and not inside[18:].any()
    # Outside the head the frame's own grey stays (no white matte); the padding is white.
    touches_head = folder.head_mask.reshape(16, 2, 20, 2).mean(axis=(1, 3)) > 0
    rows = slice(2, 18)
    grey_value = image_value(folder.train_ids[0]) / 255.0
    assert np.abs(example["image"][rows][~touches_head] - grey_value).max() < 0.1  # JPEG
    assert np.abs(example["image"][:2] - 1.0).max() < 0.01
    assert np.abs(frames.background[rows] - 250 / 255).max() < 0.02
    # The person mask reaches the torso rows at the bottom of the frame.
    assert example["mask"][16:18].min() > 0.99
    # The head-crop runs' cache names are unchanged by the new key.
    crop_config = config_for(folder, tmp_path / "cache")
    assert "frame" not in video_frames._settings(crop_config)


def test_neck_regions_mark_where_head_and_neck_meet():
    head = np.zeros((20, 20), bool)
    head[2:10, 5:15] = True
    neck = np.zeros((20, 20), bool)
    neck[10:16, 8:12] = True
    regions = video_frames.neck_regions(head, neck, band=2)
    band = regions == video_frames.REGION_NECK_BAND
    assert band[8:12, 8:12].all()  # both sides of the boundary row 9/10
    assert not band[:6].any() and not band[14:].any()  # away from the boundary
    assert (regions[2:6, 5:15] == video_frames.REGION_HEAD).all()
    assert (regions[:, :3] == 0).all()
    assert not video_frames.neck_regions(head, np.zeros_like(neck), 2).__eq__(2).any()
    # The rest of the neck and the torso are the body; what is not the person, the background.
    assert (regions[14:16, 8:12] == video_frames.REGION_BODY).all()
    torso = np.zeros((20, 20), bool)
    torso[16:20, 2:18] = True
    with_torso = video_frames.neck_regions(head, neck, 2, torso)
    assert (with_torso[17:, 2:18] == video_frames.REGION_BODY).all()
    np.testing.assert_array_equal(with_torso[:16], regions[:16])  # head and band unchanged
    assert (with_torso[17:, :2] == 0).all()
