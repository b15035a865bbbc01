"""KL divergences of the GP-VAE (paper 001 eq. 8), framework-free: arrays in, arrays out."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from jaxhead.gpvae.kernels import ar1_cholesky


def gaussian_kl(
    mean_q: jax.Array, cov_q: jax.Array, mean_p: jax.Array, cov_p: jax.Array
) -> jax.Array:
    """``KL(N(mean_q, cov_q) ‖ N(mean_p, cov_p))`` through Cholesky factors (paper 001 eq. 8).

    ``0.5·(tr(Σp⁻¹Σq) + (μp − μq)ᵀΣp⁻¹(μp − μq) − T + log|Σp| − log|Σq|)``. With
    ``Σp = LpLpᵀ`` and ``Σq = LqLqᵀ``: ``tr(Σp⁻¹Σq) = ‖Lp⁻¹Lq‖²_F``, the Mahalanobis term is
    ``‖Lp⁻¹(μp − μq)‖²`` and ``log|Σ| = 2 Σ log diag L``; only triangular solves, no inverse.
    In the GP-VAE ``q`` is the encoder posterior over a latent channel's ``T`` frames and ``p`` the
    Cauchy-kernel GP prior (``gp_prior_covariance``). Both covariances must be positive definite
    (non-PD input gives NaN, as any Cholesky does).

    Args:
      mean_q: ``[..., T]``.
      cov_q: ``[..., T, T]``.
      mean_p: ``[..., T]``.
      cov_p: ``[..., T, T]``; all batch shapes broadcast against each other.

    Returns:
      ``[...]`` KL divergences (non-negative).
    """
    mean_q = jnp.asarray(mean_q)
    mean_p = jnp.asarray(mean_p)
    cov_q = jnp.asarray(cov_q)
    cov_p = jnp.asarray(cov_p)
    size = mean_q.shape[-1]
    batch_shape = jnp.broadcast_shapes(
        mean_q.shape[:-1], mean_p.shape[:-1], cov_q.shape[:-2], cov_p.shape[:-2]
    )
    mean_q = jnp.broadcast_to(mean_q, (*batch_shape, size))
    mean_p = jnp.broadcast_to(mean_p, (*batch_shape, size))
    chol_q = jnp.linalg.cholesky(jnp.broadcast_to(cov_q, (*batch_shape, size, size)))
    chol_p = jnp.linalg.cholesky(jnp.broadcast_to(cov_p, (*batch_shape, size, size)))

    whitened_q = solve_triangular(chol_p, chol_q, lower=True)  # Lp⁻¹ Lq
    trace_term = jnp.sum(jnp.square(whitened_q), axis=(-2, -1))
    whitened_diff = solve_triangular(chol_p, (mean_p - mean_q)[..., None], lower=True)[..., 0]
    mahalanobis = jnp.sum(jnp.square(whitened_diff), axis=-1)
    log_det_p = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_p, axis1=-2, axis2=-1)), axis=-1)
    log_det_q = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_q, axis1=-2, axis2=-1)), axis=-1)
    return 0.5 * (trace_term + mahalanobis - size + log_det_p - log_det_q)


def whitened_prior(cov_p) -> tuple[np.ndarray, float]:
    """``(Lp⁻¹ [T, T], log|Σp|)`` of a fixed prior covariance, in float64 on the host."""
    chol = np.linalg.cholesky(np.asarray(cov_p, np.float64))
    inverse = np.linalg.solve(chol, np.eye(len(chol)))
    return inverse, float(2.0 * np.sum(np.log(np.diagonal(chol))))


def structured_kl(
    mean_q: jax.Array, chol_q: jax.Array, prior_whitener: jax.Array, prior_log_det: float
) -> jax.Array:
    """:func:`gaussian_kl` to a fixed zero-mean prior, from ``q``'s Cholesky factor.

    ``prior_whitener`` is ``Lp⁻¹`` and ``prior_log_det`` ``log|Σp|`` (:func:`whitened_prior`),
    computed once; ``chol_q [..., T, T]`` is lower triangular with a positive diagonal (the
    posterior's ``L``). Only matrix products: no Cholesky or triangular solve in the training
    step (jaxlib's CPU trsm kernel can deadlock when two run at once on a small thread pool).
    """
    size = mean_q.shape[-1]
    whitener = jnp.asarray(prior_whitener, chol_q.dtype)
    trace_term = jnp.sum(jnp.square(whitener @ chol_q), axis=(-2, -1))
    mahalanobis = jnp.sum(jnp.square(jnp.einsum("ij,...j->...i", whitener, mean_q)), axis=-1)
    diag = jnp.diagonal(chol_q, axis1=-2, axis2=-1)
    log_det_q = 2.0 * jnp.sum(jnp.log(diag), axis=-1)
    return 0.5 * (trace_term + mahalanobis - size + prior_log_det - log_det_q)


def posterior_kl(
    mean: jax.Array, scale: jax.Array, coeff: jax.Array, prior_cov: np.ndarray
) -> jax.Array:
    """``KL(q(z|·) ‖ p(z))`` of the Gauss-Markov posterior, summed over latent channels (eq. 8).

    ``q`` is the posterior of :mod:`jaxhead.gpvae.kernels` (eq. 5), ``L = ar1_cholesky(s, ρ)``;
    ``p`` is the zero-mean prior ``N(0, Σp)`` of every channel (the Cauchy GP of eq. 7, or ``I``
    for the i.i.d. baselines). ``prior_cov`` must be concrete (not traced): its whitener is
    computed once on the host (:func:`whitened_prior`), so the jitted step needs no Cholesky or
    triangular solve (:func:`structured_kl`).

    Args:
      mean: ``[B, L, T]`` posterior means ``µ``.
      scale: ``[B, L, T]`` innovation scales ``s_t > 0``.
      coeff: ``[B, L, T]`` AR coefficients ``ρ_t``.
      prior_cov: ``[T, T]`` prior covariance ``Σp``.

    Returns:
      ``[B]`` KL divergences.
    """
    whitener, log_det = whitened_prior(prior_cov)
    chol_q = ar1_cholesky(scale, coeff)
    return jnp.sum(structured_kl(mean, chol_q, whitener, log_det), axis=-1)
