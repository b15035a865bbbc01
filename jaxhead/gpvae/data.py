"""Head-pose + blink sequences for the GP-VAE stage: readers, audio features, windows.

Every source becomes a list of :class:`PoseSequence` at ``fps`` (25 by default, the paper's
video rate): ``pose [N, 6]`` = axis-angle rotation (radians) then translation, ``blink [N]`` =
eyelid closure in [0, 1] (zeros where the source has none), and optionally ``audio [N, A]``
per-frame audio features (:func:`audio_frame_features`).

Sources (``config.data.source``):

* ``synthetic`` (default): the ground-truth ``head_rotation``, ``head_translation`` and ``blink``
  of ``factors.npz`` in a :mod:`jaxhead.data.synthetic` folder, resampled to 25 fps with
  :meth:`VocaSet.rows_at_fps`, and each sentence's audio. With ``data.root`` empty a small set is
  generated into a temporary folder (``data.synthetic``) and deleted after loading.
* ``files``: real pose sequences named in ``data.paths``, read by their format:
  AD-NeRF ``transforms_*.json`` (:func:`read_adnerf_transforms`), Deep3DFaceRecon ``.mat``
  coefficients (:func:`read_deep3d_mat`, also MEAD's), AniPortrait ``pose_temp.npy``
  (:func:`read_aniportrait_pose`). They carry no blink signal and no aligned audio; they serve to
  pre-train the VAE (the cross-modal encoder then sees zero audio).
* ``videos``: folders written by ``scripts/preprocess.py`` named in ``data.paths``
  (:func:`read_video_folder`): head pose from ``pose.npz``'s camera-to-head matrices, the real
  blink signal ``blink.npy`` and per-frame audio features of ``aud.wav``; the folder's name is
  the speaker (``group``).

Held-out split (:func:`load_sequences`): synthetic, each subject's last sentences; files and
videos, the speakers named in ``data.heldout_groups`` whole, or (none named) the last
``data.held_out_fraction`` of every sequence.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Sequence

import grain
import jax
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from jaxhead.audio import frontend, spectral
from jaxhead.audio.io import load_audio, resample
from jaxhead.data import synthetic
from jaxhead.data.errors import (
    CorruptFileError,
    DatasetError,
    FeatureShapeError,
    MissingFileError,
    NonFiniteError,
)
from jaxhead.data.voca import load_voca

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
      blink: ``[N]`` float32 eyelid closure in [0, 1].
      audio: ``[N, A]`` float32 per-frame audio features, or None.
      group: identity (subject / file) the sequence belongs to.
    """

    name: str
    pose: np.ndarray
    blink: np.ndarray
    audio: np.ndarray | None = None
    group: str = ""

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
    return PoseSequence(name, pose, np.zeros(len(pose), np.float32), None, group)


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
            )
        )
    filled = sum(int((~valid[a:b]).sum()) for a, b in parts)
    if filled or len(parts) > 1:
        log.info(
            "%s: %d frames without a face; %d interpolated, %d part(s)",
            folder, int((~valid).sum()), filled, len(parts),
        )  # fmt: skip
    return out


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
    a face (rotation by slerp, translation and blink linearly); ``valid[0]`` and ``valid[-1]``."""
    if valid.all():
        return pose, blink
    t = np.arange(len(valid))
    keys = np.flatnonzero(valid)
    rotation = Slerp(keys, Rotation.from_rotvec(pose[keys, :3]))(t).as_rotvec()
    trans = np.stack([np.interp(t, keys, pose[keys, c]) for c in range(3, 6)], -1)
    return np.concatenate([rotation, trans], -1), np.interp(t, keys, blink[keys])


def load_synthetic(root: str | os.PathLike, fps: float = 25.0) -> list[PoseSequence]:
    """All sentences of a synthetic VOCASET folder with ground-truth factors and audio."""
    voca = load_voca(root)
    out = []
    for subject, sentence in voca.sequences:
        rows = voca.rows_at_fps(subject, sentence, fps)
        factors = voca.factor_rows(rows)
        pose = np.concatenate([factors["head_rotation"], factors["head_translation"]], -1)
        audio = audio_frame_features(voca.audio(subject, sentence, 16_000), 16_000, len(rows), fps)
        out.append(
            PoseSequence(
                f"{subject}/{sentence}",
                pose.astype(np.float32),
                factors["blink"].astype(np.float32),
                audio,
                subject,
            )
        )
    return out


# The GP-VAE reads only the factors and audio: a coarse head mesh generates much faster.
SYNTHETIC_MESH = (8, 12)


def synthetic_root(data, *, progress: bool = False) -> pathlib.Path:
    """``data.root``, or the shared cached synthetic set of ``data.synthetic``
    (:func:`jaxhead.data.synthetic.synthetic_root`, coarse mesh)."""
    if data.root:
        return pathlib.Path(data.root).expanduser()
    return synthetic.synthetic_root(
        data.synthetic, str(data.get("cache_dir", "")), mesh=SYNTHETIC_MESH, progress=progress
    )


def load_sequences(data) -> tuple[list[PoseSequence], list[PoseSequence]]:
    """``(train, held_out)`` sequences from ``config.data`` (see the module docstring).

    Synthetic: each subject's last ``data.held_out`` sentences are held out
    (:func:`jaxhead.data.synthetic.split`, the policy every stage shares). Files and videos: the
    speakers (``group``) named in ``data.heldout_groups`` are held out whole and never trained
    on; with none named, the last ``data.held_out_fraction`` of every sequence is held out.
    """
    fps = float(data.fps)
    heldout_groups = tuple(data.get("heldout_groups", ()))
    if data.source == "synthetic":
        if heldout_groups:
            raise ValueError(
                "config.data.heldout_groups applies to data.source='files' or 'videos'; the "
                "synthetic data holds out each subject's last sentences (config.data.held_out)"
            )
        sequences = load_synthetic(synthetic_root(data), fps)
        by_name = {seq.name: seq for seq in sequences}
        sentences: dict[str, list[str]] = {}
        for seq in sequences:
            sentences.setdefault(seq.group, []).append(seq.name.split("/", 1)[1])
        try:
            parts = synthetic.split(sentences, int(data.held_out))
        except ValueError as error:
            raise ValueError(f"{error}; lower data.held_out") from None
        train = [by_name[f"{s}/{q}"] for s, q in parts["train"]]
        held = [by_name[f"{s}/{q}"] for s, q in parts["heldout_sentences"]]
        return train, held
    if data.source not in ("files", "videos"):
        raise ValueError(
            f"unknown config.data.source {data.source!r}; use 'synthetic', 'files' or 'videos'"
        )
    if not data.paths:
        what = "pose files" if data.source == "files" else "folders of scripts/preprocess.py"
        raise ValueError(f"config.data.source={data.source!r} needs config.data.paths ({what})")
    if data.source == "files":
        sequences = [read_pose_file(path, fps) for path in data.paths]
    else:
        max_gap = int(data.get("max_gap_frames", 5))
        if max_gap < 0:
            raise ValueError(f"config.data.max_gap_frames={max_gap}; use 0 or more")
        sequences = [s for path in data.paths for s in read_video_folder(path, fps, max_gap)]
    if heldout_groups:
        return split_by_group(sequences, heldout_groups)
    train, held = [], []
    for seq in sequences:
        cut = int(round(len(seq) * (1.0 - data.held_out_fraction)))
        train.append(_slice(seq, 0, cut))
        held.append(_slice(seq, cut, len(seq)))
    return train, held


def split_by_group(
    sequences: Sequence[PoseSequence], heldout_groups: Sequence[str]
) -> tuple[list[PoseSequence], list[PoseSequence]]:
    """``(train, held_out)``: every sequence of the ``heldout_groups`` (speakers) is held out.

    Raises:
      ValueError: a name that no sequence has (the known ones are listed), or no speaker left
        for training.
    """
    known = sorted({seq.group for seq in sequences})
    unknown = [g for g in heldout_groups if g not in known]
    if unknown:
        raise ValueError(
            f"config.data.heldout_groups names {unknown}, which are not speakers of "
            f"config.data.paths; the speakers are {known} (a video folder's name, a pose file's "
            "stem)"
        )
    train = [seq for seq in sequences if seq.group not in heldout_groups]
    held = [seq for seq in sequences if seq.group in heldout_groups]
    if not train:
        raise ValueError(
            f"config.data.heldout_groups={list(heldout_groups)} holds out every speaker of "
            "config.data.paths; leave at least one for training"
        )
    return train, held


def _slice(seq: PoseSequence, start: int, stop: int) -> PoseSequence:
    audio = None if seq.audio is None else seq.audio[start:stop]
    return PoseSequence(seq.name, seq.pose[start:stop], seq.blink[start:stop], audio, seq.group)


def normalizer(
    sequences: Sequence[PoseSequence], relative_pose: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std ``[7]`` of the training frames (std floored at 1e-6).

    ``relative_pose``: the pose channels' std is that of each sequence's frames around the
    sequence's own mean, the scale of the motion a relative-pose model sees; the spread of
    the speakers' mean poses (camera distance, facing) would otherwise dwarf it.
    """
    frames = np.concatenate([s.features for s in sequences], 0)
    std = frames.std(0)
    if relative_pose:
        motion = np.concatenate([s.features - s.features.mean(0) for s in sequences], 0)
        std[:6] = motion[:, :6].std(0)
    return frames.mean(0).astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


class WindowIterator:
    """Resumable stream of random windows ``{"h": [B, T, 7], "audio": [B, T, A]}`` (grain).

    Every start frame of every sequence long enough for ``window`` frames is one example; grain
    shuffles and repeats the index and its state is what the checkpoint stores. Each process keeps
    its slice of the global batch, as tests/toy_stage.py does.
    """

    def __init__(self, sequences, window: int, batch_size: int, seed: int, audio_dim: int):
        usable = [s for s in sequences if len(s) >= window]
        if not usable:
            lengths = sorted({len(s) for s in sequences})
            raise ValueError(
                f"no training sequence has {window} frames (lengths {lengths}); lower "
                "config.data.window or use longer sequences"
            )
        self._h = [s.features for s in usable]
        self._audio = [
            s.audio if s.audio is not None else np.zeros((len(s), audio_dim), np.float32)
            for s in usable
        ]
        index = np.asarray(
            [(i, t) for i, s in enumerate(usable) for t in range(len(s) - window + 1)], np.int64
        )
        self._index, self._window = index, window
        ds = grain.MapDataset.source(np.arange(len(index))).shuffle(seed=seed).repeat()
        self._it = iter(ds.batch(batch_size, drop_remainder=True).to_iter_dataset())
        n, p = jax.process_count(), jax.process_index()
        self._slice = slice(p * batch_size // n, (p + 1) * batch_size // n)

    def __next__(self):
        rows = self._index[next(self._it)[self._slice]]
        w = self._window
        return {
            "h": np.stack([self._h[i][t : t + w] for i, t in rows]),
            "audio": np.stack([self._audio[i][t : t + w] for i, t in rows]),
        }

    def __iter__(self):
        return self

    def get_state(self):
        return self._it.get_state()

    def set_state(self, state):
        self._it.set_state(state)
