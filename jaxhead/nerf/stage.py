"""The head-NeRF stage (paper 000 secs. 3.2-3.3) as a task of the shared loop.

Everything generic (mesh, sharding, checkpoints, resumption, metrics, non-finite guard) is the
shared loop of :mod:`jaxhead.train.loop`; this module assembles what a NeRF run is:

* **conditions** (paper 000 eq. 1; :mod:`jaxhead.nerf.conditions`): learnable codes ``C_id`` and
  ``C_al`` per identity, ``C_ill`` per sequence, ``C_ex`` per training frame
  (:class:`jaxhead.nerf.model.LatentCodes`), the lip feature ``F_lip`` (the sync stage's frozen
  audio encoder, or an AD-NeRF-style audio network over the frame's audio window) and, as
  DFA-NeRF's eye-blink conditioning (paper 001 sec. 3.5), the frame's blink signal;
* **losses** (paper 000 eqs. 2-7; :mod:`jaxhead.nerf.losses`, :mod:`jaxhead.nerf.step`):
  ``L = λ_rec (L_per + L_pho) + λ_dis L_dis + λ_v L_v`` with ``L_pho`` the masked photometric
  error of the upsampled image plus a whole-image term (the mask of eq. 5 focuses the face; the
  whole-image term keeps the background clean) and a low-resolution term on the first three
  feature channels; ``L_per`` a VGG16 perceptual loss when weights are configured, otherwise the
  documented structural fallback ``1 - SSIM``; ``L_v`` the velocity loss of eq. 7 over the
  consecutive frame pairs of each batch; ``L_dis`` is off until the disentangle stage provides
  reference codes. Two small regularisers (documented choices): the accumulated opacity is pulled
  towards the low-resolution head mask, and the codes get an L2 penalty so that the zero code is
  the "average" expression used for frames that have no code of their own.
* **evaluation** (:mod:`jaxhead.nerf.heldout`): held-out sentences (``val``) and held-out views
  (``val_views``) with the held-out protocol; the first held-out sequence beside its truth, with
  its audio, as ``samples/heldout_0.mp4``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxhead.data.media import write_video
from jaxhead.data.pipeline import make_pipeline, pair_indices
from jaxhead.nerf import conditions as cond
from jaxhead.nerf import own_sync, patches
from jaxhead.nerf.config import ADDED_KEYS
from jaxhead.nerf.heldout import (
    render_heldout,
    renders_path,
    save_grid,
    save_renders,
    score_heldout,
)
from jaxhead.nerf.perceptual import perceptual_loss_choice
from jaxhead.nerf.step import (
    Batches,
    NeRFSetup,
    Renderer,
    build_models,
    frame_keys,
    make_nerf_optimizer,
    make_render_fn,
    make_setup,
    make_train_step,
    param_dict,
)
from jaxhead.pretrained.vgg import load_vgg16
from jaxhead.train import loop
from jaxhead.train.state import TrainState
from jaxhead.train.validate import check_config
from jaxhead.train.workdir import check_workdir_path, prepare_workdir

TRAIN_COMMAND = "python scripts/train_nerf.py --config configs/voca.py --workdir {workdir}"


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A NeRF config's training data and shapes: ``setup`` / ``graphdefs``
    (:func:`jaxhead.nerf.step.make_setup`), the training ``frames`` (with F_lip when the run uses
    a sync stage), the run's F_lip source ``lip`` and what a render needs of the data (``run``)."""

    setup: NeRFSetup
    graphdefs: tuple
    frames: Any
    lip: cond.LipSource
    run: cond.RunConditions


def prepare(config: ml_collections.ConfigDict, statistics=None) -> Prepared:
    """Loads the training split (and its F_lip) of ``config``; ``statistics``: the sync
    standardisation a resumed run recorded (else computed from the training split)."""
    lip = cond.LipSource(config, statistics=statistics)
    frames = cond.load_frames(config, "train", lip)
    run = cond.RunConditions.of(frames, lip.statistics)
    setup, graphdefs = make_setup(config, run, lip)
    return Prepared(setup, graphdefs, frames, lip, run)


def code_tables(graphdefs, params) -> dict[str, np.ndarray]:
    """``{name: [rows, dim]}`` latent code tables of trained parameters."""
    codes = nnx.merge(graphdefs[1], params["codes"])
    return {name: np.asarray(table[...]) for name, table in codes.tables.items()}


def evaluate_split(
    config,
    setup,
    renderer,
    graphdefs,
    params,
    source,
    *,
    samples=None,
    video=None,
    stride=1,
    renders=None,
) -> dict:
    """The held-out protocol's scores on one split (:func:`jaxhead.nerf.heldout.score_heldout`);
    ``samples``: a PNG of the first frames beside the truth; ``video``: the first sequence beside
    its truth, with its audio, as an mp4; ``stride``: every stride-th frame of each sequence
    only (the validations during training, ``config.eval.validate_stride``); ``renders``:
    ``(path, step)``: the renders are kept there (:func:`jaxhead.nerf.heldout.save_renders`) for
    the metric suite and the held-out video of the same step."""
    tables = code_tables(graphdefs, params)
    held = [
        render_heldout(
            renderer, setup, params, tables, source, rows[::stride],
            fit_steps=int(config.eval.fit_steps), batch=int(config.eval.batch_size),
            data_kind=str(config.data.kind),
        )
        for rows in source.sequence_rows()
    ]  # fmt: skip
    if renders is not None:
        save_renders(renders[0], held, renders[1])
    if samples is not None:
        shown = [(h.pred[t], h.truth[t]) for h in held for t in range(min(2, len(h.rows)))]
        save_grid(samples, shown[:4])
    if video is not None and held:
        audio = cond.sequence_audio(config, source, held[0].rows)
        frames = np.concatenate([held[0].pred, held[0].truth], axis=2)
        write_video(video, frames, float(config.data.fps), audio)
    return score_heldout(held, getattr(source, "face_box", None), source.arrays.get("regions"))


# A field that draws the person at a mean opacity below TRANSPARENT_ALPHA after TRANSPARENT_AFTER
# steps is stuck transparent: the whole-frame MLP at mask weight 0.1 did (docs/fields.md), and so
# did a run with six mouth grids (docs/video.md); a healthy run is near 1 within a hundred steps.
# One logged step is one pair of patches, and a patch with little of the person in it can read
# low in a healthy run (2 of 229 logged steps of a french.mp4 run, never two in a row): the
# warning waits until every logged step for TRANSPARENT_WARN steps was low. Still there
# TRANSPARENT_STOP steps later, it has not recovered: the run is stopped.
TRANSPARENT_ALPHA = 0.2
TRANSPARENT_AFTER = 300
TRANSPARENT_WARN = 50
TRANSPARENT_STOP = 200

_TRANSPARENT_FIX = (
    "train again in a new workdir (or move this one away) with another --config.seed or a "
    "stronger mask term, e.g. --config.loss.mask=1.0 (docs/fields.md)"
)


def transparent_field_warning(step: int, metrics) -> str | None:
    """The warning for a field stuck transparent, else None."""
    alpha = metrics.get("person_alpha")
    if alpha is None or step < TRANSPARENT_AFTER or alpha >= TRANSPARENT_ALPHA:
        return None
    return (
        f"step {step}: the field draws the person at a mean opacity of {alpha:.2f} (1: drawn): "
        f"it is stuck transparent and will not learn the person; {_TRANSPARENT_FIX}"
    )


class TransparentFieldWatch:
    """``Task.watch`` of the NeRF stage: warns once when every logged step has found the field
    transparent (:func:`transparent_field_warning`) for :data:`TRANSPARENT_WARN` steps, and
    stops the run with :class:`jaxhead.train.loop.StoppedByWatchError` when that has lasted
    :data:`TRANSPARENT_STOP` steps (a stuck run does not come back: hours of training would
    give a frame of background). A logged step that draws the person again starts over."""

    def __init__(self, workdir: str | pathlib.Path | None = None):
        self.workdir = workdir
        self.since: int | None = None
        self.warned = False

    def __call__(self, step: int, metrics) -> str | None:
        message = transparent_field_warning(step, metrics)
        if message is None:
            if metrics.get("person_alpha") is not None:
                self.since = None
            return None
        if self.since is None:
            self.since = step
        if step - self.since >= TRANSPARENT_STOP:
            where = f" (its checkpoints are kept in {self.workdir})" if self.workdir else ""
            raise loop.StoppedByWatchError(
                f"training stopped at step {step}{where}: the field has drawn the person at a "
                f"mean opacity below {TRANSPARENT_ALPHA} since step {self.since} (now "
                f"{metrics['person_alpha']:.2f}; 1: drawn), stuck transparent; {_TRANSPARENT_FIX}"
            )
        if self.warned or step - self.since < TRANSPARENT_WARN:
            return None
        self.warned = True
        return message


def build_task(
    config: ml_collections.ConfigDict, mesh, workdir: str | pathlib.Path | None = None
) -> loop.Task:
    """The NeRF stage as a :class:`jaxhead.train.loop.Task` (``workdir`` receives samples and
    :data:`jaxhead.nerf.conditions.RUN_CONDITIONS`)."""
    recorded = cond.read_run_conditions(workdir) if workdir is not None else None
    prepared = prepare(config, statistics=recorded.statistics if recorded else None)
    setup, graphdefs, lip, run = prepared.setup, prepared.graphdefs, prepared.lip, prepared.run
    train_frames = prepared.frames
    tx = make_nerf_optimizer(config)
    weights = config.loss
    kind, message = perceptual_loss_choice(config.loss.vgg_weights)
    print(message, flush=True)  # said once per run: which perceptual loss this run uses
    constants = {}
    vgg_graphdef = None
    if kind == "vgg16":
        vgg_graphdef, constants["vgg"] = nnx.split(load_vgg16(config.loss.vgg_weights))
    if setup.full_frame:  # the static background: one replicated constant, not per frame
        constants["background"] = train_frames.background
    if setup.lip == "sync":
        print(f"F_lip: the sync stage of {lip.sync_workdir} (frozen).", flush=True)
    if setup.disentangle:
        constants["ref"] = cond.reference_codes(config, setup.code_sizes, train_frames)
        print(
            f"L_dis (weight {weights.dis}): reference codes from the extractor of "
            f"{cond.init_from(config, 'disentangle')}.",
            flush=True,
        )

    def init_fn():
        params = param_dict(*build_models(setup, config.seed))
        if setup.disentangle and bool(config.disentangle.init_codes):
            # Paper 000: the extractor's codes initialise the learnable ones.
            params["codes"]["tables"] = {k: jnp.asarray(v) for k, v in constants["ref"].items()}
        return TrainState.create(params, tx)

    repeats = None
    if int(config.data.get("blink_repeat", 1)) > 1:  # pairs in a blink come more often
        repeats = patches.blink_repeats(
            run.tracks["blink"], pair_indices(train_frames), setup.blink_threshold,
            int(config.data.blink_repeat),
        )  # fmt: skip
    pipeline = make_pipeline(
        train_frames,
        batch_size=int(config.data.batch_size),
        seed=int(config.seed),
        num_threads=int(config.data.num_threads),
        data_axis_size=mesh.shape["data"],
        repeats=repeats,
    )
    renderer = Renderer(make_render_fn(graphdefs))
    splits = tuple(config.eval.get("splits", ("val", "val_views")))

    def evaluate(state):
        params = jax.device_get(state.params)
        step = int(jax.device_get(state.step))
        results = {}
        for split in splits:
            folder = None if workdir is None else pathlib.Path(workdir) / "samples"
            results[split] = evaluate_split(
                config, setup, renderer, graphdefs, params,
                cond.load_frames(config, split, lip),
                samples=None if folder is None else folder / f"eval_{split}.png",
                # A held-out sentence beside its ground truth, with its audio.
                video=None if folder is None or split != splits[0] else folder / "heldout_0.mp4",
                renders=None if folder is None else (renders_path(workdir, split), step),
            )  # fmt: skip
        if workdir is not None:
            results["video"] = "samples/heldout_0.mp4"
        results["train_frames"] = len(train_frames)
        return results

    @functools.cache
    def first_split():
        # Read once per run: the validations and the samples all render this split.
        return cond.load_frames(config, splits[0], lip, progress=False)

    def validate(state):
        # The held-out protocol on the first held-out split, during training (the curve of
        # held-out quality against training time; config.train.eval_every).
        params = jax.device_get(state.params)
        scores = evaluate_split(
            config, setup, renderer, graphdefs, params, first_split(),
            stride=int(config.eval.get("validate_stride", 1)),
        )  # fmt: skip
        # "frames": how many held-out frames the validation scored (config.eval.validate_stride).
        return {k: float(v) for k, v in scores.items() if isinstance(v, int | float)}

    def write_samples(state, step, samples_dir):
        params = jax.device_get(state.params)
        source = first_split()
        first = source.sequence_rows()[0][:2]
        tables = code_tables(graphdefs, params)
        held = render_heldout(
            renderer, setup, params, tables, source, first, fit_steps=0, batch=2,
            data_kind=str(config.data.kind),
        )  # fmt: skip
        save_grid(
            samples_dir / f"step_{step:06d}.png", list(zip(held.pred, held.truth, strict=True))
        )

    def write_run_files(folder: pathlib.Path) -> None:
        cond.write_run_conditions(folder, run)

    return loop.Task(
        init_fn=init_fn,
        train_step=make_train_step(setup, graphdefs, tx, weights, vgg_graphdef),
        data=Batches(pipeline, frame_keys(setup)),
        evaluate=evaluate,
        write_samples=write_samples if splits else None,
        validate=validate if splits else None,
        watch=TransparentFieldWatch(workdir),
        constants=constants or None,
        write_run_files=None
        if recorded
        else functools.partial(cond.write_run_conditions, conditions=run),
    )


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
    """Trains (or resumes) the NeRF stage in ``workdir``; see ``configs/voca.py``.

    With ``config.sync.train`` and no ``config.sync.init_from`` the run's own sync stage is
    trained first into ``WORKDIR/sync`` (:mod:`jaxhead.nerf.own_sync`), once the workdir is
    known to take this run."""
    final = own_sync.resolved(config, workdir)
    if own_sync.trains_own_sync(config):
        check_config(final)
        added = {**loop.LOOP_ADDED_KEYS, **ADDED_KEYS}
        prepare_workdir(check_workdir_path(workdir), final, write=False, added=added)
        own_sync.with_own_sync(config, workdir)
    build = functools.partial(build_task, workdir=workdir)
    return loop.train(final, workdir, build, added_keys=ADDED_KEYS)
