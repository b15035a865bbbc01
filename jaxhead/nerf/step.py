"""The NeRF stage's compiled functions: the train step and the renderer (paper 000 secs. 3.2-3.3).

* :class:`NeRFSetup`: the static shapes the step closes over; :func:`build_models` makes the
  modules (:class:`jaxhead.nerf.model.HeadNeRF` and the latent code tables);
* :func:`make_train_step`: ``train_step(state, batch[, constants]) -> (state, metrics)`` with
  ``L = λ_rec (L_per + L_pho) + λ_dis L_dis + λ_v L_v`` (paper 000 eq. 2; the terms are
  :mod:`jaxhead.nerf.losses`; a grid field may add ``loss.grid_tv`` times
  :meth:`jaxhead.nerf.field.HeadField.grid_smoothness`), compiled by the shared loop with
  explicit shardings;
* :class:`Renderer`: the render function and the held-out illumination fit, each compiled once
  per run with the parameters as arguments (rendering any number of sequences or drives of the
  same batch shape traces once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxhead.eval.image import psnr_from_mse
from jaxhead.nerf import losses as nerf_losses
from jaxhead.nerf import patches
from jaxhead.nerf.conditions import LipSource, RunConditions, init_from
from jaxhead.nerf.config import POSE_FEATURES, HeadNeRFConfig
from jaxhead.nerf.model import HeadNeRF, LatentCodes
from jaxhead.nerf.render import pose_features
from jaxhead.train.optim import make_optimizer
from jaxhead.train.state import TrainState, tree_l2

BATCH_KEYS = (
    "image", "image_lr", "mask", "mask_lr", "intrinsics", "c2w", "audio", "blink", "identity",
    "sequence_index", "row",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class NeRFSetup:
    """What the stage's pure functions close over: static shapes and module graph definitions.

    ``lip``: where F_lip comes from: ``"audio_net"`` (the AD-NeRF-style audio network over each
    frame's log-mel window, trained with the NeRF), ``"sync"`` (the frozen audio encoder of the
    sync stage, ``config.sync.init_from``; frames carry a precomputed ``lip`` entry) or
    ``"none"`` (``config.model.lip_dim=0`` without a sync stage: no F_lip, the audio does not
    reach the field; paper 000 table 2's "w/o sync module").
    ``disentangle``: whether the train step adds L_dis against the extractor's reference codes.
    ``ex_dropout``: share of training frames rendered with the mean ``C_ex`` (:func:`drop_ex`).
    ``full_frame``: frames are whole video frames composited over their static background
    (``config.data.frame="full"``): the train step's ``constants["background"]``, the
    renderer's ``frames["background"]``.
    ``patch``: ``(P, mouth, eyes)``: train on ``P x P`` patches of the feature map, centred on
    the mouth / the eyes with those probabilities (:mod:`jaxhead.nerf.patches`); ``P = 0``: whole
    frames. ``blink_threshold``: a pair whose blink value reaches it is in a blink and centres
    its patch on the eyes whenever not on the mouth (:func:`jaxhead.nerf.patches.blink_threshold`
    of the training frames; ``inf``: none).
    """

    model_config: HeadNeRFConfig
    code_sizes: dict
    num_train_frames: int
    seed: int
    lip: str = "audio_net"
    disentangle: bool = False
    ex_dropout: float = 0.0
    full_frame: bool = False
    patch: tuple[int, float, float] = (0, 0.0, 0.0)
    blink_threshold: float = float("inf")


def model_config_from(
    config: ml_collections.ConfigDict, audio_dim: int, sync_dim: int = 0, c2w=None
) -> HeadNeRFConfig:
    """The field's condition layout; ``sync_dim > 0``: F_lip comes from the sync stage's
    features: as they are, or with ``config.sync.projection`` through a learned linear map to
    ``config.model.lip_dim`` (zero-initialised, :class:`HeadNeRFConfig` ``lip_input_dim``).
    ``config.model.pose_condition``: the head pose is a condition too, standardised by the
    statistics of the training cameras ``c2w`` ``[N, 4, 4]`` when given
    (:func:`pose_statistics`)."""
    values = config.model.to_dict()
    codes = values.pop("codes")
    lip_dim = values.pop("lip_dim")
    values.pop("ex_dropout", None)
    with_pose = bool(values.pop("pose_condition", False))
    project = bool(sync_dim) and bool(config.sync.get("projection", False))
    condition_dims = [(name, dim) for name, dim in codes.items() if dim > 0]
    if sync_dim or lip_dim > 0:
        condition_dims.append(("lip", lip_dim if project or not sync_dim else sync_dim))
    condition_dims.append(("blink", 1))
    mouth = int(values.pop("mouth_grids", 0))
    if mouth:
        if not project:
            raise ValueError(
                f"config.model.mouth_grids={mouth} projects F_lip's sync features: it needs a "
                "sync stage with config.sync.projection=True (configs/video.py); without one, "
                "set --config.model.mouth_grids=0"
            )
        condition_dims.append(("mouth", mouth))
        values.update(mouth_grids=mouth, grid_conditions=(*values["grid_conditions"], "mouth"))
    if with_pose:
        condition_dims.append(("pose", POSE_FEATURES))
        if c2w is not None:
            mean, std = pose_statistics(c2w)
            values.update(pose_mean=mean, pose_std=std)
    values.update(
        condition_dims=tuple(condition_dims),
        audio_net=not sync_dim and lip_dim > 0,
        audio_dim=audio_dim,
        lip_input_dim=sync_dim if project else 0,
    )
    return HeadNeRFConfig.from_dict(values)


def pose_statistics(c2w, floor: float = 1e-3) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and standard deviation (at least ``floor``: entries that hardly move are not
    blown up) of :func:`jaxhead.nerf.render.pose_features` over cameras ``[N, 4, 4]``."""
    features = np.asarray(pose_features(jnp.asarray(np.asarray(c2w, np.float32))), np.float64)
    mean, std = features.mean(axis=0), np.maximum(features.std(axis=0), floor)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def make_setup(
    config: ml_collections.ConfigDict, run: RunConditions, lip: LipSource
) -> tuple[NeRFSetup, tuple]:
    """``(setup, graphdefs)`` of a NeRF config over its training data's counts (``run``) and
    its F_lip source (``lip``); from the data only the blink frames' threshold and, with
    ``config.model.pose_condition``, the pose statistics (of the recorded training frames'
    blink track and cameras, so a resumed run finds the same)."""
    sync_dim = lip.dim if lip.kind == "sync" else 0
    model_config = model_config_from(config, run.audio_dim, sync_dim, run.tracks["c2w"])
    sizes = {"id": run.num_identities, "al": run.num_identities, "ill": run.num_sequences,
             "ex": run.num_frames}  # fmt: skip
    code_sizes = {
        name: (sizes[name], int(dim)) for name, dim in config.model.codes.items() if dim > 0
    }
    setup = NeRFSetup(
        model_config, code_sizes, run.num_frames, int(config.seed),
        lip="sync" if sync_dim else ("audio_net" if model_config.audio_net else "none"),
        disentangle=bool(init_from(config, "disentangle")),
        ex_dropout=float(config.model.get("ex_dropout", 0.0)),
        full_frame=str(config.data.get("frame", "crop")) == "full",
        patch=(
            int(config.data.get("patch", 0)), float(config.data.get("patch_mouth", 0.0)),
            float(config.data.get("patch_eyes", 0.0)),
        ),
        blink_threshold=patches.blink_threshold(
            run.tracks["blink"], float(config.data.get("blink_share", 0.0)),
            float(config.data.get("blink_min", 0.0)),
        ),
    )  # fmt: skip
    if setup.patch[0] and setup.patch[0] > min(model_config.render_size):
        raise ValueError(
            f"data.patch={setup.patch[0]} is larger than the feature map "
            f"{model_config.render_size}; use a patch of at most the map's side (0: whole frames)"
        )
    nerf, codes = nnx.eval_shape(lambda: build_models(setup, config.seed))
    return setup, (nnx.graphdef(nerf), nnx.graphdef(codes))


def param_dict(nerf: HeadNeRF, codes: LatentCodes) -> dict:
    """The trained parameters of the two modules as one plain pytree."""
    return {
        "nerf": nnx.to_pure_dict(nnx.state(nerf, nnx.Param)),
        "codes": nnx.to_pure_dict(nnx.state(codes, nnx.Param)),
    }


def param_groups(params) -> dict:
    """Each parameter's optimiser group: ``"grid"`` for a grid encoding's tables (the field's
    ``tables`` and its condition grids' ``modulated_tables`` under ``nerf``), else ``"net"``
    (the latent code tables under ``codes`` too: at a grid's rate, per-frame codes memorise what
    should come from F_lip)."""

    def label(path, _):
        keys = [getattr(k, "key", None) for k in path]
        grid = keys[:1] == ["nerf"] and keys[-1] in ("tables", "modulated_tables")
        return "grid" if grid else "net"

    return jax.tree_util.tree_map_with_path(label, params)


def make_nerf_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The NeRF's optimiser: ``config.optim``, with a grid field's tables at
    ``config.optim.grid_lr_scale`` times the network's learning rate (instant-NGP and RAD-NeRF
    train the encoding at 10x the MLP's rate); one group when the field has no grid or the
    scale is 1 (runs made before the key existed)."""
    scale = float(config.optim.get("grid_lr_scale", 1.0))
    steps = int(config.train.steps)
    if config.model.get("encoding", "frequency") == "frequency" or scale == 1.0:
        return make_optimizer(config.optim, steps)
    return make_optimizer(
        config.optim, steps, labels=param_groups, scales={"grid": scale, "net": 1.0}
    )


def frame_keys(setup: NeRFSetup) -> tuple[str, ...]:
    """The keys of a frame that the train step and the renderer read."""
    return (
        BATCH_KEYS
        + (("lip",) if setup.lip == "sync" else ())
        + (("landmarks",) if setup.patch[0] else ())
    )


def build_models(setup: NeRFSetup, seed: int) -> tuple[HeadNeRF, LatentCodes]:
    rngs = nnx.Rngs(seed)
    nerf = HeadNeRF(setup.model_config, rngs=rngs)
    codes = LatentCodes(setup.code_sizes, init_std=0.0, rngs=rngs)
    return nerf, codes


def code_indices(batch: Mapping[str, jax.Array], sizes: Mapping) -> dict:
    """Which table row each code of each frame uses (paper 000: id/al per identity, ...)."""
    source = {
        "id": batch["identity"],
        "al": batch["identity"],
        "ill": batch["sequence_index"],
        "ex": batch["row"],
    }
    return {name: source[name] for name in sizes}


def drop_ex(code_values: dict, table: jax.Array, rate: float, key: jax.Array) -> dict:
    """``code_values`` with each frame's ``ex`` (``[N, dim]``) replaced, with probability
    ``rate``, by the mean of the expression table ``[rows, dim]``: the code that a held-out
    frame renders with (:func:`jaxhead.nerf.heldout.heldout_codes`). Trained this way, the field
    must draw those frames from F_lip and the other conditions, as it must on held-out audio
    (conditioning dropout; the mean receives the gradient of every dropped frame)."""
    ex = code_values["ex"]
    keep = jax.random.bernoulli(key, 1.0 - rate, (ex.shape[0], 1))
    mean = jnp.mean(table, axis=0, keepdims=True)
    return {**code_values, "ex": jnp.where(keep, ex, mean)}


def cut_patches(setup: NeRFSetup, frames: dict, pairs: int, key: jax.Array) -> dict:
    """``frames`` (``[2·pairs, ...]``, pair-major) cut to one training patch per pair
    (:mod:`jaxhead.nerf.patches`; the pair's first frame's landmarks place it, and a pair in a
    blink, ``setup.blink_threshold``, looks at the eyes whenever not at the mouth)."""
    size, mouth, eyes = setup.patch
    map_size = min(setup.model_config.render_size)
    upsample = setup.model_config.upsample
    first = frames["landmarks"].reshape((pairs, 2) + frames["landmarks"].shape[1:])[:, 0]
    blinking = frames["blink"].reshape(pairs, -1).max(axis=1) >= setup.blink_threshold
    eyes = jnp.where(blinking, 1.0 - mouth, eyes)
    corners = jax.vmap(
        lambda k, lms, e: patches.patch_corner(k, lms, map_size, size, upsample, mouth, e)
    )(jax.random.split(key, pairs), first, eyes)
    corners = jnp.repeat(corners, 2, axis=0)
    return jax.vmap(lambda f, c: patches.cut_patch(f, c, size, upsample))(frames, corners)


def conditions_for(codes: dict, batch: Mapping[str, jax.Array]) -> dict:
    """The field's conditions of a batch: codes, F_lip (``lip``, or the ``audio`` window of the
    model's audio network) and the blink signal."""
    out = dict(codes)
    if "lip" in batch:
        out["lip"] = batch["lip"].reshape(batch["lip"].shape[0], -1)
    else:
        audio = batch["audio"]
        out["audio"] = audio.reshape(audio.shape[0], -1, audio.shape[-1])
    out["blink"] = batch["blink"].reshape(-1, 1)
    return out


def make_train_step(
    setup: NeRFSetup, graphdefs, tx: optax.GradientTransformation, weights, vgg_graphdef=None
):
    """``train_step(state, batch[, constants]) -> (state, metrics)`` over pairs ``[B, 2, ...]``.

    ``constants`` (the loop's ``Task.constants``, replicated, never trained): ``{"vgg": frozen
    VGG16 parameters}`` when ``vgg_graphdef`` is given (the VGG perceptual loss; else the SSIM
    fallback) and ``{"ref": reference code tables}`` with ``setup.disentangle`` (L_dis, paper
    000 eq. 6).
    """
    nerf_def, codes_def = graphdefs

    def train_step(state: TrainState, batch: Mapping[str, jax.Array], constants=None):
        constants = constants or {}
        features_fn = None
        if vgg_graphdef is not None:
            vgg_params = constants["vgg"]
            features_fn = lambda images: nnx.merge(vgg_graphdef, vgg_params)(images)  # noqa: E731

        # The key is made inside the program: a key array made outside would be a device array
        # baked into it (a device-to-host transfer on accelerators, refused by the loop's guard).
        key = jax.random.fold_in(jax.random.key(setup.seed), state.step)
        pairs = batch["image"].shape[0]
        frames = jax.tree.map(lambda x: x.reshape((pairs * 2,) + x.shape[2:]), batch)
        if setup.full_frame:  # one replicated constant, seen by every frame
            background = constants["background"]
            frames["background"] = jnp.broadcast_to(background, (pairs * 2,) + background.shape)
        size = None
        if setup.patch[0]:
            frames = cut_patches(setup, frames, pairs, jax.random.fold_in(key, 11))
            size = (setup.patch[0], setup.patch[0])

        def loss_fn(params):
            nerf = nnx.merge(nerf_def, params["nerf"])
            codes = nnx.merge(codes_def, params["codes"])
            indices = code_indices(frames, setup.code_sizes)
            code_values = codes(indices)
            if setup.ex_dropout > 0 and "ex" in code_values:
                table, drop_key = params["codes"]["tables"]["ex"], jax.random.fold_in(key, 7)
                code_values = drop_ex(code_values, table, setup.ex_dropout, drop_key)
            cameras = {"c2w": frames["c2w"], "intrinsics": frames["intrinsics"]}
            out = nerf(
                cameras, conditions_for(code_values, frames), key, frames.get("background"), size
            )
            terms = nerf_losses.reconstruction_losses(out, frames, features_fn)
            # Paper 000 eq. 7 over each (j-1, j) pair.
            pred = out["image"].reshape((pairs, 2) + out["image"].shape[1:])
            target = frames["image"].reshape(pred.shape)
            terms["velocity"] = jnp.mean(jax.vmap(nerf_losses.velocity_loss)(pred, target))
            terms["code"] = sum(jnp.mean(jnp.square(v)) for v in code_values.values())
            tv = 0.0
            if weights.get("grid_tv", 0.0) > 0:
                terms["grid_tv"] = nerf.field.grid_smoothness(jax.random.fold_in(key, 13))
                tv = weights.grid_tv * terms["grid_tv"]
            dis = 0.0
            if setup.disentangle:
                ref = {k: jnp.take(constants["ref"][k], indices[k], axis=0) for k in indices}
                terms["dis"] = nerf_losses.disentangle_loss(
                    code_values, ref, dict.fromkeys(code_values, 1.0)
                )
                dis = weights.dis * terms["dis"]
            rec = (
                terms["pho"]
                + weights.background * terms["whole"]
                + (weights.lowres * terms["lowres"] + weights.perceptual * terms["per"])
            )
            total = (
                weights.rec * rec
                + weights.velocity * terms["velocity"]
                + weights.mask * terms["mask"]
                + weights.code * terms["code"]
                + dis
                + tv
            )
            return total, (terms, out)

        (loss, (terms, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, updates = state.apply_gradients(grads, tx)
        mse = jnp.mean(jnp.square(out["image"] - frames["image"]))
        mask = frames["mask_lr"][..., 0]
        metrics = {
            "loss": loss,
            "psnr": psnr_from_mse(mse),
            # the field's mean opacity where the person is (1: drawn; near 0: transparent)
            "person_alpha": jnp.sum(out["accumulation"] * mask) / jnp.maximum(jnp.sum(mask), 1e-6),
            **{f"loss_{k}": v for k, v in terms.items()},
        }
        metrics.update(
            l2_grads=tree_l2(grads),
            l2_params=tree_l2(new_state.params),
            l2_updates=tree_l2(updates),
        )
        return new_state, metrics

    return train_step


class Batches:
    """The grain pipeline's iterator with its state (resumable) for the shared loop."""

    def __init__(self, pipeline, keys=None):
        self._pipeline = pipeline
        self._it = iter(pipeline)
        self._keys = keys or BATCH_KEYS

    def __next__(self):
        batch = next(self._it)
        return {k: batch[k] for k in self._keys}

    def get_state(self) -> dict:
        return self._it.get_state()

    def set_state(self, state: dict) -> None:
        self._it.set_state(state)


def make_render_fn(graphdefs) -> Callable:
    """Pure ``(params, frames, code_values) -> model outputs`` (deterministic sampling); jit it
    once (:class:`Renderer`)."""
    nerf_def, _ = graphdefs

    def render(params, frames, code_values):
        nerf = nnx.merge(nerf_def, params["nerf"])
        cameras = {"c2w": frames["c2w"], "intrinsics": frames["intrinsics"]}
        return nerf(cameras, conditions_for(code_values, frames), None, frames.get("background"))

    return render


class Renderer:
    """The render function and the illumination fit of one run, each jitted once.

    ``render_fn``: :func:`make_render_fn` of the run's graphs. :meth:`fit_illumination` fits a
    sequence's ``ill`` code on one frame with the network frozen (the latent-optimisation protocol
    of GLO / NeRF-W) with Adam at ``fit_lr``; its step is compiled once and reused for every
    sequence (parameters, frame and codes are arguments, not constants of the program).
    """

    def __init__(self, render_fn: Callable, fit_lr: float = 0.05):
        self.render = jax.jit(render_fn)
        self._tx = optax.adam(fit_lr)
        tx = self._tx

        def fit_step(params, frame, codes, ill, opt_state):
            def loss(ill):
                out = render_fn(params, frame, {**codes, "ill": ill})
                return jnp.mean(jnp.square(out["image"] - frame["image"]))

            value, grad = jax.value_and_grad(loss)(ill)
            updates, opt_state = tx.update(grad, opt_state)
            return optax.apply_updates(ill, updates), opt_state, value

        self._fit_step = jax.jit(fit_step)

    def __call__(self, params, frames, code_values):
        return self.render(params, frames, code_values)

    def fit_illumination(self, params, frame, codes, steps: int) -> jax.Array:
        """``[1, dim]`` ``ill`` code fitted to ``frame`` (``[1, ...]`` arrays), starting from
        ``codes["ill"]``."""
        ill = codes["ill"]
        opt_state = self._tx.init(ill)
        for _ in range(steps):
            ill, opt_state, _ = self._fit_step(params, frame, codes, ill, opt_state)
        return ill
