"""A preprocessed talking-head video as NeRF training frames: crop, matte, cache, serve.

The NeRF stage trains on the same per-frame examples for every data kind (see
:class:`jaxhead.data.frames.CachedFrames`). For one preprocessed video in the AD-NeRF /
RAD-NeRF / ER-NeRF layout (read by :class:`jaxhead.data.video.VideoDataset`; our own
``scripts/preprocess.py`` writes the same layout plus ``aud.wav``) this module prepares them once
per (folder, split, settings) into an ``.npz`` under the cache folder:

* **Crop.** Real frames are large (450²-512²) and the CPU-sized NeRF renders a 32² feature map
  upsampled x4 to 128², so each frame is cut to one **fixed square crop for the whole video** and
  resized to ``resolution`` (box filter). The crop is computed from the 68 landmarks of *all*
  frames of both splits (``ori_imgs/<id>.lms``): its side is ``crop.scale`` times the median
  per-frame landmark-box size plus the range the box centre moves over the video, its centre the
  middle of that range moved by ``crop.shift_y`` box sizes (negative: up, to keep the hair; the 68
  points stop at the eyebrows). ``crop.box = (x0, y0, side)`` sets it by hand. Because the crop is
  fixed, a camera only changes by a shift and a scale: ``f' = f r``, ``c' = (c - (x0, y0)) r`` with
  ``r = resolution / side`` (continuous pixel coordinates, as :class:`VideoDataset` scales them).
  Parts of the crop outside the frame are background.
* **Matte.** The NeRF has one learned constant background feature, so the target frames are
  composited onto white outside the head mask (``mask_parts``: head + neck from ``parsing/``), as
  the synthetic VOCASET renders are. Every score of a video run (PSNR, SSIM, LMD, ...) is computed
  on these matted crops, not on the original frames.
* **Scene scale.** Trackers place the head at the origin (AD-NeRF's 3DMM fit, MediaPipe's
  canonical face) but in their own units (AD-NeRF: camera ~0.76 from the head; MediaPipe: cm).
  With ``normalize_scene`` the camera translations are scaled so that the crop's half side, seen
  at the median camera distance, is ``scene_radius`` scene units: ``config.model.bound_radius``
  then means the same thing for every video (``configs/video.py``).
* **Audio.** ``audio_window`` log-mel steps per frame from ``aud.wav`` (16 kHz) with
  :func:`jaxhead.data.frames.audio_spec` (:mod:`jaxhead.audio.frontend`), exactly as for
  VOCASET data; the frame with audio
  row ``aud_id`` sits at ``aud_id / fps`` seconds. Blink is ``au.csv``'s AU45 (else ``bs.npy``'s
  eye blendshapes, else zeros) via :class:`VideoDataset`.
* **Splits.** ``train`` and ``val``: by default the layout's ``transforms_train.json`` /
  ``transforms_val.json``. With ``val_seconds > 0`` the frames of both files are pooled by
  ``img_id`` (frame number at ``fps``) and the last ``val_seconds`` of the video are ``val``; the
  training frames are those before ``train_seconds`` (0: all the others). ``french.mp4``: 40 + 10
  s. A monocular video has no held-out *views*: ``val_views`` raises (evaluate with
  ``config.eval.splits = ("val",)``).

**Full frames** (``frame="full"``): the crop is the frame's own square (a non-square frame is
padded at the sides with white), nothing is matted, and the split also holds the static background
``bc.jpg`` (``background`` ``[res, res, 3]`` uint8, ``background_lr``) that the NeRF composites the
person over, and ``face_box`` (the head crop above in the output's pixels, ``(x0, y0, side)``: the
face-crop scores of a full-frame run). ``mask_parts`` then names the person (head, neck, torso).
The held-out split also holds each frame's ``regions`` (:func:`neck_regions`: the band where head
and neck meet, where a seam between head and torso would show; the rest of the head; the rest of
the neck and the torso; the background).

Every frame is identity 0 and sequence 0; a gap in ``img_id`` (a dropped frame, the split
boundary) ends a continuous run (``next_index``), ``frame`` is the ``img_id``.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import cv2
import ml_collections
import numpy as np
import tqdm

from jaxhead.audio import frontend
from jaxhead.audio.io import SAMPLE_RATE, load_audio
from jaxhead.data import cache
from jaxhead.data.blocks import video_frames_config  # noqa: F401 - the block's reader
from jaxhead.data.errors import DatasetError, MissingFileError
from jaxhead.data.frames import CachedFrames, audio_spec
from jaxhead.data.video import PREPROCESS, VideoDataset, read_landmarks

__all__ = [
    "SPLITS",
    "VideoFrames",
    "audio_tracks",
    "crop_box",
    "crop_resize",
    "load_frames",
    "video_frames_config",
]

SPLITS = ("train", "val")
_CACHE_VERSION = 1
_NO_VIEWS = (
    "a monocular video has no held-out views (split 'val_views'); score the held-out end of the "
    "video with split 'val' (configs/video.py sets config.eval.splits = ('val',))"
)


# --- geometry -------------------------------------------------------------------------------------


def crop_box(landmarks: np.ndarray, scale: float, shift_y: float) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the fixed square crop around ``[N, L, 2]`` pixel landmarks.

    ``side = scale * median box size + centre range``; centre = middle of the range of the
    per-frame box centres, moved down by ``shift_y`` box sizes (module docstring).
    """
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2 or len(landmarks) == 0:
        raise ValueError(f"landmarks must be [N, L, 2] with N >= 1, got {landmarks.shape}")
    lo, hi = landmarks.min(axis=1), landmarks.max(axis=1)
    size = float(np.median((hi - lo).max(axis=1)))
    if not size > 0:
        raise ValueError("the landmarks are degenerate (zero-size face boxes)")
    centres = 0.5 * (lo + hi)
    spread = centres.max(axis=0) - centres.min(axis=0)
    centre = 0.5 * (centres.max(axis=0) + centres.min(axis=0)) + np.array([0.0, shift_y * size])
    side = int(np.ceil(scale * size + spread.max()))
    x0, y0 = (int(np.round(c - side / 2)) for c in centre)
    return x0, y0, side


def crop_resize(
    image: np.ndarray, box: tuple[int, int, int], size: int, fill: float | tuple = 0.0
) -> np.ndarray:
    """The square ``box = (x0, y0, side)`` of ``[H, W, C]`` ``image`` resized to ``size`` (box
    filter); parts of the box outside the image are ``fill``."""
    x0, y0, side = box
    height, width = image.shape[:2]
    top, left = max(-y0, 0), max(-x0, 0)
    bottom, right = max(y0 + side - height, 0), max(x0 + side - width, 0)
    if top or left or bottom or right:
        channels = image.shape[2]
        value = [float(v) for v in np.broadcast_to(np.asarray(fill, np.float64), (channels,))]
        image = cv2.copyMakeBorder(
            image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value
        )
        if image.ndim == 2:
            image = image[..., None]
    patch = image[y0 + top : y0 + top + side, x0 + left : x0 + left + side]
    out = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out.reshape(size, size, -1)


def crop_intrinsics(intrinsics: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """``(fx, fy, cx, cy)`` of the full frame -> of the crop ``box`` resized to ``size``."""
    x0, y0, side = box
    r = size / side
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    return np.array([fx * r, fy * r, (cx - x0) * r, (cy - y0) * r], np.float32)


# --- frames ---------------------------------------------------------------------------------------


class VideoFrames(CachedFrames):
    """:class:`CachedFrames` of a video split; also knows its folder and audio track."""

    def __init__(self, arrays: dict[str, np.ndarray], root: pathlib.Path, audio_file: str):
        super().__init__(arrays)
        self.root = root
        self.audio_path = root / audio_file

    @property
    def crop(self) -> tuple[int, int, int]:
        """``(x0, y0, side)`` of the crop in the original frames' pixels."""
        return tuple(int(v) for v in self.arrays["crop_box"])

    @property
    def scene_scale(self) -> float:
        """Factor applied to the tracker's camera translations."""
        return float(self.arrays["scene_scale"])

    @property
    def full_frame(self) -> bool:
        """Whole frames over the static background (``data.frame="full"``)."""
        return "background" in self.arrays

    @property
    def face_box(self) -> tuple[int, int, int] | None:
        """``(x0, y0, side)`` of the head crop in the output's pixels (full frames only)."""
        return tuple(int(v) for v in self.arrays["face_box"]) if self.full_frame else None

    @property
    def background(self) -> np.ndarray | None:
        """``[res, res, 3]`` float32 static background every frame is composited over (full
        frames only): one constant of the run, not an entry of every frame."""
        if not self.full_frame:
            return None
        return self.arrays["background"].astype(np.float32) / 255.0


def _root(config) -> pathlib.Path:
    if not config.root:
        raise DatasetError(
            None,
            "config.data.root is empty: a video run needs a preprocessed video folder",
            "run `python scripts/preprocess.py VIDEO.mp4 --out DIR` and pass "
            "--config.data.root=DIR (an AD-NeRF / ER-NeRF data/<ID> folder works too)",
        )
    root = pathlib.Path(config.root).expanduser()
    if not root.is_dir():
        raise MissingFileError(root, produced_by=PREPROCESS, why="the preprocessed video folder")
    return root


def _datasets(root: pathlib.Path, config) -> dict[str, VideoDataset]:
    kw = dict(
        audio=None,
        lr_factor=1,
        mask_parts=tuple(config.mask_parts),
        expression=None,
        expression_dim=1,
        missing_frames=config.missing_frames,
    )
    return {split: VideoDataset(root, split, **kw) for split in SPLITS}


def _split_items(datasets: dict[str, VideoDataset], config, split: str) -> list[tuple]:
    """``[(dataset, index, img_id, aud_id)]`` of ``split``, in img_id order."""
    if not config.val_seconds:
        ds = datasets[split]
        items = [
            (ds, i, int(ds.img_ids[i]), int(ds.transforms.aud_ids[ds.rows[i]]))
            for i in range(len(ds))
        ]
    else:
        pooled = {}
        for ds in datasets.values():
            for i in range(len(ds)):
                aud_id = int(ds.transforms.aud_ids[ds.rows[i]])
                pooled.setdefault(int(ds.img_ids[i]), (ds, i, int(ds.img_ids[i]), aud_id))
        ids = np.array(sorted(pooled))
        total = int(ids.max()) + 1
        val_start = total - int(round(config.val_seconds * config.fps))
        train_end = int(round(config.train_seconds * config.fps)) or val_start
        if train_end > val_start:
            raise ValueError(
                f"data.train_seconds {config.train_seconds} overlaps the last val_seconds "
                f"{config.val_seconds} of a {total / config.fps:.2f} s video"
            )
        keep = ids >= val_start if split == "val" else ids < train_end
        items = [pooled[int(i)] for i in ids[keep]]
    items.sort(key=lambda item: item[2])
    if config.max_frames:
        items = items[: int(config.max_frames)]
    if not items:
        raise DatasetError(
            datasets["train"].root,
            f"split {split!r} selects no frames",
            "check data.val_seconds / data.train_seconds against the video's length",
        )
    return items


def frame_box(width: int, height: int) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of a ``width x height`` frame's own square (padded at the short side)."""
    side = max(int(width), int(height))
    return (int(width) - side) // 2, (int(height) - side) // 2, side


def full_frames(config) -> bool:
    """Whether ``config.data`` asks for whole frames (``frame="full"``) or the head crop."""
    frame = str(config.get("frame", "crop"))
    if frame not in ("crop", "full"):
        raise ValueError(f"data.frame={frame!r}: use 'crop' (the head crop) or 'full'")
    return frame == "full"


def _face_crop(datasets: dict[str, VideoDataset], config) -> tuple[int, int, int]:
    """The head crop of the module docstring: ``config.crop.box``, else from the landmarks."""
    if len(config.crop.box):
        x0, y0, side = (int(v) for v in config.crop.box)
        if side <= 0:
            raise ValueError(f"data.crop.box {tuple(config.crop.box)}: the side must be > 0")
        return x0, y0, side
    landmarks = [
        read_landmarks(ds.root / "ori_imgs" / f"{int(img_id)}.lms")
        for ds in datasets.values()
        for img_id in ds.img_ids
    ]
    return crop_box(np.stack(landmarks), float(config.crop.scale), float(config.crop.shift_y))


def _video_crop(datasets: dict[str, VideoDataset], config) -> tuple[int, int, int]:
    if full_frames(config):
        t = datasets["train"].transforms
        return frame_box(t.width, t.height)
    return _face_crop(datasets, config)


def _scene_scale(datasets: dict[str, VideoDataset], config, box) -> float:
    if not config.normalize_scene:
        return 1.0
    t = datasets["train"].transforms
    distance = float(np.median(np.linalg.norm(t.c2w[:, :3, 3], axis=-1)))
    if not distance > 0:
        raise DatasetError(t.path, "puts every camera at the origin", "check the pose tracking")
    half_extent = 0.5 * box[2] * distance / t.focal
    return float(config.scene_radius) / half_extent


def scene_scale_of(config) -> float:
    """The factor :func:`prepare_split` puts on the tracker's camera translations for
    ``config`` (``config.data``), from the folder's transforms and landmarks, no image read."""
    datasets = _datasets(_root(config), config)
    return _scene_scale(datasets, config, _video_crop(datasets, config))


def load_track(path: pathlib.Path) -> np.ndarray:
    """The 16 kHz mono waveform of a video's audio file."""
    if not path.is_file():
        raise MissingFileError(
            path,
            produced_by=f"{PREPROCESS} (AD-NeRF: ffmpeg -i VIDEO -ar 16000 -ac 1 aud.wav)",
            why="the NeRF's audio windows are log-mels of the video's own speech",
        )
    wave, _ = load_audio(path, SAMPLE_RATE)
    return wave


def prepare_split(config, split: str, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Crops, mattes and windows one split into stacked arrays (uint8 images, float32 rest)."""
    if split == "val_views":
        raise ValueError(_NO_VIEWS)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; a video has {SPLITS}")
    res, lr = int(config.resolution), int(config.lr_resolution)
    if res % lr:
        raise ValueError(f"data.resolution {res} must be a multiple of data.lr_resolution {lr}")
    root = _root(config)
    datasets = _datasets(root, config)
    items = _split_items(datasets, config, split)
    box = _video_crop(datasets, config)
    scale = _scene_scale(datasets, config, box)

    wave = load_track(root / config.audio_file)
    seconds = len(wave) / SAMPLE_RATE
    aud_ids = np.array([item[3] for item in items])
    last = float(aud_ids.max()) / config.fps
    if last > seconds + 0.5:
        raise DatasetError(
            root / config.audio_file,
            f"lasts {seconds:.2f} s but frame aud_id {int(aud_ids.max())} is at {last:.2f} s "
            f"({config.fps:g} fps)",
            "use the audio track of the same video (or set --config.data.fps)",
        )
    windows = frontend.frame_windows(wave, int(aud_ids.max()) + 1, config.fps, audio_spec(config))

    n = len(items)
    out = {
        "image": np.zeros((n, res, res, 3), np.uint8),
        "image_lr": np.zeros((n, lr, lr, 3), np.uint8),
        "mask": np.zeros((n, res, res, 1), np.uint8),
        "mask_lr": np.zeros((n, lr, lr, 1), np.float32),
        "intrinsics": np.zeros((n, 4), np.float32),
        "c2w": np.zeros((n, 4, 4), np.float32),
        "audio": windows[aud_ids].astype(np.float32),
        "landmarks": np.zeros((n, 68, 2), np.float32),
        "expression": np.zeros((n, 1), np.float32),
        "blink": np.zeros((n,), np.float32),
        "identity": np.zeros((n,), np.int32),
        "sequence": np.zeros((n,), np.int32),
        "frame": np.array([item[2] for item in items], np.int32),
        "audio_frame": aud_ids.astype(np.int32),
        "crop_box": np.array(box, np.int32),
        "scene_scale": np.asarray(scale, np.float32),
    }
    r = res / box[2]
    full = full_frames(config)
    if full:
        background = crop_resize(datasets["train"].background(), box, res, fill=1.0)
        out["background"] = np.round(np.clip(background, 0, 1) * 255).astype(np.uint8)
        out["background_lr"] = np.round(np.clip(cv2_area(background, lr), 0, 1) * 255).astype(
            np.uint8
        )
        face = _face_crop(datasets, config)
        out["face_box"] = np.round(
            [(face[0] - box[0]) * r, (face[1] - box[1]) * r, face[2] * r]
        ).astype(np.int32)
    regions = full and split == "val"
    if regions:
        out["regions"] = np.zeros((n, res, res), np.uint8)
        band = max(1, int(round(NECK_BAND * res)))
    bar = tqdm.tqdm(total=n, desc=f"prepare video {split}", disable=not progress, leave=False)
    for k, (ds, i, _, _) in enumerate(items):
        example = ds[i]
        mask = example["mask"]
        if full:
            image = crop_resize(example["image"], box, res, fill=1.0)
        else:
            matted = example["image"] * mask + (1.0 - mask)  # white outside the head mask
            image = crop_resize(matted, box, res, fill=1.0)
        alpha = crop_resize(mask, box, res, fill=0.0)
        out["image"][k] = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        out["image_lr"][k] = np.round(np.clip(cv2_area(image, lr), 0, 1) * 255).astype(np.uint8)
        out["mask"][k] = np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8)
        out["mask_lr"][k] = cv2_area(alpha, lr)
        out["intrinsics"][k] = crop_intrinsics(ds.intrinsics, box, res)
        c2w = np.array(example["c2w"], np.float32)
        c2w[:3, 3] *= scale
        out["c2w"][k] = c2w
        out["landmarks"][k] = (example["landmarks"] - np.array(box[:2], np.float32)) * r
        if regions:
            parts = [ds.part_mask(i, part) for part in ("head", "neck", "torso")]
            head, neck, torso = (crop_resize(m, box, res, fill=0.0)[..., 0] > 0.5 for m in parts)
            out["regions"][k] = neck_regions(head, neck, band, torso)
        out["blink"][k] = example["blink"]
        bar.update()
    bar.close()
    return out


NECK_BAND = 8 / 512  # half-width of the head/neck band, as a share of the frame's side
REGION_HEAD, REGION_NECK_BAND, REGION_BODY = 1, 2, 3
# Bumped when the held-out regions change (the caches of full frames are prepared anew).
REGIONS_VERSION = 2


def neck_regions(
    head: np.ndarray, neck: np.ndarray, band: int, torso: np.ndarray | None = None
) -> np.ndarray:
    """``[H, W]`` uint8 from the head, neck (and torso) masks ``[H, W]`` (bool):
    :data:`REGION_NECK_BAND` where head and neck are within ``band`` pixels (the head/neck
    boundary, where two NeRFs' seam shows), :data:`REGION_HEAD` for the rest of the head,
    :data:`REGION_BODY` for the rest of the neck and the torso, 0 elsewhere (the background)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    near_head = cv2.dilate(head.astype(np.uint8), kernel) > 0
    near_neck = cv2.dilate(neck.astype(np.uint8), kernel) > 0
    out = np.where(head, REGION_HEAD, 0).astype(np.uint8)
    out[near_head & near_neck] = REGION_NECK_BAND
    body = neck if torso is None else (neck | torso)
    out[body & (out == 0)] = REGION_BODY
    return out


def cv2_area(image: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, C]`` -> ``[size, size, C]`` box-filter resize (keeps the channel axis)."""
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return out.reshape(size, size, -1)


def _fingerprint(root: pathlib.Path, config) -> list:
    """What identifies the folder's content cheaply: the camera files and the audio file."""
    parts = []
    for name in ("transforms_train.json", "transforms_val.json", config.audio_file, "au.csv"):
        path = root / name
        if path.is_file():
            stat = path.stat()
            parts.append([name, stat.st_size, stat.st_mtime_ns])
    return parts


def _settings(config) -> dict:
    keys = ("audio_file", "fps", "train_seconds", "val_seconds", "max_frames", "resolution",
            "lr_resolution", "mask_parts", "normalize_scene", "scene_radius", "missing_frames",
            "audio_window")  # fmt: skip
    out = {k: (list(config[k]) if isinstance(config[k], tuple) else config[k]) for k in keys}
    if full_frames(config):  # only then: the head-crop runs' caches keep their names
        out["frame"] = "full"
        out["neck_band"] = NECK_BAND  # the held-out split's regions
        out["regions"] = REGIONS_VERSION
    out["crop"] = {
        "scale": config.crop.scale,
        "shift_y": config.crop.shift_y,
        "box": list(config.crop.box),
    }
    return out


def cache_path(config, split: str) -> pathlib.Path:
    """The ``.npz`` a split of ``config`` is cached in."""
    root = _root(config).resolve()
    digest = hashlib.sha256(
        json.dumps(
            [_CACHE_VERSION, str(root), split, _settings(config), _fingerprint(root, config)],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    return cache.cache_root(config.cache_dir) / "frames" / f"video_{root.name}_{split}_{digest}.npz"


def load_frames(
    config: ml_collections.ConfigDict, split: str, *, progress: bool = True
) -> VideoFrames:
    """Prepares (or loads from the cache) one split of a preprocessed video (module docstring)."""
    if split == "val_views":
        raise ValueError(_NO_VIEWS)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; a video has {SPLITS}")
    root = _root(config)
    path = cache_path(config, split)
    if path.exists():
        try:
            with np.load(path) as data:
                return VideoFrames({k: data[k] for k in data.files}, root, config.audio_file)
        except (OSError, ValueError, KeyError) as e:
            print(f"Cached frames {path} are unreadable ({e}); preparing them again.", flush=True)
    if progress:
        print(f"Preparing the {split} frames of {root} into {path} (once).", flush=True)
    arrays = prepare_split(config, split, progress=progress)
    cache.save_npz(path, arrays)
    return VideoFrames(arrays, root, config.audio_file)


def audio_tracks(
    config: ml_collections.ConfigDict, source: VideoFrames
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``[(rows, samples, frame_numbers)]``, one per continuous run of ``source``.

    ``rows``: the run's rows in ``source``; ``samples``: float32 16 kHz waveform of the video's
    audio track (the whole track: every run of a video shares it); ``frame_numbers``: each row's
    frame in that track at ``config.fps`` (its ``aud_id``).
    """
    wave = load_track(pathlib.Path(_root(config)) / config.audio_file)
    frames = source.arrays["audio_frame"]
    return [(rows, wave, frames[rows].astype(np.int64)) for rows in source.sequence_rows()]
