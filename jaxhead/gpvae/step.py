"""The GP-VAE's train step (paper 001 §3.4): state, model construction, losses (eqs. 6, 8, 9).

Training runs in one run of ``config.train.steps`` steps:

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
train state so that generation needs nothing but the checkpoint. With ``model.relative_pose``
each window's pose channels are taken relative to its BOP's mean pose
(:func:`models.bop_offset`) for both losses, as generation does.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxhead.gpvae import data as data_lib
from jaxhead.gpvae import models
from jaxhead.gpvae.kernels import gp_prior_covariance, sample_posterior
from jaxhead.gpvae.losses import posterior_kl
from jaxhead.train.state import tree_l2

PyTree = Any
TRAIN_COMMAND = "python scripts/train_gpvae.py --config configs/gpvae.py --workdir {workdir}"


@flax.struct.dataclass
class GPVAEState:
    """``TrainState`` plus the data normalisation ``[7]`` the model was trained with."""

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    mean: jax.Array
    std: jax.Array


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


def graphdef_of(spec: models.ModelSpec):
    """The model's static graph, without materialising parameters."""
    return nnx.graphdef(nnx.eval_shape(lambda: models.SequenceVAE(spec, nnx.Rngs(0))))


def init_state(config, spec, tx, mean, std) -> GPVAEState:
    model = models.SequenceVAE(spec, nnx.Rngs(int(config.seed)))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return GPVAEState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        mean=jnp.asarray(mean, jnp.float32),
        std=jnp.asarray(std, jnp.float32),
    )


# --- losses (eqs. 6, 8, 9) ----------------------------------------------------------------------


def vae_loss(model, h, key, prior_cov, beta, known=None):
    """Eq. 6 + β · eq. 8 on windows ``h [B, T, D]`` (normalised). Returns ``(loss, metrics)``.

    ``known [B, T, D]``: 1 where a value was measured (a pose file's blink is not); the squared
    errors of the others are left out (their ``h`` holds 0, the channel's mean)."""
    mean, scale, coeff = model.encode(h)
    z = sample_posterior(mean, scale, coeff, jax.random.normal(key, mean.shape))
    recon = model.decode(z)
    err = jnp.square(recon - h)
    sq = jnp.sum(err if known is None else err * known, axis=(-2, -1))
    kl = posterior_kl(mean, scale, coeff, prior_cov)
    loss = jnp.mean(sq + beta * kl)
    return loss, {"recon_mse": jnp.mean(sq) / (h.shape[-2] * h.shape[-1]), "kl": jnp.mean(kl)}


def cme_loss(model, h, audio, key, prior_cov, beta, bop, known=None):
    """Eq. 9 (frames ``τ..T−1``) + β · KL of ``E_ah``'s distribution -> ``(loss, metrics)``;
    ``known`` as in :func:`vae_loss`."""
    bop_latent, _, _ = model.encode(h[..., :bop, :])
    mean, scale, coeff = model.cme(audio, jnp.swapaxes(bop_latent, -1, -2))
    z = sample_posterior(mean, scale, coeff, jax.random.normal(key, mean.shape))
    pred = model.decode(z)[..., bop:, :]
    err = jnp.square(pred - h[..., bop:, :])
    sq = jnp.sum(err if known is None else err * known[..., bop:, :], axis=(-2, -1))
    kl = posterior_kl(mean, scale, coeff, prior_cov)
    loss = jnp.mean(sq + beta * kl)
    size = pred.shape[-2] * pred.shape[-1]
    return loss, {"cme_mse": jnp.mean(sq) / size, "cme_kl": jnp.mean(kl)}


def freeze_vae(params):
    """Params with everything except ``cme`` behind stop-gradient (E_h and D frozen)."""
    return {
        k: (v if k == "cme" else jax.tree.map(jax.lax.stop_gradient, v)) for k, v in params.items()
    }


def make_train_step(
    graphdef,
    tx,
    prior_cov: np.ndarray,
    *,
    beta: float,
    cme_weight: float,
    vae_steps: int,
    bop: int,
    seed: int,
    relative_pose: bool = False,
    anchor: str = "mean",
    audio_dropout: float = 0.0,
):
    """``train_step(state, batch) -> (state, metrics)`` of the two phases (module docstring):
    the VAE loss while ``step < vae_steps`` (0: fine-tuning, ``E_ah`` only), the cross-modal
    loss throughout with ``E_h`` and ``D`` frozen for it; VAE updates dropped after phase 1.
    ``relative_pose``: windows minus their BOP's mean or last pose (``anchor``,
    :func:`models.bop_offset`). ``audio_dropout``: the probability that a window's audio is
    replaced by zeros (the features are standardised, so zeros are their mean) for ``E_ah``:
    conditioning dropout, against an ``E_ah`` that recognises each training window by its audio
    and recalls its motion."""

    def train_step(state: GPVAEState, batch):
        key = jax.random.fold_in(jax.random.key(int(seed)), state.step)  # made in the program
        vae_key, cme_key = jax.random.split(key)
        shape = batch["h"].shape
        h = (batch["h"] - jnp.broadcast_to(state.mean, shape)) / jnp.broadcast_to(state.std, shape)
        # Unmeasured values (NaN: a pose file's blink) enter as the channel's mean, and their
        # errors are left out of both losses.
        known = jnp.isfinite(h).astype(h.dtype)
        h = jnp.where(known > 0, h, 0.0)
        if relative_pose:
            h = h - jnp.broadcast_to(models.bop_offset(h[..., :bop, :], anchor), shape)
        audio = batch["audio"]
        if audio_dropout > 0.0:  # its own stream: the VAE / E_ah keys stay those of older runs
            keep = jax.random.bernoulli(
                jax.random.fold_in(key, 1 << 20), 1.0 - audio_dropout, (shape[0], 1, 1)
            )
            audio = audio * keep.astype(audio.dtype)

        def loss_fn(params):
            frozen = nnx.merge(graphdef, freeze_vae(params))
            l_cme, m_cme = cme_loss(frozen, h, audio, cme_key, prior_cov, beta, bop, known)
            if vae_steps == 0:  # fine-tuning E_ah only: the VAE loss is not needed at all
                return cme_weight * l_cme, {"cme_loss": l_cme, **m_cme}
            model = nnx.merge(graphdef, params)
            l_vae, m_vae = vae_loss(model, h, vae_key, prior_cov, beta, known)
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

    return train_step
