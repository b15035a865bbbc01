"""Gaussian-process prior of the Transformer GP-VAE (paper 001 sec. 3.3, eq. 7)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cauchy_kernel(
    t1: jax.Array, t2: jax.Array, sigma: float | jax.Array, length_scale: float | jax.Array
) -> jax.Array:
    """Cauchy kernel ``k(t, t') = σ / (1 + (t − t')² / ℓ²)`` (paper 001 eq. 7, after GP-VAE).

    A scale mixture of squared-exponential kernels, hence positive semi-definite for any set of
    time points, with heavier tails than the RBF: distant frames stay weakly correlated, which
    suits slow head-pose drift. ``σ`` is the prior variance ``k(t, t)``.

    Args:
      t1: ``[T1]`` time points.
      t2: ``[T2]`` time points.
      sigma: σ > 0 (scalar).
      length_scale: ℓ > 0 (scalar), in the units of ``t``.

    Returns:
      ``[T1, T2]`` covariance matrix.
    """
    t1 = jnp.asarray(t1)
    t2 = jnp.asarray(t2)
    squared_distance = jnp.square(t1[:, None] - t2[None, :])
    return sigma / (1.0 + squared_distance / jnp.square(length_scale))


def gp_prior_covariance(
    num_steps: int,
    sigma: float | jax.Array,
    length_scale: float | jax.Array,
    jitter: float = 1e-3,
) -> jax.Array:
    """Prior covariance of one latent channel over frames ``0..T−1``: ``K + jitter·I``.

    The jitter keeps the Cholesky factorisation in ``gaussian_kl`` stable: the Cauchy kernel on
    many closely spaced points is numerically rank-deficient in float32.

    Args:
      num_steps: ``T`` (static Python int).
      sigma: kernel variance σ.
      length_scale: kernel length scale ℓ, in frames.
      jitter: added to the diagonal.

    Returns:
      ``[T, T]`` symmetric positive-definite matrix.
    """
    times = jnp.arange(num_steps, dtype=jnp.float32)
    kernel = cauchy_kernel(times, times, sigma, length_scale)
    return kernel + jitter * jnp.eye(num_steps, dtype=kernel.dtype)
