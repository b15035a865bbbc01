"""Builds small dataset folders in the AD-NeRF / RAD-NeRF / ER-NeRF / SyncTalk video layout.

Tests call `write_video_fixture(tmp_path / "obama", ...)`; the returned `VideoFixture` holds the
ground truth written into the files so tests compare what the reader returns against it.

Every frame's image is a flat colour that encodes its img_id (so a test sees which file was
read), with the head ellipse drawn in a second colour; the parsing map paints the same ellipse red,
a neck rectangle green and a torso rectangle blue on white, so the head mask is known exactly.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import cv2
import numpy as np

# name -> per-frame feature shape as the projects write them (aud_hubert.npy: per 50 Hz step).
AUDIO_VARIANTS: dict[str, tuple[int, ...]] = {
    "aud_ds.npy": (16, 29),
    "aud.npy": (16, 29),
    "aud_eo.npy": (16, 44),
    "aud_hu.npy": (2, 1024),
    "aud_hubert.npy": (1024,),
}


@dataclasses.dataclass
class VideoFixture:
    root: pathlib.Path
    train_ids: list[int]
    val_ids: list[int]
    height: int
    width: int
    focal: float
    c2w: dict[int, np.ndarray]  # img_id -> [4, 4]
    landmarks: dict[int, np.ndarray]  # img_id -> [68, 2]
    head_mask: np.ndarray  # [H, W] bool
    audio: dict[str, np.ndarray]  # file name -> array as written
    au45: np.ndarray | None  # raw AU45_r per img_id row
    blendshapes: np.ndarray | None  # [rows, 52]


def image_value(img_id: int) -> int:
    """The flat grey level of frame img_id's background (JPEG keeps flat areas within +-2)."""
    return 40 + (img_id * 7) % 160


def write_video_fixture(
    root: pathlib.Path,
    *,
    train_ids: list[int] | None = None,
    val_ids: list[int] | None = None,
    height: int = 32,
    width: int = 40,
    audio: tuple[str, ...] = ("aud_ds.npy",),
    eo_channels: int = 44,
    au: bool = True,
    blendshapes: bool = True,
    write_hw: bool = True,
    seed: int = 0,
) -> VideoFixture:
    """Writes a dataset folder; returns the ground truth behind it.

    Per-img_id arrays (audio rows, au.csv rows, bs.npy rows) cover ids 0 ... max(img_id), as the
    projects write them for the whole video.
    """
    rng = np.random.default_rng(seed)
    train_ids = list(range(3, 11)) if train_ids is None else train_ids
    val_ids = list(range(11, 15)) if val_ids is None else val_ids
    rows = max(train_ids + val_ids) + 1
    focal, cx, cy = 1.5 * width, width / 2, height / 2
    for folder in ("ori_imgs", "gt_imgs", "parsing", "torso_imgs"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    yy, xx = np.mgrid[:height, :width]
    head = ((xx - width / 2) / (width / 4)) ** 2 + ((yy - height / 3) / (height / 4)) ** 2 <= 1
    # The peers' parsing map: head [255, 0, 0], neck [0, 255, 0], torso [0, 0, 255] painted into
    # an array that cv2.imwrite stores as BGR (so the PNG's head is blue), as AD-NeRF does.
    parsing = np.full((height, width, 3), 255, np.uint8)
    neck = (np.abs(xx - width / 2) < width / 10) & (yy > height * 7 / 12) & (yy < height * 3 / 4)
    torso = yy >= height * 3 / 4
    parsing[neck & ~head] = (0, 255, 0)
    parsing[torso & ~head] = (0, 0, 255)
    parsing[head] = (255, 0, 0)

    c2w, landmarks = {}, {}
    for img_id in train_ids + val_ids:
        angle = 0.05 * img_id
        pose = np.eye(4, dtype=np.float32)
        pose[:3, :3] = cv2.Rodrigues(np.array([0.0, angle, 0.0]))[0]
        pose[:3, 3] = (0.01 * img_id, 0.0, 0.8)
        c2w[img_id] = pose
        image = np.full((height, width, 3), image_value(img_id), np.uint8)
        image[head] = (200, 120, 90)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        for folder in ("ori_imgs", "gt_imgs"):
            cv2.imwrite(str(root / folder / f"{img_id}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "parsing" / f"{img_id}.png"), parsing)
        cv2.imwrite(str(root / "torso_imgs" / f"{img_id}.png"), bgr)
        points = rng.uniform((0, 0), (width - 1, height - 1), size=(68, 2)).astype(np.float32)
        landmarks[img_id] = np.round(points, 2)
        np.savetxt(root / "ori_imgs" / f"{img_id}.lms", landmarks[img_id], "%.2f")
    cv2.imwrite(str(root / "bc.jpg"), np.full((height, width, 3), 250, np.uint8))

    def transforms(ids):
        meta = {"focal_len": focal, "cx": cx, "cy": cy}
        if write_hw:
            meta.update(h=height, w=width)
        meta["frames"] = [
            {
                "img_id": i,
                "aud_id": i,
                "transform_matrix": c2w[i].tolist(),
                "face_rect": [width // 4, 0, 3 * width // 4, height // 2],
            }
            for i in ids
        ]
        return meta

    for split, ids in (("train", train_ids), ("val", val_ids)):
        (root / f"transforms_{split}.json").write_text(json.dumps(transforms(ids)))

    features = {}
    for name in audio:
        shape = AUDIO_VARIANTS[name]
        if name == "aud_eo.npy":
            shape = (16, eo_channels)
        num = 2 * rows if name == "aud_hubert.npy" else rows
        features[name] = rng.standard_normal((num, *shape)).astype(np.float32)
        np.save(root / name, features[name])

    au45 = None
    if au:
        au45 = rng.uniform(-0.5, 3.0, rows).astype(np.float32)
        lines = ["frame, face_id, timestamp, confidence, success, AU01_r, AU45_r, AU45_c"]
        lines += [
            f"{r + 1}, 0, {r / 25:.2f}, 0.98, 1, 0.10, {v:.4f}, 1" for r, v in enumerate(au45)
        ]
        (root / "au.csv").write_text("\n".join(lines) + "\n")
        au45 = np.round(au45, 4)
    bs = None
    if blendshapes:
        bs = rng.uniform(0, 1, (rows, 52)).astype(np.float32)
        np.save(root / "bs.npy", bs)
    return VideoFixture(
        root, train_ids, val_ids, height, width, focal, c2w, landmarks, head, features, au45, bs
    )
