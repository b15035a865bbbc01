"""The peers' conventions exactly (issue 16, items 1, 3, 4, 5): files written with their own lines.

AD-NeRF / RAD-NeRF / ER-NeRF paint parsing maps into an array (head [255, 0, 0], neck
[0, 255, 0], torso [0, 0, 255], background white) and store it with ``cv2.imwrite``; they read it
back with ``cv2.imread`` and test the channels of that BGR array. The tests below use those lines.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from video_fixture import write_video_fixture

from jaxhead.data import video
from jaxhead.preprocess import masks

# The peers' colour table (ER-NeRF data_utils/face_parsing/test.py), as arrays handed to imwrite.
PEER_HEAD, PEER_NECK, PEER_TORSO = [255, 0, 0], [0, 255, 0], [0, 0, 255]


def peer_parsing(labels: np.ndarray) -> np.ndarray:
    """The peers' painting of a label map: white background, then their three colours."""
    color = np.zeros((*labels.shape, 3)) + np.array([255, 255, 255])
    color[labels == masks.HEAD] = np.array(PEER_HEAD)
    color[labels == masks.NECK] = np.array(PEER_NECK)
    color[labels == masks.TORSO] = np.array(PEER_TORSO)
    return color.astype(np.uint8)


def peer_parts(path) -> dict[str, np.ndarray]:
    """The peers' reading (ER-NeRF data_utils/process.py): cv2.imread, then channel tests."""
    seg = cv2.imread(str(path))
    return {
        "head": (seg[..., 0] == 255) & (seg[..., 1] == 0) & (seg[..., 2] == 0),
        "neck": (seg[..., 0] == 0) & (seg[..., 1] == 255) & (seg[..., 2] == 0),
        "torso": (seg[..., 0] == 0) & (seg[..., 1] == 0) & (seg[..., 2] == 255),
    }


def _labels(height=24, width=30) -> np.ndarray:
    labels = np.full((height, width), masks.BACKGROUND, np.uint8)
    labels[2:12, 8:22] = masks.HEAD
    labels[12:16, 12:18] = masks.NECK
    labels[16:, 3:27] = masks.TORSO
    return labels


# --- 1: parsing colours ----------------------------------------------------------------------


def test_a_peer_parsing_file_selects_the_head_not_the_clothes(tmp_path):
    labels = _labels()
    path = tmp_path / "0.png"
    cv2.imwrite(str(path), peer_parsing(labels))  # the peers' own write
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)  # how jaxhead reads images
    for name, label in (("head", masks.HEAD), ("neck", masks.NECK), ("torso", masks.TORSO)):
        mask = video.parsing_mask(rgb, (name,))[..., 0].astype(bool)
        np.testing.assert_array_equal(mask, labels == label, err_msg=name)
    assert tuple(rgb[5, 10]) == (0, 0, 255)  # in the PNG's own RGB the head is blue


def test_preprocess_writes_parsing_files_the_peers_read_right(tmp_path):
    labels = _labels()
    masks.write_parsing(tmp_path / "0.png", labels)
    parts = peer_parts(tmp_path / "0.png")
    np.testing.assert_array_equal(parts["head"], labels == masks.HEAD)
    np.testing.assert_array_equal(parts["neck"], labels == masks.NECK)
    np.testing.assert_array_equal(parts["torso"], labels == masks.TORSO)
    # ... byte for byte what the peers write for the same labels.
    cv2.imwrite(str(tmp_path / "peer.png"), peer_parsing(labels))
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "0.png")), cv2.imread(str(tmp_path / "peer.png"))
    )


def test_a_peer_folder_reads_the_head_mask(tmp_path):
    fixture = write_video_fixture(tmp_path / "peer")  # parsing written with the peers' lines
    dataset = video.VideoDataset(fixture.root, lr_factor=4)
    example = dataset[dataset.index_of(fixture.train_ids[0])]
    np.testing.assert_array_equal(example["mask"][..., 0] > 0.5, fixture.head_mask)


def _jaxhead_folder(tmp_path, record: dict | None, legacy_files: bool):
    fixture = write_video_fixture(tmp_path / "ours")
    if legacy_files:  # jaxhead format 1 wrote the head red in the PNG (swapped vs the peers)
        for path in (fixture.root / "parsing").iterdir():
            cv2.imwrite(str(path), cv2.imread(str(path))[..., ::-1])
    if record is not None:
        (fixture.root / "preprocess.json").write_text(json.dumps(record))
    return fixture


@pytest.mark.parametrize(
    "record, legacy_files",
    [
        ({"format": 1, "steps": {"masks": {"status": "done"}}}, True),
        ({"format": 1, "steps": {"masks": {"status": "done", "parsing_colors": "peers"}}}, False),
        ({"format": 2, "steps": {"masks": {"status": "done", "parsing_colors": "peers"}}}, False),
        ({"format": 2, "steps": {}}, False),
    ],
)
def test_folders_of_earlier_jaxhead_versions_keep_working(tmp_path, record, legacy_files):
    fixture = _jaxhead_folder(tmp_path, record, legacy_files)
    dataset = video.VideoDataset(fixture.root, lr_factor=4)
    example = dataset[dataset.index_of(fixture.train_ids[0])]
    np.testing.assert_array_equal(example["mask"][..., 0] > 0.5, fixture.head_mask)
    expected = video.PARSING_COLORS_JAXHEAD_V1 if legacy_files else video.PARSING_COLORS
    assert video.parsing_colors(fixture.root) == expected


# --- 3: LMD as the peers' tables define it -----------------------------------------------------


def rad_nerf_lmd(preds: np.ndarray, truths: np.ndarray) -> float:
    """RAD-NeRF / ER-NeRF LMDMeter.update + measure on 68-point landmarks (their lines)."""
    V, N = 0, 0
    for lms_pred, lms_truth in zip(preds, truths, strict=True):
        lms_pred = lms_pred[48:68]
        lms_truth = lms_truth[48:68]
        lms_pred = lms_pred - lms_pred.mean(0)
        lms_truth = lms_truth - lms_truth.mean(0)
        dist = np.sqrt(((lms_pred - lms_truth) ** 2).sum(1)).mean(0)
        V += dist
        N += 1
    return V / N


def test_reported_lmd_is_the_peers_centred_lmd_with_ours_beside_it():
    from jaxhead.eval import landmarks

    rng = np.random.default_rng(0)
    truth = rng.uniform(100, 400, (6, 68, 2)).astype(np.float32)
    pred = truth + rng.normal(0, 1.5, truth.shape).astype(np.float32)
    pred[:, 48:68] += np.array([3.0, -2.0], np.float32)  # the mouth drawn a few pixels off
    out = landmarks.mouth_lmd(pred, truth, (512, 512), layout="68")
    assert out["lmd"] == pytest.approx(rad_nerf_lmd(pred, truth), rel=1e-5)
    assert out["lmd_at"] == pytest.approx(out["lmd"])  # 512-px frames
    # Ours (uncentred) stays beside it and sees the shift the peers' centring removes.
    assert out["lmd_px"] > out["lmd"] + 2.0
    assert landmarks.peer_lmd(pred[:, 48:68], truth[:, 48:68]) == pytest.approx(out["lmd"])
    half = landmarks.mouth_lmd(pred / 2, truth / 2, (256, 256), layout="68")
    assert half["lmd_at"] == pytest.approx(out["lmd"], rel=1e-5)


# --- 4: an AD-NeRF folder reads with no flags ----------------------------------------------------


def test_an_ad_nerf_folder_reads_with_no_flags(tmp_path, caplog):
    fixture = write_video_fixture(tmp_path / "adnerf", height=450, width=450)
    (fixture.root / "gt_imgs").rename(fixture.root / "head_imgs")  # AD-NeRF has no gt_imgs/
    with caplog.at_level("WARNING"):
        dataset = video.VideoDataset(fixture.root)
    assert dataset.image_dir == "head_imgs" and dataset.lr_factor == 2
    assert dataset.choices == {"image_dir": "head_imgs", "lr_factor": 2}
    assert "image_dir=head_imgs, lr_factor=2" in caplog.text  # says what it picked
    example = dataset[0]
    assert example["image"].shape == (450, 450, 3) and example["image_lr"].shape == (225, 225, 3)
    with pytest.raises(ValueError, match="not divisible by lr_factor 4"):
        video.VideoDataset(fixture.root, lr_factor=4)  # an explicit choice is kept


def test_a_rad_nerf_folder_keeps_gt_imgs_and_factor_4_silently(tmp_path, caplog):
    fixture = write_video_fixture(tmp_path / "radnerf")
    with caplog.at_level("WARNING"):
        dataset = video.VideoDataset(fixture.root)
    assert (dataset.image_dir, dataset.lr_factor, dataset.choices) == ("gt_imgs", 4, {})
    assert "picked" not in caplog.text


# --- 5: audio features one row short of the last aud_id ----------------------------------------


def test_audio_features_one_row_short_reuse_the_last_row(tmp_path, caplog):
    fixture = write_video_fixture(tmp_path / "short")
    features = np.load(fixture.root / "aud_ds.npy")
    last = max(fixture.val_ids)
    np.save(fixture.root / "aud_ds.npy", features[:last])  # rows 0 ... last - 1
    with caplog.at_level("WARNING"):
        dataset = video.VideoDataset(fixture.root, split="val", audio_window=1)
    assert "reuses the last row" in caplog.text
    window = dataset[dataset.index_of(last)]["audio"]
    np.testing.assert_array_equal(window[0], features[last - 1].reshape(-1))
    np.save(fixture.root / "aud_ds.npy", features[: last - 1])  # two rows short: refused
    with pytest.raises(video.FrameCountError, match="goes up to"):
        video.VideoDataset(fixture.root, split="val")
