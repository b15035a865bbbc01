"""Head-pose + blink sequences read from files: the GP-VAE's :class:`PoseSequence`, its audio
features, and one reader per format.

Every reader returns :class:`PoseSequence` at ``fps`` (25 by default, the paper's video rate):
``pose [N, 6]`` = axis-angle rotation (radians) then translation, ``blink [N]`` = eyelid closure
in [0, 1] (zeros where the source has none), and optionally ``audio [N, A]`` per-frame audio
features (:func:`audio_frame_features`).

* Pose files (``config.data.source=files``): AD-NeRF ``transforms_*.json``
  (:func:`read_adnerf_transforms`), Deep3DFaceRecon ``.mat`` coefficients
  (:func:`read_deep3d_mat`, also MEAD's), AniPortrait ``pose_temp.npy``
  (:func:`read_aniportrait_pose`); :func:`read_pose_file` picks by suffix. No blink signal, no
  aligned audio.
* Preprocessed videos (``config.data.source=videos``): folders written by
  ``scripts/preprocess.py`` (:func:`read_video_folder`): head pose from ``pose.npz``'s
  camera-to-head matrices, the real blink signal ``blink.npy`` and per-frame audio features of
  ``aud.wav``; the folder's name is the speaker (``group``).

How sources are assembled, split and windowed: :mod:`jaxhead.gpvae.data`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from jaxhead.audio import frontend, spectral
from jaxhead.audio.io import load_audio, resample
from jaxhead.data.errors import (
    CorruptFileError,
    DatasetError,
    FeatureShapeError,
    MissingFileError,
    NonFiniteError,
)

log = logging.getLogger(__name__)

FEATURE_DIM = 7  # rotation 3 + translation 3 + blink 1
# 4 MFCC steps (40 ms at 100 Hz) per 25 fps video frame, clip-normalised, flattened.
AUDIO_SPEC = frontend.WindowSpec("mfcc", 4, normalize="clip", flatten=True)
AUDIO_DIM = spectral.MFCC_DEFAULTS["num_mfcc"] * AUDIO_SPEC.steps


@dataclasses.dataclass
class PoseSequence:
    """One continuous sequence at a fixed frame rate.

    Attributes:
      name: where it came from (file or ``subject/sentence``).
      pose: ``[N, 6]`` float32, axis-angle rotation (rad) then translation.
      blink: ``[N]`` float32 eyelid closure in [0, 1]; NaN where it was not measured (the pose
        files carry no blink signal): the losses and the blink metrics leave those frames out.
      audio: ``[N, A]`` float32 per-frame audio features, or None.
      group: identity (subject / file) the sequence belongs to.
      start: index of the first frame in its source (a video folder's frame number), so that a
        part of a clip can be matched with the clip's own train / held-out split.
    """

    name: str
    pose: np.ndarray
    blink: np.ndarray
    audio: np.ndarray | None = None
    group: str = ""
    start: int = 0

    @property
    def features(self) -> np.ndarray:
        """``[N, 7]``: pose then blink, the face-attribute sequence ``h`` of the paper."""
        return np.concatenate([self.pose, self.blink[:, None]], -1).astype(np.float32)

    def __len__(self) -> int:
        return len(self.pose)


def audio_frame_features(
    audio: np.ndarray, sample_rate: int, num_frames: int, fps: float = 25.0
) -> np.ndarray:
    """Per-video-frame MFCC features ``[num_frames, 52]`` with per-utterance normalisation.

    :data:`AUDIO_SPEC` of :mod:`jaxhead.audio.frontend`: 13 MFCCs at 100 Hz, each coefficient
    standardised over the utterance (cepstral mean and variance normalisation, so features from
    different recordings share one scale and no dataset statistics are needed at inference);
    frame ``i`` takes the 4 steps centred on ``i / fps``, flattened.
    """
    if sample_rate != 16_000:
        audio = resample(np.asarray(audio, np.float32), sample_rate, 16_000)
    audio = np.asarray(audio, np.float32)
    if audio.size < 400:
        raise ValueError(f"audio is too short for MFCCs ({audio.size} samples at 16 kHz)")
    return frontend.frame_windows(audio, num_frames, fps, AUDIO_SPEC)


def _resample_frames(values: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linear interpolation of ``[N, C]`` frames from ``src_fps`` to ``dst_fps``."""
    values = np.asarray(values, np.float64)
    if src_fps == dst_fps:
        return values
    duration = len(values) / src_fps
    src_t = np.arange(len(values)) / src_fps
    dst_t = np.arange(int(np.floor(duration * dst_fps + 1e-9))) / dst_fps
    return np.stack([np.interp(dst_t, src_t, values[:, c]) for c in range(values.shape[1])], -1)


def _sequence(name, pose, group, fps, src_fps) -> PoseSequence:
    pose = _resample_frames(pose, src_fps, fps).astype(np.float32)
    if not np.all(np.isfinite(pose)):
        raise ValueError(f"{name}: non-finite values in the pose sequence")
    return PoseSequence(name, pose, np.full(len(pose), np.nan, np.float32), None, group)


def read_adnerf_transforms(path: str | os.PathLike, fps: float = 25.0) -> PoseSequence:
    """AD-NeRF ``transforms_*.json``: per-frame 4x4 camera-to-head matrices at 25 fps.

    The matrices are inverted to head poses by :func:`head_pose_from_c2w`.
    """
    path = pathlib.Path(path)
    try:
        frames = json.loads(path.read_text())["frames"]
        c2w = np.asarray([f["transform_matrix"] for f in frames], np.float64)
    except (OSError, KeyError, json.JSONDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not an AD-NeRF transforms file ({err})") from None
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ValueError(f"{path}: transform_matrix entries must be 4x4, got {c2w.shape[1:]}")
    return _sequence(str(path), head_pose_from_c2w(c2w), path.stem, fps, 25.0)


def head_pose_from_c2w(c2w: np.ndarray) -> np.ndarray:
    """Head pose ``[N, 6]`` (axis-angle, translation) from camera-to-head matrices ``[N, 4, 4]``.

    AD-NeRF (and ``scripts/preprocess.py``) keep the head fixed and move the camera; the head pose
    in the camera frame is the inverse, ``R = Rc2wᵀ``, ``t = −Rc2wᵀ t_c2w``.
    """
    c2w = np.asarray(c2w, np.float64)
    rot_t = np.swapaxes(c2w[:, :3, :3], 1, 2)
    trans = -np.einsum("nij,nj->ni", rot_t, c2w[:, :3, 3])
    return np.concatenate([Rotation.from_matrix(rot_t).as_rotvec(), trans], -1)


def c2w_from_head_pose(pose: np.ndarray) -> np.ndarray:
    """Camera-to-head matrices ``[N, 4, 4]`` of head poses ``[N, 6]``: the inverse of
    :func:`head_pose_from_c2w` (the camera of ``scripts/preprocess.py`` at the origin)."""
    pose = np.asarray(pose, np.float64)
    rot = Rotation.from_rotvec(pose[:, :3]).as_matrix()
    c2w = np.tile(np.eye(4), (len(pose), 1, 1))
    c2w[:, :3, :3] = np.swapaxes(rot, 1, 2)
    c2w[:, :3, 3] = -np.einsum("nji,nj->ni", rot, pose[:, 3:6])
    return c2w


def read_deep3d_mat(path: str | os.PathLike, fps: float = 25.0) -> PoseSequence:
    """Deep3DFaceRecon coefficients ``coeff [N, 257]`` (25 fps): angles 224:227, trans 254:257.

    Deep3DFaceRecon rotates by ``R = Rz Ry Rx`` of its three angles (radians), i.e. scipy's
    extrinsic ``"xyz"`` Euler convention; returned as axis-angle + translation.
    """
    import scipy.io

    path = pathlib.Path(path)
    try:
        coeff = np.asarray(scipy.io.loadmat(str(path))["coeff"], np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: not a Deep3DFaceRecon .mat with 'coeff' ({err})") from None
    if coeff.ndim != 2 or coeff.shape[1] != 257:
        raise ValueError(f"{path}: coeff must be [N, 257], got {coeff.shape}")
    rotvec = Rotation.from_euler("xyz", coeff[:, 224:227]).as_rotvec()
    pose = np.concatenate([rotvec, coeff[:, 254:257]], -1)
    return _sequence(str(path), pose, path.stem.split("_")[0], fps, 25.0)


def read_aniportrait_pose(
    path: str | os.PathLike, fps: float = 25.0, source_fps: float = 30.0
) -> PoseSequence:
    """AniPortrait ``pose_temp.npy`` ``[N, 6]``: xyz Euler degrees, translation (30 fps)."""
    path = pathlib.Path(path)
    try:
        data = np.asarray(np.load(path), np.float64)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read ({err})") from None
    if data.ndim != 2 or data.shape[1] != 6:
        raise ValueError(f"{path}: expected [N, 6] Euler degrees + translation, got {data.shape}")
    rotvec = Rotation.from_euler("xyz", data[:, :3], degrees=True).as_rotvec()
    return _sequence(
        str(path), np.concatenate([rotvec, data[:, 3:]], -1), path.stem, fps, source_fps
    )


def read_pose_file(path: str | os.PathLike, fps: float = 25.0) -> PoseSequence:
    """By file type: ``.json`` AD-NeRF, ``.mat`` Deep3DFaceRecon, else AniPortrait ``.npy``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pose sequence {path} does not exist; fix config.data.paths")
    readers = {".json": read_adnerf_transforms, ".mat": read_deep3d_mat}
    return readers.get(path.suffix, read_aniportrait_pose)(path, fps)


PREPROCESS_COMMAND = "scripts/preprocess.py VIDEO --out DIR"


def read_video_folder(
    folder: str | os.PathLike, fps: float = 25.0, max_gap_frames: int = 5
) -> list[PoseSequence]:
    """The pose, blink and audio sequences of one ``scripts/preprocess.py`` folder.

    Reads ``pose.npz`` (``c2w [N, 4, 4]``, inverted to head poses by :func:`head_pose_from_c2w`,
    the AD-NeRF reader's convention), ``blink.npy [N]`` (eyelid closure in [0, 1]),
    ``valid.npy [N]`` (frame has a face) and ``aud.wav`` (per-frame features by
    :func:`audio_frame_features` over the whole clip, so every part of it shares one
    normalisation). The frame rate is ``transforms_train.json``'s ``fps`` (25 when absent) and
    must equal ``fps``.

    Frames without a face: their pose and blink are not measured (the preprocessing writes a
    blink of 0 there). Gaps of at most ``max_gap_frames`` frames between two frames with a face
    are interpolated (rotation by slerp, translation and blink linearly); at a longer gap the
    sequence is split, and faceless frames at the start and the end are dropped. Each part is one
    :class:`PoseSequence` named ``folder[start:stop]`` (the plain folder when it is the whole
    clip); ``group`` is the folder's name (the speaker).

    Raises:
      DatasetError: a missing or unreadable file, per-frame arrays of different lengths, audio
        whose duration does not match the frames, a frame rate other than ``fps``, no face at all.
    """
    folder = pathlib.Path(folder).expanduser()
    produced_by = PREPROCESS_COMMAND.replace("DIR", str(folder))
    if not folder.is_dir():
        raise MissingFileError(
            folder, produced_by, why="config.data.paths must name folders of scripts/preprocess.py"
        )
    for name in ("pose.npz", "blink.npy", "valid.npy", "aud.wav"):
        if not (folder / name).is_file():
            raise MissingFileError(folder / name, produced_by)
    source_fps = _folder_fps(folder, produced_by)
    if abs(source_fps - fps) > 1e-6:
        raise DatasetError(
            folder / "transforms_train.json",
            f"the frames are at {source_fps:g} fps but config.data.fps is {fps:g}.",
            f"set --config.data.fps={source_fps:g}, or preprocess the video with --fps {fps:g}.",
        )
    try:
        with np.load(folder / "pose.npz") as pose_file:
            c2w = np.asarray(pose_file["c2w"], np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise CorruptFileError(folder / "pose.npz", f"no c2w array ({err})", produced_by) from None
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise FeatureShapeError(folder / "pose.npz", c2w.shape, "c2w [N, 4, 4]", produced_by)
    num = len(c2w)
    blink = _load_frames(folder / "blink.npy", num, produced_by).astype(np.float64)
    valid = _load_frames(folder / "valid.npy", num, produced_by).astype(bool)
    if not valid.any():
        raise DatasetError(folder / "valid.npy", "no frame has a face.", "use another video.")
    for path, values in ((folder / "pose.npz", c2w), (folder / "blink.npy", blink)):
        bad = ~np.isfinite(values[valid].reshape(int(valid.sum()), -1)).all(-1)
        if bad.any():
            first = int(np.flatnonzero(valid)[np.argmax(bad)])
            raise NonFiniteError(path, int(bad.sum()), first, f"re-create it with {produced_by}.")

    audio, _ = load_audio(folder / "aud.wav", 16_000)
    audio_frames = len(audio) / 16_000 * fps
    if abs(audio_frames - num) > 1.0:
        raise DatasetError(
            folder / "aud.wav",
            f"lasts {len(audio) / 16_000:.3f} s = {audio_frames:.1f} frames at {fps:g} fps, but "
            f"pose.npz has {num} frames.",
            f"the audio and the frames come from different videos or runs; preprocess the video "
            f"again into a new folder ({PREPROCESS_COMMAND}).",
        )
    features = audio_frame_features(audio, 16_000, num, fps)

    pose = np.full((num, 6), np.nan)
    pose[valid] = head_pose_from_c2w(c2w[valid])
    parts = _face_segments(valid, max_gap_frames)
    out = []
    for start, stop in parts:
        seg_pose, seg_blink = _fill_gaps(pose[start:stop], blink[start:stop], valid[start:stop])
        name = str(folder) if (start, stop) == (0, num) else f"{folder}[{start}:{stop}]"
        out.append(
            PoseSequence(
                name,
                seg_pose.astype(np.float32),
                seg_blink.astype(np.float32),
                features[start:stop],
                folder.name,
                start,
            )
        )
    filled = sum(int((~valid[a:b]).sum()) for a, b in parts)
    if filled or len(parts) > 1:
        log.info(
            "%s: %d frames without a face; %d interpolated, %d part(s)",
            folder, int((~valid).sum()), filled, len(parts),
        )  # fmt: skip
    return out


def video_heldout_start(folder: str | os.PathLike) -> int:
    """The first held-out frame of a ``scripts/preprocess.py`` folder: the smallest ``img_id`` of
    its ``transforms_val.json`` (the video's held-out end, which the NeRF never trains on).

    Raises:
      MissingFileError / CorruptFileError: no readable ``transforms_val.json`` with frames.
    """
    folder = pathlib.Path(folder).expanduser()
    produced_by = PREPROCESS_COMMAND.replace("DIR", str(folder))
    path = folder / "transforms_val.json"
    if not path.is_file():
        raise MissingFileError(path, produced_by)
    try:
        frames = json.loads(path.read_text())["frames"]
        return min(int(frame["img_id"]) for frame in frames)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise CorruptFileError(path, f"no frames with an img_id ({err})", produced_by) from None


def _folder_fps(folder: pathlib.Path, produced_by: str) -> float:
    """``fps`` of ``transforms_train.json`` (AD-NeRF's files have none: 25)."""
    path = folder / "transforms_train.json"
    if not path.is_file():
        return 25.0
    try:
        return float(json.loads(path.read_text()).get("fps", 25.0))
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise CorruptFileError(path, str(err), produced_by) from None


def _load_frames(path: pathlib.Path, num: int, produced_by: str) -> np.ndarray:
    """A per-frame ``[N]`` array; its length must be ``num`` (pose.npz's frames)."""
    try:
        values = np.load(path)
    except (OSError, ValueError) as err:
        raise CorruptFileError(path, str(err), produced_by) from None
    if values.shape != (num,):
        raise FeatureShapeError(
            path, values.shape, f"[{num}] (one value per frame of pose.npz)", produced_by
        )
    return values


def _face_segments(valid: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` frame ranges that start and end with a face and have no gap of faceless
    frames longer than ``max_gap``."""
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return []
    cut = np.flatnonzero(np.diff(idx) > max_gap + 1)
    starts = np.concatenate([idx[:1], idx[cut + 1]])
    stops = np.concatenate([idx[cut] + 1, idx[-1:] + 1])
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _fill_gaps(
    pose: np.ndarray, blink: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pose ``[N, 6]`` and blink ``[N]`` with the faceless frames interpolated from the frames with
    a face (rotation by slerp, translation and blink linearly); the first and last frames have
    one (:func:`_face_segments` cuts there)."""
    if valid.all():
        return pose, blink
    t = np.arange(len(valid))
    keys = np.flatnonzero(valid)
    rotation = Slerp(keys, Rotation.from_rotvec(pose[keys, :3]))(t).as_rotvec()
    trans = np.stack([np.interp(t, keys, pose[keys, c]) for c in range(3, 6)], -1)
    return np.concatenate([rotation, trans], -1), np.interp(t, keys, blink[keys])
