"""Rendering a trained head NeRF into videos: new speech, held-out sequences, novel views, swaps.

Library behind ``scripts/render.py``. Every mode produces ``[T, H, W, 3]`` frames plus the audio
to mux in; :func:`jaxhead.data.media.write_video` writes the mp4.

* **drive** (``--audio``): a trained identity speaks new audio (any file PyAV decodes, resampled to
  16 kHz). The audio-feature windows come from the same log-mel front-end as training; head pose
  and blinks are replayed from the identity's training sequences (ping-pong, as AD-NeRF replays
  its pose track) unless a static camera or a yaw sweep is asked for.
* **sequence** (``--sequence N``): re-renders held-out sentence N with its own audio, pose and
  blinks, side by side with the ground truth.
* **yaw sweep** (``--yaw-sweep DEG``): the camera orbits from -DEG to +DEG (paper 000 fig. 6).
* **swap** (``--swap-expression-from ID``): identity A (``--identity``) with the expression of
  identity B: B's expression codes, audio and blinks, A's identity, albedo and illumination codes.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from flax import nnx

from jaxhead.audio import spectral
from jaxhead.audio.io import SAMPLE_RATE, load_audio
from jaxhead.data import head_model, raster, voca_frames
from jaxhead.nerf import stage
from jaxhead.train.checkpoint import Checkpointer
from jaxhead.train.optim import make_optimizer
from jaxhead.train.state import TrainState


@dataclasses.dataclass
class Trained:
    """A trained NeRF run loaded from its workdir."""

    config: ml_collections.ConfigDict
    setup: stage.NeRFSetup
    graphdefs: tuple
    params: dict
    train_frames: voca_frames.CachedFrames
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
            f"`python scripts/train_nerf.py --config configs/voca.py --workdir {workdir}`."
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


def audio_windows(config, audio: np.ndarray, num_frames: int | None = None) -> np.ndarray:
    """``[T, window, 80]`` log-mel windows of a 16 kHz waveform at ``config.data.fps``."""
    fps = float(config.data.fps)
    if num_frames is None:
        num_frames = int(np.floor(len(audio) / SAMPLE_RATE * fps))
    feats = jax.jit(spectral.log_mel)(jnp.asarray(audio))
    return np.asarray(
        spectral.window_features(
            feats, num_frames, fps, voca_frames.LOGMEL_RATE, int(config.data.audio_window)
        )
    )


def _ping_pong(rows: np.ndarray, count: int) -> np.ndarray:
    cycle = np.concatenate([rows, rows[::-1]]) if len(rows) > 1 else rows
    return cycle[np.arange(count) % len(cycle)]


def _identity_rows(trained: Trained, identity: int) -> np.ndarray:
    rows = np.nonzero(trained.train_frames.arrays["identity"] == identity)[0]
    if len(rows) == 0:
        raise ValueError(
            f"identity {identity} is not in this run (it has "
            f"{trained.train_frames.num_identities} identities: 0..."
            f"{trained.train_frames.num_identities - 1})"
        )
    first_sequence = trained.train_frames.arrays["sequence"][rows[0]]
    return rows[trained.train_frames.arrays["sequence"][rows] == first_sequence]


def render_frames(trained: Trained, frames: dict, codes: dict, batch: int = 8) -> np.ndarray:
    """Renders ``frames`` (stacked arrays with c2w, intrinsics, audio, blink) with ``codes``."""
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


def _lip_of(source, rows: np.ndarray) -> dict:
    """``{"lip": [T, D]}`` when ``source`` carries the sync stage's F_lip, else ``{}``."""
    return {"lip": source.lip[rows]} if isinstance(source, stage.LipFrames) else {}


def _codes_for_rows(trained: Trained, rows: np.ndarray, identity: int, ex_rows=None) -> dict:
    tables = trained.tables
    arrays = trained.train_frames.arrays
    own = _identity_rows(trained, identity)
    seq_index = trained.train_frames[int(own[0])]["sequence_index"]
    codes = {}
    for name, table in tables.items():
        if name in ("id", "al"):
            codes[name] = np.repeat(table[identity][None], len(rows), 0)
        elif name == "ill":
            codes[name] = np.repeat(table[int(seq_index)][None], len(rows), 0)
        elif name == "ex":
            # No own code: the mean training expression (as stage.heldout_codes).
            mean = np.repeat(table.mean(0, keepdims=True), len(rows), 0)
            codes[name] = table[ex_rows] if ex_rows is not None else mean
    del arrays
    return {k: v.astype(np.float32) for k, v in codes.items()}


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
    count = int(np.floor(len(audio) / SAMPLE_RATE * float(trained.config.data.fps)))
    rows = _ping_pong(_identity_rows(trained, identity), count)
    arrays = trained.train_frames.arrays
    frames = {
        **stage.audio_conditions(trained.config, audio, count),
        "blink": arrays["blink"][rows].astype(np.float32),
        "intrinsics": arrays["intrinsics"][rows].astype(np.float32),
        "c2w": arrays["c2w"][rows].astype(np.float32),
    }
    distance = float(np.median(np.linalg.norm(arrays["c2w"][:, :3, 3], axis=-1)))
    if yaw_sweep or static_pose or pose_blink is not None:
        yaws = np.linspace(-yaw_sweep, yaw_sweep, count) if yaw_sweep else np.zeros(count)
        frames["c2w"] = raster.orbit_cameras(yaws, 0.0, distance).astype(np.float32)
    if pose_blink is not None:
        pose, blink = (np.asarray(x, np.float32) for x in pose_blink)
        if len(pose) < count or len(blink) < count or pose.shape[-1] != 6:
            raise ValueError(
                f"pose/blink must cover the {count} frames of the audio as [T, 6] and [T]; got "
                f"{pose.shape} and {blink.shape}"
            )
        frames["c2w"] = np.stack(
            [
                head_model.camera_in_head_frame(c2w, p[:3], p[3:])
                for c2w, p in zip(frames["c2w"], pose[:count], strict=True)
            ]
        ).astype(np.float32)
        frames["blink"] = np.clip(blink[:count], 0.0, 1.0)
    return render_frames(trained, frames, _codes_for_rows(trained, rows, identity))


def swap_expression(trained: Trained, identity: int, source_identity: int) -> np.ndarray:
    """Identity ``identity`` with the expression (ex codes, audio, blinks) of another identity."""
    rows = _identity_rows(trained, source_identity)
    arrays = trained.train_frames.arrays
    frames = {
        "audio": arrays["audio"][rows],
        **_lip_of(trained.train_frames, rows),
        "blink": arrays["blink"][rows],
        "intrinsics": arrays["intrinsics"][rows],
        "c2w": arrays["c2w"][rows],
    }
    source = render_frames(trained, frames, _codes_for_rows(trained, rows, source_identity, rows))
    swapped = render_frames(trained, frames, _codes_for_rows(trained, rows, identity, rows))
    return np.concatenate([source, swapped], axis=2)


def held_out_sequence(trained: Trained, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-renders held-out sentence ``index`` beside its ground truth; returns (frames, audio)."""
    source = stage.load_frames(trained.config, "val", progress=False)
    sequences = source.sequence_rows()
    if not 0 <= index < len(sequences):
        raise ValueError(f"--sequence {index}: the run holds out {len(sequences)} sentences")
    rows = sequences[index]
    identity = int(source.arrays["identity"][rows[0]])
    frames = {k: source.arrays[k][rows] for k in ("audio", "blink", "intrinsics", "c2w")}
    frames = {k: v.astype(np.float32) for k, v in {**frames, **_lip_of(source, rows)}.items()}
    codes = _codes_for_rows(trained, rows, identity)
    keys = stage.frame_keys(trained.setup)
    first = {k: jnp.asarray(np.stack([source[int(rows[0])][k]])) for k in keys}
    if "ill" in codes and int(trained.config.eval.fit_steps) > 0:
        fitted = stage.fit_illumination(
            stage.render_fn(trained.graphdefs), trained.params, first,
            {k: jnp.asarray(v[:1]) for k, v in codes.items()}, int(trained.config.eval.fit_steps),
        )  # fmt: skip
        codes["ill"] = np.repeat(np.asarray(fitted), len(rows), 0)
    pred = render_frames(trained, frames, codes)
    truth = source.arrays["image"][rows].astype(np.float32) / 255.0
    # The sentence's audio is what the audio windows were computed from: rebuild the waveform.
    return np.concatenate([pred, truth], axis=2), _sequence_audio(trained, source, rows)


def write_heldout_video(trained: Trained, index: int, path: str | pathlib.Path) -> pathlib.Path:
    """Held-out sentence ``index`` (prediction | truth) as an mp4 with the sentence's audio."""
    from jaxhead.data.media import write_video

    frames, audio = held_out_sequence(trained, index)
    return write_video(path, frames, float(trained.config.data.fps), audio)


def _sequence_audio(trained: Trained, source, rows) -> np.ndarray | None:
    from jaxhead.data.voca import load_voca

    root = voca_frames.dataset_root(trained.config.data, progress=False)
    voca = load_voca(root)
    identity = int(source.arrays["identity"][rows[0]])
    seq_id = int(source.arrays["sequence"][rows[0]])
    subject = voca_frames.selected_subjects(voca, trained.config.data)[identity]
    for sentence in voca.sentences(subject):
        if voca_frames.sequence_id(subject, sentence) == seq_id:
            return voca.audio(subject, sentence)
    return None


def load_driving_audio(path: str | pathlib.Path) -> np.ndarray:
    audio, _ = load_audio(path, SAMPLE_RATE)
    return audio


def evaluate_workdir(workdir: str | pathlib.Path, splits=("val", "val_views")) -> dict:
    """Re-scores a NeRF run; updates ``eval.json`` and writes ``eval.md``."""
    from jaxhead.train.workdir import write_json_atomic

    workdir = pathlib.Path(workdir)
    trained = load_trained(workdir)
    scores = stage.evaluate_run(
        trained.config, trained.setup, trained.graphdefs, trained.params, workdir, splits
    )
    path = workdir / "eval.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(scores)
    results["step"] = trained.step
    write_json_atomic(path, results)
    lines = ["| split | frames | PSNR (dB) | SSIM |", "|---|---|---|---|"]
    for split in splits:
        r = scores[split]
        lines.append(f"| {split} | {r['frames']} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    table = "\n".join(lines)
    (workdir / "eval.md").write_text(f"Step {trained.step}\n\n{table}\n")
    return {**results, "table": table}
