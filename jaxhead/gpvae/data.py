"""Head-pose + blink sequences for the GP-VAE stage: sources, the held-out split, normalisation
and training windows.

Sources (``config.data.source``), each a list of :class:`PoseSequence`
(:mod:`jaxhead.gpvae.readers`):

* ``synthetic`` (default): the ground-truth ``head_rotation``, ``head_translation`` and ``blink``
  of ``factors.npz`` in a :mod:`jaxhead.data.synthetic` folder, resampled to 25 fps with
  :meth:`VocaSet.rows_at_fps`, and each sentence's audio. With ``data.root`` empty a small set is
  generated once into the cache (``data.synthetic``).
* ``files``: real pose sequences named in ``data.paths``, read by their format
  (:func:`read_pose_file`). They carry no blink signal (NaN: left out of the losses and the
  blink metrics) and no aligned audio; they serve to pre-train the VAE (the cross-modal encoder
  then sees zero audio).
* ``videos``: folders written by ``scripts/preprocess.py`` named in ``data.paths``
  (:func:`read_video_folder`): pose, the real blink signal and audio; the folder's name is the
  speaker (``group``).
* ``mixed``: both in one list, each path read by what it is (a folder: ``videos``, a file:
  ``files``): every real sequence we have, pose files adding head motion without blink or audio.

Held-out split (:func:`load_sequences`): synthetic, each subject's last sentences; files and
videos, the speakers named in ``data.heldout_groups`` whole, or (none named) the last
``data.held_out_fraction`` of every sequence, or with ``data.held_out_split="video"`` each video
folder's own held-out end (the frames of its ``transforms_val.json``, which the NeRF of the same
folder holds out: what ``scripts/avatar.py`` fine-tunes on).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import grain
import jax
import numpy as np

from jaxhead.data import synthetic
from jaxhead.data.voca import load_voca
from jaxhead.gpvae.readers import (
    AUDIO_DIM,
    AUDIO_SPEC,
    FEATURE_DIM,
    PoseSequence,
    _resample_frames,
    audio_frame_features,
    head_pose_from_c2w,
    read_adnerf_transforms,
    read_aniportrait_pose,
    read_deep3d_mat,
    read_pose_file,
    read_video_folder,
    video_heldout_start,
)

# config.data.held_out_split (files / videos without heldout_groups): the last held_out_fraction of
# every sequence, or each video folder's own transforms_val.json frames.
HELD_OUT_SPLITS = ("fraction", "video")

# The readers' names stay importable from here (callers use ``data_lib.AUDIO_DIM`` & co.).
__all__ = [
    "AUDIO_DIM",
    "AUDIO_SPEC",
    "FEATURE_DIM",
    "PoseSequence",
    "WindowIterator",
    "_resample_frames",
    "audio_frame_features",
    "head_pose_from_c2w",
    "load_sequences",
    "load_synthetic",
    "mirrored",
    "normalizer",
    "read_adnerf_transforms",
    "read_aniportrait_pose",
    "read_deep3d_mat",
    "read_pose_file",
    "read_video_folder",
    "split_by_group",
    "synthetic_root",
]


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
    if data.source not in ("files", "videos", "mixed"):
        raise ValueError(
            f"unknown config.data.source {data.source!r}; use 'synthetic', 'files', 'videos' or "
            "'mixed'"
        )
    if not data.paths:
        what = {
            "files": "pose files",
            "videos": "folders of scripts/preprocess.py",
            "mixed": "pose files and folders of scripts/preprocess.py",
        }[data.source]
        raise ValueError(f"config.data.source={data.source!r} needs config.data.paths ({what})")
    max_gap = int(data.get("max_gap_frames", 5))
    if max_gap < 0:
        raise ValueError(f"config.data.max_gap_frames={max_gap}; use 0 or more")
    how = str(data.get("held_out_split", "fraction"))
    if how not in HELD_OUT_SPLITS:
        raise ValueError(f"config.data.held_out_split={how!r}; use one of {HELD_OUT_SPLITS}")
    if how == "video" and (heldout_groups or data.source != "videos"):
        raise ValueError(
            "config.data.held_out_split='video' holds out each video folder's transforms_val.json "
            "frames: it needs config.data.source='videos' and no config.data.heldout_groups"
        )
    sequences, cuts = [], []
    for path in data.paths:
        folder = data.source == "videos" or (
            data.source == "mixed" and pathlib.Path(path).expanduser().is_dir()
        )
        if folder:
            parts = read_video_folder(path, fps, max_gap)
            sequences += parts
            if how == "video":
                first = video_heldout_start(path)
                cuts += [int(np.clip(first - p.start, 0, len(p))) for p in parts]
        else:
            sequences.append(read_pose_file(path, fps))
    if heldout_groups:
        return split_by_group(sequences, heldout_groups)
    if how == "fraction":
        cuts = [int(round(len(seq) * (1.0 - data.held_out_fraction))) for seq in sequences]
    train, held = [], []
    for seq, cut in zip(sequences, cuts, strict=True):
        if cut > 0:
            train.append(_slice(seq, 0, cut))
        if cut < len(seq):
            held.append(_slice(seq, cut, len(seq)))
    if not train or not held:
        raise ValueError(
            f"config.data.held_out_split={how!r} leaves {len(train)} training and {len(held)} "
            "held-out sequences; each needs at least one (preprocess with --val_seconds)"
        )
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
    return PoseSequence(
        seq.name, seq.pose[start:stop], seq.blink[start:stop], audio, seq.group, seq.start + start
    )


# Left-right mirroring of the face-attribute channels (rotation 3, translation 3, blink): the
# reflection M = diag(-1, 1, 1) of the camera's horizontal axis maps a head pose (R, t) to
# (M R M, M t), whose axis-angle is (wx, -wy, -wz) (a reflection reverses the rotation's sense
# and mirrors its axis) and whose translation is (-tx, ty, tz); the blink is unchanged.
MIRROR_SIGNS = np.asarray([1, -1, -1, -1, 1, 1], np.float32)


def mirrored(seq: PoseSequence) -> PoseSequence:
    """``seq`` as seen in a mirror (the image flipped left-right): the head turns and tilts the
    other way, moves the other way sideways, blinks and speaks the same.

    A training augmentation (``config.data.mirror``): a face's motion mirrored is another
    plausible motion of a (mirrored) face, so it doubles a small set of real sequences.
    """
    audio = None if seq.audio is None else seq.audio.copy()
    return PoseSequence(
        f"{seq.name}[mirrored]", seq.pose * MIRROR_SIGNS, seq.blink.copy(), audio, seq.group
    )


def normalizer(
    sequences: Sequence[PoseSequence], relative_pose: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std ``[7]`` of the training frames (std floored at 1e-6), over the
    frames where the channel was measured (a blink of NaN is not; a channel measured nowhere
    gets mean 0, std 1).

    ``relative_pose``: the pose channels' std is that of each sequence's frames around the
    sequence's own mean, the scale of the motion a relative-pose model sees; the spread of
    the speakers' mean poses (camera distance, facing) would otherwise dwarf it.
    """
    frames = np.concatenate([s.features for s in sequences], 0).astype(np.float64)
    known = np.isfinite(frames)
    count = known.sum(0)
    mean = np.where(known, frames, 0.0).sum(0) / np.maximum(count, 1)
    var = np.where(known, np.square(frames - mean), 0.0).sum(0) / np.maximum(count, 1)
    std = np.where(count > 0, np.sqrt(var), 1.0)
    if relative_pose:
        motion = np.concatenate([s.pose - s.pose.mean(0) for s in sequences], 0)
        std[:6] = motion.std(0)
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


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
