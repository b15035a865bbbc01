"""Tests of the AD-NeRF / RAD-NeRF / ER-NeRF / SyncTalk video-dataset reader (data.video)."""

import json

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
from video_fixture import image_value, write_video_fixture

from jaxhead.data import video
from jaxhead.data.errors import (
    CorruptFileError,
    DatasetError,
    FeatureShapeError,
    FrameCountError,
    MissingFileError,
    MissingFramesError,
    NonFiniteError,
)
from jaxhead.data.pipeline import FrameSource, make_pipeline, validate_example


@pytest.fixture
def fixture(tmp_path):
    return write_video_fixture(tmp_path / "person")


def reference_window(features, center, window):
    """Slow reference: frame by frame, zeros outside the clip."""
    rows = []
    for row in range(center - window // 2, center - window // 2 + window):
        inside = 0 <= row < len(features)
        rows.append(features[row].reshape(-1) if inside else np.zeros(features[0].size))
    return np.stack(rows).astype(np.float32)


def block_mean(array, factor):
    h, w, c = array.shape
    return array.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def test_frames_match_what_the_fixture_wrote(fixture):
    dataset = video.VideoDataset(fixture.root, "train", lr_factor=4, identity=3, sequence=5)
    assert isinstance(dataset, FrameSource)
    assert len(dataset) == len(fixture.train_ids)
    assert dataset.audio_path.name == "aud_ds.npy" and dataset.blink_source == "au.csv"
    au45 = np.clip(fixture.au45, 0, 2) / 2
    for i, img_id in enumerate(fixture.train_ids):
        example = dataset[i]
        sizes = validate_example(example)
        assert sizes == {
            "height": 32, "width": 40, "height_lr": 8, "width_lr": 10, "window": 8,
            "feature": 16 * 29, "landmarks": 68, "expression": 52,
        }  # fmt: skip
        assert int(example["frame"]) == img_id
        assert (int(example["identity"]), int(example["sequence"])) == (3, 5)
        # The flat background encodes the img_id: the right file was read. The median is immune
        # to the JPEG ringing next to the head's edge.
        background = np.median(example["image"][~fixture.head_mask], axis=0)
        np.testing.assert_allclose(background, image_value(img_id) / 255, atol=2 / 255)
        np.testing.assert_array_equal(example["mask"][..., 0], fixture.head_mask)
        np.testing.assert_allclose(example["mask_lr"], block_mean(example["mask"], 4), atol=1e-6)
        np.testing.assert_allclose(example["image_lr"], block_mean(example["image"], 4), atol=1e-5)
        np.testing.assert_allclose(example["landmarks"], fixture.landmarks[img_id], atol=1e-5)
        np.testing.assert_array_equal(example["c2w"], fixture.c2w[img_id])
        np.testing.assert_allclose(example["intrinsics"], [60, 60, 20, 16])
        np.testing.assert_array_equal(example["expression"], fixture.blendshapes[img_id])
        np.testing.assert_allclose(example["blink"], au45[img_id], atol=1e-6)
        np.testing.assert_array_equal(
            example["audio"], reference_window(fixture.audio["aud_ds.npy"], img_id, 8)
        )


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    num=st.integers(1, 12),
    center=st.integers(-3, 15),
    window=st.integers(1, 20),
    seed=st.integers(),
)
def test_audio_window_matches_the_frame_by_frame_reference(num, center, window, seed):
    features = np.random.default_rng(seed % 2**32).standard_normal((num, 3, 2)).astype(np.float32)
    np.testing.assert_array_equal(
        video.audio_window(features, center, window), reference_window(features, center, window)
    )


@pytest.mark.parametrize(
    ("name", "eo_channels", "steps", "channels"),
    [
        ("aud_ds.npy", 44, 16, 29),
        ("aud.npy", 44, 16, 29),
        ("aud_eo.npy", 44, 16, 44),
        ("aud_eo.npy", 32, 16, 32),
        ("aud_hu.npy", 44, 2, 1024),
        ("aud_hubert.npy", 44, 2, 1024),
    ],
)
def test_every_audio_feature_variant_becomes_per_frame_windows(
    tmp_path, name, eo_channels, steps, channels
):
    fx = write_video_fixture(tmp_path / "p", audio=(name,), eo_channels=eo_channels)
    dataset = video.VideoDataset(fx.root, audio="auto", audio_window=4)
    rows = max(fx.train_ids + fx.val_ids) + 1
    assert dataset.audio_features.shape == (rows, steps, channels)
    written = fx.audio[name]
    if name == "aud_hubert.npy":  # 50 Hz stream: frame i holds steps 2i and 2i + 1.
        np.testing.assert_array_equal(dataset.audio_features[4], written[8:10])
    else:
        np.testing.assert_array_equal(dataset.audio_features, written)
    example = dataset[dataset.index_of(7)]
    assert example["audio"].shape == (4, steps * channels)
    np.testing.assert_array_equal(example["audio"][2], dataset.audio_features[7].reshape(-1))


def test_auto_audio_takes_the_first_listed_file_and_explicit_names_win(tmp_path):
    fx = write_video_fixture(tmp_path / "p", audio=("aud_hu.npy", "aud_eo.npy"))
    assert video.VideoDataset(fx.root).audio_path.name == "aud_eo.npy"
    assert video.VideoDataset(fx.root, audio="aud_hu.npy").audio_features.shape[1:] == (2, 1024)
    assert video.VideoDataset(fx.root, audio=None)[0]["audio"].shape == (8, 0)


def test_optional_signals_fall_back_or_are_required(tmp_path):
    fx = write_video_fixture(tmp_path / "p", au=False, blendshapes=False)
    dataset = video.VideoDataset(fx.root, expression_dim=7)
    example = dataset[0]
    assert dataset.blink_source is None and float(example["blink"]) == 0.0
    np.testing.assert_array_equal(example["expression"], np.zeros(7, np.float32))
    with pytest.raises(MissingFileError, match="au.csv: file not found.*OpenFace"):
        video.VideoDataset(fx.root, blink="au")
    with pytest.raises(MissingFileError, match="bs.npy: file not found.*SyncTalk"):
        video.VideoDataset(fx.root, expression="bs")


def test_blink_from_blendshapes_averages_the_eye_blinks(tmp_path):
    fx = write_video_fixture(tmp_path / "p", au=False)
    dataset = video.VideoDataset(fx.root)
    assert dataset.blink_source == "bs.npy"
    img_id = fx.train_ids[2]
    expected = fx.blendshapes[img_id, [9, 10]].mean()
    np.testing.assert_allclose(dataset[2]["blink"], expected, atol=1e-6)


def test_missing_landmarks_are_reported_or_dropped_without_shifting_ids(fixture):
    (fixture.root / "ori_imgs" / "5.lms").unlink()
    (fixture.root / "gt_imgs" / "9.jpg").unlink()
    expected = (
        "person: 1 of 8 frames have no landmarks ori_imgs/<img_id>.lms \\(img_id 5\\); "
        "1 of 8 frames have no image gt_imgs/<img_id>.jpg \\(img_id 9\\)."
    )
    with pytest.raises(MissingFramesError, match=expected):
        video.VideoDataset(fixture.root)
    dataset = video.VideoDataset(fixture.root, missing_frames="drop")
    assert dataset.dropped == {5: ["landmarks"], 9: ["image"]}
    assert dataset.img_ids.tolist() == [3, 4, 6, 7, 8, 10]
    for img_id in dataset.img_ids.tolist():
        example = dataset[dataset.index_of(img_id)]
        assert int(example["frame"]) == img_id
        np.testing.assert_allclose(example["landmarks"], fixture.landmarks[img_id], atol=1e-5)
        np.testing.assert_array_equal(
            example["audio"], reference_window(fixture.audio["aud_ds.npy"], img_id, 8)
        )
    with pytest.raises(KeyError, match="img_id 5 is not a frame of this dataset \\(dropped: no "):
        dataset.index_of(5)
    with pytest.raises(KeyError, match="img_id 11 .*not in transforms_train.json"):
        dataset.index_of(11)
    # A dropped frame ends a sequence: no pair jumps over it.
    nexts = {int(i): dataset.next_index(dataset.index_of(i)) for i in dataset.img_ids}
    assert nexts == {3: 1, 4: None, 6: 3, 7: 4, 8: None, 10: None}


def test_pipeline_over_the_video_dataset_yields_consecutive_pairs(fixture):
    dataset = video.VideoDataset(fixture.root)
    pipeline = make_pipeline(dataset, batch_size=2, seed=0, num_threads=2)
    for _ in range(4):
        batch = next(pipeline)
        assert batch["image"].shape == (2, 2, 32, 40, 3)
        assert batch["image_lr"].shape == (2, 2, 8, 10, 3)
        assert batch["audio"].shape == (2, 2, 8, 464)
        np.testing.assert_array_equal(batch["frame"][:, 1], batch["frame"][:, 0] + 1)


def test_loading_at_another_resolution_scales_the_camera_and_landmarks(fixture):
    dataset = video.VideoDataset(fixture.root, image_size=(64, 60), lr_factor=4)
    example = dataset[0]
    assert example["image"].shape == (64, 60, 3) and example["image_lr"].shape == (16, 15, 3)
    assert example["mask"].shape == (64, 60, 1)
    np.testing.assert_allclose(example["intrinsics"], [60 * 1.5, 60 * 2, 20 * 1.5, 16 * 2])
    np.testing.assert_allclose(
        example["landmarks"], fixture.landmarks[fixture.train_ids[0]] * [1.5, 2], rtol=1e-6
    )
    np.testing.assert_allclose(dataset.face_rects[0], [10 * 1.5, 0, 30 * 1.5, 16 * 2])
    with pytest.raises(ValueError, match="not divisible by lr_factor 3.*30 x 39"):
        video.VideoDataset(fixture.root, lr_factor=3)


def test_image_size_defaults_to_twice_the_principal_point(tmp_path):
    fx = write_video_fixture(tmp_path / "p", write_hw=False)
    transforms = video.read_transforms(fx.root / "transforms_val.json")
    assert (transforms.height, transforms.width) == (32, 40)
    assert transforms.img_ids.tolist() == fx.val_ids
    np.testing.assert_array_equal(transforms.face_rects, [[10, 0, 30, 16]] * len(fx.val_ids))


def break_npy(path, kind):
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        array = np.load(path)
        if kind == "nan":
            array[6, 3, 1] = np.nan
        elif kind == "short":
            array = array[:12]
        elif kind == "wrong_shape":
            array = array[..., :28]
        np.save(path, array)


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("truncated", CorruptFileError, "aud_ds.npy: cannot be read: truncated"),
        ("nan", NonFiniteError, "aud_ds.npy: holds 1 non-finite values \\(first in row 6\\)"),
        ("short", FrameCountError, "aud_ds.npy: has 12 frames but aud_id .* goes up to 14"),
        ("wrong_shape", FeatureShapeError, "shape \\[15, 16, 28\\], expected \\[N, 16, 29\\]"),
    ],
)
def test_broken_audio_features_are_rejected(tmp_path, kind, error, message):
    fx = write_video_fixture(tmp_path / "p")
    break_npy(fx.root / "aud_ds.npy", kind)
    with pytest.raises(error, match=message):
        video.VideoDataset(fx.root, split="val")  # val reaches img_id / aud_id 14.


def test_missing_inputs_name_the_file_and_the_command(tmp_path):
    fx = write_video_fixture(tmp_path / "p")
    (fx.root / "aud_ds.npy").unlink()
    with pytest.raises(MissingFileError, match="aud_ds.npy: file not found.*scripts/preprocess.py"):
        video.VideoDataset(fx.root)
    with pytest.raises(MissingFileError, match="transforms_test.json: file not found"):
        video.VideoDataset(fx.root, split="test", audio=None)
    with pytest.raises(MissingFileError, match="nowhere: file not found"):
        video.VideoDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="not a known audio-feature file name"):
        video.load_audio_features(fx.root / "bs.npy")


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda m: m.pop("focal_len"), CorruptFileError, "lacks the keys \\['focal_len'\\]"),
        (lambda m: m["frames"][2].pop("img_id"), CorruptFileError, "lacks a valid img_id"),
        (lambda m: m["frames"][1].update(img_id=3), CorruptFileError, "must be unique"),
        (
            lambda m: m["frames"][0].update(transform_matrix=[[1, 0, 0, 0]] * 3),
            CorruptFileError,
            "lacks a valid|not 4 x 4",
        ),
        (lambda m: m["frames"][0].pop("face_rect"), CorruptFileError, "face_rect is missing"),
    ],
)
def test_broken_transforms_are_rejected(fixture, edit, error, message):
    path = fixture.root / "transforms_train.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(error, match=message):
        video.read_transforms(path)


def test_broken_per_frame_files_are_rejected(fixture):
    root = fixture.root
    np.savetxt(root / "ori_imgs" / "4.lms", np.zeros((67, 2)))
    (root / "gt_imgs" / "5.jpg").write_bytes(b"not a jpeg")
    dataset = video.VideoDataset(root)
    with pytest.raises(
        FeatureShapeError, match="4.lms: has shape \\[67, 2\\], expected \\[68, 2\\]"
    ):
        dataset[dataset.index_of(4)]
    with pytest.raises(CorruptFileError, match="5.jpg: cannot be read: not a decodable image"):
        dataset[dataset.index_of(5)]
    (root / "au.csv").write_text("frame, AU01_r\n1, 0.5\n")
    with pytest.raises(CorruptFileError, match="au.csv: cannot be read: has no ' AU45_r' column"):
        video.VideoDataset(root)
    np.save(root / "bs.npy", np.zeros((20, 51), np.float32))
    with pytest.raises(FeatureShapeError, match="bs.npy: has shape \\[20, 51\\]"):
        video.VideoDataset(root, blink=None)


def test_short_per_img_id_files_are_rejected(fixture):
    lines = (fixture.root / "au.csv").read_text().splitlines()
    (fixture.root / "au.csv").write_text("\n".join(lines[:10]) + "\n")
    with pytest.raises(FrameCountError, match="au.csv: has 9 frames but img_id .* up to 10"):
        video.VideoDataset(fixture.root)


def test_images_of_the_wrong_size_are_rejected(fixture):
    import cv2

    cv2.imwrite(str(fixture.root / "parsing" / "6.png"), np.zeros((30, 40, 3), np.uint8))
    dataset = video.VideoDataset(fixture.root)
    with pytest.raises(FeatureShapeError, match="6.png: has shape \\[30, 40, 3\\], expected"):
        dataset[dataset.index_of(6)]


def test_parsing_mask_selects_the_requested_classes():
    # RGB as read from the peers' PNGs: head blue, neck green, torso red.
    parsing = np.array([[[0, 0, 255], [0, 255, 0], [255, 0, 0], [255, 255, 255], [2, 3, 250]]])
    head = video.parsing_mask(parsing.astype(np.uint8))
    np.testing.assert_array_equal(head[0, :, 0], [1, 0, 0, 0, 1])
    head_neck = video.parsing_mask(parsing.astype(np.uint8), ("head", "neck"))
    np.testing.assert_array_equal(head_neck[0, :, 0], [1, 1, 0, 0, 1])
    with pytest.raises(ValueError, match="unknown parsing parts \\['hair'\\]"):
        video.parsing_mask(parsing.astype(np.uint8), ("hair",))


def test_real_adnerf_transforms_parse_without_images(shared_data):
    path = shared_data / "real/sequences/adnerf_obama_transforms_val.json"
    transforms = video.read_transforms(path)
    assert len(transforms.img_ids) == 728
    np.testing.assert_array_equal(transforms.img_ids, np.arange(7272, 8000))
    np.testing.assert_array_equal(transforms.aud_ids, transforms.img_ids)
    assert (transforms.focal, transforms.cx, transforms.cy) == (1100, 225, 225)
    assert (transforms.height, transforms.width) == (450, 450)
    np.testing.assert_array_equal(transforms.intrinsics, [1100, 1100, 225, 225])
    rotation = transforms.c2w[:, :3, :3]
    eye = np.broadcast_to(np.eye(3), rotation.shape)
    np.testing.assert_allclose(rotation @ rotation.transpose(0, 2, 1), eye, atol=1e-4)
    np.testing.assert_array_equal(transforms.c2w[:, 3], np.broadcast_to([0, 0, 0, 1], (728, 4)))
    assert transforms.face_rects.shape == (728, 4)
    assert (transforms.face_rects[:, 2:] > transforms.face_rects[:, :2]).all()  # x1 > x0, y1 > y0
    assert (transforms.face_rects >= 0).all() and (transforms.face_rects <= 450).all()


def test_background_is_read_at_the_loaded_size(fixture):
    background = video.VideoDataset(fixture.root, image_size=(16, 20)).background()
    assert background.shape == (16, 20, 3) and background.dtype == np.float32
    np.testing.assert_allclose(background, 250 / 255, atol=2 / 255)
    (fixture.root / "bc.jpg").unlink()
    with pytest.raises(MissingFileError, match="bc.jpg: file not found"):
        video.VideoDataset(fixture.root).background()


def test_jaxhead_mfcc_and_logmel_feature_files_load_and_lose_auto_to_peer_files(tmp_path):
    fx = write_video_fixture(tmp_path / "p", audio=("aud_ds.npy",))
    rows = max(fx.train_ids + fx.val_ids) + 1
    rng = np.random.default_rng(0)
    mfcc = rng.normal(size=(rows, 16, 13)).astype(np.float32)
    np.save(fx.root / "aud_mfcc.npy", mfcc)
    np.save(fx.root / "aud_logmel.npy", rng.normal(size=(rows, 16, 80)).astype(np.float32))
    assert video.VideoDataset(fx.root).audio_path.name == "aud_ds.npy"
    dataset = video.VideoDataset(fx.root, audio="aud_mfcc.npy", audio_window=4)
    np.testing.assert_array_equal(dataset.audio_features, mfcc)
    assert dataset[0]["audio"].shape == (4, 16 * 13)
    assert video.VideoDataset(fx.root, audio="aud_logmel.npy").audio_features.shape[1:] == (16, 80)
    (fx.root / "aud_ds.npy").unlink()
    assert video.VideoDataset(fx.root).audio_path.name == "aud_mfcc.npy"
    np.save(fx.root / "aud_mfcc.npy", mfcc[:, :, :12])
    with pytest.raises(FeatureShapeError, match=r"aud_mfcc.npy: has shape .*\[N, 16, 13\]"):
        video.VideoDataset(fx.root, audio="aud_mfcc.npy")


def test_base_size_hubert_features_are_read_and_other_widths_refused(tmp_path):
    fx = write_video_fixture(tmp_path / "p", audio=("aud_hu.npy",))
    rows = fx.audio["aud_hu.npy"].shape[0]
    base = np.random.default_rng(0).normal(size=(rows, 2, 768)).astype(np.float32)
    np.save(fx.root / "aud_hu.npy", base)
    dataset = video.VideoDataset(fx.root, audio="aud_hu.npy")
    np.testing.assert_array_equal(dataset.audio_features, base)
    np.save(fx.root / "aud_hu.npy", base[..., :512])
    with pytest.raises(DatasetError, match=r"1024\|768"):
        video.VideoDataset(fx.root, audio="aud_hu.npy")
