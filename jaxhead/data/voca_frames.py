"""VOCASET-format data as NeRF training frames: render once, cache, serve as a `FrameSource`.

The NeRF stage trains on images, cameras and per-frame conditioning. For a VOCASET-format folder
(the synthetic default or the real download) this module renders every frame of the selected
sentences at the NeRF frame rate with :meth:`jaxhead.data.voca.VocaSet.render`, computes the
per-frame audio-feature windows with :mod:`jaxhead.audio.spectral`, and stores the result in one
``.npz`` cache file per (dataset, split, settings) so that rendering happens once per machine.

Splits (paper 000 trains per speaker on VOCASET sentences; we hold out whole sentences):

* ``train``: all but the last ``val_sentences`` sentences of every subject, seen from the
  frontal world camera turned by a per-frame yaw in ``[-train_yaw_jitter_deg, +...]`` (the
  multi-view supervision a capture rig would give; deterministic per frame);
* ``val``: the held-out sentences from the frontal camera (held-out frames: new audio, new
  expressions, new head poses);
* ``val_views``: the held-out sentences from cameras at ``+-heldout_view_yaw_deg`` (held-out
  views).

The camera of each frame is the world camera expressed in the head frame (head pose as camera
motion, as AD-NeRF does), so the NeRF models a canonical, unposed head.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jaxhead.audio import spectral
from jaxhead.audio.io import SAMPLE_RATE
from jaxhead.data import cache, raster, synthetic
from jaxhead.data.errors import DatasetError
from jaxhead.data.pipeline import FRAME_SPEC, validate_example
from jaxhead.data.voca import VocaSet, load_voca
from jaxhead.files import publish

SPLITS = ("train", "val", "val_views")
# Log-mel features (Wav2Lip's definition, jaxhead.audio.spectral.log_mel defaults) run at 80 Hz.
LOGMEL_RATE = SAMPLE_RATE / 200.0
_CACHE_VERSION = 1


def voca_frames_config() -> ml_collections.ConfigDict:
    """The ``config.data`` block of the NeRF stage on VOCASET-format data."""
    return ml_collections.ConfigDict(
        {
            "kind": "voca",
            # Folder with data_verts.npy & co. Empty: the embedded synthetic dataset, generated
            # once into the cache folder from `synthetic`.
            "root": "",
            "template_mesh": "",  # real VOCASET: FLAME_sample.ply or texture_mesh.obj
            # empty: $JAXHEAD_CACHE, else $XDG_CACHE_HOME/jaxhead, else ~/.cache/jaxhead
            "cache_dir": "",
            "synthetic": {"identities": 4, "sequences": 4, "seconds": 4.0, "seed": 0},
            "subjects": (),  # empty: every subject
            "max_sentences": 0,  # per subject, 0: all
            "val_sentences": 1,  # last sentences of each subject held out
            "max_frames": 0,  # per sentence and split, 0: all
            "fps": 25.0,
            "resolution": 128,  # target image side
            "lr_resolution": 32,  # side of the rendered feature map
            "supersample": 2,  # anti-aliasing of the reference renders
            "fov_deg": 0.0,  # 0: the dataset's camera (synthetic: factors.npz), else this FOV
            "camera_distance": 0.0,  # 0: the dataset's, else metres
            "train_yaw_jitter_deg": 10.0,
            "heldout_view_yaw_deg": 20.0,
            "audio_window": 16,  # log-mel steps per frame (0.2 s at 80 Hz)
            "batch_size": 4,  # frame pairs per step (global)
            "num_threads": 2,
        }
    )


def cache_root(config: ml_collections.ConfigDict) -> pathlib.Path:
    """The cache folder of a ``config.data`` block (see :func:`jaxhead.data.cache.cache_root`)."""
    return cache.cache_root(config.cache_dir)


def dataset_root(config: ml_collections.ConfigDict, *, progress: bool = True) -> pathlib.Path:
    """The VOCASET-format folder: ``config.root``, or the synthetic default (generated once)."""
    if config.root:
        root = pathlib.Path(config.root).expanduser()
        if not root.is_dir():
            raise DatasetError(
                root,
                "does not exist",
                "point --config.data.root at a VOCASET training-data folder (data_verts.npy, "
                "templates.pkl, raw_audio_fixed.pkl, subj_seq_to_idx.pkl), or leave it empty to "
                "use the embedded synthetic dataset",
            )
        return root
    s = config.synthetic
    name = f"synthetic_i{s.identities}_q{s.sequences}_s{s.seconds:g}_seed{s.seed}"
    root = cache_root(config) / name
    if not (root / "data_verts.npy").exists():
        if progress:
            print(
                f"Generating the synthetic VOCASET-format dataset into {root} (once).", flush=True
            )
        synthetic.generate(
            root,
            identities=s.identities,
            sequences=s.sequences,
            seconds=s.seconds,
            seed=s.seed,
            overwrite=root.exists(),
            progress=progress,
        )
    return root


def _frame_settings(config) -> dict:
    keys = ("subjects", "max_sentences", "val_sentences", "max_frames", "fps", "resolution",
            "lr_resolution", "supersample", "fov_deg", "camera_distance", "train_yaw_jitter_deg",
            "heldout_view_yaw_deg", "audio_window", "template_mesh")  # fmt: skip
    return {k: (list(config[k]) if isinstance(config[k], tuple) else config[k]) for k in keys}


def sequence_id(subject: str, sentence: str) -> int:
    """The stable integer id of a (subject, sentence) stored in the frames' ``sequence``."""
    return int(hashlib.md5(f"{subject}/{sentence}".encode()).hexdigest()[:7], 16)


def selected_subjects(voca: VocaSet, config) -> list[str]:
    """The subjects a config selects, in identity-index order."""
    return list(config.subjects) or voca.subjects


def _selected(voca: VocaSet, config) -> list[tuple[str, list[str], list[str]]]:
    subjects = selected_subjects(voca, config)
    missing = sorted(set(subjects) - set(voca.subjects))
    if missing:
        raise DatasetError(voca.root, f"has no subjects {missing}", f"choose among {voca.subjects}")
    out = []
    for subject in subjects:
        sentences = voca.sentences(subject)
        if config.max_sentences:
            sentences = sentences[: config.max_sentences]
        k = int(config.val_sentences)
        if k >= len(sentences):
            raise DatasetError(
                voca.root,
                f"{subject} has {len(sentences)} sentences, too few to hold out {k}",
                "lower --config.data.val_sentences or use more sentences",
            )
        out.append((subject, sentences[: len(sentences) - k], sentences[len(sentences) - k :]))
    return out


def camera_setup(voca: VocaSet, config) -> tuple[float, float]:
    factors = voca.factors or {}
    fov = config.fov_deg or float(factors.get("camera_fov_deg", synthetic.CAMERA_FOV_DEG))
    dist = config.camera_distance or float(
        factors.get("camera_distance", synthetic.CAMERA_DISTANCE)
    )
    return float(fov), float(dist)


def _resize_area(image: np.ndarray, size: int) -> np.ndarray:
    """Box-filter downsampling by an integer factor ``[H, W, C] -> [size, size, C]``."""
    h, w, c = image.shape
    f = h // size
    return image.reshape(size, f, w // f, f, c).mean(axis=(1, 3))


def render_split(voca: VocaSet, config, split: str, *, progress: bool = True) -> dict:
    """Renders one split into stacked arrays (uint8 images, float32 rest), see module doc."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    res, lr = int(config.resolution), int(config.lr_resolution)
    if res % lr:
        raise ValueError(f"data.resolution {res} must be a multiple of data.lr_resolution {lr}")
    fov, dist = camera_setup(voca, config)
    intrinsics = raster.intrinsics_from_fov(fov, res, res).astype(np.float32)
    subjects = _selected(voca, config)
    items = []  # (subject index, sentence id, frame index within the sentence, row, yaw)
    for si, (subject, train_q, val_q) in enumerate(subjects):
        for sentence in train_q if split == "train" else val_q:
            rows = voca.rows_at_fps(subject, sentence, config.fps)
            if config.max_frames:
                rows = rows[: config.max_frames]
            seq_id = sequence_id(subject, sentence)
            for k, row in enumerate(rows):
                items.append((si, seq_id, k, int(row), subject, sentence))
    if not items:
        raise DatasetError(voca.root, f"split {split!r} selects no frames", "check data.subjects")

    rng = np.random.default_rng(1234)
    yaws = []
    for _, seq_id, k, *_ in items:
        if split == "train":
            yaws.append(rng.uniform(-1, 1) * config.train_yaw_jitter_deg)
        elif split == "val_views":
            yaws.append((1.0 if (seq_id + k) % 2 else -1.0) * config.heldout_view_yaw_deg)
        else:
            yaws.append(0.0)

    # Audio windows, one log-mel pass per sentence.
    audio_cache: dict[tuple[str, str], np.ndarray] = {}
    logmel = jax.jit(spectral.log_mel)
    n = len(items)
    out = {
        "image": np.zeros((n, res, res, 3), np.uint8),
        "image_lr": np.zeros((n, lr, lr, 3), np.uint8),
        "mask": np.zeros((n, res, res, 1), np.uint8),
        "mask_lr": np.zeros((n, lr, lr, 1), np.float32),
        "intrinsics": np.tile(intrinsics, (n, 1)),
        "c2w": np.zeros((n, 4, 4), np.float32),
        "audio": np.zeros((n, config.audio_window, 80), np.float32),
        "landmarks": np.zeros((n, 68, 2), np.float32),
        "expression": np.zeros((n, 3), np.float32),
        "blink": np.zeros((n,), np.float32),
        "identity": np.zeros((n,), np.int32),
        "sequence": np.zeros((n,), np.int32),
        "frame": np.zeros((n,), np.int32),
        "yaw_deg": np.asarray(yaws, np.float32),
    }
    factors = voca.factors
    bar = tqdm.tqdm(total=n, desc=f"render {split}", disable=not progress, leave=False)
    for i, ((si, seq_id, k, row, subject, sentence), yaw) in enumerate(
        zip(items, yaws, strict=True)
    ):
        key = (subject, sentence)
        if key not in audio_cache:
            wave = voca.audio(subject, sentence)
            num = len(voca.rows_at_fps(subject, sentence, config.fps))
            feats = logmel(jnp.asarray(wave))
            audio_cache[key] = np.asarray(
                spectral.window_features(feats, num, config.fps, LOGMEL_RATE, config.audio_window)
            )
        out["audio"][i] = audio_cache[key][k]
        c2w_world = raster.orbit_cameras([yaw], 0.0, dist)[0]
        render, c2w_head = voca.render(
            row, c2w_world, intrinsics, res, res, background=(1.0, 1.0, 1.0),
            supersample=int(config.supersample),
        )  # fmt: skip
        rgb = np.clip(render.rgb, 0.0, 1.0)
        mask = np.asarray(render.mask, np.float32)[..., None]
        out["image"][i] = np.round(rgb * 255).astype(np.uint8)
        out["image_lr"][i] = np.round(_resize_area(rgb, lr) * 255).astype(np.uint8)
        out["mask"][i] = np.round(mask * 255).astype(np.uint8)
        out["mask_lr"][i] = _resize_area(mask, lr)
        out["c2w"][i] = c2w_head
        if render.landmarks is not None:
            out["landmarks"][i] = render.landmarks
        if factors is not None:
            out["expression"][i] = factors["expression"][row]
            out["blink"][i] = factors["blink"][row]
        out["identity"][i] = si
        out["sequence"][i] = seq_id
        out["frame"][i] = k
        bar.update()
    bar.close()
    return out


class CachedFrames:
    """A `FrameSource` over rendered arrays (uint8 images converted to float32 on access)."""

    _UINT8 = ("image", "image_lr", "mask")

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self._length = len(arrays["frame"])
        ids = np.stack([arrays["identity"], arrays["sequence"]], -1)
        self._continues = np.all(ids[1:] == ids[:-1], -1) & (
            arrays["frame"][1:] == arrays["frame"][:-1] + 1
        )
        # Dense sequence indices (the ``sequence`` ids are hashes) for per-sequence code tables.
        _, self._sequence_index = np.unique(arrays["sequence"], return_inverse=True)
        if self._length:
            validate_example(self[0], where="rendered frame 0")

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        out = {}
        for key in FRAME_SPEC:
            value = self.arrays[key][i]
            if key in self._UINT8:
                value = value.astype(np.float32) / 255.0
            out[key] = np.asarray(value)
        # Beyond FRAME_SPEC: the row (index of per-frame codes) and the dense sequence index.
        out["row"] = np.asarray(i, np.int32)
        out["sequence_index"] = np.asarray(self._sequence_index[i], np.int32)
        return out

    def next_index(self, i: int) -> int | None:
        return i + 1 if i + 1 < self._length and self._continues[i] else None

    @property
    def num_identities(self) -> int:
        return int(self.arrays["identity"].max()) + 1 if self._length else 0

    @property
    def num_sequences(self) -> int:
        return int(self._sequence_index.max()) + 1 if self._length else 0

    def sequence_rows(self) -> list[np.ndarray]:
        """Rows of each sequence in time order, one array per sequence."""
        starts = [0] + [i + 1 for i in range(self._length - 1) if not self._continues[i]]
        ends = starts[1:] + [self._length]
        return [np.arange(a, b) for a, b in zip(starts, ends, strict=True)]


def load_frames(
    config: ml_collections.ConfigDict, split: str, *, progress: bool = True
) -> CachedFrames:
    """Renders (or loads from the cache) one split of a VOCASET-format dataset."""
    root = dataset_root(config, progress=progress)
    settings = _frame_settings(config)
    digest = hashlib.sha256(
        json.dumps([_CACHE_VERSION, str(root.resolve()), split, settings], sort_keys=True).encode()
    ).hexdigest()[:16]
    path = cache_root(config) / "frames" / f"{root.name}_{split}_{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                return CachedFrames({k: data[k] for k in data.files})
        except (OSError, ValueError, KeyError) as e:
            print(f"Cached frames {path} are unreadable ({e}); rendering them again.", flush=True)
    template = config.template_mesh or None
    voca = load_voca(root, template_mesh=template)
    arrays = render_split(voca, config, split, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    publish(tmp, path)
    return CachedFrames(arrays)


def audio_tracks(
    config: ml_collections.ConfigDict, source: CachedFrames
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The audio of each sequence of ``source``: ``[(rows, samples, frame_numbers), ...]``.

    ``rows``: the sequence's rows in ``source`` (time order); ``samples``: its sentence's 16 kHz
    mono waveform; ``frame_numbers``: each row's frame index within the sentence at
    ``config.fps`` (frame ``k`` is centred at ``k / fps`` seconds). The NeRF stage computes
    per-frame features of other front-ends (the sync stage's F_lip) from these.
    """
    root = dataset_root(config, progress=False)
    voca = load_voca(root, template_mesh=config.template_mesh or None)
    subjects = selected_subjects(voca, config)
    by_id = {
        (si, sequence_id(subject, sentence)): (subject, sentence)
        for si, subject in enumerate(subjects)
        for sentence in voca.sentences(subject)
    }
    tracks = []
    for rows in source.sequence_rows():
        key = (int(source.arrays["identity"][rows[0]]), int(source.arrays["sequence"][rows[0]]))
        if key not in by_id:
            raise DatasetError(
                root, f"no sentence of the dataset matches cached sequence {key}",
                "delete the frame cache (data.cache_dir/frames) so that it is rendered again",
            )  # fmt: skip
        subject, sentence = by_id[key]
        samples = np.asarray(voca.audio(subject, sentence), np.float32)
        tracks.append((np.asarray(rows), samples, source.arrays["frame"][rows].astype(np.int64)))
    return tracks


def dataset_rows(
    config: ml_collections.ConfigDict, source: CachedFrames, voca: VocaSet
) -> np.ndarray:
    """The ``data_verts`` row of each frame of ``source`` (its mesh and ground-truth factors)."""
    subjects = selected_subjects(voca, config)
    by_id = {
        (si, sequence_id(subject, sentence)): (subject, sentence)
        for si, subject in enumerate(subjects)
        for sentence in voca.sentences(subject)
    }
    arrays = source.arrays
    out = np.zeros(len(arrays["frame"]), np.int64)
    for rows in source.sequence_rows():
        subject, sentence = by_id[
            (int(arrays["identity"][rows[0]]), int(arrays["sequence"][rows[0]]))
        ]
        out[rows] = voca.rows_at_fps(subject, sentence, config.fps)[arrays["frame"][rows]]
    return out
