"""The head-NeRF stage (paper 000 secs. 3.2-3.3): data -> model -> pure train step -> evaluation.

Everything generic (mesh, sharding, checkpoints, resumption, metrics, non-finite guard) is the
shared loop of :mod:`jaxhead.train.loop`; this module only says what a NeRF step is:

* **conditions** (paper 000 eq. 1): learnable codes ``C_id`` and ``C_al`` per identity, ``C_ill``
  per sequence, ``C_ex`` per training frame (:class:`jaxhead.nerf.model.LatentCodes`), the lip
  feature ``F_lip`` from an AD-NeRF-style audio network over the frame's audio-feature window
  (until a sync module is loaded) and, as DFA-NeRF's eye-blink conditioning (paper 001 sec. 3.5),
  the frame's blink signal;
* **losses** (paper 000 eqs. 2-7): ``L = λ_rec (L_per + L_pho) + λ_dis L_dis + λ_v L_v`` with
  ``L_pho`` the masked photometric error of the upsampled image plus a whole-image term (the mask
  of eq. 5 focuses the face; the whole-image term keeps the background clean) and a low-resolution
  term on the first three feature channels; ``L_per`` a VGG16 perceptual loss when weights are
  configured, otherwise the documented structural fallback ``1 - SSIM``; ``L_v`` the velocity loss
  of eq. 7 over the consecutive frame pairs of each batch; ``L_dis`` is off until the disentangle
  stage provides reference codes. Two small regularisers (documented choices): the accumulated
  opacity is pulled towards the low-resolution head mask, and the codes get an L2 penalty so that
  the zero code is the "average" expression used for frames that have no code of their own.
* **evaluation**: held-out sentences (``val``) and held-out views (``val_views``); frames of a
  held-out sentence have no ``C_ex`` (zero is used: the mouth follows the audio) and their
  sentence has no ``C_ill``: it is fitted on the sentence's first frame with the network frozen
  (the latent-optimisation protocol of GLO / NeRF-W), and that frame is excluded from the scores.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxhead.data import voca_frames
from jaxhead.data.pipeline import make_pipeline
from jaxhead.nerf import losses as nerf_losses
from jaxhead.nerf.model import HeadNeRF, HeadNeRFConfig, LatentCodes
from jaxhead.nerf.perceptual import perceptual_loss, perceptual_loss_choice, ssim
from jaxhead.nerf.vgg import load_vgg16
from jaxhead.train import loop
from jaxhead.train.optim import make_optimizer
from jaxhead.train.state import TrainState, tree_l2

PyTree = Any


def loss_config() -> ml_collections.ConfigDict:
    """Weights of the loss terms (paper 000 eq. 2 defaults: λ_rec=1, λ_dis=5, λ_v=10)."""
    return ml_collections.ConfigDict(
        {
            "rec": 1.0,
            "dis": 5.0,
            "velocity": 10.0,
            "perceptual": 0.1,  # weight of L_per inside L_rec (VGG or the SSIM fallback)
            "lowres": 1.0,  # low-resolution RGB photometric term
            "background": 1.0,  # whole-image photometric term
            "mask": 0.1,  # accumulation vs head mask
            "code": 1e-3,  # L2 on the latent codes
            "vgg_weights": "",  # torchvision vgg16 state dict (.pth / .safetensors / .npz)
        }
    )


def psnr(mse: jax.Array) -> jax.Array:
    """Peak signal-to-noise ratio in dB of images in [0, 1]."""
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


@dataclasses.dataclass(frozen=True)
class NeRFSetup:
    """What the stage's pure functions close over: static shapes and module graph definitions."""

    model_config: HeadNeRFConfig
    code_sizes: dict
    num_train_frames: int
    seed: int


def model_config_from(config: ml_collections.ConfigDict, audio_dim: int) -> HeadNeRFConfig:
    values = config.model.to_dict()
    codes = values.pop("codes")
    condition_dims = [(name, dim) for name, dim in codes.items() if dim > 0]
    condition_dims += [("lip", values.pop("lip_dim")), ("blink", 1)]
    values.update(condition_dims=tuple(condition_dims), audio_net=True, audio_dim=audio_dim)
    return HeadNeRFConfig.from_dict(values)


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


def conditions_for(codes: dict, batch: Mapping[str, jax.Array]) -> dict:
    out = dict(codes)
    out["audio"] = batch["audio"].reshape(batch["audio"].shape[0], -1, batch["audio"].shape[-1])
    out["blink"] = batch["blink"].reshape(-1, 1)
    return out


def reconstruction_losses(
    out: Mapping[str, jax.Array], frames: Mapping[str, jax.Array], features_fn=None
):
    """Per-term losses of one batch of frames ``[N, ...]`` (paper 000 eqs. 3-5).

    ``features_fn`` (VGG16 activations) selects the perceptual loss of eq. 4; ``None`` the
    structural fallback ``1 - SSIM`` (see :mod:`jaxhead.nerf.perceptual`).
    """
    image, mask = frames["image"], frames["mask"]
    pho = nerf_losses.masked_photometric(out["image"], image, mask)
    whole = jnp.mean(jnp.square(out["image"] - image))
    lowres = jnp.mean(jnp.square(out["rgb_lowres"] - frames["image_lr"]))
    if features_fn is None:
        per = 1.0 - jnp.mean(jax.vmap(ssim)(out["image"], image))
    else:
        per = perceptual_loss(features_fn, out["image"], image)
    mask_term = jnp.mean(jnp.square(out["accumulation"] - frames["mask_lr"][..., 0]))
    return {"pho": pho, "whole": whole, "lowres": lowres, "per": per, "mask": mask_term}


def make_train_step(
    setup: NeRFSetup, graphdefs, tx: optax.GradientTransformation, weights, vgg_graphdef=None
):
    """``train_step(state, batch[, vgg_params]) -> (state, metrics)`` over pairs ``[B, 2, ...]``.

    With ``vgg_graphdef`` the step takes the frozen VGG16 parameters as a third argument (the
    loop's ``Task.constants``) and uses the VGG perceptual loss; else the SSIM fallback.
    """
    nerf_def, codes_def = graphdefs
    base_key = jax.random.key(setup.seed)

    def train_step(state: TrainState, batch: Mapping[str, jax.Array], vgg_params=None):
        features_fn = None
        if vgg_graphdef is not None:
            features_fn = lambda images: nnx.merge(vgg_graphdef, vgg_params)(images)  # noqa: E731

        key = jax.random.fold_in(base_key, state.step)
        pairs = batch["image"].shape[0]
        frames = jax.tree.map(lambda x: x.reshape((pairs * 2,) + x.shape[2:]), batch)

        def loss_fn(params):
            nerf = nnx.merge(nerf_def, params["nerf"])
            codes = nnx.merge(codes_def, params["codes"])
            code_values = codes(code_indices(frames, setup.code_sizes))
            cameras = {"c2w": frames["c2w"], "intrinsics": frames["intrinsics"]}
            out = nerf(cameras, conditions_for(code_values, frames), key)
            terms = reconstruction_losses(out, frames, features_fn)
            # Paper 000 eq. 7 over each (j-1, j) pair.
            pred = out["image"].reshape((pairs, 2) + out["image"].shape[1:])
            target = batch["image"]
            terms["velocity"] = jnp.mean(jax.vmap(nerf_losses.velocity_loss)(pred, target))
            terms["code"] = sum(jnp.mean(jnp.square(v)) for v in code_values.values())
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
            )
            return total, (terms, out)

        (loss, (terms, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, updates = state.apply_gradients(grads, tx)
        mse = jnp.mean(jnp.square(out["image"] - frames["image"]))
        metrics = {"loss": loss, "psnr": psnr(mse), **{f"loss_{k}": v for k, v in terms.items()}}
        metrics.update(
            l2_grads=tree_l2(grads),
            l2_params=tree_l2(new_state.params),
            l2_updates=tree_l2(updates),
        )
        return new_state, metrics

    return train_step


class _Batches:
    """The grain pipeline's iterator with its state (resumable) for the shared loop."""

    def __init__(self, pipeline):
        self._pipeline = pipeline
        self._it = iter(pipeline)

    def __next__(self):
        batch = next(self._it)
        return {k: batch[k] for k in BATCH_KEYS}

    def get_state(self) -> dict:
        return self._it.get_state()

    def set_state(self, state: dict) -> None:
        self._it.set_state(state)


BATCH_KEYS = (
    "image", "image_lr", "mask", "mask_lr", "intrinsics", "c2w", "audio", "blink", "identity",
    "sequence_index", "row",
)  # fmt: skip


def render_fn(graphdefs):
    """Jitted ``(params, frames, code_values) -> model outputs`` (deterministic sampling)."""
    nerf_def, _ = graphdefs

    @jax.jit
    def render(params, frames, code_values):
        nerf = nnx.merge(nerf_def, params["nerf"])
        cameras = {"c2w": frames["c2w"], "intrinsics": frames["intrinsics"]}
        return nerf(cameras, conditions_for(code_values, frames), None)

    return render


def fit_illumination(render, params, frame, codes, steps: int, lr: float = 0.05):
    """Fits the sequence's ``ill`` code on one frame with the network frozen (GLO/NeRF-W)."""
    tx = optax.adam(lr)

    @jax.jit
    def step(ill, opt_state):
        def loss(ill):
            out = render(params, frame, {**codes, "ill": ill})
            return jnp.mean(jnp.square(out["image"] - frame["image"]))

        value, grad = jax.value_and_grad(loss)(ill)
        updates, opt_state = tx.update(grad, opt_state)
        return optax.apply_updates(ill, updates), opt_state, value

    ill = codes["ill"]
    opt_state = tx.init(ill)
    for _ in range(steps):
        ill, opt_state, _ = step(ill, opt_state)
    return ill


def evaluate_split(setup, graphdefs, params, source, *, fit_steps: int, batch: int, samples=None):
    """PSNR / SSIM over the frames of ``source`` (held-out sentences or views)."""
    render = render_fn(graphdefs)
    codes_def = graphdefs[1]
    tables = nnx.merge(codes_def, params["codes"]).tables
    psnrs, ssims = [], []
    ssim_fn = jax.jit(jax.vmap(ssim))
    shown = []
    for rows in source.sequence_rows():
        first = {k: jnp.asarray(np.stack([source[int(rows[0])][k]])) for k in BATCH_KEYS}
        n = len(rows)
        identity = int(first["identity"][0])
        base = {}
        for name, (_, dim) in setup.code_sizes.items():
            if name in ("id", "al"):
                base[name] = tables[name][...][identity][None]
            else:
                base[name] = jnp.zeros((1, dim), jnp.float32)
        if "ill" in base and fit_steps > 0:
            base["ill"] = fit_illumination(render, params, first, base, fit_steps)
        scored = rows[1:] if (fit_steps > 0 and n > 1 and "ill" in base) else rows
        codes = {k: jnp.repeat(v, batch, axis=0) for k, v in base.items()}
        for start in range(0, len(scored), batch):
            chunk = scored[start : start + batch]
            # Pad the last chunk to the batch size: one compiled shape for every call.
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk))])
            frames = {
                k: jnp.asarray(np.stack([source[int(r)][k] for r in padded])) for k in BATCH_KEYS
            }
            out = render(params, frames, codes)
            mse = jnp.mean(jnp.square(out["image"] - frames["image"]), axis=(1, 2, 3))
            psnrs.extend(np.asarray(psnr(mse))[: len(chunk)].tolist())
            ssims.extend(np.asarray(ssim_fn(out["image"], frames["image"]))[: len(chunk)].tolist())
            if samples is not None and len(shown) < 4:
                shown.append((np.asarray(out["image"][0]), np.asarray(frames["image"][0])))
    if samples is not None and shown:
        _save_grid(samples, shown)
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "frames": len(psnrs)}


def evaluate_run(config, setup, graphdefs, params, workdir=None, splits=("val", "val_views")):
    """PSNR / SSIM on held-out sentences (``val``) and views (``val_views``)."""
    results = {}
    for split in splits:
        source = voca_frames.load_frames(config.data, split)
        results[split] = evaluate_split(
            setup, graphdefs, params, source,
            fit_steps=int(config.eval.fit_steps), batch=int(config.eval.batch_size),
            samples=None if workdir is None
            else pathlib.Path(workdir) / "samples" / f"eval_{split}.png",
        )  # fmt: skip
    return results


def _save_grid(path: pathlib.Path, pairs) -> None:
    from PIL import Image

    rows = [np.concatenate([pred, gt], axis=1) for pred, gt in pairs]
    grid = np.clip(np.concatenate(rows, axis=0), 0.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(path)


def make_setup(config: ml_collections.ConfigDict):
    """``(setup, graphdefs, train_frames)`` of a NeRF config: shapes, module graphs, data."""
    if config.data.kind != "voca":
        raise ValueError(
            f"unknown config.data.kind {config.data.kind!r}; this stage reads 'voca' data "
            "(video datasets come with configs/video.py)"
        )
    train_frames = voca_frames.load_frames(config.data, "train")
    audio_dim = int(train_frames[0]["audio"].shape[-1])
    model_config = model_config_from(config, audio_dim)
    sizes = {"id": train_frames.num_identities, "al": train_frames.num_identities,
             "ill": train_frames.num_sequences, "ex": len(train_frames)}  # fmt: skip
    code_sizes = {
        name: (sizes[name], int(dim)) for name, dim in config.model.codes.items() if dim > 0
    }
    setup = NeRFSetup(model_config, code_sizes, len(train_frames), int(config.seed))
    nerf, codes = build_models(setup, config.seed)
    return setup, (nnx.graphdef(nerf), nnx.graphdef(codes)), train_frames


def build_task(
    config: ml_collections.ConfigDict, mesh, workdir: str | pathlib.Path | None = None
) -> loop.Task:
    """The NeRF stage as a :class:`jaxhead.train.loop.Task` (``workdir`` receives sample images)."""
    setup, graphdefs, train_frames = make_setup(config)
    tx = make_optimizer(config.optim, config.train.steps)
    weights = config.loss
    kind, message = perceptual_loss_choice(config.loss.vgg_weights)
    print(message, flush=True)  # said once per run: which perceptual loss this run uses
    vgg_graphdef = vgg_params = None
    if kind == "vgg16":
        vgg_graphdef, vgg_params = nnx.split(load_vgg16(config.loss.vgg_weights))

    def init_fn():
        nerf, codes = build_models(setup, config.seed)
        params = {
            "nerf": nnx.to_pure_dict(nnx.state(nerf, nnx.Param)),
            "codes": nnx.to_pure_dict(nnx.state(codes, nnx.Param)),
        }
        return TrainState.create(params, tx)

    pipeline = make_pipeline(
        train_frames,
        batch_size=int(config.data.batch_size),
        seed=int(config.seed),
        num_threads=int(config.data.num_threads),
        data_axis_size=mesh.shape["data"],
    )

    def evaluate(state):
        params = jax.device_get(state.params)
        results = evaluate_run(config, setup, graphdefs, params, workdir)
        results["train_frames"] = len(train_frames)
        if workdir is not None:
            # A held-out sentence beside its ground truth, with its audio: what a person looks at.
            from jaxhead.nerf import render_video

            trained = render_video.Trained(
                config, setup, graphdefs, params, train_frames, int(state.step)
            )
            path = pathlib.Path(workdir) / "samples" / "heldout_0.mp4"
            render_video.write_heldout_video(trained, 0, path)
            results["video"] = str(path.relative_to(workdir))
        return results

    def write_samples(state, step, samples_dir):
        params = jax.device_get(state.params)
        source = voca_frames.load_frames(config.data, "val", progress=False)
        rows = source.sequence_rows()[0][:2]
        sub = _Subset(source, rows)
        evaluate_split(
            setup, graphdefs, params, sub, fit_steps=0, batch=2,
            samples=samples_dir / f"step_{step:06d}.png",
        )  # fmt: skip

    return loop.Task(
        init_fn=init_fn,
        train_step=make_train_step(setup, graphdefs, tx, weights, vgg_graphdef),
        data=_Batches(pipeline),
        evaluate=evaluate,
        write_samples=write_samples,
        constants=vgg_params,
    )


class _Subset:
    def __init__(self, source, rows):
        self._source, self._rows = source, np.asarray(rows)

    def __getitem__(self, i):
        return self._source[int(i)]

    def sequence_rows(self):
        return [self._rows]


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
    """Trains (or resumes) the NeRF stage in ``workdir``; see ``configs/voca.py``."""
    return loop.train(config, workdir, functools.partial(build_task, workdir=workdir))
