"""The GP-VAE stage: training on the shared loop, evaluation, plots and pose/blink generation.

Training follows paper 001 §3.4 in one run of ``config.train.steps`` steps:

1. *Latent space construction* (steps ``< loss.vae_fraction · steps``): the VAE (``E_h``, ``D``)
   minimises ``Σ‖ĥ − h‖²`` (eq. 6) ``+ β · KL(q(z|h) ‖ p(z))`` (eq. 8) per window, averaged over
   the batch; ``p`` is the Cauchy-kernel GP (eq. 7) or ``N(0, I)`` for the i.i.d. baselines.
2. *Cross-modal encoder*: ``E_ah`` maps audio + the encoded BOP (first ``τ`` frames) to the
   latent distribution; the decoded frames ``τ..T−1`` are fitted with eq. 9, plus ``β · KL`` to
   the same prior so that ``E_ah`` keeps a distribution to sample from (eq. 9 alone would let its
   variance collapse). ``E_h`` and ``D`` are frozen for this loss (stop-gradient), and after
   phase 1 their updates are masked, so the latent space stays the one the VAE built. ``E_ah``
   trains from step 0 (it chases the VAE during phase 1, then fine-tunes on the frozen one).

All pose/blink channels are standardised with the training set's mean and std, stored in the
train state so that generation needs nothing but the checkpoint.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxhead.gpvae import data as data_lib
from jaxhead.gpvae import metrics as metrics_lib
from jaxhead.gpvae import models
from jaxhead.gpvae.kernels import gp_prior_covariance
from jaxhead.gpvae.losses import structured_kl, whitened_prior
from jaxhead.train import loop
from jaxhead.train.optim import make_optimizer
from jaxhead.train.state import tree_l2
from jaxhead.train.workdir import read_run_config

PyTree = Any
TRAIN_COMMAND = "python scripts/train_gpvae.py --config configs/gpvae.py --workdir DIR"


@flax.struct.dataclass
class GPVAEState:
    """``TrainState`` plus the data normalisation ``[7]`` the model was trained with."""

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    mean: jax.Array
    std: jax.Array


# ------------------------------------------------------------------------------------------------
# Model construction
# ------------------------------------------------------------------------------------------------


def model_spec(config: ml_collections.ConfigDict) -> models.ModelSpec:
    m = config.model
    return models.ModelSpec(
        variant=m.variant,
        feature_dim=data_lib.FEATURE_DIM,
        audio_dim=data_lib.AUDIO_DIM,
        latent_dim=int(m.latent_dim),
        width=int(m.width),
        depth=int(m.depth),
        heads=int(m.heads),
        mlp_ratio=int(m.mlp_ratio),
        cme_depth=int(m.cme_depth),
    )


def prior_covariance(config: ml_collections.ConfigDict) -> jax.Array:
    """``[T, T]``: Cauchy GP covariance (eq. 7) for the GP variant, identity otherwise."""
    window = int(config.data.window)
    if model_spec(config).prior == "gp":
        m = config.model
        return gp_prior_covariance(
            window, float(m.prior_sigma), float(m.prior_length_scale), float(m.prior_jitter)
        )
    return jnp.eye(window, dtype=jnp.float32)


def _graphdef(spec: models.ModelSpec):
    """The model's static graph, without materialising parameters."""
    return nnx.graphdef(nnx.eval_shape(lambda: models.SequenceVAE(spec, nnx.Rngs(0))))


def _init_state(config, spec, tx, mean, std) -> GPVAEState:
    model = models.SequenceVAE(spec, nnx.Rngs(int(config.seed)))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return GPVAEState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        mean=jnp.asarray(mean, jnp.float32),
        std=jnp.asarray(std, jnp.float32),
    )


# ------------------------------------------------------------------------------------------------
# Losses (eqs. 6, 8, 9)
# ------------------------------------------------------------------------------------------------


def _kl(mean, scale, coeff, prior_cov):
    """``[B]`` KL summed over latent channels (eq. 8), posterior ``[B, L, T]``.

    ``prior_cov`` is a concrete (not traced) ``[T, T]`` matrix: its whitener is computed once on
    the host, and the step needs no Cholesky or triangular solve (see ``losses.structured_kl``).
    """
    whitener, log_det = whitened_prior(prior_cov)
    chol_q = models.ar1_cholesky(scale, coeff)
    return jnp.sum(structured_kl(mean, chol_q, whitener, log_det), axis=-1)


def vae_loss(model, h, key, prior_cov, beta):
    """Eq. 6 + β · eq. 8 on windows ``h [B, T, D]`` (normalised). Returns ``(loss, metrics)``."""
    mean, scale, coeff = model.encode(h)
    z = models.sample_posterior(mean, scale, coeff, jax.random.normal(key, mean.shape))
    recon = model.decode(z)
    sq = jnp.sum(jnp.square(recon - h), axis=(-2, -1))
    kl = _kl(mean, scale, coeff, prior_cov)
    loss = jnp.mean(sq + beta * kl)
    return loss, {"recon_mse": jnp.mean(sq) / (h.shape[-2] * h.shape[-1]), "kl": jnp.mean(kl)}


def cme_loss(model, h, audio, key, prior_cov, beta, bop):
    """Eq. 9 (frames ``τ..T−1``) + β · KL of ``E_ah``'s distribution -> ``(loss, metrics)``."""
    bop_latent, _, _ = model.encode(h[..., :bop, :])
    mean, scale, coeff = model.cme(audio, jnp.swapaxes(bop_latent, -1, -2))
    z = models.sample_posterior(mean, scale, coeff, jax.random.normal(key, mean.shape))
    pred = model.decode(z)[..., bop:, :]
    sq = jnp.sum(jnp.square(pred - h[..., bop:, :]), axis=(-2, -1))
    kl = _kl(mean, scale, coeff, prior_cov)
    loss = jnp.mean(sq + beta * kl)
    size = pred.shape[-2] * pred.shape[-1]
    return loss, {"cme_mse": jnp.mean(sq) / size, "cme_kl": jnp.mean(kl)}


def _freeze_vae(params):
    """Params with everything except ``cme`` behind stop-gradient (E_h and D frozen)."""
    return {
        k: (v if k == "cme" else jax.tree.map(jax.lax.stop_gradient, v)) for k, v in params.items()
    }


# ------------------------------------------------------------------------------------------------
# Task
# ------------------------------------------------------------------------------------------------


def build_task(config: ml_collections.ConfigDict, mesh) -> loop.Task:
    """The stage's :class:`loop.Task` (see the module docstring)."""
    del mesh
    spec = model_spec(config)
    train_seqs, held_seqs = data_lib.load_sequences(config.data)
    mean, std = data_lib.normalizer(train_seqs)
    total = int(config.train.steps)
    tx = make_optimizer(config.optim, total)
    graphdef = _graphdef(spec)
    prior_cov = np.asarray(prior_covariance(config))
    beta = float(config.loss.beta)
    cme_weight = float(config.loss.cme_weight)
    vae_steps = int(round(float(config.loss.vae_fraction) * total))
    bop = int(config.data.bop)
    base_key = jax.random.key(int(config.seed))
    pretrained = _pretrained(config)
    if pretrained is not None:
        if str(config.finetune.normalize) not in ("data", "pretrained"):
            raise ValueError(
                f"config.finetune.normalize={config.finetune.normalize!r}; "
                "use 'data' or 'pretrained'"
            )
        vae_steps = 0  # fine-tuning: E_h and D stay the pre-trained ones, only E_ah trains
        if str(config.finetune.normalize) == "pretrained":
            mean, std = pretrained.mean, pretrained.std

    def init_fn():
        state = _init_state(config, spec, tx, mean, std)
        if pretrained is None:
            return state
        params = jax.tree.map(jnp.asarray, pretrained.params)
        return state.replace(params=params, opt_state=tx.init(params))

    def train_step(state: GPVAEState, batch):
        key = jax.random.fold_in(base_key, state.step)
        vae_key, cme_key = jax.random.split(key)
        shape = batch["h"].shape
        h = (batch["h"] - jnp.broadcast_to(state.mean, shape)) / jnp.broadcast_to(state.std, shape)
        audio = batch["audio"]

        def loss_fn(params):
            frozen = nnx.merge(graphdef, _freeze_vae(params))
            l_cme, m_cme = cme_loss(frozen, h, audio, cme_key, prior_cov, beta, bop)
            if vae_steps == 0:  # fine-tuning E_ah only: the VAE loss is not needed at all
                return cme_weight * l_cme, {"cme_loss": l_cme, **m_cme}
            model = nnx.merge(graphdef, params)
            l_vae, m_vae = vae_loss(model, h, vae_key, prior_cov, beta)
            in_vae_phase = (state.step < vae_steps).astype(jnp.float32)
            loss = in_vae_phase * l_vae + cme_weight * l_cme
            return loss, {"vae_loss": l_vae, "cme_loss": l_cme, **m_vae, **m_cme}

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        # After phase 1 the VAE is frozen: drop its updates (Adam momentum would move it).
        keep_vae = (state.step < vae_steps).astype(jnp.float32)
        updates = {
            k: (u if k == "cme" else jax.tree.map(lambda x: keep_vae * x, u))
            for k, u in updates.items()
        }
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        metrics = {
            "loss": loss,
            **aux,
            "l2_grads": tree_l2(grads),
            "l2_params": tree_l2(params),
            "l2_updates": tree_l2(updates),
        }
        return new_state, metrics

    data = data_lib.WindowIterator(
        train_seqs,
        int(config.data.window),
        int(config.data.batch_size),
        int(config.seed),
        data_lib.AUDIO_DIM,
    )
    generator = Generator(config, graphdef)
    eval_seqs = held_seqs[: int(config.eval.max_sequences)]

    def evaluate(state):
        results = evaluate_generation(generator, state, eval_seqs, config)
        if pretrained is not None:  # the same evaluation with the pre-trained E_ah, for comparison
            before = evaluate_generation(generator, init_fn(), eval_seqs, config)
            keys = ["d_rot", "d_pos", "d_rot_long", "d_pos_long", "blinks_per_s_generated",
                    "diversity", "motion_ratio"]  # fmt: skip
            results["before_finetune"] = {k: before[k] for k in keys}
            results["init_from"] = str(config.finetune.init_from)
        return results

    def write_samples(state, step, samples_dir):
        plot_traces(generator, state, eval_seqs[: int(config.eval.plot_sequences)], config,
                    pathlib.Path(samples_dir) / f"traces_{step:06d}.png")  # fmt: skip

    return loop.Task(
        init_fn=init_fn, train_step=train_step, data=data, evaluate=evaluate,
        write_samples=write_samples,
    )  # fmt: skip


@flax.struct.dataclass
class Pretrained:
    """Weights and normalisation of a pre-trained GP-VAE run (``config.finetune.init_from``)."""

    params: PyTree
    mean: np.ndarray
    std: np.ndarray


# Config fields that must equal the pre-trained run's for its weights to fit and mean the same.
_ARCHITECTURE_FIELDS = (
    "variant",
    "latent_dim",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "cme_depth",
)


def _pretrained(config: ml_collections.ConfigDict) -> Pretrained | None:
    """The pre-trained run named by ``config.finetune.init_from`` (None when empty).

    Paper 001 §3.4: the VAE (``E_h``, ``D``) is trained on many sequences, then the cross-modal
    encoder ``E_ah`` is fine-tuned on one person with ``E_h`` and ``D`` frozen. The pre-trained
    run's architecture, window and BOP must match this config's (checked, with the differing
    fields named).
    """
    finetune = config.get("finetune")
    init_from = str(finetune.init_from) if finetune is not None else ""
    if not init_from:
        return None
    try:
        pre_config, _, pre_state = load_state(init_from)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"config.finetune.init_from={init_from!r}: {err}. Pre-train one first, e.g. "
            f"`{TRAIN_COMMAND}` (on many sequences), then fine-tune with "
            "--config.finetune.init_from=DIR"
        ) from None
    diffs = [
        f"model.{k}: pre-trained {pre_config.model[k]!r}, here {config.model[k]!r}"
        for k in _ARCHITECTURE_FIELDS
        if pre_config.model[k] != config.model[k]
    ] + [
        f"data.{k}: pre-trained {pre_config.data[k]!r}, here {config.data[k]!r}"
        for k in ("window", "bop", "fps")
        if pre_config.data[k] != config.data[k]
    ]
    if diffs:
        raise ValueError(
            f"config.finetune.init_from={init_from!r} does not fit this config: " + "; ".join(diffs)
        )
    return Pretrained(
        params=jax.device_get(pre_state.params),
        mean=np.asarray(pre_state.mean),
        std=np.asarray(pre_state.std),
    )


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike):
    """Trains (or resumes) the stage in ``workdir``; returns the final state."""
    return loop.train(config, workdir, build_task)


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------


class Generator:
    """Jitted pieces of generation for one config (model graph, window, BOP, prior)."""

    def __init__(self, config: ml_collections.ConfigDict, graphdef=None):
        self.spec = model_spec(config)
        self.window = int(config.data.window)
        self.bop = int(config.data.bop)
        self.fps = float(config.data.fps)
        self.prior_cov = prior_covariance(config)
        self.graphdef = graphdef or _graphdef(self.spec)

        @jax.jit
        def window_fn(params, audio, bop_frames, noise):
            model = nnx.merge(self.graphdef, params)
            return models.cme_window(model, audio, bop_frames, noise)

        @functools.partial(jax.jit, static_argnums=(2,))
        def prior_window(params, z, keep_from):
            return nnx.merge(self.graphdef, params).decode(z)[..., keep_from:, :]

        self._window_fn = window_fn
        self._prior_window = prior_window

    def from_audio(self, params, audio, bop, num_frames, key, noise_scale):
        """``[B, N, D]`` normalised frames from audio ``[B, N_a, A]`` and BOP ``[B, τ, D]``.

        ``noise_scale [B]``: 0 for the posterior mean, 1 for a sample (per row).
        """
        latent = self.spec.latent_dim

        def fn(win_audio, last, k):
            noise = jax.random.normal(
                jax.random.fold_in(key, k), (last.shape[0], latent, self.window)
            )
            noise = noise * jnp.asarray(noise_scale, jnp.float32)[:, None, None]
            return self._window_fn(params, win_audio, last, noise)

        return models.generate(fn, audio, bop, num_frames, self.window)

    def from_prior(self, params, batch, num_frames, key):
        """``[B, N, D]`` normalised frames sampled from the latent prior, without audio."""
        z = models.sample_prior_latents(
            self.prior_cov, batch, self.spec.latent_dim, max(num_frames, self.window), self.bop, key
        )
        num = z.shape[-1]
        starts = models.window_starts(num, self.window, self.bop)
        chunks = []
        for k, start in enumerate(starts):
            stop = min(start + self.window, num)
            chunk = z[..., max(stop - self.window, 0) : stop]  # full windows: few compilations
            keep = 0 if k == 0 else (start + self.bop) - (stop - self.window)
            chunks.append(self._prior_window(params, chunk, keep))
        return np.concatenate([np.asarray(c) for c in chunks], -2)[..., :num_frames, :]


def window_distances(generator: Generator, state, sequences) -> dict:
    """D-Rot / D-Pos of one window ``ĥ_{τ+1:T}`` from its ground-truth BOP and audio (eq. 9).

    Every held-out sequence is cut into windows starting at ``0, T−τ, 2(T−τ), …`` (the predicted
    parts tile the sequence without overlap); each window's frames ``τ..T−1`` are generated from
    the window's true first ``τ`` frames and its audio (posterior mean, noise 0) and pooled with
    :func:`metrics.relative_mae`, deviations measured from the whole sequence's mean pose (so a
    constant per-sequence mean scores ≈ 100 %). ``*_hold`` is the trivial baseline that repeats the
    last BOP frame: a model below it has learned something about head motion.
    """
    window, bop = generator.window, generator.bop
    mean, std = np.asarray(state.mean), np.asarray(state.std)
    audio_rows, bop_rows, targets, holds, centers = [], [], [], [], []
    for seq in sequences:
        h = seq.features
        audio = seq.audio if seq.audio is not None else np.zeros((len(h), data_lib.AUDIO_DIM))
        for start in range(0, len(h) - window + 1, window - bop):
            audio_rows.append(audio[start : start + window])
            bop_rows.append((h[start : start + bop] - mean) / std)
            targets.append(h[start + bop : start + window, :6])
            holds.append(np.repeat(h[start + bop - 1 : start + bop, :6], window - bop, 0))
            centers.append(h[:, :6].mean(0))
    if not targets:
        return {"d_rot": float("nan"), "d_pos": float("nan"), "num_windows": 0}
    preds = []
    for i in range(0, len(targets), 64):  # fixed-size chunks: one compilation
        a = np.stack(audio_rows[i : i + 64]).astype(np.float32)
        b = np.stack(bop_rows[i : i + 64]).astype(np.float32)
        n = len(a)
        a = np.concatenate([a, np.repeat(a[-1:], 64 - n, 0)])
        b = np.concatenate([b, np.repeat(b[-1:], 64 - n, 0)])
        noise = jnp.zeros((64, generator.spec.latent_dim, window), jnp.float32)
        out = np.asarray(generator._window_fn(state.params, a, b, noise))[:n]
        preds += list(out[:, bop:, :6] * std[:6] + mean[:6])
    model = metrics_lib.pose_distances(preds, targets, centers)
    hold = metrics_lib.pose_distances(holds, targets, centers)
    return {
        "d_rot": model["d_rot"],
        "d_pos": model["d_pos"],
        "d_rot_hold": hold["d_rot"],
        "d_pos_hold": hold["d_pos"],
        "num_windows": len(targets),
    }


def evaluate_generation(generator: Generator, state, sequences, config) -> dict:
    """eval.json on held-out sequences (definitions in docs/gpvae.md).

    ``d_rot`` / ``d_pos``: one window ahead of a true BOP (:func:`window_distances`, the paper's
    ``ĥ_{τ+1:T}``), with the hold-last-frame baseline ``*_hold``; ``d_rot_long`` / ``d_pos_long``:
    the whole sequence generated autoregressively from its first ``τ`` frames (posterior mean),
    with its hold baseline ``*_long_hold``; blinks/s (generated samples and ground truth),
    diversity and motion ratio of the whole-sequence samples.
    """
    num_samples = int(config.eval.num_samples)
    bop = generator.bop
    thresholds = dict(
        high=float(config.eval.blink_high),
        low=float(config.eval.blink_low),
        min_gap_s=float(config.eval.blink_min_gap_s),
    )
    key = jax.random.key(int(config.seed) + 1)
    mean, std = np.asarray(state.mean), np.asarray(state.std)
    preds, targets, diversity, gen_blinks, gt_blinks, gen_norm, gt_norm = [], [], [], [], [], [], []
    full_targets = []
    for i, seq in enumerate(sequences):
        h = seq.features
        if len(h) <= bop:
            continue
        hn = (h - mean) / std
        audio = seq.audio if seq.audio is not None else np.zeros((len(h), data_lib.AUDIO_DIM))
        rows = 1 + num_samples
        out = generator.from_audio(
            state.params,
            jnp.broadcast_to(jnp.asarray(audio, jnp.float32), (rows, *audio.shape)),
            jnp.broadcast_to(jnp.asarray(hn[:bop]), (rows, bop, h.shape[-1])),
            len(h),
            jax.random.fold_in(key, i),
            np.asarray([0.0] + [1.0] * num_samples),
        )
        out = np.asarray(out)
        frames = out * std + mean
        preds.append(frames[0, bop:, :6])
        targets.append(h[bop:, :6])
        full_targets.append(h)
        diversity.append(metrics_lib.sample_diversity(out[1:, bop:]))
        gen_norm += [o[bop:] for o in out[1:]]
        gt_norm += [hn[bop:]] * num_samples
        gen_blinks.append(
            np.mean(
                [
                    metrics_lib.blinks_per_second(f[:, 6], generator.fps, **thresholds)
                    for f in frames[1:]
                ]
            )
        )
        gt_blinks.append(metrics_lib.blinks_per_second(h[:, 6], generator.fps, **thresholds))
    if not preds:
        raise ValueError(f"no held-out sequence is longer than the BOP ({bop} frames)")
    results = window_distances(generator, state, sequences)
    long = metrics_lib.pose_distances(preds, targets, [h[:, :6].mean(0) for h in full_targets])
    hold = metrics_lib.pose_distances(
        [np.repeat(h[bop - 1 : bop, :6], len(h) - bop, 0) for h in full_targets],
        targets,
        [h[:, :6].mean(0) for h in full_targets],
    )
    results.update(
        d_rot_long=long["d_rot"],
        d_pos_long=long["d_pos"],
        d_rot_long_hold=hold["d_rot"],
        d_pos_long_hold=hold["d_pos"],
        blinks_per_s_generated=float(np.mean(gen_blinks)),
        blinks_per_s_ground_truth=float(np.mean(gt_blinks)),
        diversity=float(np.mean(diversity)),
        motion_ratio=metrics_lib.motion_ratio(gen_norm, gt_norm),
        num_sequences=len(preds),
        variant=config.model.variant,
    )
    return results


def plot_traces(generator: Generator, state, sequences, config, path: pathlib.Path) -> None:
    """Generated (mean and one sample) vs real pose and blink traces, plus a prior sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not sequences:
        return
    names = ["rot x", "rot y", "rot z", "trans x", "trans y", "trans z", "blink"]
    mean, std = np.asarray(state.mean), np.asarray(state.std)
    bop = generator.bop
    fig, axes = plt.subplots(7, len(sequences), figsize=(5 * len(sequences), 12), squeeze=False)
    key = jax.random.key(int(config.seed) + 2)
    for j, seq in enumerate(sequences):
        h = seq.features
        hn = (h - mean) / std
        audio = seq.audio if seq.audio is not None else np.zeros((len(h), data_lib.AUDIO_DIM))
        out = generator.from_audio(
            state.params,
            jnp.broadcast_to(jnp.asarray(audio, jnp.float32), (2, *audio.shape)),
            jnp.broadcast_to(jnp.asarray(hn[:bop]), (2, bop, h.shape[-1])),
            len(h),
            jax.random.fold_in(key, j),
            np.asarray([0.0, 1.0]),
        )
        frames = np.asarray(out) * std + mean
        prior = np.asarray(
            generator.from_prior(state.params, 1, len(h), jax.random.fold_in(key, 99 + j))
        )
        prior = prior[0] * std + mean
        t = np.arange(len(h)) / generator.fps
        for c in range(7):
            ax = axes[c, j]
            ax.plot(t, h[:, c], "k", lw=1.5, label="ground truth")
            ax.plot(t, frames[0, :, c], "C0", lw=1, label="generated (mean)")
            ax.plot(t, frames[1, :, c], "C1", lw=0.8, label="generated (sample)")
            ax.plot(t, prior[:, c], "C2", lw=0.6, alpha=0.7, label="prior, no audio")
            ax.axvline(bop / generator.fps, color="gray", ls=":", lw=0.8)
            ax.set_ylabel(names[c])
        axes[0, j].set_title(seq.name, fontsize=8)
        axes[-1, j].set_xlabel("seconds")
    axes[0, 0].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _resolve_workdir(path: pathlib.Path) -> tuple[pathlib.Path, int | None]:
    """A workdir, its ``checkpoints/`` folder or one ``checkpoints/<step>`` -> (workdir, step)."""
    for candidate, step in [(path, None), (path.parent, None), (path.parent.parent, path.name)]:
        if (candidate / "config.json").is_file() and (candidate / "checkpoints").is_dir():
            return candidate, (int(step) if step is not None and step.isdigit() else None)
    raise FileNotFoundError(
        f"{path} is not a GP-VAE workdir or checkpoint (no config.json and checkpoints/ in it); "
        f"train one with `{TRAIN_COMMAND}`"
    )


def load_state(workdir_or_checkpoint: str | os.PathLike):
    """``(config, generator, state)`` of a trained GP-VAE run (latest or the named checkpoint).

    Cached per (workdir, checkpoint step): repeated calls reuse the restored state and the
    compiled generator.
    """

    workdir, step = _resolve_workdir(pathlib.Path(workdir_or_checkpoint))
    if step is None:
        steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
        step = max(steps) if steps else None
    return _load_state(workdir.resolve(), step)


@functools.lru_cache(maxsize=4)
def _load_state(workdir: pathlib.Path, step: int | None):
    from jaxhead.train.checkpoint import Checkpointer

    config = read_run_config(workdir, ("finetune", "model.cme_depth"), "a GP-VAE", TRAIN_COMMAND)
    spec = model_spec(config)
    tx = make_optimizer(config.optim, int(config.train.steps))
    zeros = np.zeros(data_lib.FEATURE_DIM, np.float32)
    abstract = jax.eval_shape(lambda: _init_state(config, spec, tx, zeros, zeros))
    ckpt = Checkpointer(workdir / "checkpoints", async_save=False)
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(
                f"{workdir}/checkpoints holds no checkpoint; train with `{TRAIN_COMMAND}`"
            )
        state, _ = ckpt.restore(abstract, step=step)
    finally:
        ckpt.close()
    return config, Generator(config), state


def generate_pose_blink(
    workdir_or_checkpoint: str | os.PathLike,
    audio: str | os.PathLike | np.ndarray | None = None,
    num_frames: int | None = None,
    fps: float = 25.0,
    seed: int = 0,
    bop: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Head pose and blink for ``num_frames`` video frames from a trained GP-VAE.

    Args:
      workdir_or_checkpoint: a GP-VAE workdir (latest checkpoint) or one ``checkpoints/<step>``.
      audio: an audio file (any format :func:`jaxhead.audio.io.load_audio` reads), a mono
        waveform ``[n]`` at 16 kHz, per-frame features ``[N, 52]`` at the model's frame rate
        (:func:`jaxhead.gpvae.data.audio_frame_features`), or None to sample the prior.
      num_frames: frames wanted at ``fps``; default: the audio's duration (required without
        audio).
      fps: frame rate of the output; generation runs at the model's rate (25) and is linearly
        resampled.
      seed: the sample drawn (the same seed gives the same sequence).
      bop: ``[τ, 7]`` first frames (pose then blink, model frame rate); default: the first frames
        of a prior sample drawn from ``seed``.

    Returns:
      ``(pose [N, 6], blink [N])`` float32: axis-angle rotation (rad) then translation, in the
      training data's frame and units; blink closure (about 0 open, 1 shut).
    """
    config, gen, state = load_state(workdir_or_checkpoint)
    model_fps = gen.fps
    key = jax.random.key(int(seed))
    mean, std = np.asarray(state.mean), np.asarray(state.std)
    features = None
    duration = None
    if audio is not None:
        if isinstance(audio, (str, os.PathLike)):
            from jaxhead.audio.io import load_audio

            wave, rate = load_audio(audio, 16_000)
            audio = np.asarray(wave, np.float32)
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 1:
            duration = len(audio) / 16_000
            n_model = max(int(np.ceil(duration * model_fps)), 1)
            features = data_lib.audio_frame_features(audio, 16_000, n_model, model_fps)
        elif audio.ndim == 2 and audio.shape[1] == data_lib.AUDIO_DIM:
            features = audio
            duration = len(audio) / model_fps
        else:
            raise ValueError(
                f"audio must be a file, a 16 kHz waveform [n] or features [N, {data_lib.AUDIO_DIM}]"
                f"; got an array of shape {audio.shape}"
            )
    if num_frames is None:
        if duration is None:
            raise ValueError("generate_pose_blink: give num_frames when there is no audio")
        num_frames = int(round(duration * fps))
    n_model = max(int(np.ceil(num_frames * model_fps / fps)), gen.bop + 1)
    if bop is None:
        start = np.asarray(gen.from_prior(state.params, 1, gen.window, jax.random.fold_in(key, 1)))
        bop_n = start[0, : gen.bop]
    else:
        bop = np.asarray(bop, np.float32)
        if bop.shape != (gen.bop, data_lib.FEATURE_DIM):
            raise ValueError(f"bop must be [{gen.bop}, {data_lib.FEATURE_DIM}], got {bop.shape}")
        bop_n = (bop - mean) / std
    if features is None:
        out = gen.from_prior(state.params, 1, n_model, jax.random.fold_in(key, 2))
    else:
        out = gen.from_audio(
            state.params, jnp.asarray(features)[None], jnp.asarray(bop_n)[None], n_model,
            jax.random.fold_in(key, 2), np.ones(1),
        )  # fmt: skip
    frames = np.asarray(out[0]) * std + mean
    frames = data_lib._resample_frames(frames, model_fps, fps)
    if len(frames) < num_frames:
        frames = np.concatenate([frames, np.repeat(frames[-1:], num_frames - len(frames), 0)])
    frames = frames[:num_frames].astype(np.float32)
    return frames[:, :6], frames[:, 6]


# ------------------------------------------------------------------------------------------------
# Ablation (paper 001 table 4)
# ------------------------------------------------------------------------------------------------


ABLATION_NAMES = {
    "mlp_vae": "MLP VAE",
    "lstm_vae": "LSTM VAE",
    "transformer_vae": "Trans VAE",
    "transformer_gpvae": "Trans GP-VAE",
}


def run_ablation(configs: dict[str, ml_collections.ConfigDict], root: str | os.PathLike) -> str:
    """Trains one run per config in ``root/<name>`` and writes ``root/ablation.{md,json}``.

    ``configs`` maps a run name (e.g. ``transformer_gpvae_seed0``) to its config; each run resumes
    if its workdir exists (its recorded wall time is then the one of the call that finished it).
    Returns the markdown table in the layout of paper 001 table 4 plus our extra columns: one row
    per run, a mean row per variant with several seeds, and the hold-last-BOP-frame baseline.
    """
    import time

    root = pathlib.Path(root)
    rows = []
    for name, config in configs.items():
        workdir = root / name
        timing = workdir / "ablation_wall_s.json"
        if not (workdir / "eval.json").is_file() or not timing.is_file():
            start = time.perf_counter()
            train(config, workdir)
            timing.write_text(json.dumps({"wall_s": time.perf_counter() - start}))
        results = json.loads((workdir / "eval.json").read_text())
        results["wall_s"] = json.loads(timing.read_text())["wall_s"]
        results["seed"] = int(config.seed)
        results["run"] = name
        rows.append(results)
    (root / "ablation.json").write_text(json.dumps(rows, indent=2))
    table = ablation_table(rows)
    (root / "ablation.md").write_text(table)
    return table


def shared_synthetic_data(data_config, folder: str | os.PathLike) -> pathlib.Path:
    """Generates (or reuses) ``data_config.synthetic`` under ``folder/voca`` for several runs."""
    return data_lib.generate_synthetic(data_config.synthetic, pathlib.Path(folder) / "voca")


def ablation_table(rows: list[dict]) -> str:
    """Markdown table of :func:`run_ablation` results (see docs/gpvae.md for the columns)."""
    if not rows:
        return ""
    gt = rows[0]["blinks_per_s_ground_truth"]
    head = (
        "| Method | seed | D-Rot ↓ | D-Pos ↓ | D-Rot long ↓ | D-Pos long ↓ | "
        f"blinks/s (GT {gt:.2f}) | diversity | motion ratio | train wall |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]

    def line(name, seed, r, wall):
        return (
            f"| {name} | {seed} | {r['d_rot']:.2f}% | {r['d_pos']:.2f}% | {r['d_rot_long']:.2f}% | "
            f"{r['d_pos_long']:.2f}% | {r['blinks_per_s_generated']:.2f} | {r['diversity']:.3f} | "
            f"{r['motion_ratio']:.3f} | {wall} |"
        )

    keys = ["d_rot", "d_pos", "d_rot_long", "d_pos_long", "blinks_per_s_generated", "diversity",
            "motion_ratio"]  # fmt: skip
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    for variant, group in by_variant.items():
        name = ABLATION_NAMES.get(variant, variant)
        for r in group:
            lines.append(line(name, r["seed"], r, f"{r['wall_s'] / 60:.1f} min"))
        if len(group) > 1:
            cells = []
            for k in keys:
                values = [r[k] for r in group]
                unit = "%" if k.startswith("d_") else ""
                cells.append(f"{np.mean(values):.2f} ± {np.std(values):.2f}{unit}")
            lines.append(
                f"| **{name}, mean ± std** | {len(group)} seeds | " + " | ".join(cells) + " | |"
            )
    r = rows[0]
    if "d_rot_hold" in r:
        lines.append(
            f"| hold last BOP frame | - | {r['d_rot_hold']:.2f}% | {r['d_pos_hold']:.2f}% | "
            f"{r['d_rot_long_hold']:.2f}% | {r['d_pos_long_hold']:.2f}% | - | - | - | - |"
        )
    return "\n".join(lines) + "\n"
