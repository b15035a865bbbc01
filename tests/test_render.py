"""Tests for jaxhead.nerf.render: stratified sampling, compositing, hierarchical sampling."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.nerf import render

SETTINGS = settings(max_examples=20, deadline=None)

# Compiled once per shape: property tests call it many times, eager dispatch would dominate.
sample_pdf_jit = jax.jit(render.sample_pdf, static_argnums=3)
sample_along_rays_jit = jax.jit(render.sample_along_rays, static_argnums=(3, 4, 5))


# ----------------------------------------------------------------------------------------------
# Slow references (float64 Python loops, written straight from NeRF eq. 3 and sec. 5.2)
# ----------------------------------------------------------------------------------------------


def composite_reference(density, values, t_vals, dir_norm):
    """One ray at a time, one sample at a time, T as a running product of (1 - alpha)."""
    density, values, t_vals = (np.asarray(a, np.float64) for a in (density, values, t_vals))
    dir_norm = np.asarray(dir_norm, np.float64)
    batch_shape = density.shape[:-1]
    num_samples = density.shape[-1]
    rendered = np.zeros(values.shape[:-2] + values.shape[-1:])
    weights = np.zeros(density.shape)
    for index in np.ndindex(*batch_shape):
        transmittance = 1.0
        for i in range(num_samples):
            delta = t_vals[index][i + 1] - t_vals[index][i] if i + 1 < num_samples else 1e10
            alpha = 1.0 - np.exp(-max(density[index][i], 0.0) * delta * dir_norm[index])
            weights[index][i] = transmittance * alpha
            rendered[index] += weights[index][i] * values[index][i]
            transmittance *= 1.0 - alpha
    return rendered, weights, weights.sum(-1), (weights * t_vals).sum(-1)


def sample_pdf_reference(bins, weights, quantiles):
    """One ray: NeRF's inverse CDF with np.searchsorted."""
    bins = np.asarray(bins, np.float64)
    weights = np.maximum(np.asarray(weights, np.float64), 0.0) + 1e-5
    cdf = np.concatenate([[0.0], np.cumsum(weights / weights.sum())])
    cdf[-1] = 1.0
    out = []
    for u in quantiles:
        i = min(max(np.searchsorted(cdf, u, side="right") - 1, 0), len(weights) - 1)
        fraction = (u - cdf[i]) / (cdf[i + 1] - cdf[i])
        out.append(bins[i] + np.clip(fraction, 0, 1) * (bins[i + 1] - bins[i]))
    return np.array(out)


def piecewise_constant_cdf(bins, weights):
    """CDF of the pdf sample_pdf targets, as a function of t (for a KS test)."""
    weights = np.maximum(np.asarray(weights, np.float64), 0.0) + render.PDF_WEIGHT_EPS
    cdf = np.concatenate([[0.0], np.cumsum(weights / weights.sum())])
    return lambda t: np.interp(t, np.asarray(bins, np.float64), cdf)


def random_rays(seed, batch=3, num_samples=8, channels=2, scale=1.0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.5, 4.0, (batch, num_samples)), axis=-1).astype(np.float32)
    density = (scale * rng.exponential(1.0, (batch, num_samples))).astype(np.float32)
    density[rng.uniform(size=density.shape) < 0.2] *= -1.0  # negative raw densities clamp to 0
    values = rng.normal(size=(batch, num_samples, channels)).astype(np.float32)
    dir_norm = rng.uniform(0.5, 2.0, (batch,)).astype(np.float32)
    return density, values, t, dir_norm


# ----------------------------------------------------------------------------------------------
# sample_along_rays
# ----------------------------------------------------------------------------------------------


def test_sample_along_rays_midpoints_are_analytic():
    t = render.sample_along_rays(None, 2.0, 6.0, 4, (2,))
    np.testing.assert_allclose(t, np.tile([2.5, 3.5, 4.5, 5.5], (2, 1)), rtol=1e-6)
    unstratified = render.sample_along_rays(jax.random.key(0), 2.0, 6.0, 4, (2,), stratified=False)
    np.testing.assert_array_equal(t, unstratified)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    num_samples=st.sampled_from([1, 3, 16]),
    batch_shape=st.sampled_from([(), (5,), (2, 3)]),
)
def test_sample_along_rays_sorted_one_per_bin(seed, num_samples, batch_shape):
    rng = np.random.default_rng(seed)
    near = rng.uniform(0.0, 2.0, batch_shape).astype(np.float32)
    far = near + rng.uniform(0.1, 5.0, batch_shape).astype(np.float32)
    t = np.asarray(sample_along_rays_jit(jax.random.key(seed), near, far, num_samples, batch_shape))
    assert t.shape == (*batch_shape, num_samples)
    assert np.all(np.diff(t, axis=-1) >= 0)
    # Each sample lies in its own bin [near + i·Δ, near + (i+1)·Δ]: stratification, not just range.
    width = ((far - near) / num_samples)[..., None]
    edges = near[..., None] + width * np.arange(num_samples)
    assert np.all(t >= edges - 1e-5) and np.all(t <= edges + width + 1e-5)


def test_sample_along_rays_broadcasts_near_far_and_is_unbiased():
    near = jnp.array([0.0, 1.0, 2.0])
    t = render.sample_along_rays(jax.random.key(3), near, 10.0, 8, (4000, 3))
    assert t.shape == (4000, 3, 8)
    midpoints = render.sample_along_rays(None, near, 10.0, 8, (3,))
    # Jitter is uniform inside each bin, so its mean is the midpoint (std of mean ~ 0.3 / 63).
    np.testing.assert_allclose(t.mean(axis=0), midpoints, atol=0.03)
    again = render.sample_along_rays(jax.random.key(3), near, 10.0, 8, (4000, 3))
    np.testing.assert_array_equal(t, again)


def test_sample_along_rays_jit_matches_eager():
    fn = functools.partial(render.sample_along_rays, num_samples=6, batch_shape=(4,))
    key = jax.random.key(1)
    np.testing.assert_allclose(jax.jit(fn)(key, 1.0, 3.0), fn(key, 1.0, 3.0), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# composite
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1.0, 30.0]))
def test_composite_matches_reference_loop(seed, scale):
    density, values, t, dir_norm = random_rays(seed, scale=scale)
    got = render.composite(density, values, t, dir_norm)
    want = composite_reference(density, values, t, dir_norm)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([0.0, 1e-2, 1.0, 1e3, 1e30]))
def test_weights_nonnegative_sum_at_most_one_transmittance_nonincreasing(seed, scale):
    density, values, t, dir_norm = random_rays(seed, batch=4, num_samples=16, scale=scale)
    alpha, transmittance, weights = render.volume_weights(density, t, dir_norm)
    _, composite_weights, accumulation, _ = render.composite(density, values, t, dir_norm)
    np.testing.assert_array_equal(weights, composite_weights)
    assert np.all(np.isfinite(weights))
    assert np.all(weights >= 0)
    assert np.all(accumulation <= 1.0 + 1e-6)
    assert np.all(np.diff(transmittance, axis=-1) <= 0)
    assert np.all((alpha >= 0) & (alpha <= 1))
    # T_i = 1 - sum_{j<i} w_j: transmittance is what earlier samples left over.
    leftover = 1.0 - np.concatenate([np.zeros((4, 1)), np.cumsum(weights, -1)[:, :-1]], -1)
    np.testing.assert_allclose(transmittance, leftover, atol=1e-5)


@pytest.mark.parametrize("hit", [0, 3, 7])
def test_huge_density_gives_one_hot_weight(hit):
    t = jnp.linspace(1.0, 2.0, 8)
    # Dense matter behind the hit sample must be fully occluded by it.
    behind = jnp.arange(8) > hit
    density = jnp.where(behind, 5.0, 0.0).at[hit].set(1e30)
    values = jnp.arange(8.0)[:, None] * jnp.ones((1, 3))
    rendered, weights, accumulation, depth = render.composite(density, values, t, jnp.array(1.0))
    np.testing.assert_allclose(weights, np.eye(8)[hit], atol=1e-6)
    np.testing.assert_allclose(accumulation, 1.0, atol=1e-6)
    np.testing.assert_allclose(depth, t[hit], rtol=1e-6)
    np.testing.assert_allclose(rendered, np.full(3, hit), rtol=1e-6)


def test_last_interval_is_effectively_infinite():
    # Any positive density on the last sample absorbs everything left (delta = 1e10).
    t = jnp.array([1.0, 2.0, 3.0])
    density = jnp.array([0.0, 0.0, 1e-6])
    _, weights, accumulation, depth = render.composite(density, jnp.ones((3, 1)), t, 1.0)
    np.testing.assert_allclose(weights, [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(depth, 3.0, rtol=1e-6)
    # Zero density everywhere renders nothing.
    _, weights, accumulation, _ = render.composite(jnp.zeros(3), jnp.ones((3, 1)), t, 1.0)
    np.testing.assert_array_equal(weights, 0.0)
    np.testing.assert_array_equal(accumulation, 0.0)


def test_single_interval_analytic():
    # alpha_0 = 1 - exp(-sigma * delta * |d|) with delta = 0.5, |d| = 2.
    t = jnp.array([1.0, 1.5])
    density = jnp.array([0.7, 0.0])
    _, weights, _, _ = render.composite(density, jnp.ones((2, 1)), t, jnp.array(2.0))
    np.testing.assert_allclose(weights[0], 1.0 - np.exp(-0.7), rtol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**16), value=st.floats(-5.0, 5.0))
def test_constant_values_render_to_accumulation_times_value(seed, value):
    density, _, t, dir_norm = random_rays(seed)
    values = np.full((3, 8, 2), value, np.float32)
    rendered, _, accumulation, _ = render.composite(density, values, t, dir_norm)
    expected = np.broadcast_to(np.asarray(accumulation)[:, None] * value, (3, 2))
    np.testing.assert_allclose(rendered, expected, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**16))
def test_dir_norm_scales_density(seed):
    # sigma * (delta * |d|) == (sigma * |d|) * delta: a longer direction is a denser medium.
    density, values, t, dir_norm = random_rays(seed)
    density = np.abs(density)
    scaled = render.composite(density * dir_norm[:, None], values, t, np.ones(3, np.float32))
    for a, b in zip(render.composite(density, values, t, dir_norm), scaled, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_composite_jit_and_vmap_match_eager_and_loop():
    density, values, t, dir_norm = random_rays(7, batch=5)
    eager = render.composite(density, values, t, dir_norm)
    jitted = jax.jit(render.composite)(density, values, t, dir_norm)
    mapped = jax.vmap(render.composite)(density, values, t, dir_norm)
    looped = [render.composite(density[i], values[i], t[i], dir_norm[i]) for i in range(5)]
    for k in range(4):
        np.testing.assert_allclose(jitted[k], eager[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(mapped[k], np.stack([r[k] for r in looped]), rtol=1e-6)


@jax.jit
@functools.partial(jax.grad, argnums=(0, 1, 2, 3))
def composite_grads(density, values, t, dir_norm, spacing):
    rendered, _, accumulation, depth = render.composite(density, values, t, dir_norm)
    return jnp.sum(rendered) + jnp.sum(accumulation) + jnp.sum(depth / spacing)


@pytest.mark.parametrize("density_scale", [0.0, 1e-10, 1.0, 1e10, 1e30])
@pytest.mark.parametrize("spacing", [1e-8, 1.0, 1e6])
def test_composite_gradients_finite_at_extreme_scales(density_scale, spacing):
    rng = np.random.default_rng(0)
    density = jnp.asarray(density_scale * rng.uniform(0.0, 1.0, (2, 6)), jnp.float32)
    t = jnp.asarray(spacing * np.cumsum(rng.uniform(0.5, 1.5, (2, 6)), -1), jnp.float32)
    values = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
    dir_norm = jnp.array([1e-3, 1e3], jnp.float32)

    outputs = jax.jit(render.composite)(density, values, t, dir_norm)
    grads = composite_grads(density, values, t, dir_norm, spacing)
    chex.assert_tree_all_finite((outputs, grads))


# ----------------------------------------------------------------------------------------------
# sample_pdf
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    num_bins=st.sampled_from([1, 16]),
    num_samples=st.sampled_from([1, 32]),
    deterministic=st.booleans(),
)
def test_sample_pdf_sorted_inside_bins_and_matches_reference(
    seed, num_bins, num_samples, deterministic
):
    rng = np.random.default_rng(seed)
    bins = np.sort(rng.uniform(0.0, 10.0, (3, num_bins + 1)), -1).astype(np.float32)
    weights = rng.exponential(1.0, (3, num_bins)).astype(np.float32)
    weights[rng.uniform(size=weights.shape) < 0.3] = 0.0
    key = None if deterministic else jax.random.key(seed)
    samples = np.asarray(sample_pdf_jit(key, bins, weights, num_samples))
    assert samples.shape == (3, num_samples)
    assert np.all(np.diff(samples, axis=-1) >= 0)
    assert np.all(samples >= bins[:, :1]) and np.all(samples <= bins[:, -1:])
    if deterministic:
        quantiles = np.linspace(0.0, 1.0, num_samples)
        for ray in range(3):
            want = sample_pdf_reference(bins[ray], weights[ray], quantiles)
            np.testing.assert_allclose(samples[ray], want, rtol=1e-4, atol=1e-4)


def test_sample_pdf_follows_the_weights():
    # Pool 400 rays x 64 stratified samples from one pdf; chi-square over bins, KS within them.
    bins = np.array([0.0, 1.0, 1.5, 3.0, 3.2, 5.0], np.float32)
    weights = np.array([0.1, 2.0, 0.0, 1.0, 0.6], np.float32)
    samples = render.sample_pdf(
        jax.random.key(0), np.tile(bins, (400, 1)), np.tile(weights, (400, 1)), 64
    )
    samples = np.asarray(samples).ravel()
    observed, _ = np.histogram(samples, bins=bins)
    probabilities = (weights + render.PDF_WEIGHT_EPS) / (weights + render.PDF_WEIGHT_EPS).sum()
    expected = probabilities * samples.size
    nonempty = expected > 5
    chi2 = scipy.stats.chisquare(
        observed[nonempty],
        expected[nonempty] * (observed[nonempty].sum() / expected[nonempty].sum()),
    )
    assert chi2.pvalue > 1e-3, (observed, expected)
    ks = scipy.stats.kstest(samples, piecewise_constant_cdf(bins, weights))
    assert ks.pvalue > 1e-3, ks
    assert np.sum((samples > 1.5) & (samples < 3.0)) < 0.001 * samples.size  # zero-weight bin


def test_sample_pdf_zero_weights_are_uniform():
    bins = jnp.linspace(2.0, 6.0, 9)
    samples = render.sample_pdf(None, bins, jnp.zeros(8), 5)
    np.testing.assert_allclose(samples, [2.0, 3.0, 4.0, 5.0, 6.0], rtol=1e-5)
    random = np.asarray(render.sample_pdf(jax.random.key(2), bins, jnp.zeros(8), 20000))
    assert scipy.stats.kstest(random, scipy.stats.uniform(2.0, 4.0).cdf).pvalue > 1e-3


def test_sample_pdf_has_no_gradient_and_jit_vmap_agree():
    rng = np.random.default_rng(5)
    bins = jnp.asarray(np.sort(rng.uniform(0, 1, (4, 9)), -1), jnp.float32)
    weights = jnp.asarray(rng.uniform(0, 1, (4, 8)), jnp.float32)
    key = jax.random.key(9)
    grads = jax.jit(jax.grad(lambda b, w: render.sample_pdf(key, b, w, 16).sum(), argnums=(0, 1)))(
        bins, weights
    )
    chex.assert_trees_all_equal(grads, (jnp.zeros_like(bins), jnp.zeros_like(weights)))
    fn = functools.partial(render.sample_pdf, num_samples=16)
    eager = fn(key, bins, weights)
    np.testing.assert_allclose(jax.jit(fn)(key, bins, weights), eager, rtol=1e-6)
    mapped = jax.vmap(fn, in_axes=(None, 0, 0))(None, bins, weights)
    looped = np.stack([sample_pdf_jit(None, bins[i], weights[i], 16) for i in range(4)])
    np.testing.assert_allclose(mapped, looped, rtol=1e-6)
