"""Rendering a trained head NeRF into videos (the library behind ``scripts/render.py``).

For VOCASET-format runs (``configs/voca.py``) and video runs (``configs/video.py``) alike. Every
mode produces ``[T, H, W, 3]`` frames plus the audio to mux in;
:func:`jaxhead.data.media.write_video` writes the mp4.

* **drive** (``--audio``): a trained identity speaks new audio (any file PyAV decodes, resampled to
  16 kHz). The audio conditioning comes from the same front-end as training
  (:meth:`jaxhead.nerf.conditions.LipSource.audio_conditions`: log-mel windows, or the sync
  stage's F_lip standardised with the run's recorded statistics); head pose and blinks are
  replayed from the identity's training frames (ping-pong, as AD-NeRF replays its pose track;
  for a video run: the video's own head motion and blinks) unless a static camera, a yaw sweep or
  a generated pose/blink (``--pose_from gpvae``) is asked for.
* **sequence** (``--sequence N``): re-renders held-out sequence N (a held-out sentence, or the
  held-out end of a video) with its own audio, pose and blinks, side by side with the truth.
* **yaw sweep** (``--yaw-sweep DEG``): the camera orbits from -DEG to +DEG (paper 000 fig. 6).
* **swap** (``--swap-expression-from ID``): identity A (``--identity``) with the expression of
  identity B: B's expression codes, audio and blinks, A's identity, albedo and illumination codes.

:func:`load_trained` reads what a render needs from the run's workdir (config, latest checkpoint,
:data:`jaxhead.nerf.conditions.RUN_CONDITIONS`): driving a run with new audio loads neither its
training split nor runs the sync encoder over it; the renderer is compiled once per loaded run.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import ml_collections
import numpy as np

from jaxhead.audio.io import SAMPLE_RATE, load_audio
from jaxhead.data import raster, video_frames
from jaxhead.data.media import write_video
from jaxhead.gpvae.generate import generate_pose_blink
from jaxhead.gpvae.readers import c2w_from_head_pose, head_pose_from_c2w
from jaxhead.nerf import conditions as cond
from jaxhead.nerf.heldout import (
    HeldOut,
    cached_render,
    heldout_codes,
    render_frames,
    render_heldout,
    render_keys,
    renders_path,
    static_frames,
)
from jaxhead.nerf.poses import (
    frontal_distance,
    head_poses,
    ping_pong,
    posed_cameras,
    recentered,
)
from jaxhead.nerf.stage import TRAIN_COMMAND, code_tables
from jaxhead.nerf.step import (
    NeRFSetup,
    Renderer,
    build_models,
    make_nerf_optimizer,
    make_render_fn,
    make_setup,
    param_dict,
)
from jaxhead.train.restore import restore_run
from jaxhead.train.state import TrainState


@dataclasses.dataclass
class Trained:
    """A trained NeRF run loaded from its workdir.

    ``run``: the training data's tracks and counts, ``lip``: the run's F_lip source (with its
    recorded statistics), ``renderer``: the run's compiled renderer.
    """

    config: ml_collections.ConfigDict
    setup: NeRFSetup
    graphdefs: tuple
    params: dict
    run: cond.RunConditions
    lip: cond.LipSource
    renderer: Renderer
    step: int
    # The run's folder: its final evaluation's renders are read from there
    # (jaxhead.nerf.heldout.cached_render); None: always render.
    workdir: pathlib.Path | None = None

    @functools.cached_property
    def tables(self) -> dict:
        return code_tables(self.graphdefs, self.params)

    @functools.cached_property
    def train_frames(self):
        """The training split with its conditioning (loaded on first use: swaps only)."""
        return cond.load_frames(self.config, "train", self.lip, progress=False)

    def load_split(self, split: str):
        """A held-out split of the run's data (with F_lip when the run uses a sync stage)."""
        return cond.load_frames(self.config, split, self.lip, progress=False)

    @property
    def distance(self) -> float:
        """The frontal world camera's distance (median over the training cameras)."""
        return frontal_distance(self.run.tracks["c2w"])

    @functools.cached_property
    def scene_scale(self) -> float | None:
        """A video run's factor on the tracker's camera translations (None: a synthetic run)."""
        if self.config.data.kind != "video":
            return None
        if self.run.scene_scale is not None:
            return self.run.scene_scale
        return video_frames.scene_scale_of(self.config.data)  # a run made before it was kept

    def cameras_of_poses(self, pose: np.ndarray) -> np.ndarray:
        """``[T, 4, 4]`` cameras of the run for head poses ``[T, 6]`` (axis-angle, translation)
        in the frame and units the GP-VAE is trained in: for a video run the head in the
        tracker's camera frame (``jaxhead.gpvae.readers.head_pose_from_c2w`` of
        ``scripts/preprocess.py``'s cameras), for a synthetic run the head in front of the
        frontal world camera at :attr:`distance`."""
        pose = np.asarray(pose, np.float32)
        if self.scene_scale is None:
            return posed_cameras(pose, self.distance)
        c2w = c2w_from_head_pose(pose)
        c2w[:, :3, 3] *= self.scene_scale
        return c2w.astype(np.float32)

    def poses_of_cameras(self, c2w: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`cameras_of_poses`: ``[T, 6]`` head poses of the run's cameras."""
        c2w = np.array(c2w, np.float64)
        if self.scene_scale is None:
            return head_poses(c2w, self.distance)
        c2w[:, :3, 3] /= self.scene_scale
        return head_pose_from_c2w(c2w).astype(np.float32)


def generated_pose_blink(
    trained: Trained,
    gpvae_workdir: str | pathlib.Path,
    audio: np.ndarray,
    num_frames: int,
    *,
    seed: int = 0,
    identity: int = 0,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    recenter_s: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Head pose ``[T, 6]`` and blink ``[T]`` generated by a GP-VAE from ``audio`` (16 kHz),
    in the frame :meth:`Trained.cameras_of_poses` renders, starting from the person's own
    frames: ``start = (c2w [M, 4, 4], blink [M])`` of the run (default: the first training
    frames of ``identity``), whose first frames are the generator's BOP, so that the generated
    head continues from where this person's head is (a relative-pose GP-VAE adds its motion to
    them).

    ``recenter_s > 0``: the generated motion slower than that many seconds is replaced by the
    person's rest pose, the mean pose of ``identity``'s training frames
    (:func:`jaxhead.nerf.poses.recentered`): the head stays where the NeRF can render it."""
    fps = float(trained.config.data.fps)
    if start is None:
        rows = identity_rows(trained, identity)[: int(np.ceil(fps))]  # a second: more than a BOP
        start = (trained.run.tracks["c2w"][rows], trained.run.tracks["blink"][rows])
    c2w, blink = start
    bop = np.concatenate(
        [trained.poses_of_cameras(c2w), np.asarray(blink, np.float32)[:, None]], -1
    )
    pose, blink = generate_pose_blink(
        gpvae_workdir, audio=audio, num_frames=num_frames, fps=fps, seed=seed, bop=bop,
        bop_fps=fps,
    )  # fmt: skip
    if recenter_s > 0:
        own = trained.run.tracks["c2w"][identity_rows(trained, identity)]
        rest = trained.poses_of_cameras(own).mean(0)
        pose = recentered(pose, rest, int(round(recenter_s * fps)))
    return pose, blink


def load_trained(workdir: str | pathlib.Path) -> Trained:
    """Loads ``config.json``, :data:`jaxhead.nerf.conditions.RUN_CONDITIONS` and the latest
    checkpoint of a NeRF workdir (runs made before the conditions file existed: their training
    split gives the same)."""
    workdir = pathlib.Path(workdir)
    command = TRAIN_COMMAND.format(workdir=workdir)
    built = {}

    def abstract_state(config):
        # The run's data counts and F_lip source: from WORKDIR/conditions.npz, or for runs made
        # before it existed from the training split.
        run = cond.read_run_conditions(workdir)
        lip = cond.LipSource(config, statistics=None if run is None else run.statistics)
        if run is None:
            train_frames = cond.load_frames(config, "train", lip, progress=False)
            run = cond.RunConditions.of(train_frames, lip.statistics)
        setup, graphdefs = make_setup(config, run, lip)
        built.update(run=run, lip=lip, setup=setup, graphdefs=graphdefs)
        tx = make_nerf_optimizer(config)
        return jax.eval_shape(
            lambda: TrainState.create(param_dict(*build_models(setup, config.seed)), tx)
        )

    restored = restore_run(workdir, "NeRF", command, abstract_state)
    params = jax.device_get(restored.state.params)
    renderer = Renderer(make_render_fn(built["graphdefs"]))
    return Trained(
        restored.config, built["setup"], built["graphdefs"], params, built["run"], built["lip"],
        renderer, restored.step, workdir,
    )  # fmt: skip


def num_audio_frames(config, audio: np.ndarray) -> int:
    """Video frames at ``config.data.fps`` that a 16 kHz waveform spans."""
    return int(np.floor(len(audio) / SAMPLE_RATE * float(config.data.fps)))


def identity_rows(trained: Trained, identity: int) -> np.ndarray:
    """The training rows of ``identity``'s first sequence."""
    tracks = trained.run.tracks
    rows = np.nonzero(tracks["identity"] == identity)[0]
    if len(rows) == 0:
        raise ValueError(
            f"identity {identity} is not in this run (it has {trained.run.num_identities} "
            f"identities: 0...{trained.run.num_identities - 1})"
        )
    first_sequence = tracks["sequence"][rows[0]]
    return rows[tracks["sequence"][rows] == first_sequence]


def render(trained: Trained, frames: dict, codes: dict, batch: int = 8) -> np.ndarray:
    """Renders ``frames`` (stacked c2w, intrinsics, blink, audio or lip) with ``codes``."""
    return render_frames(trained.renderer, trained.params, frames, codes, batch, progress=True)


def codes_for_rows(trained: Trained, rows: np.ndarray, identity: int, ex_rows=None) -> dict:
    """``[len(rows), dim]`` codes of ``identity``: the held-out convention (no ``ex`` of its own)
    with the illumination of the identity's first training sequence; ``ex_rows``: training rows
    whose expression codes to use instead."""
    tables = trained.tables
    own = identity_rows(trained, identity)
    base = heldout_codes(trained.setup, tables, identity)
    codes = {k: np.repeat(v, len(rows), 0) for k, v in base.items()}
    if "ill" in tables:
        seq_index = int(trained.run.tracks["sequence_index"][int(own[0])])
        codes["ill"] = np.repeat(tables["ill"][seq_index][None], len(rows), 0)
    if "ex" in tables and ex_rows is not None:
        codes["ex"] = tables["ex"][ex_rows]
    return {k: np.asarray(v, np.float32) for k, v in codes.items()}


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
    the GP-VAE); the pose moves the head in front of the frontal world camera, i.e. the camera in
    the head frame (AD-NeRF's convention).
    """
    count = num_audio_frames(trained.config, audio)
    if count < 1:
        raise ValueError("the driving audio is shorter than one video frame")
    rows = ping_pong(identity_rows(trained, identity), count)
    tracks = trained.run.tracks
    frames = {
        **trained.lip.audio_conditions(audio, count),
        "blink": tracks["blink"][rows].astype(np.float32),
        "intrinsics": tracks["intrinsics"][rows].astype(np.float32),
        "c2w": tracks["c2w"][rows].astype(np.float32),
    }
    if trained.setup.full_frame:  # the static background, one view for every frame
        background = np.asarray(trained.run.background, np.float32) / 255.0
        frames["background"] = np.broadcast_to(background, (count,) + background.shape)
    if yaw_sweep or static_pose:
        yaws = np.linspace(-yaw_sweep, yaw_sweep, count) if yaw_sweep else np.zeros(count)
        frames["c2w"] = raster.orbit_cameras(yaws, 0.0, trained.distance).astype(np.float32)
    if pose_blink is not None:
        pose, blink = (np.asarray(x, np.float32) for x in pose_blink)
        if len(pose) < count or len(blink) < count or pose.shape[-1] != 6:
            raise ValueError(
                f"pose/blink must cover the {count} frames of the audio as [T, 6] and [T]; got "
                f"{pose.shape} and {blink.shape}"
            )
        frames["c2w"] = trained.cameras_of_poses(pose[:count])
        frames["blink"] = np.clip(blink[:count], 0.0, 1.0)
    return render(trained, frames, codes_for_rows(trained, rows, identity))


def swap_expression(trained: Trained, identity: int, source_identity: int) -> np.ndarray:
    """Identity ``identity`` with the expression (ex codes, audio, blinks) of another identity."""
    rows = identity_rows(trained, source_identity)
    source = trained.train_frames
    frames = {k: np.stack([source[int(r)][k] for r in rows]) for k in render_keys(trained.setup)}
    frames.update(static_frames(trained.setup, source, len(rows)))
    ours = render(trained, frames, codes_for_rows(trained, rows, source_identity, rows))
    swapped = render(trained, frames, codes_for_rows(trained, rows, identity, rows))
    return np.concatenate([ours, swapped], axis=2)


def heldout_sequences(trained: Trained, split: str = "val"):
    """``(source, [rows of each held-out sequence])`` of a split."""
    source = trained.load_split(split)
    return source, source.sequence_rows()


def render_sequence(
    trained: Trained, source, rows, replace: dict | None = None, split: str | None = None
) -> HeldOut:
    """One held-out sequence rendered with the held-out protocol
    (:func:`jaxhead.nerf.heldout.render_heldout`). With ``split`` and nothing replaced, the
    frames the run's final evaluation rendered at this step are read instead of rendered again
    (:func:`jaxhead.nerf.heldout.cached_render`)."""
    config = trained.config
    cached = None
    if replace is None and split is not None and trained.workdir is not None:
        cached = cached_render(renders_path(trained.workdir, split), trained.step, rows)
    return render_heldout(
        trained.renderer, trained.setup, trained.params, trained.tables, source, rows,
        fit_steps=int(config.eval.fit_steps), batch=int(config.eval.batch_size),
        data_kind=str(config.data.kind), replace=replace, cached=cached,
    )  # fmt: skip


def held_out_sequence(
    trained: Trained, index: int, split: str = "val"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Re-renders held-out sequence ``index`` beside its ground truth; returns (frames, audio)."""
    source, sequences = heldout_sequences(trained, split)
    if not 0 <= index < len(sequences):
        raise ValueError(f"--sequence {index}: the run holds out {len(sequences)} sequences")
    held = render_sequence(trained, source, sequences[index], split=split)
    audio = cond.sequence_audio(trained.config, source, held.rows)
    return np.concatenate([held.pred, held.truth], axis=2), audio


def write_heldout_video(trained: Trained, index: int, path: str | pathlib.Path) -> pathlib.Path:
    """Held-out sequence ``index`` (prediction | truth) as an mp4 with its audio."""
    frames, audio = held_out_sequence(trained, index)
    return write_video(path, frames, float(trained.config.data.fps), audio)


def load_driving_audio(path: str | pathlib.Path) -> np.ndarray:
    audio, _ = load_audio(path, SAMPLE_RATE)
    return audio
