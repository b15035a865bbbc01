"""Tests for jaxhead.gpvae.kernels (Cauchy GP prior) and jaxhead.gpvae.losses.gaussian_kl."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.gpvae.kernels import (
    ar1_cholesky,
    cauchy_kernel,
    gp_prior_covariance,
    posterior_covariance,
)
from jaxhead.gpvae.losses import gaussian_kl, structured_kl, whitened_prior

SETTINGS = settings(max_examples=20, deadline=None)

gaussian_kl_jit = jax.jit(gaussian_kl)


def cauchy_reference(t1, t2, sigma, length_scale):
    out = np.zeros((len(t1), len(t2)))
    for i, a in enumerate(t1):
        for j, b in enumerate(t2):
            out[i, j] = sigma / (1.0 + (float(a) - float(b)) ** 2 / length_scale**2)
    return out


def gaussian_kl_reference(mean_q, cov_q, mean_p, cov_p):
    """Textbook formula with explicit inverse and slogdet, in float64."""
    mean_q, cov_q, mean_p, cov_p = (
        np.asarray(x, np.float64) for x in (mean_q, cov_q, mean_p, cov_p)
    )
    precision_p = np.linalg.inv(cov_p)
    difference = mean_p - mean_q
    return 0.5 * (
        np.trace(precision_p @ cov_q)
        + difference @ precision_p @ difference
        - len(mean_q)
        + np.linalg.slogdet(cov_p)[1]
        - np.linalg.slogdet(cov_q)[1]
    )


def random_gaussian(rng, size, scale=1.0):
    """A mean and a well-conditioned covariance A Aᵀ + 0.5 I, times ``scale``."""
    a = rng.normal(size=(size, size))
    cov = (a @ a.T / size + 0.5 * np.eye(size)) * scale
    return (rng.normal(size=size) * np.sqrt(scale)).astype(np.float32), cov.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Cauchy kernel and GP prior
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    sigma=st.floats(0.1, 10.0),
    length_scale=st.floats(0.1, 50.0),
    spread=st.sampled_from([0.01, 1.0, 100.0]),
)
def test_cauchy_kernel_symmetric_psd_with_sigma_diagonal(seed, sigma, length_scale, spread):
    rng = np.random.default_rng(seed)
    times = (rng.uniform(0.0, 1.0, 12) * spread).astype(np.float32)
    kernel = np.asarray(cauchy_kernel(times, times, sigma, length_scale), np.float64)
    np.testing.assert_allclose(kernel, kernel.T, rtol=1e-6)
    np.testing.assert_allclose(np.diag(kernel), sigma, rtol=1e-6)
    # PSD up to float32 rounding of the entries (eigenvalue error <= n * ulp * sigma).
    assert np.linalg.eigvalsh(kernel).min() >= -12 * 1e-6 * sigma
    other = (rng.uniform(0.0, 1.0, 5) * spread).astype(np.float32)
    np.testing.assert_allclose(
        cauchy_kernel(times, other, sigma, length_scale),
        cauchy_reference(times, other, sigma, length_scale),
        rtol=1e-5,
    )


def test_cauchy_kernel_analytic_values():
    # One length scale apart the covariance halves; it decays as 1/d² far away (heavy tail).
    k = cauchy_kernel(jnp.array([0.0]), jnp.array([0.0, 3.0, 300.0]), 2.0, 3.0)
    np.testing.assert_allclose(k, [[2.0, 1.0, 2.0 / (1.0 + 1e4)]], rtol=1e-6)


def test_gp_prior_covariance_is_kernel_plus_jitter_and_factorises():
    cov = gp_prior_covariance(64, 1.5, 4.0)
    times = np.arange(64.0)
    want = cauchy_reference(times, times, 1.5, 4.0) + 1e-3 * np.eye(64)
    np.testing.assert_allclose(cov, want, rtol=1e-6)
    np.testing.assert_allclose(
        gp_prior_covariance(5, 1.0, 2.0, jitter=0.5),
        cauchy_reference(range(5), range(5), 1.0, 2.0) + 0.5 * np.eye(5),
        rtol=1e-6,
    )
    assert np.all(np.isfinite(jnp.linalg.cholesky(cov)))
    chex.assert_tree_all_finite(
        jax.grad(lambda s, l: gp_prior_covariance(8, s, l).sum(), (0, 1))(1.0, 2.0)
    )


# ----------------------------------------------------------------------------------------------
# gaussian_kl
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**16), size=st.sampled_from([1, 3, 8]))
def test_gaussian_kl_matches_reference_and_is_nonnegative(seed, size):
    rng = np.random.default_rng(seed)
    mean_q, cov_q = random_gaussian(rng, size)
    mean_p, cov_p = random_gaussian(rng, size)
    kl = gaussian_kl_jit(mean_q, cov_q, mean_p, cov_p)
    want = gaussian_kl_reference(mean_q, cov_q, mean_p, cov_p)
    np.testing.assert_allclose(kl, want, rtol=1e-4, atol=1e-5)
    assert kl >= 0.0
    # Zero only for equal Gaussians (up to float32 rounding).
    np.testing.assert_allclose(gaussian_kl_jit(mean_q, cov_q, mean_q, cov_q), 0.0, atol=1e-5)
    assert gaussian_kl_jit(mean_q + 0.1, cov_q, mean_q, cov_q) > 1e-4
    assert gaussian_kl_jit(mean_q, cov_q * 1.2, mean_q, cov_q) > 1e-4


def test_gaussian_kl_univariate_analytic():
    # KL(N(m1, s1²) || N(m2, s2²)) = log(s2/s1) + (s1² + (m1 - m2)²) / (2 s2²) - 1/2.
    m1, s1, m2, s2 = 0.3, 0.5, -1.0, 2.0
    want = np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    got = gaussian_kl(jnp.array([m1]), jnp.array([[s1**2]]), jnp.array([m2]), jnp.array([[s2**2]]))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_gaussian_kl_equals_monte_carlo_estimate():
    # KL = E_q[log q(z) - log p(z)], estimated with 200k draws from q and a fixed key.
    rng = np.random.default_rng(0)
    mean_q, cov_q = random_gaussian(rng, 3)
    mean_p, cov_p = random_gaussian(rng, 3)
    z = np.asarray(jax.random.multivariate_normal(jax.random.key(0), mean_q, cov_q, (200_000,)))
    log_ratio = scipy.stats.multivariate_normal(mean_q, cov_q).logpdf(
        z
    ) - scipy.stats.multivariate_normal(mean_p, cov_p).logpdf(z)
    estimate, standard_error = float(log_ratio.mean()), float(log_ratio.std() / np.sqrt(z.shape[0]))
    kl = float(gaussian_kl(mean_q, cov_q, mean_p, cov_p))
    assert abs(kl - estimate) < 4 * standard_error + 1e-4, (kl, estimate, standard_error)


def test_gaussian_kl_batches_broadcast_and_vmap_match_loop():
    # The GP-VAE use: per-channel posteriors [B, C, T] against one shared prior [T, T].
    rng = np.random.default_rng(1)
    pairs = [random_gaussian(rng, 6) for _ in range(4)]
    mean_q = np.stack([m for m, _ in pairs]).reshape(2, 2, 6)
    cov_q = np.stack([c for _, c in pairs]).reshape(2, 2, 6, 6)
    prior = np.asarray(gp_prior_covariance(6, 1.0, 2.0))
    batched = gaussian_kl(mean_q, cov_q, np.zeros(6, np.float32), prior)
    assert batched.shape == (2, 2)
    looped = [
        [gaussian_kl_jit(mean_q[i, j], cov_q[i, j], np.zeros(6), prior) for j in range(2)]
        for i in range(2)
    ]
    np.testing.assert_allclose(batched, looped, rtol=1e-5)
    mapped = jax.vmap(gaussian_kl, in_axes=(0, 0, None, None))(
        mean_q.reshape(4, 6), cov_q.reshape(4, 6, 6), np.zeros(6, np.float32), prior
    )
    np.testing.assert_allclose(mapped, np.ravel(looped), rtol=1e-5)
    np.testing.assert_allclose(
        gaussian_kl_jit(mean_q, cov_q, np.zeros(6), prior), batched, rtol=1e-5
    )


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_gaussian_kl_finite_gradients_at_extreme_scales(scale):
    rng = np.random.default_rng(2)
    mean_q, cov_q = random_gaussian(rng, 5, scale)
    mean_p, cov_p = random_gaussian(rng, 5, scale)
    kl = gaussian_kl(mean_q, cov_q, mean_p, cov_p)
    # KL is invariant to rescaling both Gaussians together.
    unit = gaussian_kl_reference(
        mean_q / np.sqrt(scale), cov_q / scale, mean_p / np.sqrt(scale), cov_p / scale
    )
    np.testing.assert_allclose(kl, unit, rtol=1e-3)
    grads = jax.grad(gaussian_kl, argnums=(0, 1, 2, 3))(mean_q, cov_q, mean_p, cov_p)
    chex.assert_tree_all_finite(grads)


def test_structured_kl_matches_gaussian_kl_and_needs_no_lapack():
    """The training step's KL (precomputed prior whitener, posterior L) equals gaussian_kl, and
    its jitted program calls no LAPACK kernel (jaxlib's CPU trsm can deadlock on 2 threads)."""
    rng = np.random.default_rng(0)
    prior = np.asarray(gp_prior_covariance(16, 1.0, 8.0, 1e-3))
    whitener, log_det = whitened_prior(prior)
    mean = rng.normal(size=(3, 2, 16)).astype(np.float32)
    scale = rng.uniform(0.2, 1.5, size=(3, 2, 16)).astype(np.float32)
    coeff = rng.uniform(-0.95, 0.95, size=(3, 2, 16)).astype(np.float32)

    def fn(mean, scale, coeff):
        return structured_kl(mean, ar1_cholesky(scale, coeff), whitener, log_det)

    got = jax.jit(fn)(mean, scale, coeff)
    want = gaussian_kl(mean, posterior_covariance(scale, coeff), np.zeros(16), prior)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    hlo = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a)))).lower(mean, scale, coeff).as_text()
    assert "lapack" not in hlo and "custom_call" not in hlo
