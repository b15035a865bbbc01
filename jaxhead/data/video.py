"""Reader for per-person video datasets in the AD-NeRF / RAD-NeRF / ER-NeRF / SyncTalk layout.

A dataset folder ``data/<ID>/`` as those projects' preprocessing writes it::

    transforms_train.json, transforms_val.json   cameras: focal_len, cx, cy, optional h / w,
                                                 frames [{img_id, aud_id, transform_matrix 4x4
                                                 camera-to-world, optional face_rect}]
    gt_imgs/<img_id>.jpg       target frames (full image)
    ori_imgs/<img_id>.lms      68 x 2 landmarks in pixels, plain text (x y per line)
    parsing/<img_id>.png       semantic parsing, see `PARSING_COLORS` (head blue in the PNG's RGB)
    torso_imgs/<img_id>.png    torso-only images (not read here; torso stages are out of scope)
    bc.jpg                     the static background
    aud*.npy                   audio features, see `AUDIO_FEATURE_FILES`
    au.csv                     OpenFace action units (optional; column ' AU45_r' = blink)
    bs.npy                     [N, 52] ARKit/MediaPipe blendshapes (optional; SyncTalk)

Frame identity is ALWAYS the json's ``img_id`` (and ``aud_id`` for audio rows), never a list
position, so a frame without its landmarks or image cannot shift the others: such frames are
reported (`MissingFramesError`) or, with ``missing_frames="drop"``, dropped explicitly and listed in
`VideoDataset.dropped`. Audio rows are indexed by ``aud_id``; ``au.csv`` and ``bs.npy`` rows by
``img_id`` (as ER-NeRF and SyncTalk index them).

Where the layout is vague, this reader follows what those projects do: the image size defaults
to ``(2 cy, 2 cx)`` when ``h`` / ``w`` are absent (AD-NeRF's convention); the audio window is
centred on the frame with ``window // 2`` frames before it and zero padding past the ends (AD-NeRF's
smoothing window of 8, RAD-NeRF's ``get_audio_features``); blink is ``clip(AU45_r, 0, 2) / 2``
(ER-NeRF).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from jaxhead.audio.frontend import context_window as audio_window
from jaxhead.data.errors import (
    CorruptFileError,
    DatasetError,
    FeatureShapeError,
    FrameCountError,
    MissingFileError,
    MissingFramesError,
    NonFiniteError,
)

__all__ = [
    "AUDIO_FEATURE_FILES",
    "PARSING_COLORS",
    "PARSING_COLORS_JAXHEAD_V1",
    "VideoDataset",
    "VideoTransforms",
    "audio_window",
    "load_audio_features",
    "load_blendshapes",
    "load_blink",
    "parsing_mask",
    "read_landmarks",
    "read_transforms",
]

log = logging.getLogger(__name__)

PREPROCESS = "scripts/preprocess.py (or the AD-NeRF / RAD-NeRF / ER-NeRF preprocessing)"


@dataclasses.dataclass(frozen=True)
class AudioFeatureFile:
    """One audio-feature file name: the model behind it, and the shapes it may have.

    `steps_per_frame` None: the file is already [N, steps, channels] per video frame;
    an integer: the file is a [T, channels] step stream with that many steps per video frame.
    """

    model: str
    steps: tuple[int, ...]
    channels: tuple[int, ...]
    steps_per_frame: int | None
    produced_by: str

    def expected(self) -> str:
        chans = "|".join(map(str, self.channels))
        if self.steps_per_frame is None:
            return f"[N, {'|'.join(map(str, self.steps))}, {chans}] ({self.model})"
        return f"[T, {chans}] ({self.model}, {self.steps_per_frame} steps per video frame)"


# Searched in this order by ``audio="auto"``. DeepSpeech and wav2vec files already hold, for every
# 25 fps frame, a window of 16 steps at 50 Hz (AD-NeRF's "window of 16"); HuBERT's aud_hu.npy holds
# the 2 steps of each frame, aud_hubert.npy the raw 50 Hz stream.
AUDIO_FEATURE_FILES: dict[str, AudioFeatureFile] = {
    "aud_ds.npy": AudioFeatureFile(
        "DeepSpeech", (16,), (29,), None, f"{PREPROCESS}, DeepSpeech features"
    ),
    "aud.npy": AudioFeatureFile(
        "DeepSpeech or wav2vec", (16,), (29, 32, 44), None, f"{PREPROCESS}, DeepSpeech features"
    ),
    "aud_eo.npy": AudioFeatureFile(
        "wav2vec", (16,), (44, 32), None, f"{PREPROCESS}, wav2vec (esperanto) features"
    ),
    # HuBERT-large (1024, the peers' hubert-large-ls960-ft) or a base-size HuBERT (768).
    "aud_hu.npy": AudioFeatureFile(
        "HuBERT", (2,), (1024, 768), None, f"{PREPROCESS}, HuBERT features"
    ),
    "aud_hubert.npy": AudioFeatureFile(
        "HuBERT", (), (1024, 768), 2, f"{PREPROCESS}, HuBERT features"
    ),
    # jaxhead's own features (scripts/preprocess.py, `jaxhead.audio.features`): windows of 16 MFCC
    # (100 Hz) or log-mel (80 Hz) steps centred on each frame. Last, so peers' files win "auto".
    "aud_mfcc.npy": AudioFeatureFile("MFCC", (16,), (13,), None, f"{PREPROCESS}, MFCC features"),
    "aud_logmel.npy": AudioFeatureFile(
        "log-mel", (16,), (80,), None, f"{PREPROCESS}, log-mel features"
    ),
}

# parsing/<i>.png class colours in the PNG's own RGB order, as the peers' files hold them.
# AD-NeRF / RAD-NeRF / ER-NeRF paint the head [255, 0, 0], the neck [0, 255, 0] and the torso
# [0, 0, 255] into an array and store it with `cv2.imwrite`, which takes arrays as BGR: in the
# file the head is blue and the torso red. They read it back with `cv2.imread` (BGR) and test
# channel 0 for the head (ER-NeRF data_utils/face_parsing/test.py and data_utils/process.py).
PARSING_COLORS: dict[str, tuple[int, int, int]] = {
    "head": (0, 0, 255),
    "neck": (0, 255, 0),
    "torso": (255, 0, 0),
}
# Folders written by jaxhead's own preprocessing before it followed the peers (preprocess.json
# "format": 1) hold the head red and the torso blue in the file.
PARSING_COLORS_JAXHEAD_V1: dict[str, tuple[int, int, int]] = {
    "head": (255, 0, 0),
    "neck": (0, 255, 0),
    "torso": (0, 0, 255),
}


def parsing_colors(root: str | os.PathLike) -> dict[str, tuple[int, int, int]]:
    """The parsing colours of a dataset folder: the peers', or jaxhead format 1's (its record).

    A folder without ``preprocess.json`` comes from the peers' tools. jaxhead's preprocessing
    records the convention of the parsing files it wrote (``steps.masks.parsing_colors``); a
    folder of format 1 without that record used :data:`PARSING_COLORS_JAXHEAD_V1`.
    """
    path = pathlib.Path(root) / "preprocess.json"
    if not path.is_file():
        return PARSING_COLORS
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptFileError(path, str(e), produced_by=PREPROCESS) from None
    masks_step = state.get("steps", {}).get("masks", {})
    convention = masks_step.get("parsing_colors")
    if convention is None:
        convention = "jaxhead_v1" if int(state.get("format", 1)) < 2 else "peers"
    return PARSING_COLORS_JAXHEAD_V1 if convention == "jaxhead_v1" else PARSING_COLORS


# Target image folders "auto" looks for, in order (AD-NeRF's head NeRF trains on head_imgs/).
IMAGE_DIRS = ("gt_imgs", "head_imgs", "ori_imgs")

OPENFACE = "OpenFace FeatureExtraction -aus on the video (ER-NeRF's preprocessing step)"
BLENDSHAPES = "SyncTalk's MediaPipe blendshape extraction (52 ARKit blendshapes per frame)"
# MediaPipe's 52-blendshape order puts eyeBlinkLeft / eyeBlinkRight at these positions.
EYE_BLINK_BLENDSHAPES = (9, 10)


def _load_npy(path: pathlib.Path, produced_by: str) -> np.ndarray:
    if not path.is_file():
        raise MissingFileError(path, produced_by=produced_by)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise CorruptFileError(
            path, f"truncated or not a .npy array ({error})", produced_by
        ) from error
    if not np.issubdtype(array.dtype, np.number):
        raise CorruptFileError(path, f"holds {array.dtype} values, not numbers", produced_by)
    array = array.astype(np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        raise NonFiniteError(path, int(bad.sum()), int(np.argwhere(bad)[0, 0]))
    return array


def load_audio_features(path: str | os.PathLike) -> np.ndarray:
    """Loads an audio-feature file into the per-frame layout [N, steps, channels] float32.

    The file's name says what it holds (`AUDIO_FEATURE_FILES`); `aud_hubert.npy`'s 50 Hz stream
    [T, 1024] becomes [T // 2, 2, 1024] (two steps per 25 fps frame; an odd last step is dropped).
    Raises `DatasetError` for a missing, truncated, NaN-holding or mis-shaped file.
    """
    path = pathlib.Path(path)
    kind = AUDIO_FEATURE_FILES.get(path.name)
    if kind is None:
        raise DatasetError(
            path,
            "is not a known audio-feature file name.",
            f"name it one of {sorted(AUDIO_FEATURE_FILES)} after what it holds.",
        )
    features = _load_npy(path, kind.produced_by)
    if kind.steps_per_frame is None:
        ok = (
            features.ndim == 3
            and features.shape[1] in kind.steps
            and features.shape[2] in kind.channels
        )
    else:
        ok = features.ndim == 2 and features.shape[1] in kind.channels
    if not ok or len(features) == 0:
        raise FeatureShapeError(path, features.shape, kind.expected(), kind.produced_by)
    if kind.steps_per_frame is not None:
        frames = len(features) // kind.steps_per_frame
        features = features[: frames * kind.steps_per_frame].reshape(
            frames, kind.steps_per_frame, features.shape[1]
        )
    return features


def load_blink(path: str | os.PathLike) -> np.ndarray:
    """[rows] float32 blink in [0, 1] from an OpenFace CSV: clip(AU45_r, 0, 2) / 2 per row."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(path, produced_by=OPENFACE, why="blink needs AU45_r")
    try:
        with path.open(newline="") as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorruptFileError(path, str(error), OPENFACE) from error
    # OpenFace writes ", "-separated headers, so the column is ' AU45_r' with a leading space.
    header = [name.strip() for name in rows[0]] if rows else []
    if "AU45_r" not in header:
        raise CorruptFileError(path, "has no ' AU45_r' column", OPENFACE)
    column = header.index("AU45_r")
    try:
        values = np.array([float(row[column]) for row in rows[1:]], np.float32)
    except (IndexError, ValueError) as error:
        raise CorruptFileError(
            path, f"a row has no number in ' AU45_r' ({error})", OPENFACE
        ) from error
    bad = ~np.isfinite(values)
    if bad.any():
        raise NonFiniteError(path, int(bad.sum()), int(np.argmax(bad)))
    return np.clip(values, 0.0, 2.0) / 2.0


def load_blendshapes(path: str | os.PathLike) -> np.ndarray:
    """[rows, 52] float32 blendshape weights from SyncTalk's bs.npy."""
    path = pathlib.Path(path)
    blendshapes = _load_npy(path, BLENDSHAPES)
    if blendshapes.ndim != 2 or blendshapes.shape[1] != 52:
        raise FeatureShapeError(path, blendshapes.shape, "[N, 52] blendshapes", BLENDSHAPES)
    return blendshapes


def read_landmarks(path: str | os.PathLike, num_landmarks: int = 68) -> np.ndarray:
    """[num_landmarks, 2] float32 pixel landmarks from an .lms text file (one 'x y' per line)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(path, produced_by=f"{PREPROCESS}, landmark detection")
    try:
        landmarks = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as error:
        raise CorruptFileError(path, str(error), f"{PREPROCESS}, landmark detection") from error
    if landmarks.shape != (num_landmarks, 2):
        raise FeatureShapeError(path, landmarks.shape, f"[{num_landmarks}, 2] pixel coordinates")
    if not np.isfinite(landmarks).all():
        raise NonFiniteError(path, int((~np.isfinite(landmarks)).sum()), 0)
    return landmarks


def parsing_mask(
    parsing: np.ndarray,
    parts: Sequence[str] = ("head",),
    colors: Mapping[str, tuple[int, int, int]] = PARSING_COLORS,
) -> np.ndarray:
    """[H, W, 1] float32 mask of the given parsing classes from an RGB uint8 parsing image.

    ``colors``: the class colours in the image's RGB (:func:`parsing_colors` of the folder).

    A pixel belongs to a class when its channel of that colour is high and the two others low,
    which tolerates the few off-by-some values a resized parsing map has; white is background.
    """
    unknown = set(parts) - set(colors)
    if unknown:
        raise ValueError(f"unknown parsing parts {sorted(unknown)}; use {sorted(colors)}.")
    # Each pixel's 3-bit code of (R, G, B) > 127, looked up in a table of the wanted codes: one
    # pass over the image instead of a comparison per class (this runs for every frame).
    high = parsing >> 7  # uint8: 1 where the channel is > 127.
    code = (high[..., 0] << 2) | (high[..., 1] << 1) | high[..., 2]
    table = np.zeros(8, np.float32)
    for part in parts:
        r, g, b = (int(c > 127) for c in colors[part])
        table[(r << 2) | (g << 1) | b] = 1.0
    return table[code][..., None]


@dataclasses.dataclass(frozen=True)
class VideoTransforms:
    """The cameras of one transforms_*.json: shared intrinsics, per-frame ids and poses.

    Attributes:
      path: the json file.
      focal, cx, cy: intrinsics in pixels (fx = fy = focal).
      height, width: image size; `h` / `w` from the json, else (2 cy, 2 cx) (AD-NeRF convention).
      img_ids: [N] int64 frame ids (file names), in json order.
      aud_ids: [N] int64 rows of the audio features (= img_ids where the json has no aud_id).
      c2w: [N, 4, 4] float32 camera-to-world matrices.
      face_rects: [N, 4] int32 (x0, y0, x1, y1) face boxes, or None when the json has none.
    """

    path: pathlib.Path
    focal: float
    cx: float
    cy: float
    height: int
    width: int
    img_ids: np.ndarray
    aud_ids: np.ndarray
    c2w: np.ndarray
    face_rects: np.ndarray | None

    @property
    def intrinsics(self) -> np.ndarray:
        """[4] float32 (fx, fy, cx, cy)."""
        return np.array([self.focal, self.focal, self.cx, self.cy], np.float32)


def read_transforms(path: str | os.PathLike) -> VideoTransforms:
    """Parses a transforms_*.json (cameras only; no image is read)."""
    path = pathlib.Path(path)
    producer = f"{PREPROCESS}, pose estimation"
    if not path.is_file():
        raise MissingFileError(path, produced_by=producer)
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFileError(path, f"not valid JSON ({error})", producer) from error

    def fail(problem: str) -> DatasetError:
        return CorruptFileError(path, problem, producer)

    missing = [key for key in ("focal_len", "cx", "cy", "frames") if key not in meta]
    if missing:
        raise fail(f"lacks the keys {missing}")
    frames = meta["frames"]
    if not isinstance(frames, list) or not frames:
        raise fail("'frames' is empty or not a list")
    try:
        img_ids = np.array([int(f["img_id"]) for f in frames], np.int64)
        aud_ids = np.array([int(f.get("aud_id", f["img_id"])) for f in frames], np.int64)
        c2w = np.array([f["transform_matrix"] for f in frames], np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise fail(
            f"a frame lacks a valid img_id / aud_id / transform_matrix ({error!r})"
        ) from error
    if c2w.shape != (len(frames), 4, 4):
        raise fail(f"transform_matrix entries are {list(c2w.shape[1:])}, not 4 x 4")
    if not np.isfinite(c2w).all():
        raise fail("a transform_matrix holds NaN or infinity")
    if len(np.unique(img_ids)) != len(img_ids) or (img_ids < 0).any() or (aud_ids < 0).any():
        raise fail("img_id values must be unique and ids non-negative")
    rects = [f.get("face_rect") for f in frames]
    face_rects = None
    if any(rect is not None for rect in rects):
        if any(rect is None or len(rect) != 4 for rect in rects):
            raise fail("face_rect is missing or not 4 numbers in some frames")
        face_rects = np.array(rects, np.int32)
    focal, cx, cy = float(meta["focal_len"]), float(meta["cx"]), float(meta["cy"])
    height = int(meta["h"]) if "h" in meta else int(round(2 * cy))
    width = int(meta["w"]) if "w" in meta else int(round(2 * cx))
    if not (focal > 0 and height > 0 and width > 0):
        raise fail(f"focal_len {focal} and image size {height} x {width} must be positive")
    return VideoTransforms(path, focal, cx, cy, height, width, img_ids, aud_ids, c2w, face_rects)


def _read_rgb(path: pathlib.Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imread(os.fspath(path), flags)
    if image is None:
        if not path.is_file():
            raise MissingFileError(path, produced_by=PREPROCESS)
        raise CorruptFileError(path, "not a decodable image", PREPROCESS)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class VideoDataset:
    """One split of a video dataset as a `jaxhead.data.pipeline.FrameSource`.

    Args:
      root: the dataset folder data/<ID>/.
      split: "train" or "val" (reads transforms_<split>.json).
      audio: "auto" (the first of `AUDIO_FEATURE_FILES` present), a file name from it, or None
        (no audio: the window has 0 channels).
      audio_window: frames of audio features around each frame (AD-NeRF smooths over 8).
      image_size: (height, width) to load images at (intrinsics and landmarks follow); None keeps
        the dataset's size.
      lr_factor: image_lr / mask_lr are `lr_factor` times smaller (the NeRF renders its feature
        map at that resolution and upsamples); must divide the image size. None (default): the
        largest of 4, 2, 1 that divides it (AD-NeRF's 450 x 450 frames get 2).
      image_dir: folder of target images; "auto" (default): gt_imgs/ (RAD-NeRF, ER-NeRF,
        jaxhead), else head_imgs/ (AD-NeRF's head NeRF targets), else ori_imgs/. What "auto"
        picks differently from gt_imgs / 4 is logged and kept in `choices`.
      mask_parts: parsing classes forming the mask (see `PARSING_COLORS`).
      blink: "auto" (au.csv, else bs.npy's eye-blink blendshapes, else zeros), "au", "bs", or None
        (zeros).
      expression: "auto" (bs.npy if present, else zeros), "bs" (required), or None (zeros).
      expression_dim: size of the zero expression when no blendshapes are used.
      missing_frames: "error" stops on a frame without its image, landmarks or parsing; "drop"
        leaves it out (listed in `dropped`, ids unchanged).
      identity, sequence: the ids every example of this split carries.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        audio: str | None = "auto",
        audio_window: int = 8,
        image_size: tuple[int, int] | None = None,
        lr_factor: int | None = None,
        image_dir: str = "auto",
        mask_parts: Sequence[str] = ("head",),
        blink: str | None = "auto",
        expression: str | None = "auto",
        expression_dim: int = 52,
        missing_frames: str = "error",
        identity: int = 0,
        sequence: int = 0,
    ):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise MissingFileError(self.root, produced_by=PREPROCESS, why="the dataset folder")
        if missing_frames not in ("error", "drop"):
            raise ValueError(f"missing_frames must be 'error' or 'drop', got {missing_frames!r}.")
        if audio_window <= 0 or (lr_factor is not None and lr_factor <= 0):
            raise ValueError("audio_window and lr_factor must be positive.")
        self.transforms = read_transforms(self.root / f"transforms_{split}.json")
        self.audio_window = audio_window
        self.choices: dict[str, object] = {}
        if image_dir == "auto":
            image_dir = next((d for d in IMAGE_DIRS if (self.root / d).is_dir()), IMAGE_DIRS[0])
            if image_dir != IMAGE_DIRS[0]:
                self.choices["image_dir"] = image_dir
        self.image_dir = image_dir
        self.mask_parts = tuple(mask_parts)
        parsing_mask(np.zeros((1, 1, 3), np.uint8), self.mask_parts)  # Checks the part names now.
        self.parsing_colors = parsing_colors(self.root)
        self.identity, self.sequence = identity, sequence

        t = self.transforms
        self.height, self.width = image_size or (t.height, t.width)
        if lr_factor is None:
            lr_factor = next(f for f in (4, 2, 1) if not self.height % f and not self.width % f)
            if lr_factor != 4:
                self.choices["lr_factor"] = lr_factor
        self.lr_factor = lr_factor
        if self.choices:
            log.warning(
                "%s: picked %s for its %d x %d frames (pass them to choose otherwise)",
                self.root,
                ", ".join(f"{k}={v}" for k, v in self.choices.items()),
                self.width,
                self.height,
            )
        if self.height % lr_factor or self.width % lr_factor:
            raise ValueError(
                f"image size {self.height} x {self.width} is not divisible by lr_factor "
                f"{lr_factor}; pick a factor that divides both, or set image_size to a multiple "
                f"of it (e.g. {self.height // lr_factor * lr_factor} x "
                f"{self.width // lr_factor * lr_factor})."
            )
        self.scale = np.array([self.width / t.width, self.height / t.height], np.float32)
        self.intrinsics = t.intrinsics * np.tile(self.scale, 2)

        self.audio_path, self.audio_features = self._load_audio(audio)
        self.blink_source, self.blink_values = self._load_blink(blink)
        self.blendshapes = self._load_expression(expression)
        self.expression_dim = (
            self.blendshapes.shape[1] if self.blendshapes is not None else expression_dim
        )
        self._select_frames(missing_frames)

    # -- construction ------------------------------------------------------------------------

    def _load_audio(self, audio: str | None) -> tuple[pathlib.Path | None, np.ndarray]:
        if audio is None:
            return None, np.zeros((int(self.transforms.aud_ids.max()) + 1, 1, 0), np.float32)
        if audio == "auto":
            present = [name for name in AUDIO_FEATURE_FILES if (self.root / name).is_file()]
            if not present:
                raise MissingFileError(
                    self.root / "aud_ds.npy",
                    produced_by=f"{PREPROCESS}, audio features",
                    why=f"no audio features: none of {list(AUDIO_FEATURE_FILES)} is present",
                )
            audio = present[0]
        path = self.root / audio
        features = load_audio_features(path)
        needed = int(self.transforms.aud_ids.max()) + 1
        if len(features) == needed - 1:
            # The peers' audio features often end one row before the last frame (the audio is a
            # few ms shorter than the video); AD-NeRF / RAD-NeRF / ER-NeRF reuse the last row.
            log.warning(
                "%s: %d rows for aud_id up to %d: the last frame reuses the last row, as the "
                "peers do",
                path,
                len(features),
                needed - 1,
            )
            features = np.concatenate([features, features[-1:]])
        if len(features) < needed:
            raise FrameCountError(path, len(features), needed, f"aud_id in {self.transforms.path}")
        return path, features

    def _per_img_id(self, values: np.ndarray, path: pathlib.Path) -> np.ndarray:
        needed = int(self.transforms.img_ids.max()) + 1
        if len(values) < needed:
            raise FrameCountError(path, len(values), needed, f"img_id in {self.transforms.path}")
        return values

    def _load_blink(self, blink: str | None) -> tuple[str | None, np.ndarray | None]:
        au, bs = self.root / "au.csv", self.root / "bs.npy"
        if blink == "auto":
            blink = "au" if au.is_file() else "bs" if bs.is_file() else None
        if blink is None:
            return None, None
        if blink == "au":
            return "au.csv", self._per_img_id(load_blink(au), au)
        if blink == "bs":
            eyes = load_blendshapes(bs)[:, list(EYE_BLINK_BLENDSHAPES)].mean(axis=1)
            return "bs.npy", self._per_img_id(np.clip(eyes, 0.0, 1.0), bs)
        raise ValueError(f"blink must be 'auto', 'au', 'bs' or None, got {blink!r}.")

    def _load_expression(self, expression: str | None) -> np.ndarray | None:
        bs = self.root / "bs.npy"
        if expression == "auto":
            expression = "bs" if bs.is_file() else None
        if expression is None:
            return None
        if expression == "bs":
            return self._per_img_id(load_blendshapes(bs), bs)
        raise ValueError(f"expression must be 'auto', 'bs' or None, got {expression!r}.")

    def _frame_paths(self, img_id: int) -> dict[str, pathlib.Path]:
        return {
            "image": self.root / self.image_dir / f"{img_id}.jpg",
            "landmarks": self.root / "ori_imgs" / f"{img_id}.lms",
            "parsing": self.root / "parsing" / f"{img_id}.png",
        }

    def _select_frames(self, missing_frames: str) -> None:
        t = self.transforms
        missing: dict[str, list[int]] = {}
        for img_id in t.img_ids.tolist():
            for kind, path in self._frame_paths(img_id).items():
                if not path.is_file():
                    missing.setdefault(kind, []).append(img_id)
        if missing and missing_frames == "error":
            described = {
                f"{kind} {self._frame_paths(0)[kind].parent.name}/<img_id>"
                f"{self._frame_paths(0)[kind].suffix}": ids
                for kind, ids in missing.items()
            }
            raise MissingFramesError(self.root, described, len(t.img_ids))
        #: img_id -> why it was dropped (the kinds of file it lacks).
        self.dropped: dict[int, list[str]] = {}
        for kind, ids in missing.items():
            for img_id in ids:
                self.dropped.setdefault(img_id, []).append(kind)
        #: rows of the transforms json kept as frames, in json order.
        self.rows = np.array(
            [r for r, img_id in enumerate(t.img_ids.tolist()) if img_id not in self.dropped],
            np.int64,
        )
        if not len(self.rows):
            raise DatasetError(t.path, "every frame lacks an image, landmarks or parsing.")
        self.img_ids = t.img_ids[self.rows]
        self._index_of = {img_id: i for i, img_id in enumerate(self.img_ids.tolist())}

    # -- FrameSource -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def face_rects(self) -> np.ndarray | None:
        """[len, 4] float32 (x0, y0, x1, y1) face boxes of the kept frames at the loaded size."""
        rects = self.transforms.face_rects
        return None if rects is None else rects[self.rows] * np.tile(self.scale, 2)

    def index_of(self, img_id: int) -> int:
        """The source index of the frame with this img_id (KeyError when absent or dropped)."""
        if img_id not in self._index_of:
            why = (
                f"dropped: no {', '.join(self.dropped[img_id])}"
                if img_id in self.dropped
                else (f"not in {self.transforms.path.name}")
            )
            raise KeyError(f"img_id {img_id} is not a frame of this dataset ({why})")
        return self._index_of[img_id]

    def next_index(self, i: int) -> int | None:
        """The next frame when it is the next img_id (gaps and dropped frames end a sequence)."""
        j = i + 1
        return j if j < len(self) and self.img_ids[j] == self.img_ids[i] + 1 else None

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"frame index {i} out of range for {len(self)} frames")
        t = self.transforms
        row = int(self.rows[i])
        img_id = int(t.img_ids[row])
        paths = self._frame_paths(img_id)
        image = self._read_full(paths["image"], cv2.INTER_AREA)
        parsing = self._read_full(paths["parsing"], cv2.INTER_NEAREST)
        mask = parsing_mask(parsing, self.mask_parts, self.parsing_colors)
        image = np.multiply(image, np.float32(1 / 255), dtype=np.float32)
        lr_size = (self.width // self.lr_factor, self.height // self.lr_factor)
        return {
            "image": image,
            "image_lr": cv2.resize(image, lr_size, interpolation=cv2.INTER_AREA),
            "mask": mask,
            "mask_lr": cv2.resize(mask[..., 0], lr_size, interpolation=cv2.INTER_AREA)[..., None],
            "intrinsics": self.intrinsics.copy(),
            "c2w": t.c2w[row],
            "audio": audio_window(self.audio_features, int(t.aud_ids[row]), self.audio_window),
            "landmarks": read_landmarks(paths["landmarks"]) * self.scale,
            "expression": (
                self.blendshapes[img_id]
                if self.blendshapes is not None
                else np.zeros(self.expression_dim, np.float32)
            ),
            "blink": np.asarray(
                self.blink_values[img_id] if self.blink_values is not None else 0.0, np.float32
            ),
            "identity": np.asarray(self.identity, np.int32),
            "sequence": np.asarray(self.sequence, np.int32),
            "frame": np.asarray(img_id, np.int32),
        }

    def part_mask(self, i: int, part: str) -> np.ndarray:
        """``[H, W, 1]`` float32 mask of one parsing class (``"head"``, ``"neck"``, ...) of frame
        ``i``."""
        img_id = int(self.transforms.img_ids[int(self.rows[i])])
        parsing = self._read_full(self._frame_paths(img_id)["parsing"], cv2.INTER_NEAREST)
        return parsing_mask(parsing, (part,), self.parsing_colors)

    def _read_full(self, path: pathlib.Path, interpolation: int) -> np.ndarray:
        """An RGB uint8 image of the dataset's size, resized to `image_size`."""
        image = _read_rgb(path)
        t = self.transforms
        if image.shape[:2] != (t.height, t.width):
            raise FeatureShapeError(
                path, image.shape, f"[{t.height}, {t.width}, 3] (the size in {t.path.name})"
            )
        if (self.height, self.width) != (t.height, t.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=interpolation)
        return image

    def background(self) -> np.ndarray:
        """[H, W, 3] float32 static background bc.jpg at the loaded image size."""
        return self._read_full(self.root / "bc.jpg", cv2.INTER_AREA).astype(np.float32) / 255.0
