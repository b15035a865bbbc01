"""Covariances of the GP-VAE's latents, framework-free (paper 001 §3.3–3.4, eqs. 5 and 7).

* The prior: per latent channel a zero-mean Gaussian process over the window's ``T`` frames with
  the Cauchy kernel (eq. 7), and its conditional on the first ``τ`` frames (prior-only
  continuation of a sequence, window after window).
* The posterior (eq. 5; its form is a choice the paper leaves open): per latent channel the
  encoder outputs, at each frame ``t``, a mean ``µ_t``, an innovation scale ``s_t > 0`` and an
  autoregressive coefficient ``ρ_t ∈ (−1, 1)``; the posterior over the channel's ``T`` frames is
  the Gauss-Markov process ``u_0 = s_0 ε_0``, ``u_t = ρ_t u_{t−1} + s_t ε_t``, ``z = µ + u``. Its
  covariance is ``K = L Lᵀ`` with the lower-triangular Cholesky factor ``L = A⁻¹ diag(s)``, ``A``
  unit lower-bidiagonal with ``−ρ_t`` below the diagonal; its precision ``Aᵀ diag(s)⁻² A`` is
  tridiagonal. This is the banded-precision posterior of GP-VAE (Fortuin et al., 2020), oriented
  so that ``z_t`` depends only on ``ε_{≤t}`` and on encoder outputs at frames ``≤ t``: with a
  causal encoder, sampling is causal, which the autoregressive generator relies on. It costs
  ``O(T)`` parameters per channel instead of the ``O(T²)`` of a full factor, and ``|ρ_t| < 1``
  keeps ``L`` well conditioned.

Arrays in, arrays out; no Flax, no config.
"""

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


def ar1_cholesky(scale: jax.Array, coeff: jax.Array) -> jax.Array:
    """Cholesky factor ``L = A⁻¹ diag(s)`` of the Gauss-Markov posterior (eq. 5, module docstring).

    Args:
      scale: ``[..., T]`` innovation scales ``s_t > 0``.
      coeff: ``[..., T]`` AR coefficients ``ρ_t`` (``ρ_0`` is unused).

    Returns:
      ``[..., T, T]`` lower-triangular with diagonal ``s``; ``L[t, u] = s_u ∏_{k=u+1..t} ρ_k``.
    """
    # Built in closed form by a cumulative product down each column (R[t, u] = ρ_t below the
    # diagonal, 1 elsewhere), not by a triangular solve: jaxlib's CPU LAPACK trsm kernel splits
    # its batch over the intra-op thread pool and waits on it from a pool thread, which deadlocks
    # when two such kernels run concurrently on a 2-thread pool (seen as a silent hang of 2-core
    # CPU training; docs/gpvae.md). Matmuls and cumprod only, and no division by ρ.
    size = scale.shape[-1]
    below = jnp.tril(jnp.ones((size, size), dtype=bool), k=-1)  # t > u
    factors = jnp.where(below, coeff[..., :, None], jnp.ones((), scale.dtype))
    products = jnp.cumprod(factors, axis=-2)  # [t, u] = ∏_{k=u+1..t} ρ_k for t ≥ u
    lower = jnp.tril(jnp.ones((size, size), dtype=bool))
    return jnp.where(lower, products * scale[..., None, :], jnp.zeros((), scale.dtype))


def posterior_covariance(scale: jax.Array, coeff: jax.Array) -> jax.Array:
    """``K = L Lᵀ`` ``[..., T, T]`` of the posterior (eq. 5), symmetric positive definite."""
    chol = ar1_cholesky(scale, coeff)
    return chol @ jnp.swapaxes(chol, -1, -2)


def sample_posterior(
    mean: jax.Array, scale: jax.Array, coeff: jax.Array, noise: jax.Array
) -> jax.Array:
    """Reparameterised sample ``z = µ + L ε`` (the resampling of eq. 5 / fig. 4).

    Args:
      mean, scale, coeff, noise: ``[..., T]``; ``noise`` is standard normal.

    Returns:
      ``[..., T]``; ``z_t`` depends on ``noise[..., :t+1]`` only (``L`` is lower triangular).
    """
    chol = ar1_cholesky(scale, coeff)
    return mean + jnp.einsum("...ij,...j->...i", chol, noise)


def gp_conditional(
    prior_cov: jax.Array, observed: jax.Array, jitter: float = 1e-5
) -> tuple[jax.Array, jax.Array]:
    """Zero-mean GP prior over ``T`` frames conditioned on its first ``τ`` values.

    ``p(z_{τ:T} | z_{0:τ}) = N(K₂₁K₁₁⁻¹ z_{0:τ}, K₂₂ − K₂₁K₁₁⁻¹K₁₂)`` (eq. 7 prior, Gaussian
    conditioning); used to continue a prior sample window after window without audio.

    Args:
      prior_cov: ``[T, T]`` prior covariance.
      observed: ``[..., τ]`` values of the first ``τ`` frames.
      jitter: added to the conditional covariance's diagonal.

    Returns:
      ``(mean [..., T − τ], chol [T − τ, T − τ])``: conditional mean and Cholesky factor.
    """
    tau = observed.shape[-1]
    k11 = prior_cov[:tau, :tau]
    k21 = prior_cov[tau:, :tau]
    k22 = prior_cov[tau:, tau:]
    chol11 = jnp.linalg.cholesky(k11)
    # W = K₂₁ K₁₁⁻¹ via two triangular solves.
    gain = jax.scipy.linalg.cho_solve((chol11, True), k21.T).T
    mean = jnp.einsum("ij,...j->...i", gain, observed)
    cov = k22 - gain @ k21.T
    cov = 0.5 * (cov + cov.T) + jitter * jnp.eye(cov.shape[0], dtype=cov.dtype)
    return mean, jnp.linalg.cholesky(cov)
