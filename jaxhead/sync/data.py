"""Data of the sync stage: per-clip audio windows and mouth landmarks, and a resumable iterator.

A clip (:class:`SyncClip`) holds, for every video frame ``t`` at ``fps`` (25),

* ``audio[t]``: the audio-feature window centred on the frame, ``[audio_steps, features]``: the
  ``window / fps`` seconds (0.2 s for 5 frames, SyncNet's input span) of 100 Hz MFCCs (20 x 13,
  SyncNet's MFCC input) or 80 Hz log-mels (16 x 80, Wav2Lip's mel window), computed with
  :mod:`jaxhead.audio.spectral` at 16 kHz and normalised per clip (cepstral mean and variance
  normalisation, CMVN, the usual cure for speaker and recording gain), or taken from a per-frame
  feature file of the video layout (``aud_hu.npy`` & co.);
* ``lips[t]``: the 20 mouth landmarks (points 48-67 of the 68-point layout) as ``[40]`` numbers,
  normalised per clip by :func:`normalize_mouth`.

The lip window of frame ``t`` is ``lips[t - window // 2 : t - window // 2 + window]``; a frame is
*valid* when both its lip window and its audio window lie inside the clip, and only valid frames
are used (``SyncClip.lo <= t < SyncClip.hi``).

Sources:

* the synthetic VOCASET-format dataset by default (:mod:`jaxhead.data.synthetic`, generated once
  into the cache folder): mouth landmarks are the landmark vertices (``factors.npz``
  ``landmark_indices``) of ``data_verts`` sampled at 25 fps, seen from the front in image axes
  (x, -y: y down like pixel landmarks); clips are sentences, and
  :func:`jaxhead.data.synthetic.split` (the policy every stage shares) holds out whole subjects
  and each training subject's last sentences;
* preprocessed real videos in the AD-NeRF / ER-NeRF layout (``ori_imgs/<i>.lms`` with 68
  landmarks per frame, plus ``aud.wav`` or a per-frame feature file), one clip per folder, whose
  last ``video_val_fraction`` of frames are held out.

Training examples (:class:`SyncExamples`, a grain pipeline): an anchor (clip, valid frame) gives
the lip window, the aligned audio window (the positive) and ``negatives`` audio windows:
``round(negatives * same_clip_fraction)`` from the same clip shifted in time by ``min_shift`` to
``max_shift`` frames (either direction; paper 001: "the same video with a time-shift"), the rest
from other clips (paper 000: "an irrelevant audio clip"). With a single clip all negatives are
shifted ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib

import grain
import jax
import ml_collections
import numpy as np

from jaxhead.audio import frontend
from jaxhead.audio.io import SAMPLE_RATE, load_audio
from jaxhead.data import synthetic
from jaxhead.data.cache import cache_root
from jaxhead.data.errors import DatasetError, MissingFileError
from jaxhead.data.video import AUDIO_FEATURE_FILES, load_audio_features, read_landmarks
from jaxhead.data.voca import load_voca
from jaxhead.face import MOUTH_68

__all__ = [
    "SyncClip",
    "SyncExamples",
    "audio_feature_windows",
    "cache_root",
    "clip_from_arrays",
    "load_clips",
    "load_synthetic_clips",
    "load_video_clip",
    "normalize_mouth",
    "resample_in_time",
    "sample_negatives",
    "sync_data_config",
]

_PREPROCESS = "scripts/preprocess.py (or the AD-NeRF / ER-NeRF preprocessing)"


def sync_data_config() -> ml_collections.ConfigDict:
    """The ``config.data`` block of the sync stage."""
    return ml_collections.ConfigDict(
        {
            "kind": "synthetic",  # synthetic | video | synthetic+video (both: pre-training)
            # synthetic: VOCASET-format folder with factors.npz; empty = generated in the cache.
            "root": "",
            "cache_dir": "",  # empty: $JAXHEAD_CACHE, else $XDG_CACHE_HOME/jaxhead
            "synthetic": {"identities": 8, "sequences": 8, "seconds": 5.0, "seed": 0},
            "heldout_subjects": 2,  # last subjects (sorted): every sentence held out
            "heldout_sentences": 1,  # last sentences of every training subject held out
            # video: dataset folders in the AD-NeRF layout (ori_imgs/*.lms + audio).
            "video_roots": (),
            "video_audio": "aud.wav",  # an audio file, or a feature file such as aud_hu.npy
            "video_val_fraction": 0.2,  # last part of each video held out
            "video_val_seconds": 0.0,  # > 0: instead, the last seconds of each video
            "fps": 25.0,
            "features": "mfcc",  # mfcc | logmel (for audio files)
            "window": 5,  # video frames per window (0.2 s at 25 fps, as SyncNet)
            "negatives": 10,  # N of paper 000 eq. 8
            "same_clip_fraction": 0.5,  # share of negatives taken from the same clip, shifted
            "min_shift": 2,  # frames: the margin of a same-clip negative
            "max_shift": 15,  # frames
            "batch_size": 64,  # global
            # Training-time augmentation (0: off): per example, the lip window's motion scaled
            # by U(1 ± lip_scale) and rotated by U(± lip_rotation_deg); the audio windows (the
            # positive and each negative) get a gain offset N(0, audio_gain²) on the log-energy
            # coefficient (MFCC c0; every log-mel bin) and noise N(0, audio_noise²) everywhere.
            "augment": {
                "lip_scale": 0.0, "lip_rotation_deg": 0.0, "audio_gain": 0.0, "audio_noise": 0.0,
            },
        }
    )  # fmt: skip


@dataclasses.dataclass
class SyncClip:
    """One clip's per-frame audio windows and normalised mouth landmarks (module docstring).

    Attributes:
      name: e.g. ``"FaceTalk_170725_00137_TA/sentence01"`` or a video folder name.
      audio: ``[T, audio_steps, features]`` float32 audio window of each frame.
      lips: ``[T, 40]`` float32 normalised mouth landmarks of each frame.
      window: lip frames per window.
      lo, hi: valid frames are ``lo <= t < hi``.
      group: subject index (negatives from other clips may come from any group).
    """

    name: str
    audio: np.ndarray
    lips: np.ndarray
    window: int
    lo: int
    hi: int
    group: int = 0

    @property
    def num_valid(self) -> int:
        return max(self.hi - self.lo, 0)

    def lip_windows(self, frames: np.ndarray) -> np.ndarray:
        """``[len(frames), window, 40]`` lip windows centred on valid ``frames``."""
        frames = np.asarray(frames)
        index = frames[:, None] - self.window // 2 + np.arange(self.window)[None, :]
        return self.lips[index]

    def valid_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Audio ``[V, audio_steps, F]`` and lip ``[V, window, 40]`` windows of all valid frames."""
        frames = np.arange(self.lo, self.hi)
        return self.audio[frames], self.lip_windows(frames)


def normalize_mouth(mouth: np.ndarray) -> np.ndarray:
    """Per-clip normalised mouth landmarks: ``[T, 20, 2]`` (points 48-67) -> ``[T, 40]``.

    Landmarks are in image axes (x right, y down), point 48 the image-left corner.

    Each frame is moved so the midpoint of the mouth corners (points 48, 54) is the origin and
    rotated so the corner line is horizontal (removes head translation and roll in real videos);
    all frames are divided by the clip's median corner distance (one scale per clip: the corner
    distance itself changes with lip rounding, which is signal); the clip's mean shape is then
    subtracted, leaving the motion. The output is float32 and finite for any non-degenerate clip.
    """
    mouth = np.asarray(mouth, np.float64)
    if mouth.ndim != 3 or mouth.shape[1:] != (20, 2) or len(mouth) == 0:
        raise ValueError(f"mouth landmarks must be [T, 20, 2] (points 48-67), got {mouth.shape}")
    left, right = mouth[:, 0], mouth[:, 6]
    centre = 0.5 * (left + right)
    axis = right - left
    angle = np.arctan2(axis[:, 1], axis[:, 0])
    cos, sin = np.cos(-angle)[:, None], np.sin(-angle)[:, None]
    x, y = mouth[..., 0] - centre[:, None, 0], mouth[..., 1] - centre[:, None, 1]
    aligned = np.stack([cos * x - sin * y, sin * x + cos * y], -1)
    scale = float(np.median(np.linalg.norm(axis, axis=-1)))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("mouth landmarks are degenerate: the mouth corners coincide")
    aligned /= scale
    aligned -= aligned.mean(0, keepdims=True)
    return aligned.reshape(len(mouth), 40).astype(np.float32)


def audio_feature_windows(
    audio: np.ndarray, num_frames: int, fps: float, features: str, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame clip-normalised feature windows of 16 kHz audio and their validity.

    The sync stage's use of :mod:`jaxhead.audio.frontend`: ``features`` (``"mfcc"`` or
    ``"logmel"``) normalised per coefficient over the clip (CMVN), each frame's window spanning
    ``window`` video frames (``round(window · rate / fps)`` steps, 5 frames = 0.2 s at 25 fps)
    centred on the frame.

    Returns:
      ``([num_frames, steps, F] float32, [num_frames] bool)``; ``valid[t]`` is False where the
      window reaches past the audio (those windows repeat the edge step).
    """
    if features not in frontend.COMPUTED:
        raise ValueError(f"unknown audio features {features!r}; use one of {frontend.COMPUTED}")
    spec = frontend.WindowSpec(
        features, frontend.steps_for(features, window, fps), normalize="clip"
    )
    feats = frontend.features(audio, features)
    windows = frontend.frame_windows_of(feats, num_frames, fps, spec)
    return windows, frontend.window_validity(num_frames, fps, len(feats), spec)


def resample_in_time(values: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linear interpolation of per-frame values ``[T, ...]`` from ``src_fps`` to ``dst_fps``.

    Frame ``k`` sits at ``k / fps`` seconds; the output has the frames of ``dst_fps`` that fall in
    ``[0, (T - 1) / src_fps]``: ``floor((T - 1) * dst_fps / src_fps) + 1`` of them.
    """
    values = np.asarray(values, np.float64)
    if src_fps <= 0 or dst_fps <= 0 or len(values) == 0:
        raise ValueError(f"need fps > 0 and frames; got {src_fps}, {dst_fps}, {values.shape}")
    num = int(np.floor((len(values) - 1) * dst_fps / src_fps + 1e-9)) + 1
    position = np.arange(num) * src_fps / dst_fps  # in source frames
    lo = np.minimum(np.floor(position).astype(np.int64), len(values) - 1)
    hi = np.minimum(lo + 1, len(values) - 1)
    w = (position - lo).reshape((-1,) + (1,) * (values.ndim - 1))
    return (1.0 - w) * values[lo] + w * values[hi]


def clip_from_arrays(
    name: str,
    mouth: np.ndarray,
    audio: np.ndarray,
    fps: float = 25.0,
    *,
    landmark_fps: float | None = None,
    features: str = "mfcc",
    window: int = 5,
    group: int = 0,
) -> SyncClip:
    """A :class:`SyncClip` from mouth landmarks ``[T, 20, 2]`` (points 48-67, image axes: y
    down, any pixel or metric units) and 16 kHz audio ``[num_samples]`` starting at the same time.

    For MediaPipe Face Mesh landmarks ``[T, 478, >=2]`` pass ``lms[:, MEDIAPIPE_MOUTH, :2]``.
    Landmarks tracked at another rate (``landmark_fps``) are resampled in time to ``fps``, the
    rate the encoders were trained at (their windows span a fixed number of frames).
    """
    mouth = np.asarray(mouth, np.float32)
    if mouth.ndim != 3 or mouth.shape[1:] != (20, 2):
        raise ValueError(f"{name}: mouth landmarks must be [T, 20, 2], got {mouth.shape}")
    if landmark_fps is not None and landmark_fps != fps:
        mouth = resample_in_time(mouth, landmark_fps, fps)
    windows, valid = audio_feature_windows(audio, len(mouth), fps, features, window)
    return _clip(name, windows, valid, mouth, window, group)


def _clip(name, audio, audio_valid, mouth, window, group) -> SyncClip:
    num = len(mouth)
    lips = normalize_mouth(mouth)
    frames = np.arange(num)
    valid = audio_valid & (frames - window // 2 >= 0) & (frames - window // 2 + window <= num)
    hits = np.nonzero(valid)[0]
    lo, hi = (int(hits[0]), int(hits[-1]) + 1) if len(hits) else (0, 0)
    if len(hits) and hi - lo != len(hits):
        raise ValueError(f"{name}: valid frames are not contiguous")
    return SyncClip(name, audio, lips, window, lo, hi, group)


# --- synthetic (VOCASET format) -------------------------------------------------------------------


def synthetic_root(config: ml_collections.ConfigDict, *, progress: bool = True) -> pathlib.Path:
    """``config.root`` or the synthetic dataset of ``config.synthetic`` (generated once)."""
    if config.root:
        root = pathlib.Path(config.root).expanduser()
        if not (root / "data_verts.npy").is_file():
            raise MissingFileError(
                root / "data_verts.npy",
                produced_by="`python -m jaxhead.data.synthetic --out DIR`",
                why="config.data.root must be a VOCASET-format folder",
            )
        return root
    return synthetic.synthetic_root(config.synthetic, config.cache_dir, progress=progress)


def load_synthetic_clips(
    config: ml_collections.ConfigDict, *, progress: bool = True
) -> dict[str, list[SyncClip]]:
    """Clips of every split of a VOCASET-format folder with ``factors.npz`` (synthetic)."""
    root = synthetic_root(config, progress=progress)
    voca = load_voca(root)
    if voca.factors is None or "landmark_indices" not in voca.factors:
        raise DatasetError(
            root / "factors.npz",
            "is absent or has no landmark_indices: the sync stage needs the mouth landmark "
            "vertices of the meshes.",
            "use the synthetic dataset (`python -m jaxhead.data.synthetic --out DIR`), or "
            "preprocessed videos with --config.data.kind=video.",
        )
    mouth_vertices = np.asarray(voca.factors["landmark_indices"])[list(MOUTH_68)]
    subject_index = {s: i for i, s in enumerate(voca.subjects)}
    splits = synthetic.split(
        {s: voca.sentences(s) for s in voca.subjects},
        int(config.heldout_sentences),
        int(config.heldout_subjects),
    )
    out: dict[str, list[SyncClip]] = {}
    for split, pairs in splits.items():
        clips = []
        for subject, sentence in pairs:
            rows = voca.rows_at_fps(subject, sentence, config.fps)
            # data_verts holds the unposed head: (x, -y) is the frontal view of the mouth in
            # image axes (y down, as .lms and MediaPipe pixels); a mirror image would not
            # normalise to the same shape (normalize_mouth removes rotations, not reflections).
            mouth = np.asarray(voca.verts[rows][:, mouth_vertices, :2]) * np.array([1.0, -1.0])
            audio, valid = audio_feature_windows(
                voca.audio(subject, sentence), len(rows), config.fps, config.features, config.window
            )
            clips.append(
                _clip(f"{subject}/{sentence}", audio, valid, mouth, config.window,
                      subject_index[subject])
            )  # fmt: skip
        out[split] = clips
    return out


# --- preprocessed videos --------------------------------------------------------------------------


def _read_clip_landmarks(root: pathlib.Path) -> np.ndarray:
    folder = root / "ori_imgs"
    paths = {}
    for path in folder.glob("*.lms"):
        if path.stem.isdigit():
            paths[int(path.stem)] = path
    if not paths:
        raise MissingFileError(
            folder / "0.lms", produced_by=f"{_PREPROCESS}, landmark detection", why="no landmarks"
        )
    ids = sorted(paths)
    missing = sorted(set(range(ids[-1] + 1)) - set(ids))
    if missing:
        raise DatasetError(
            folder,
            f"has no landmarks for frames {missing[:5]}{' ...' if len(missing) > 5 else ''} "
            f"({len(missing)} of {ids[-1] + 1}); the sync stage needs every frame in order.",
            "re-run the landmark detection on those frames (or trim the video).",
        )
    return np.stack([read_landmarks(paths[i]) for i in ids])


def load_video_clip(
    root: str | os.PathLike,
    audio: str = "aud.wav",
    *,
    fps: float = 25.0,
    features: str = "mfcc",
    window: int = 5,
    group: int = 0,
) -> SyncClip:
    """One preprocessed video folder (``ori_imgs/<i>.lms`` + ``audio``) as a :class:`SyncClip`.

    Args:
      root: the dataset folder.
      audio: an audio file in it (``aud.wav``; any format :func:`jaxhead.audio.io.load_audio`
        reads), or a per-frame feature file of :data:`jaxhead.data.video.AUDIO_FEATURE_FILES`
        (``aud_hu.npy`` ...): then the window of frame ``t`` stacks the feature steps of frames
        ``t - window // 2 ... t + window // 2``, ``[window * steps, channels]``.
      fps: the video frame rate (the layout's 25).
      features: ``mfcc`` or ``logmel`` for audio files.
      window: frames per window.
      group: the clip's group (speaker) id.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise MissingFileError(root, produced_by=_PREPROCESS, why="the video dataset folder")
    mouth = _read_clip_landmarks(root)[:, list(MOUTH_68), :]
    num = len(mouth)
    path = root / audio
    if audio in AUDIO_FEATURE_FILES:
        per_frame = load_audio_features(path)  # [N, steps, channels], errors on bad files
        if len(per_frame) < num:
            raise DatasetError(
                path,
                f"has {len(per_frame)} frames of features but ori_imgs has {num} landmark files.",
                "re-extract the features from the same video.",
            )
        windows = frontend.frame_context(per_frame[:num], np.arange(num), window, pad="edge")
        audio_windows = windows.reshape(num, -1, per_frame.shape[-1])
        first = np.arange(num) - window // 2
        valid = (first >= 0) & (first + window - 1 < num)
    else:
        if not path.is_file():
            raise MissingFileError(path, produced_by=f"{_PREPROCESS}, audio extraction")
        wave, _ = load_audio(path)
        seconds = len(wave) / SAMPLE_RATE
        if abs(seconds * fps - num) > 0.05 * num + 2:
            raise DatasetError(
                path,
                f"lasts {seconds:.2f} s ({seconds * fps:.0f} frames at {fps:g} fps) but ori_imgs "
                f"has {num} landmark files.",
                "use the audio track of the same video, or set --config.data.fps.",
            )
        audio_windows, valid = audio_feature_windows(wave, num, fps, features, window)
    return _clip(root.name, audio_windows, valid, mouth, window, group)


def _split_in_time(
    clip: SyncClip, val_fraction: float, val_frames: float = 0.0
) -> tuple[SyncClip, SyncClip]:
    """The clip's training part and its held-out end: the last ``val_frames`` frames of the video
    when > 0 (the NeRF's ``val_seconds``), else the last ``val_fraction`` of its valid windows.
    No window of one part shares a frame with a window of the other."""
    gap = clip.window
    if val_frames > 0:
        start = len(clip.lips) - int(round(val_frames))  # the first held-out frame
        half = clip.window // 2
        train = dataclasses.replace(
            clip, name=f"{clip.name}[train]", hi=max(min(clip.hi, start - half), clip.lo)
        )
        lo = min(max(clip.lo, start + half), clip.hi)
        return train, dataclasses.replace(clip, name=f"{clip.name}[val]", lo=lo)
    cut = clip.lo + int(round((1.0 - val_fraction) * clip.num_valid))
    # The held-out part starts after the last training window ends (no shared frames).
    train = dataclasses.replace(clip, name=f"{clip.name}[train]", hi=cut)
    val = dataclasses.replace(clip, name=f"{clip.name}[val]", lo=min(cut + gap, clip.hi))
    return train, val


SOURCES = ("synthetic", "video")


def load_clips(
    config: ml_collections.ConfigDict, *, progress: bool = True
) -> dict[str, list[SyncClip]]:
    """Clips of ``config.data``: ``{"train": [...], <held-out split>: [...], ...}``.

    ``config.kind``: ``synthetic``, ``video`` or both (``synthetic+video``: the synthetic
    speakers' splits and the videos' training parts and held-out ends together, every speaker
    its own group of cross-clip negatives)."""
    kinds = str(config.kind).split("+")
    unknown = [k for k in kinds if k not in SOURCES]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(
            f"unknown config.data.kind {config.kind!r}; use 'synthetic', 'video' or "
            "'synthetic+video'"
        )
    out: dict[str, list[SyncClip]] = {"train": []}
    if "synthetic" in kinds:
        for split, clips in load_synthetic_clips(config, progress=progress).items():
            out.setdefault(split, []).extend(clips)
    if "video" in kinds:
        if not config.video_roots:
            raise ValueError(
                "config.data.kind='video' needs --config.data.video_roots=<folder>[,<folder>...] "
                "(preprocessed dataset folders with ori_imgs/*.lms and aud.wav)"
            )
        if len(kinds) > 1 and config.video_audio in AUDIO_FEATURE_FILES:
            raise ValueError(
                f"config.data.video_audio={config.video_audio!r} is a feature file, which the "
                "synthetic clips do not have: pre-train across both from audio files (aud.wav)"
            )
        first_group = 1 + max((c.group for c in out["train"]), default=-1)
        roots = config.video_roots
        roots = roots.split(",") if isinstance(roots, str) else roots
        out.setdefault("heldout_time", [])
        for group, root in enumerate(roots, start=first_group):
            clip = load_video_clip(
                root, config.video_audio, fps=config.fps, features=config.features,
                window=config.window, group=group,
            )  # fmt: skip
            train, val = _split_in_time(
                clip, float(config.video_val_fraction),
                float(config.get("video_val_seconds", 0.0)) * float(config.fps),
            )  # fmt: skip
            out["train"].append(train)
            out["heldout_time"].append(val)
    return out


def augment_lips(lips: np.ndarray, rng: np.random.Generator, scale: float, rotation_deg: float):
    """A lip window ``[W, 40]`` (20 points' normalised motion) scaled by ``U(1 ± scale)`` and
    rotated by ``U(± rotation_deg)`` degrees, one draw per window."""
    if not scale and not rotation_deg:
        return lips
    factor = 1.0 + rng.uniform(-scale, scale)
    angle = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    rot = factor * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = lips.reshape(lips.shape[0], -1, 2) @ rot.T
    return points.reshape(lips.shape).astype(lips.dtype)


def augment_audio(
    audio: np.ndarray, rng: np.random.Generator, gain: float, noise: float, features: str
) -> np.ndarray:
    """Audio windows ``[..., steps, F]`` with a gain offset ``N(0, gain²)`` per window on the
    log-energy coefficient (MFCC c0, every log-mel bin; none for feature files) and noise
    ``N(0, noise²)`` on every value."""
    if not gain and not noise:
        return audio
    out = np.array(audio, np.float32, copy=True)
    if gain and features in ("mfcc", "logmel"):
        offset = rng.normal(0.0, gain, size=out.shape[:-2] + (1, 1)).astype(np.float32)
        if features == "mfcc":
            out[..., :1] += offset
        else:
            out += offset
    if noise:
        out += rng.normal(0.0, noise, size=out.shape).astype(np.float32)
    return out


# --- training examples ----------------------------------------------------------------------------


def sample_negatives(
    rng: np.random.Generator,
    clips: list[SyncClip],
    clip: int,
    frame: int,
    count: int,
    same_clip: int,
    min_shift: int,
    max_shift: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip and frame indices ``([count], [count])`` of the negatives of anchor (clip, frame).

    The first ``same_clip`` come from the anchor's clip at ``frame + d`` with ``min_shift <= |d|
    <= max_shift`` (valid frames only); the others from a random valid frame of another clip. When
    the clip has no valid shifted frame, or there is no other clip, the other kind is used.
    """
    if min_shift < 1 or max_shift < min_shift:
        raise ValueError(f"need 1 <= min_shift <= max_shift, got {min_shift}, {max_shift}")
    c = clips[clip]
    shifts = np.concatenate(
        [np.arange(-max_shift, -min_shift + 1), np.arange(min_shift, max_shift + 1)]
    )
    shifted = frame + shifts
    shifted = shifted[(shifted >= c.lo) & (shifted < c.hi)]
    others = [i for i, o in enumerate(clips) if i != clip and o.num_valid > 0]
    if not len(shifted) and not others:
        raise ValueError(
            f"{c.name}: no negatives possible: a single clip with {c.num_valid} valid frames is "
            f"shorter than min_shift={min_shift}"
        )
    n_same = count if not others else (0 if not len(shifted) else same_clip)
    neg_clip = np.empty(count, np.int32)
    neg_frame = np.empty(count, np.int32)
    neg_clip[:n_same] = clip
    neg_frame[:n_same] = rng.choice(shifted, n_same) if n_same else []
    for k in range(n_same, count):
        j = others[rng.integers(len(others))]
        neg_clip[k] = j
        neg_frame[k] = rng.integers(clips[j].lo, clips[j].hi)
    return neg_clip, neg_frame


class SyncExamples:
    """Resumable iterator of training batches (grain) over the valid frames of ``clips``.

    Each batch (``B = batch_size // process_count`` rows on each process, the process's slice of
    one global stream) holds ``lips [B, window, 40]``, ``audio [B, steps, F]`` (aligned),
    ``negatives [B, N, steps, F]``, and the indices ``clip [B]``, ``frame [B]``,
    ``negative_clip [B, N]``, ``negative_frame [B, N]``. The order and the negatives depend only
    on ``seed``; ``get_state`` / ``set_state`` resume it exactly.
    """

    def __init__(self, clips: list[SyncClip], config: ml_collections.ConfigDict, seed: int):
        self.clips = [c for c in clips if c.num_valid > 0]
        if not self.clips:
            raise ValueError("no clip has a valid frame; clips are shorter than one window")
        anchors = np.array(
            [(i, t) for i, c in enumerate(self.clips) for t in range(c.lo, c.hi)], np.int32
        )
        n = int(config.negatives)
        same = int(round(n * float(config.same_clip_fraction)))
        aug = dict(config.get("augment", {}))
        lip_scale, lip_rot = (
            float(aug.get("lip_scale", 0.0)),
            float(aug.get("lip_rotation_deg", 0.0)),
        )
        gain, noise = float(aug.get("audio_gain", 0.0)), float(aug.get("audio_noise", 0.0))
        features = str(config.features) if config.video_audio not in AUDIO_FEATURE_FILES else ""
        min_shift, max_shift = int(config.min_shift), int(config.max_shift)
        clips = self.clips

        def example(anchor, rng):
            clip, frame = int(anchor[0]), int(anchor[1])
            neg_clip, neg_frame = sample_negatives(
                rng, clips, clip, frame, n, same, min_shift, max_shift
            )
            c = clips[clip]
            negatives = np.stack(
                [clips[j].audio[t] for j, t in zip(neg_clip, neg_frame, strict=True)]
            )
            return {
                "lips": augment_lips(c.lip_windows(np.array([frame]))[0], rng, lip_scale, lip_rot),
                "audio": augment_audio(c.audio[frame], rng, gain, noise, features),
                "negatives": augment_audio(negatives, rng, gain, noise, features),
                "clip": np.int32(clip),
                "frame": np.int32(frame),
                "negative_clip": neg_clip,
                "negative_frame": neg_frame,
            }

        batch_size = int(config.batch_size)
        ds = (
            grain.MapDataset.source(anchors)
            .shuffle(seed=seed)
            .repeat()
            .random_map(example, seed=seed + 1)
            .batch(batch_size, drop_remainder=True)
        )
        self._it = iter(ds.to_iter_dataset())
        n_proc, p = jax.process_count(), jax.process_index()
        if batch_size % n_proc:
            raise ValueError(f"batch_size {batch_size} is not a multiple of {n_proc} processes")
        self._slice = slice(p * batch_size // n_proc, (p + 1) * batch_size // n_proc)
        self.num_anchors = len(anchors)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._it)
        return {k: v[self._slice] for k, v in batch.items()}

    def get_state(self) -> dict:
        return self._it.get_state()

    def set_state(self, state: dict) -> None:
        self._it.set_state(state)


def steps_per_epoch(num_anchors: int, batch_size: int) -> int:
    return max(math.ceil(num_anchors / batch_size), 1)
