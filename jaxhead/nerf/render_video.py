"""Rendering a trained head NeRF into videos, and the evaluation suite of a trained run.

Library behind ``scripts/render.py`` and ``scripts/evaluate.py``, for VOCASET-format runs
(``configs/voca.py``) and video runs (``configs/video.py``) alike: frames come from
:func:`jaxhead.nerf.stage.load_frames` and audio tracks from the data module's
``audio_tracks``. Every mode produces ``[T, H, W, 3]`` frames plus the audio to mux in;
:func:`jaxhead.data.media.write_video` writes the mp4.

* **drive** (``--audio``): a trained identity speaks new audio (any file PyAV decodes, resampled to
  16 kHz). The audio conditioning comes from the same front-end as training
  (:func:`jaxhead.nerf.stage.audio_conditions`: log-mel windows, or the sync stage's F_lip); head
  pose and blinks are replayed from the identity's training frames (ping-pong, as AD-NeRF replays
  its pose track; for a video run: the video's own head motion and blinks) unless a static camera,
  a yaw sweep or a generated pose/blink (``--pose_from gpvae``) is asked for.
* **sequence** (``--sequence N``): re-renders held-out sequence N (a held-out sentence, or the
  held-out end of a video) with its own audio, pose and blinks, side by side with the truth.
* **yaw sweep** (``--yaw-sweep DEG``): the camera orbits from -DEG to +DEG (paper 000 fig. 6).
* **swap** (``--swap-expression-from ID``): identity A (``--identity``) with the expression of
  identity B: B's expression codes, audio and blinks, A's identity, albedo and illumination codes.

Evaluation (:func:`evaluate_workdir`; definitions in ``docs/video.md``): every held-out frame is
rendered with the stage's held-out protocol (:func:`jaxhead.nerf.stage.heldout_codes`, the fitted
``C_ill``), then scored: PSNR / SSIM (:mod:`jaxhead.eval.image`) and the lip region's PSNR / L1;
LPIPS and SyncNet (syncnet_python) when their published weights are given; FID is not computed
(InceptionV3 is not ported); MediaPipe Face Mesh landmarks of rendered and true frames (when a
face-mesh environment exists) give the mouth LMD, the mouth-opening traces, blinks per second from
the eye-aspect ratio, and the AV offset / confidence of our sync stage (SyncNet protocol). With a
generated pose (``pose_from="gpvae"``) the held-out audio drives the GP-VAE and D-Rot / D-Pos
compare its pose with the truth. A metric that cannot be computed is recorded with its reason,
never as a number.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from flax import nnx

from jaxhead.audio.io import SAMPLE_RATE, load_audio
from jaxhead.data import head_model, raster
from jaxhead.nerf import stage
from jaxhead.train.checkpoint import Checkpointer
from jaxhead.train.optim import make_optimizer
from jaxhead.train.state import TrainState

RENDER_KEYS = ("c2w", "intrinsics", "blink")  # plus "audio" or "lip": the audio conditioning


@dataclasses.dataclass
class Trained:
    """A trained NeRF run loaded from its workdir."""

    config: ml_collections.ConfigDict
    setup: stage.NeRFSetup
    graphdefs: tuple
    params: dict
    train_frames: Any  # the stage's training frame source (CachedFrames-like, with .arrays)
    step: int

    @property
    def tables(self) -> dict:
        codes = nnx.merge(self.graphdefs[1], self.params["codes"])
        return {name: np.asarray(table[...]) for name, table in codes.tables.items()}


def load_trained(workdir: str | pathlib.Path) -> Trained:
    """Loads ``config.json`` and the latest checkpoint of a NeRF workdir."""
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path} is missing: {workdir} is not a NeRF run folder. Train one with "
            f"`python scripts/train_nerf.py --config configs/voca.py --workdir {workdir}` (or "
            "configs/video.py with --config.data.root=DIR for a preprocessed video)."
        )
    config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    ckpt = Checkpointer(workdir / "checkpoints")
    step = ckpt.latest_step()
    if step is None:
        raise FileNotFoundError(
            f"{workdir}/checkpoints holds no checkpoint yet; let "
            "`python scripts/train_nerf.py ...` run until its first checkpoint."
        )
    setup, graphdefs, frames = stage.make_setup(config)

    def abstract_params():
        nerf, codes = stage.build_models(setup, config.seed)
        return {
            "nerf": nnx.to_pure_dict(nnx.state(nerf, nnx.Param)),
            "codes": nnx.to_pure_dict(nnx.state(codes, nnx.Param)),
        }

    tx = make_optimizer(config.optim, config.train.steps)
    abstract = jax.eval_shape(lambda: TrainState.create(abstract_params(), tx))
    state, _ = ckpt.restore(abstract, step=step)
    ckpt.close()
    return Trained(config, setup, graphdefs, jax.device_get(state.params), frames, step)


def num_audio_frames(config, audio: np.ndarray) -> int:
    """Video frames at ``config.data.fps`` that a 16 kHz waveform spans."""
    return int(np.floor(len(audio) / SAMPLE_RATE * float(config.data.fps)))


def audio_conditions(config, audio: np.ndarray, num_frames: int) -> dict[str, np.ndarray]:
    """The audio conditioning of new audio as the run was trained (``audio`` or ``lip``)."""
    return stage.audio_conditions(config, audio, num_frames)


def _frame_keys(trained: Trained) -> tuple[str, ...]:
    return stage.frame_keys(trained.setup)


def load_split(config, split: str):
    """A held-out split of the run's data (with F_lip when the run uses a sync stage)."""
    return stage.load_frames(config, split, progress=False)


def _ping_pong(rows: np.ndarray, count: int) -> np.ndarray:
    cycle = np.concatenate([rows, rows[::-1]]) if len(rows) > 1 else rows
    return cycle[np.arange(count) % len(cycle)]


def _identity_rows(trained: Trained, identity: int) -> np.ndarray:
    arrays = trained.train_frames.arrays
    rows = np.nonzero(arrays["identity"] == identity)[0]
    if len(rows) == 0:
        raise ValueError(
            f"identity {identity} is not in this run (it has "
            f"{trained.train_frames.num_identities} identities: 0..."
            f"{trained.train_frames.num_identities - 1})"
        )
    first_sequence = arrays["sequence"][rows[0]]
    return rows[arrays["sequence"][rows] == first_sequence]


def render_frames(trained: Trained, frames: dict, codes: dict, batch: int = 8) -> np.ndarray:
    """Renders ``frames`` (stacked c2w, intrinsics, blink, audio or lip) with ``codes``."""
    render = stage.render_fn(trained.graphdefs)
    total = len(frames["c2w"])
    out = []
    for start in tqdm.tqdm(range(0, total, batch), desc="render", leave=False):
        idx = np.arange(start, min(start + batch, total))
        idx = np.concatenate([idx, np.repeat(idx[-1:], batch - len(idx))])
        chunk = {k: jnp.asarray(v[idx]) for k, v in frames.items()}
        chunk_codes = {k: jnp.asarray(v[idx]) for k, v in codes.items()}
        image = render(trained.params, chunk, chunk_codes)["image"]
        out.append(np.asarray(image)[: min(batch, total - start)])
    return np.concatenate(out)


def _base_codes(trained: Trained, identity: int) -> dict[str, np.ndarray]:
    """``[1, dim]`` codes of a frame without its own ``ex``: the stage's held-out convention."""
    base = stage.heldout_codes(trained.setup, trained.tables, identity)
    return {k: np.asarray(v, np.float32) for k, v in base.items()}


def _codes_for_rows(trained: Trained, rows: np.ndarray, identity: int, ex_rows=None) -> dict:
    tables = trained.tables
    own = _identity_rows(trained, identity)
    seq_index = trained.train_frames[int(own[0])]["sequence_index"]
    codes = {k: np.repeat(v, len(rows), 0) for k, v in _base_codes(trained, identity).items()}
    if "ill" in tables:  # the identity's first training sequence's illumination
        codes["ill"] = np.repeat(tables["ill"][int(seq_index)][None], len(rows), 0)
    if "ex" in tables and ex_rows is not None:
        codes["ex"] = tables["ex"][ex_rows]
    return {k: np.asarray(v, np.float32) for k, v in codes.items()}


def frontal_distance(trained: Trained) -> float:
    """Median camera distance of the training frames (the frontal world camera's radius)."""
    c2w = trained.train_frames.arrays["c2w"]
    return float(np.median(np.linalg.norm(c2w[:, :3, 3], axis=-1)))


def posed_cameras(trained: Trained, pose: np.ndarray) -> np.ndarray:
    """``[T, 4, 4]`` cameras in the head frame of head poses ``[T, 6]`` (axis-angle, translation)
    seen by the frontal world camera (AD-NeRF's head pose as camera motion)."""
    count = len(pose)
    world = raster.orbit_cameras(np.zeros(count), 0.0, frontal_distance(trained))
    return np.stack(
        [head_model.camera_in_head_frame(c, p[:3], p[3:]) for c, p in zip(world, pose, strict=True)]
    ).astype(np.float32)


def head_poses(trained: Trained, c2w: np.ndarray) -> np.ndarray:
    """Inverse of :func:`posed_cameras`: ``[T, 4, 4]`` head-frame cameras -> ``[T, 6]`` poses."""
    import cv2

    count = len(c2w)
    world = raster.orbit_cameras(np.zeros(count), 0.0, frontal_distance(trained))
    out = np.zeros((count, 6), np.float32)
    for t in range(count):
        pose = world[t] @ np.linalg.inv(np.asarray(c2w[t], np.float64))
        out[t, :3] = cv2.Rodrigues(pose[:3, :3])[0][:, 0]
        out[t, 3:] = pose[:3, 3]
    return out


def drive(
    trained: Trained,
    audio: np.ndarray,
    *,
    identity: int = 0,
    yaw_sweep: float = 0.0,
    static_pose: bool = False,
    pose_blink: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """New speech for a trained identity; returns ``[T, H, W, 3]`` float frames.

    Head pose and blinks are replayed from the identity's training sequence unless
    ``pose_blink = (pose [T, 6] axis-angle + translation, blink [T])`` is given (e.g. generated by
    the GP-VAE, :func:`jaxhead.gpvae.stage.generate_pose_blink`); the pose moves the head in front
    of the frontal world camera, i.e. the camera in the head frame (AD-NeRF's convention).
    """
    count = num_audio_frames(trained.config, audio)
    if count < 1:
        raise ValueError("the driving audio is shorter than one video frame")
    rows = _ping_pong(_identity_rows(trained, identity), count)
    arrays = trained.train_frames.arrays
    frames = {
        **audio_conditions(trained.config, audio, count),
        "blink": arrays["blink"][rows].astype(np.float32),
        "intrinsics": arrays["intrinsics"][rows].astype(np.float32),
        "c2w": arrays["c2w"][rows].astype(np.float32),
    }
    if yaw_sweep or static_pose:
        yaws = np.linspace(-yaw_sweep, yaw_sweep, count) if yaw_sweep else np.zeros(count)
        frames["c2w"] = raster.orbit_cameras(yaws, 0.0, frontal_distance(trained)).astype(
            np.float32
        )
    if pose_blink is not None:
        pose, blink = (np.asarray(x, np.float32) for x in pose_blink)
        if len(pose) < count or len(blink) < count or pose.shape[-1] != 6:
            raise ValueError(
                f"pose/blink must cover the {count} frames of the audio as [T, 6] and [T]; got "
                f"{pose.shape} and {blink.shape}"
            )
        frames["c2w"] = posed_cameras(trained, pose[:count])
        frames["blink"] = np.clip(blink[:count], 0.0, 1.0)
    return render_frames(trained, frames, _codes_for_rows(trained, rows, identity))


def swap_expression(trained: Trained, identity: int, source_identity: int) -> np.ndarray:
    """Identity ``identity`` with the expression (ex codes, audio, blinks) of another identity."""
    rows = _identity_rows(trained, source_identity)
    source = trained.train_frames
    frames = {k: np.stack([source[int(r)][k] for r in rows]) for k in _render_keys(trained)}
    ours = render_frames(trained, frames, _codes_for_rows(trained, rows, source_identity, rows))
    swapped = render_frames(trained, frames, _codes_for_rows(trained, rows, identity, rows))
    return np.concatenate([ours, swapped], axis=2)


def _render_keys(trained: Trained) -> tuple[str, ...]:
    lip = "lip" if "lip" in _frame_keys(trained) else "audio"
    return RENDER_KEYS + (lip,)


@dataclasses.dataclass
class HeldOut:
    """One held-out sequence rendered with the stage's held-out protocol.

    ``pred`` / ``truth``: ``[T, H, W, 3]`` in [0, 1]; ``scored``: ``[T]`` bool, False for the
    frame ``C_ill`` was fitted on (excluded from the scores, as in the stage's evaluation);
    ``audio``: the sequence's 16 kHz waveform, frame 0 at sample 0 (None when unknown);
    ``frames``: the conditioning rendered with (c2w, intrinsics, blink, audio|lip);
    ``landmarks``: ``[T, 68, 2]`` ground-truth landmarks of the frames (pixels).
    """

    rows: np.ndarray
    pred: np.ndarray
    truth: np.ndarray
    scored: np.ndarray
    audio: np.ndarray | None
    frames: dict
    landmarks: np.ndarray
    codes: dict


def heldout_sequences(trained: Trained, split: str = "val"):
    """``(source, [rows of each held-out sequence])`` of a split."""
    source = load_split(trained.config, split)
    return source, source.sequence_rows()


def render_heldout(trained: Trained, source, rows: np.ndarray, pose_blink=None) -> HeldOut:
    """Renders one held-out sequence (see :class:`HeldOut`); ``pose_blink`` replaces its pose
    and blinks (a generated ``([T, 6], [T])``)."""
    rows = np.asarray(rows)
    items = [source[int(r)] for r in rows]
    keys = _frame_keys(trained)
    identity = int(items[0]["identity"])
    base = _base_codes(trained, identity)
    fit_steps = int(trained.config.eval.fit_steps)
    fitted = "ill" in base and fit_steps > 0
    if fitted:
        first = {k: jnp.asarray(items[0][k][None]) for k in keys}
        base["ill"] = np.asarray(
            stage.fit_illumination(
                stage.render_fn(trained.graphdefs),
                trained.params,
                first,
                {k: jnp.asarray(v) for k, v in base.items()},
                fit_steps,
            )  # fmt: skip
        )
    codes = {k: np.repeat(v, len(rows), 0).astype(np.float32) for k, v in base.items()}
    frames = {
        k: np.stack([item[k] for item in items]).astype(np.float32) for k in _render_keys(trained)
    }
    if pose_blink is not None:
        pose, blink = pose_blink
        frames["c2w"] = posed_cameras(trained, np.asarray(pose, np.float32)[: len(rows)])
        frames["blink"] = np.clip(np.asarray(blink, np.float32)[: len(rows)], 0.0, 1.0)
    pred = render_frames(trained, frames, codes, batch=int(trained.config.eval.batch_size))
    truth = np.stack([item["image"] for item in items])
    scored = np.ones(len(rows), bool)
    if fitted and len(rows) > 1:
        scored[0] = False
    landmarks = np.stack([item["landmarks"] for item in items]).astype(np.float32)
    audio = sequence_audio(trained.config, source, rows)
    return HeldOut(rows, pred, truth, scored, audio, frames, landmarks, codes)


def held_out_sequence(
    trained: Trained, index: int, split: str = "val"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Re-renders held-out sequence ``index`` beside its ground truth; returns (frames, audio)."""
    source, sequences = heldout_sequences(trained, split)
    if not 0 <= index < len(sequences):
        raise ValueError(f"--sequence {index}: the run holds out {len(sequences)} sequences")
    held = render_heldout(trained, source, sequences[index])
    return np.concatenate([held.pred, held.truth], axis=2), held.audio


def write_heldout_video(trained: Trained, index: int, path: str | pathlib.Path) -> pathlib.Path:
    """Held-out sequence ``index`` (prediction | truth) as an mp4 with its audio."""
    from jaxhead.data.media import write_video

    frames, audio = held_out_sequence(trained, index)
    return write_video(path, frames, float(trained.config.data.fps), audio)


def sequence_audio(config, source, rows) -> np.ndarray | None:
    """The 16 kHz audio of held-out ``rows`` (one continuous sequence), frame 0 at sample 0."""
    module = stage.frames_module(config.data)
    fps = float(config.data.fps)
    first, count = int(rows[0]), len(rows)
    for track_rows, samples, numbers in module.audio_tracks(config.data, source):
        where = np.nonzero(np.asarray(track_rows) == first)[0]
        if len(where):
            start = int(round(int(numbers[where[0]]) / fps * SAMPLE_RATE))
            stop = start + int(round(count / fps * SAMPLE_RATE))
            return np.asarray(samples[start:stop], np.float32)
    return None


def load_driving_audio(path: str | pathlib.Path) -> np.ndarray:
    audio, _ = load_audio(path, SAMPLE_RATE)
    return audio


# --- evaluation ---------------------------------------------------------------------------------

NO_FACE_MESH = "no face-mesh environment configured"
# Face Mesh indices: inner-lip midpoints (mouth opening) and the outer eye corners.
INNER_LIP_UPPER, INNER_LIP_LOWER = 13, 14
EYE_CORNERS = (33, 263)
FACE_MESH_MIN_SIDE = 256  # frames are upscaled to at least this side before Face Mesh


class FaceMeshUnavailable(RuntimeError):
    """No MediaPipe Face Mesh could be run; the message says why."""


def face_mesh(frames: np.ndarray, mediapipe_python: str | None = None) -> np.ndarray:
    """``[T, 478, 3]`` MediaPipe Face Mesh points of ``[T, H, W, 3]`` frames in [0, 1], in pixels
    of those frames (NaN where no face was found).

    Runs :mod:`jaxhead.preprocess.mediapipe_worker` in-process when MediaPipe imports here, else
    under ``mediapipe_python`` / ``$JAXHEAD_MEDIAPIPE_PYTHON``. Small frames are upscaled (bicubic)
    to ``FACE_MESH_MIN_SIDE`` first and the points scaled back. Raises `FaceMeshUnavailable`.
    """
    import cv2

    try:
        from jaxhead.preprocess import pipeline as preprocess_pipeline
    except ImportError as error:  # the preprocessing package is not installed
        raise FaceMeshUnavailable(f"{NO_FACE_MESH} ({error})") from error
    frames = np.asarray(frames, np.float32)
    height, width = frames.shape[1:3]
    factor = max(1, math.ceil(FACE_MESH_MIN_SIDE / min(height, width)))
    with tempfile.TemporaryDirectory(prefix="jaxhead-facemesh-") as tmp:
        folder = pathlib.Path(tmp) / "frames"
        folder.mkdir()
        for i, frame in enumerate(frames):
            rgb = np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)
            if factor > 1:
                rgb = cv2.resize(
                    rgb, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC
                )
            cv2.imwrite(
                os.fspath(folder / f"{i}.jpg"),
                cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 98],
            )
        out = pathlib.Path(tmp) / "mesh.npz"
        try:
            preprocess_pipeline.run_mediapipe(
                folder, out, pathlib.Path(tmp) / "segmentation", mediapipe_python
            )
        except Exception as error:  # noqa: BLE001 - any failure: the metric is not computed
            raise FaceMeshUnavailable(f"{NO_FACE_MESH} ({str(error).splitlines()[0]})") from error
        with np.load(out) as data:
            points = np.asarray(data["landmarks"], np.float32)
            found = np.asarray(data["found"], bool)
    points = points / factor
    points[~found] = np.nan
    return points


def _not_computed(metric: str, reason: str) -> dict:
    from jaxhead.eval.report import not_computed

    return not_computed(metric, reason)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """``[T]`` inner-lip opening over the inter-ocular distance of Face Mesh points."""
    points = np.asarray(points, np.float64)[..., :2]
    gap = np.linalg.norm(points[:, INNER_LIP_UPPER] - points[:, INNER_LIP_LOWER], axis=-1)
    iod = np.linalg.norm(points[:, EYE_CORNERS[0]] - points[:, EYE_CORNERS[1]], axis=-1)
    return gap / np.maximum(iod, 1e-9)


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames whose values are NaN (frames without a face)."""
    values = np.array(values, np.float64)
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.all():
        raise ValueError("no frame has a face")
    if bad.any():
        t = np.arange(len(values))
        flat = values.reshape(len(values), -1)
        for c in range(flat.shape[1]):
            flat[bad, c] = np.interp(t[bad], t[~bad], flat[~bad, c])
        values = flat.reshape(values.shape)
    return values


def _sync_info(workdir: pathlib.Path) -> dict:
    from jaxhead.sync.stage import MODEL_FILE

    return json.loads((workdir / MODEL_FILE).read_text())


def sync_scores(
    encoder, info: dict, points: np.ndarray, audio: np.ndarray, fps: float, name: str
) -> dict:
    """Our sync stage's SyncNet-protocol offset / confidence of one clip's Face Mesh mouth."""
    from jaxhead.sync.data import FEATURE_RATES, MEDIAPIPE_MOUTH, clip_from_arrays

    if info["features"] not in FEATURE_RATES:
        raise ValueError(f"the sync stage reads {info['features']} files, not raw audio")
    mouth = _fill_gaps(np.asarray(points)[:, list(MEDIAPIPE_MOUTH), :2])
    clip = clip_from_arrays(
        name, mouth, audio, float(info["fps"]), landmark_fps=fps,
        features=info["features"], window=int(info["window"]),
    )  # fmt: skip
    if clip.num_valid < 1:
        raise ValueError(f"{name}: too short for the sync window")
    score = encoder.score(clip)
    return {"offset": score["offset"], "confidence": score["confidence"]}


def _mean_over(records: list[dict], key: str, weights: list[int]) -> float:
    values = np.array([r[key] for r in records], np.float64)
    return float(np.average(values, weights=np.asarray(weights, np.float64)))


def evaluate_split(
    trained: Trained,
    split: str,
    *,
    mediapipe_python: str | None = None,
    sync_workdir: str | None = None,
    lpips: dict | None = None,
    syncnet_weights: str | None = None,
    pose_from: str = "source",
    gpvae_workdir: str | None = None,
    seed: int = 0,
    traces: dict | None = None,
) -> dict:
    """The metric suite on one held-out split (module docstring); ``traces`` receives the
    per-frame series the plots show."""
    from jaxhead.eval import fid as fid_lib
    from jaxhead.eval import image as image_lib
    from jaxhead.eval import landmarks as lmd_lib
    from jaxhead.eval import lpips as lpips_lib
    from jaxhead.gpvae import metrics as gp_metrics

    config = trained.config
    fps = float(config.data.fps)
    source, sequences = heldout_sequences(trained, split)
    pose_blinks = [None] * len(sequences)
    generated = []
    if pose_from == "gpvae":
        if not gpvae_workdir:
            raise ValueError("pose_from='gpvae' needs gpvae_workdir (a trained GP-VAE run)")
        from jaxhead.gpvae.stage import generate_pose_blink

        for j, rows in enumerate(sequences):
            audio = sequence_audio(config, source, rows)
            if audio is None:
                raise ValueError(f"split {split!r}: no audio track to drive the GP-VAE with")
            pose, blink = generate_pose_blink(
                gpvae_workdir, audio=audio, num_frames=len(rows), fps=fps, seed=seed + j
            )
            pose_blinks[j] = (pose, blink)
            generated.append(pose)

    held = []
    for rows, pb in zip(sequences, pose_blinks, strict=True):
        held.append(render_heldout(trained, source, rows, pose_blink=pb))
    pred = np.concatenate([h.pred[h.scored] for h in held])
    truth = np.concatenate([h.truth[h.scored] for h in held])
    result: dict[str, Any] = {"pose": pose_from, "sequences": len(held)}
    if traces is not None:
        traces["fps"] = fps

    if pose_from == "source":
        # Self-reconstruction: the held-out frames with their true audio, pose and blinks.
        scores = image_lib.image_metrics(pred, truth)
        per_frame = np.asarray(image_lib.psnr(pred, truth))
        result.update(psnr=scores["psnr"], ssim=scores["ssim"], frames=scores["frames"])
        # The lip region of paper 000 table 2, as the stage's own evaluation scores it.
        result.update(
            stage.lip_region_summary(
                [
                    [stage.lip_region_frame(h.pred[t], h.truth[t], h.landmarks[t])
                     for t in np.nonzero(h.scored)[0]]
                    for h in held
                ]
            )
        )  # fmt: skip
        if traces is not None:
            traces["psnr"] = per_frame
        lpips = lpips or {}
        if lpips.get("trunk"):
            result["lpips"] = lpips_lib.compute_lpips(
                pred, truth, lpips.get("net", "alex"), lpips["trunk"], lpips.get("lin")
            )
        else:  # the long how-to of jaxhead.eval.lpips.HOW_TO_GET is in docs/video.md
            result["lpips"] = _not_computed(
                "lpips", "weights not configured (--lpips_trunk [--lpips_lin], docs/video.md)"
            )
        result["fid"] = fid_lib.compute_fid(pred, truth)
    else:
        result["frames"] = int(len(pred))
        truth_pose = [
            head_poses(trained, np.stack([source[int(r)]["c2w"] for r in h.rows])) for h in held
        ]
        result.update(gp_metrics.pose_distances(generated, truth_pose))
        result["note"] = (
            "pose and blinks generated from the held-out audio; D-Rot / D-Pos against the "
            "tracked pose (scene units); image metrics need the true pose and are not computed"
        )

    # Blinks per second of the blink signal the frames were rendered with, and of the truth.
    truth_blinks = [np.stack([source[int(r)]["blink"] for r in h.rows]) for h in held]
    duration = sum(len(h.rows) for h in held) / fps

    def rate(signals):
        return sum(len(gp_metrics.detect_blinks(s, fps)) for s in signals) / duration

    blinks = {
        "driving_signal": rate([h.frames["blink"] for h in held]),
        "truth_signal": rate(truth_blinks),
    }
    if traces is not None:
        traces["blink_driving"] = np.concatenate([h.frames["blink"] for h in held])
        traces["blink_truth"] = np.concatenate(truth_blinks)

    # Face Mesh: LMD, mouth opening, blinks from the eye-aspect ratio, our sync model.
    try:
        pred_points = [face_mesh(h.pred, mediapipe_python) for h in held]
        truth_points = [face_mesh(h.truth, mediapipe_python) for h in held]
    except FaceMeshUnavailable as error:
        reason = str(error)
        result["lmd"] = _not_computed("lmd_px", reason)
        blinks["rendered_ear"] = _not_computed("blinks_per_second", reason)
        result["sync"] = _not_computed("confidence", reason)
    else:
        result["lmd"] = _lmd(held, pred_points, truth_points, pose_from, lmd_lib)
        blinks.update(_ear_blinks(held, pred_points, truth_points, fps, gp_metrics))
        result["sync"] = _sync(config, held, pred_points, truth_points, sync_workdir, fps, split)
        if traces is not None:
            traces["mouth_pred"] = np.concatenate([mouth_opening(p) for p in pred_points])
            traces["mouth_truth"] = np.concatenate([mouth_opening(p) for p in truth_points])
    result["blinks_per_second"] = blinks
    result["syncnet"] = (
        _not_computed(
            "syncnet_confidence",
            "syncnet_python's front-end (S3FD face crops, python_speech_features MFCCs) is not "
            "ported, so its published confidence cannot be reproduced from the weights alone",
        )
        if syncnet_weights
        else _not_computed("syncnet_confidence", "weights not configured")
    )
    return result


def _lmd(held, pred_points, truth_points, pose_from, lmd_lib) -> dict:
    if pose_from != "source":
        return _not_computed("lmd_px", "the pose is generated: landmarks are not comparable")
    pred = np.concatenate([p[h.scored] for p, h in zip(pred_points, held, strict=True)])
    truth = np.concatenate([p[h.scored] for p, h in zip(truth_points, held, strict=True)])
    ok = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(truth).all(axis=(1, 2))
    if not ok.any():
        return _not_computed("lmd_px", "Face Mesh found no face in the rendered frames")
    size = held[0].truth.shape[1:3]
    out = lmd_lib.mouth_lmd(pred[ok, :, :2], truth[ok, :, :2], size, layout="mediapipe")
    out["frames_without_face"] = int((~ok).sum())
    return out


def _ear_blinks(held, pred_points, truth_points, fps, gp_metrics) -> dict:
    from jaxhead.preprocess import landmarks as mp_landmarks

    duration = sum(len(h.rows) for h in held) / fps
    out = {}
    for name, points in (("rendered_ear", pred_points), ("truth_ear", truth_points)):
        try:
            count = 0
            for p in points:
                blink, _ = mp_landmarks.blink_from_ear(mp_landmarks.eye_aspect_ratio(p))
                count += len(gp_metrics.detect_blinks(blink, fps))
            out[name] = count / duration
        except ValueError as error:
            out[name] = _not_computed("blinks_per_second", str(error))
    return out


def _sync(config, held, pred_points, truth_points, sync_workdir, fps, split) -> dict:
    init_from = sync_workdir or (str(config.sync.init_from) if "sync" in config else "")
    if not init_from:
        return _not_computed(
            "confidence", "no sync stage (give --sync_workdir or train with config.sync.init_from)"
        )
    from jaxhead.sync.stage import load_sync_encoder

    try:
        encoder = load_sync_encoder(init_from)
        info = _sync_info(pathlib.Path(init_from).expanduser())
    except (FileNotFoundError, OSError, KeyError) as error:
        return _not_computed("confidence", str(error))
    records = {"rendered": [], "truth": []}
    weights = []
    for j, (h, pp, tp) in enumerate(zip(held, pred_points, truth_points, strict=True)):
        if h.audio is None:
            return _not_computed("confidence", "the held-out frames have no audio track")
        try:
            rendered = sync_scores(encoder, info, pp, h.audio, fps, f"{split}/{j}/rendered")
            truth = sync_scores(encoder, info, tp, h.audio, fps, f"{split}/{j}/truth")
        except ValueError as error:
            return _not_computed("confidence", str(error))
        records["rendered"].append(rendered)
        records["truth"].append(truth)
        weights.append(len(h.rows))
    out = {"sync_workdir": str(init_from), "protocol": "SyncNet offset/confidence, our encoders"}
    for name, recs in records.items():
        out[name] = {
            "confidence": _mean_over(recs, "confidence", weights),
            "offset": _mean_over(recs, "offset", weights),
            "abs_offset": float(
                np.average([abs(r["offset"]) for r in recs], weights=np.asarray(weights, float))
            ),
        }
    return out


def plot_traces(path: pathlib.Path, traces: dict, title: str) -> pathlib.Path | None:
    """Per-frame PSNR, mouth opening (rendered vs truth) and blink traces as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("psnr", "mouth", "blink") if any(x.startswith(k) for x in traces)]
    if not panels:
        return None
    fps = traces.get("fps", 25.0)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        if panel == "psnr":
            y = traces["psnr"]
            ax.plot(np.arange(len(y)) / fps, y, lw=1)
            ax.set_ylabel("PSNR (dB)")
        elif panel == "mouth":
            for key, label in (("mouth_truth", "truth"), ("mouth_pred", "rendered")):
                if key in traces:
                    y = traces[key]
                    ax.plot(np.arange(len(y)) / fps, y, lw=1, label=label)
            ax.set_ylabel("mouth opening / IOD")
            ax.legend(fontsize=7, loc="upper right")
        else:
            for key, label in (("blink_truth", "truth (data)"), ("blink_driving", "driving")):
                if key in traces:
                    y = traces[key]
                    ax.plot(np.arange(len(y)) / fps, y, lw=1, label=label)
            ax.set_ylabel("blink")
            ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds (held-out frames, concatenated)")
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def evaluate_workdir(
    workdir: str | pathlib.Path,
    splits=None,
    *,
    mediapipe_python: str | None = None,
    sync_workdir: str | None = None,
    lpips: dict | None = None,
    syncnet_weights: str | None = None,
    pose_from: str = "source",
    gpvae_workdir: str | None = None,
    seed: int = 0,
) -> dict:
    """Re-scores a NeRF run on its held-out splits; merges into ``eval.json``, writes ``eval.md``
    and ``samples/eval_<split>_traces.png``. ``splits``: default ``config.eval.splits`` (else
    ``val`` and ``val_views``). Returns the merged results plus ``"table"`` (the markdown)."""
    from jaxhead.eval.report import markdown_table, write_report

    workdir = pathlib.Path(workdir)
    trained = load_trained(workdir)
    if splits is None:
        splits = tuple(trained.config.eval.get("splits", ("val", "val_views")))
    scores = {}
    for split in splits:
        traces: dict = {}
        key = split if pose_from == "source" else f"{split}_{pose_from}_pose"
        scores[key] = evaluate_split(
            trained, split, mediapipe_python=mediapipe_python, sync_workdir=sync_workdir,
            lpips=lpips, syncnet_weights=syncnet_weights, pose_from=pose_from,
            gpvae_workdir=gpvae_workdir, seed=seed, traces=traces,
        )  # fmt: skip
        plot = plot_traces(
            workdir / "samples" / f"eval_{key}_traces.png", traces, f"{workdir.name}: {key}"
        )
        if plot is not None:
            scores[key]["plot"] = str(plot.relative_to(workdir))
    scores["step"] = trained.step
    scores["data"] = {
        "kind": str(trained.config.data.kind),
        "note": (
            "scores are on the matted head crops (white outside head + neck), docs/video.md"
            if trained.config.data.kind == "video"
            else "scores are on the rendered dataset frames"
        ),
    }
    merged = write_report(scores, workdir, title=f"Evaluation of {workdir.name}")
    table = markdown_table({k: v for k, v in merged.items() if k in scores})
    return {**merged, "table": table}
