"""The NeRF's per-frame conditioning, computed once and stored with the data or with the run.

* **Frames** come from the data module of ``config.data.kind`` (:func:`frames_module`:
  :mod:`jaxhead.data.voca_frames` or :mod:`jaxhead.data.video_frames`), whose frame caches already
  hold each frame's image, camera, blink and log-mel audio window (the AD-NeRF-style audio
  network's input).
* **F_lip from the sync stage** (paper 000 fig. 3; ``config.sync.init_from``): the frozen audio
  encoder's output of each frame's audio window. :class:`LipSource` computes it once per split
  and sync run and stores the raw outputs beside the frame cache
  (``<cache>/conditions/sync_<split>_<digest>.npz``), so later processes read them instead of
  running the encoder again; ``config.sync.features`` says which output is read and how it is
  standardised (:data:`SYNC_FEATURES`).
* **What a trained run needs to render** is written into its workdir once, at the start of
  training (:data:`RUN_CONDITIONS`, :func:`write_run_conditions`): the sync standardisation
  statistics (per-dimension mean / std over the training frames, shared by held-out frames and
  new audio) and the training frames' pose / blink tracks and counts. Rendering new audio in a
  fresh process reads that file and never loads the training split nor runs the encoder over it.
  Runs made before the file existed are read from their training split instead.
* **Reference codes** of L_dis (paper 000 sec. 3.3) from the disentangle stage's extractor.

No process-global caches: a :class:`LipSource` is built once per run (or per process that
renders one) and passed where it is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxhead.audio import frontend
from jaxhead.audio.io import SAMPLE_RATE
from jaxhead.data import frames as frames_lib
from jaxhead.data import video_frames, voca_frames
from jaxhead.data.cache import cache_root, save_npz
from jaxhead.disentangle.stage import load_extractor
from jaxhead.sync.stage import SyncEncoder, load_sync_encoder

SYNC_FEATURES = ("embedding", "pre_activation", "normalized", "standardized")
RUN_CONDITIONS = "conditions.npz"  # in the NeRF workdir
# The training frames' per-frame arrays a render replays (pose, blink) or indexes (codes).
TRACK_KEYS = ("c2w", "intrinsics", "blink", "identity", "sequence")
_CACHE_VERSION = 1


def init_from(config: ml_collections.ConfigDict, block: str) -> str:
    """``config.<block>.init_from`` ('' when the block is absent: configs of older runs)."""
    return str(config[block].init_from) if block in config else ""


def frames_module(data_config: ml_collections.ConfigDict):
    """The frame-source module of ``config.data.kind``: ``voca`` or ``video``."""
    if data_config.kind == "voca":
        return voca_frames
    if data_config.kind == "video":
        return video_frames
    raise ValueError(
        f"unknown config.data.kind {data_config.kind!r}; the NeRF stage reads 'voca' "
        "(configs/voca.py) or 'video' (configs/video.py: a preprocessed video folder)"
    )


def sync_reading(config: ml_collections.ConfigDict) -> tuple[str, str]:
    """``(features, raw)``: ``config.sync.features`` (checked against :data:`SYNC_FEATURES`) and
    the encoder output it reads: ``"embedding"`` or ``"pre_activation"``."""
    kind = str(config.sync.get("features", "embedding"))
    if kind not in SYNC_FEATURES:
        raise ValueError(f"config.sync.features={kind!r}: use one of {SYNC_FEATURES}")
    return kind, ("embedding" if kind == "embedding" else "pre_activation")


def moments(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [D], std [D] + 1e-6)`` over the rows of all ``outputs`` (float64 sums)."""
    values = np.concatenate(outputs, axis=0).astype(np.float64)
    return values.mean(0).astype(np.float32), (values.std(0) + 1e-6).astype(np.float32)


def _latest_step(workdir: pathlib.Path) -> int:
    steps = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
    return max(steps, default=-1)


def sync_context(config: ml_collections.ConfigDict) -> int:
    """``config.sync.context`` (0 when absent: runs made before it), checked."""
    value = config.sync.get("context", 0) if "sync" in config else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"config.sync.context={value!r}: give the number of neighbouring frames on each side "
            "whose F_lip a frame also reads, an integer >= 0 (0: the frame's own only)"
        )
    return value


def temporal_context(values: np.ndarray, frame_numbers: np.ndarray, k: int) -> np.ndarray:
    """``[len(frame_numbers), (2k+1)·D]``: for each frame ``f`` of a track whose per-frame
    values are ``values`` ``[T, D]``, the rows ``f-k, …, f+k`` concatenated in time order, rows
    outside ``[0, T)`` replaced by the track's first or last (AD-NeRF's audio window repeats the
    edge frames the same way)."""
    frame_numbers = np.asarray(frame_numbers, np.int64)
    if k == 0:
        return values[frame_numbers]
    offsets = np.arange(-k, k + 1)
    rows = np.clip(frame_numbers[:, None] + offsets[None, :], 0, len(values) - 1)
    return values[rows].reshape(len(frame_numbers), -1)


class LipFrames:
    """A frame source with each frame's precomputed F_lip (``"lip"``, ``[D]``) added."""

    def __init__(self, source, lip: np.ndarray):
        if len(lip) != len(source):
            raise ValueError(f"{len(lip)} lip features for {len(source)} frames")
        self.source, self.lip = source, lip

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {**self.source[i], "lip": self.lip[int(i)]}

    def __getattr__(self, name):
        return getattr(self.source, name)


class LipSource:
    """Where a run's F_lip comes from: ``kind`` is ``"sync"`` (the frozen audio encoder of
    ``config.sync.init_from``; frames carry a ``lip`` entry), ``"audio_net"`` (the AD-NeRF-style
    audio network over the frames' log-mel windows, trained with the NeRF) or ``"none"``
    (``config.model.lip_dim=0`` without a sync stage: the audio does not reach the field; paper
    000 table 2's "w/o sync module").

    ``statistics``: ``(mean, std)`` of the sync pre-activation over the training frames
    (``config.sync.features="standardized"``); given when a trained run is read, computed from
    the training split by :meth:`frames` otherwise.
    """

    def __init__(self, config: ml_collections.ConfigDict, statistics=None):
        self.config = config
        self.sync_workdir = init_from(config, "sync")
        if self.sync_workdir:
            self.kind = "sync"
            self.features, self.raw = sync_reading(config)
        else:
            self.kind = "audio_net" if int(config.model.lip_dim) > 0 else "none"
            self.features = self.raw = ""
        self.statistics = statistics
        self.context = sync_context(config)
        self._encoder: SyncEncoder | None = None

    # --- the encoder, loaded on first use -------------------------------------------------------

    @property
    def encoder(self) -> SyncEncoder:
        if self._encoder is None:
            encoder = load_sync_encoder(self.sync_workdir)
            fps = float(self.config.data.fps)
            if abs(encoder.fps - fps) > 1e-6:
                raise ValueError(
                    f"the sync stage in {encoder.workdir} was trained at {encoder.fps} fps but "
                    f"config.data.fps is {fps}; train the sync stage at the NeRF's frame rate "
                    f"(--config.data.fps={fps}) or set config.sync.init_from=''"
                )
            self._encoder = encoder
        return self._encoder

    @property
    def dim(self) -> int:
        """Size of a frame's F_lip: the sync stage's embedding size times the ``2k+1`` frames of
        ``config.sync.context`` (no encoder pass)."""
        workdir = pathlib.Path(self.sync_workdir).expanduser()
        try:
            config = json.loads((workdir / "config.json").read_text())
            embed_dim = int(config["model"]["embed_dim"])
        except (OSError, KeyError, ValueError):
            embed_dim = self.encoder.embed_dim  # raises the loader's "make it with" error
        return embed_dim * (2 * self.context + 1)

    def outputs(self, samples: np.ndarray, frame_numbers: np.ndarray) -> np.ndarray:
        """``[len(frame_numbers), D]`` raw encoder outputs (:attr:`raw`) of one 16 kHz track at
        its frames ``frame_numbers`` (at ``config.data.fps``); with ``config.sync.context`` k,
        each row is the outputs of frames ``f-k … f+k`` concatenated (:func:`temporal_context`)."""
        encoder = self.encoder
        fps = float(self.config.data.fps)
        frame_numbers = np.asarray(frame_numbers, np.int64)
        num = max(int(frame_numbers.max(initial=-1)) + 1, int(len(samples) / SAMPLE_RATE * fps))
        windows = encoder.audio_windows(np.asarray(samples, np.float32), num)
        embed = encoder.embed_audio if self.raw == "embedding" else encoder.audio_features
        values = np.asarray(embed(jnp.asarray(windows)), np.float32)
        return temporal_context(values, frame_numbers, self.context)

    def read(self, outputs: np.ndarray) -> np.ndarray:
        """``config.sync.features`` applied to raw outputs ``[N, D]``."""
        if self.features == "normalized":
            return (outputs - outputs.mean(-1, keepdims=True)) / (
                outputs.std(-1, keepdims=True) + 1e-6
            )
        if self.features == "standardized":
            if self.statistics is None:
                raise ValueError(
                    "standardized sync features need the training frames' statistics: load the "
                    "training split first (LipSource.frames(..., 'train', ...))"
                )
            mean, std = self.statistics
            return (outputs - mean) / std
        return outputs

    # --- one split's F_lip, cached beside the frame cache ---------------------------------------

    def _cache_path(self, split: str) -> pathlib.Path:
        workdir = pathlib.Path(self.sync_workdir).expanduser().resolve()
        key = [
            _CACHE_VERSION, self.config.data.to_json(sort_keys=True), split, str(workdir),
            _latest_step(workdir), self.raw, self.context,
        ]  # fmt: skip
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
        folder = cache_root(str(self.config.data.get("cache_dir", "")))
        return folder / "conditions" / f"sync_{split}_{digest}.npz"

    def split_outputs(self, split: str, source) -> np.ndarray:
        """``[len(source), D]`` raw outputs of every frame of ``source`` (one split), from the
        conditions cache or computed once per track and cached."""
        path = self._cache_path(split)
        if path.exists():
            try:
                with np.load(path) as data:
                    raw = np.asarray(data["outputs"], np.float32)
                if len(raw) == len(source):
                    return raw
            except (OSError, ValueError, KeyError):
                pass  # unreadable: computed again below
        module = frames_module(self.config.data)
        raw = None
        for rows, samples, numbers in module.audio_tracks(self.config.data, source):
            values = self.outputs(samples, numbers)
            if raw is None:
                raw = np.zeros((len(source), values.shape[1]), np.float32)
            raw[rows] = values
        if raw is None:
            raw = np.zeros((0, self.dim), np.float32)
        save_npz(path, {"outputs": raw})
        return raw

    def frames(self, split: str, source):
        """``source`` (one split) with F_lip added; the training split also sets
        :attr:`statistics` when they are not known yet."""
        if self.kind != "sync":
            return source
        raw = self.split_outputs(split, source)
        if self.statistics is None and split == "train" and self.raw == "pre_activation":
            self.statistics = moments([raw])
        return LipFrames(source, self.read(raw))

    def audio_conditions(self, samples: np.ndarray, num_frames: int) -> dict[str, np.ndarray]:
        """Per-frame audio conditioning of a new 16 kHz track for ``num_frames`` frames:
        ``{"lip": [T, D]}`` with a sync stage, else ``{"audio": [T, window, 80]}`` log-mel windows
        for the model's audio network (what the training frames carry)."""
        if self.kind == "sync":
            return {"lip": self.read(self.outputs(samples, np.arange(num_frames)))}
        fps = float(self.config.data.fps)
        spec = frames_lib.audio_spec(self.config.data)
        return {"audio": frontend.frame_windows(samples, num_frames, fps, spec)}


def load_frames(config: ml_collections.ConfigDict, split: str, lip: LipSource, *, progress=True):
    """One split of the stage's data, with the sync stage's F_lip when ``lip`` has one."""
    source = frames_module(config.data).load_frames(config.data, split, progress=progress)
    return lip.frames(split, source)


# --- what a trained run keeps in its workdir -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunConditions:
    """What rendering a trained run needs from its training data (:data:`RUN_CONDITIONS`).

    ``tracks``: the training frames' :data:`TRACK_KEYS` arrays plus ``sequence_index`` (dense);
    ``num_identities`` / ``num_sequences``: the code tables' rows; ``audio_dim``: channels of the
    log-mel windows; ``statistics``: the sync standardisation ``(mean, std)`` or None;
    ``background``: a full-frame video's static background ``[H, W, 3]`` uint8, else None;
    ``scene_scale``: a video's factor on the tracker's camera translations, else None (runs made
    before it was kept: None too).
    """

    tracks: dict[str, np.ndarray]
    num_identities: int
    num_sequences: int
    audio_dim: int
    statistics: tuple[np.ndarray, np.ndarray] | None
    background: np.ndarray | None = None
    scene_scale: float | None = None

    @property
    def num_frames(self) -> int:
        return len(self.tracks["identity"])

    @classmethod
    def of(cls, train_frames, statistics=None) -> RunConditions:
        """From the loaded training split."""
        arrays = train_frames.arrays
        tracks = {k: np.asarray(arrays[k]) for k in TRACK_KEYS}
        # Dense sequence indices, as CachedFrames numbers them (its ``sequence`` ids are hashes).
        tracks["sequence_index"] = np.unique(arrays["sequence"], return_inverse=True)[1].astype(
            np.int32
        )
        audio_dim = int(np.shape(arrays["audio"])[-1]) if len(train_frames) else 0
        scale = arrays.get("scene_scale")
        return cls(
            tracks, int(train_frames.num_identities), int(train_frames.num_sequences), audio_dim,
            statistics, arrays.get("background"), None if scale is None else float(scale),
        )  # fmt: skip


def write_run_conditions(workdir: str | pathlib.Path, conditions: RunConditions) -> None:
    """Writes :data:`RUN_CONDITIONS` into a NeRF workdir (atomic)."""
    arrays = {f"track_{k}": v for k, v in conditions.tracks.items()}
    arrays["counts"] = np.asarray(
        [conditions.num_identities, conditions.num_sequences, conditions.audio_dim], np.int64
    )
    if conditions.statistics is not None:
        arrays["sync_mean"], arrays["sync_std"] = conditions.statistics
    if conditions.background is not None:
        arrays["background"] = np.asarray(conditions.background)
    if conditions.scene_scale is not None:
        arrays["scene_scale"] = np.asarray(conditions.scene_scale, np.float64)
    save_npz(pathlib.Path(workdir) / RUN_CONDITIONS, arrays)


def read_run_conditions(workdir: str | pathlib.Path) -> RunConditions | None:
    """The :data:`RUN_CONDITIONS` of a NeRF workdir; None for runs made before the file existed."""
    path = pathlib.Path(workdir) / RUN_CONDITIONS
    if not path.is_file():
        return None
    with np.load(path) as data:
        tracks = {k[len("track_") :]: np.asarray(data[k]) for k in data.files if k[:6] == "track_"}
        counts = [int(v) for v in data["counts"]]
        statistics = None
        if "sync_mean" in data.files:
            statistics = (np.asarray(data["sync_mean"]), np.asarray(data["sync_std"]))
        background = np.asarray(data["background"]) if "background" in data.files else None
        scale = float(data["scene_scale"]) if "scene_scale" in data.files else None
    return RunConditions(tracks, counts[0], counts[1], counts[2], statistics, background, scale)


def sequence_audio(config, source, rows) -> np.ndarray | None:
    """The 16 kHz audio of held-out ``rows`` (one continuous sequence), frame 0 at sample 0."""
    module = frames_module(config.data)
    fps = float(config.data.fps)
    first, count = int(rows[0]), len(rows)
    for track_rows, samples, numbers in module.audio_tracks(config.data, source):
        where = np.nonzero(np.asarray(track_rows) == first)[0]
        if len(where):
            start = int(round(int(numbers[where[0]]) / fps * SAMPLE_RATE))
            stop = start + int(round(count / fps * SAMPLE_RATE))
            return np.asarray(samples[start:stop], np.float32)
    return None


# --- reference codes of the disentangle stage (paper 000 sec. 3.3) -------------------------------


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + 1e-12)


def reference_codes(
    config: ml_collections.ConfigDict, code_sizes: dict, frames, batch: int = 64
) -> dict[str, np.ndarray]:
    """The reference tables C̄ of L_dis from the extractor of ``config.disentangle.init_from``.

    ``ex``: the extractor's expression code of each training frame; ``id`` / ``al``: the mean
    over an identity's frames, ``ill``: over a sequence's frames, each mean brought back to unit
    RMS (the extractor's code space). Tables match ``code_sizes`` (``{name: (rows, dim)}``) row
    for row.
    """
    extractor = load_extractor(init_from(config, "disentangle"))
    for name, (_, dim) in code_sizes.items():
        have = extractor.code_sizes.get(name)
        if have != dim:
            raise ValueError(
                f"config.model.codes.{name} is {dim} but the extractor in {extractor.workdir} "
                f"emits {have}-dim C_{name} codes; set --config.model.codes.{name}={have} "
                "(or train the extractor with the NeRF's code sizes)"
            )
    n = len(frames)
    per_frame: dict[str, list[np.ndarray]] = {name: [] for name in code_sizes}
    identity = np.zeros(n, np.int64)
    sequence = np.zeros(n, np.int64)
    for start in range(0, n, batch):
        items = [frames[i] for i in range(start, min(start + batch, n))]
        codes = extractor(np.stack([item["image"] for item in items]))
        for name in per_frame:
            per_frame[name].append(codes[name])
        identity[start : start + len(items)] = [int(item["identity"]) for item in items]
        sequence[start : start + len(items)] = [int(item["sequence_index"]) for item in items]
    group_of = {"id": identity, "al": identity, "ill": sequence}
    tables = {}
    for name, (rows, _) in code_sizes.items():
        values = np.concatenate(per_frame[name]).astype(np.float32)
        if name == "ex":
            tables[name] = values
            continue
        groups = group_of[name]
        table = np.zeros((rows, values.shape[1]), np.float32)
        for g in range(rows):
            members = values[groups == g]
            if len(members):
                table[g] = _unit_rms(members.mean(0))
        tables[name] = table
    return tables
