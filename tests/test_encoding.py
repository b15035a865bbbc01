"""Tests for jaxhead.nerf.encoding.positional_encoding (NeRF feature order)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.nerf.encoding import positional_encoding

SETTINGS = settings(max_examples=20, deadline=None)

encode_jit = jax.jit(positional_encoding, static_argnums=(1, 2))


def positional_encoding_reference(x, num_freqs, include_input):
    """NeRF's embedder, written as its list of functions: [x], then sin(2^k x), cos(2^k x)."""
    x = np.asarray(x, np.float64)
    parts = [x] if include_input else []
    for k in range(num_freqs):
        parts += [np.sin(2.0**k * x), np.cos(2.0**k * x)]
    return np.concatenate(parts, axis=-1) if parts else np.zeros(x.shape[:-1] + (0,))


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    batch_shape=st.sampled_from([(), (4,), (2, 3)]),
    dim=st.sampled_from([1, 3]),
    num_freqs=st.sampled_from([0, 1, 4, 10]),
    include_input=st.booleans(),
)
def test_matches_reference_and_shape(seed, batch_shape, dim, num_freqs, include_input):
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, (*batch_shape, dim)).astype(np.float32)
    got = encode_jit(x, num_freqs, include_input)
    assert got.shape == (*batch_shape, dim * (include_input + 2 * num_freqs))
    want = positional_encoding_reference(x, num_freqs, include_input)
    # 2^9 * x amplifies float32 input rounding (~1e-7 relative) to ~1e-4 in the phase.
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_feature_order_is_nerf_order():
    x = jnp.array([0.25, -1.0])
    features = positional_encoding(x, 2)
    np.testing.assert_allclose(
        features,
        [0.25, -1.0, *np.sin(x), *np.cos(x), *np.sin(2 * x), *np.cos(2 * x)],
        rtol=1e-6,
    )
    np.testing.assert_allclose(positional_encoding(jnp.zeros(3), 3, False), [0, 0, 0, 1, 1, 1] * 3)
    np.testing.assert_array_equal(positional_encoding(x, 0), x)


def test_jit_vmap_and_gradients():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)
    fn = functools.partial(positional_encoding, num_freqs=6)
    eager = fn(x)
    np.testing.assert_allclose(jax.jit(fn)(x), eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(fn)(x), np.stack([fn(row) for row in x]), atol=1e-6)
    # d/dx sin(2^k x) = 2^k cos(2^k x): gradients grow with frequency but stay finite.
    grad = jax.grad(lambda x: jnp.sum(fn(x)))(x * 1e6)
    assert np.all(np.isfinite(grad))
    # Slot 3 of [x, sin x, cos x, sin 2x, ...] is sin(2x), whose derivative is 2 cos(2x).
    single = jax.grad(lambda s: positional_encoding(s[None], 3)[3])(jnp.array(0.3))
    np.testing.assert_allclose(single, 2.0 * np.cos(2 * 0.3), rtol=1e-6)
