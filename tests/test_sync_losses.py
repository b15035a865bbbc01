"""Tests for jaxhead.sync.losses (InfoNCE, BCE on cosine) and the cosine / norm helpers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.numerics import cosine_similarity, safe_norm
from jaxhead.sync.losses import bce_cosine, info_nce

SETTINGS = settings(max_examples=20, deadline=None)

# Property tests call these many times; compiled once per shape rather than dispatched op by op.
info_nce_jit = jax.jit(info_nce)
cosine_jit = jax.jit(cosine_similarity)
safe_norm_jit = jax.jit(safe_norm)
cosine_and_norm_grads = jax.jit(
    jax.grad(lambda x, y: cosine_similarity(x, y).sum() + safe_norm(x).sum(), (0, 1))
)


def cosine_reference(a, b):
    """Float64 cosine; a zero vector has similarity 0 (PyTorch's convention)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else 0.0


def info_nce_reference(anchor, positive, negatives, temperature):
    """Straight from paper 000 eq. 9, one example at a time, in float64."""
    losses = []
    for b in range(anchor.shape[0]):
        positive_term = np.exp(cosine_reference(anchor[b], positive[b]) / temperature)
        negative_terms = [
            np.exp(cosine_reference(anchor[b], n) / temperature) for n in negatives[b]
        ]
        losses.append(-np.log(positive_term / (positive_term + sum(negative_terms))))
    return np.mean(losses)


def bce_reference(audio, lip, labels):
    losses = []
    for b in range(audio.shape[0]):
        d = min(max(cosine_reference(audio[b], lip[b]), 1e-7), 1 - 1e-7)
        losses.append(-(labels[b] * np.log(d) + (1 - labels[b]) * np.log(1 - d)))
    return np.mean(losses)


def random_embeddings(seed, batch=4, negatives=10, dim=8):
    rng = np.random.default_rng(seed)
    anchor = rng.normal(size=(batch, dim)).astype(np.float32)
    positive = (anchor + 0.5 * rng.normal(size=(batch, dim))).astype(np.float32)
    negative = rng.normal(size=(batch, negatives, dim)).astype(np.float32)
    return anchor, positive, negative


# ----------------------------------------------------------------------------------------------
# cosine_similarity / safe_norm
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**16), log_scale=st.sampled_from([-30, -10, 0, 10, 30]))
def test_cosine_similarity_matches_reference_at_any_scale(seed, log_scale):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, 5, 6))
    scaled = (a * 10.0**log_scale).astype(np.float32), b.astype(np.float32)
    want = [cosine_reference(a[i], b[i]) for i in range(5)]
    np.testing.assert_allclose(cosine_jit(*scaled), want, atol=1e-6)
    norms = safe_norm_jit(scaled[0])
    np.testing.assert_allclose(norms, np.linalg.norm(a, axis=-1) * 10.0**log_scale, rtol=1e-5)
    chex.assert_tree_all_finite(cosine_and_norm_grads(*scaled))


def test_zero_vectors_have_zero_similarity_norm_and_finite_gradients():
    zero, one = jnp.zeros(4), jnp.ones(4)
    np.testing.assert_array_equal(cosine_similarity(zero, one), 0.0)
    np.testing.assert_array_equal(safe_norm(zero), 0.0)
    np.testing.assert_allclose(safe_norm(zero, eps=1e-3), 1e-3, rtol=1e-6)
    chex.assert_tree_all_finite(jax.grad(lambda x: safe_norm(x))(zero))
    chex.assert_tree_all_finite(jax.grad(lambda x: cosine_similarity(x, one), 0)(zero))
    chex.assert_tree_all_finite(jax.grad(lambda x: cosine_similarity(one, x * 0.0))(one * 1e30))


# ----------------------------------------------------------------------------------------------
# info_nce
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    temperature=st.sampled_from([0.05, 0.5, 2.0]),
    num_negatives=st.sampled_from([1, 10]),
)
def test_info_nce_matches_reference(seed, temperature, num_negatives):
    anchor, positive, negative = random_embeddings(seed, negatives=num_negatives)
    got = info_nce_jit(anchor, positive, negative, temperature)
    want = info_nce_reference(anchor, positive, negative, temperature)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**16), num_negatives=st.sampled_from([1, 10, 31]))
def test_info_nce_is_log_n_plus_one_for_equal_similarities(seed, num_negatives):
    # Every candidate equals the positive (up to positive scale): all similarities are equal.
    rng = np.random.default_rng(seed)
    anchor = rng.normal(size=(3, 5)).astype(np.float32)
    positive = rng.normal(size=(3, 5)).astype(np.float32)
    scales = rng.uniform(0.1, 10.0, (3, num_negatives, 1)).astype(np.float32)
    negatives = positive[:, None, :] * scales
    np.testing.assert_allclose(
        info_nce_jit(anchor, positive, negatives), np.log(num_negatives + 1), rtol=1e-5
    )


@SETTINGS
@given(seed=st.integers(0, 2**16), log_scale=st.integers(-20, 20))
def test_info_nce_invariant_to_rescaling_inputs(seed, log_scale):
    anchor, positive, negative = random_embeddings(seed)
    rng = np.random.default_rng(seed + 1)
    factor = 10.0**log_scale
    rescaled = (
        anchor * factor * rng.uniform(0.5, 2.0, (4, 1)),
        positive * rng.uniform(0.5, 2.0, (4, 1)),
        negative / factor * rng.uniform(0.5, 2.0, (4, 10, 1)),
    )
    rescaled = tuple(x.astype(np.float32) for x in rescaled)
    np.testing.assert_allclose(info_nce(*rescaled), info_nce(anchor, positive, negative), rtol=1e-5)


def test_info_nce_limits_and_small_temperature():
    anchor, positive, negative = random_embeddings(0)
    # Perfect positives and opposite negatives at a small temperature: the loss vanishes.
    near_zero = info_nce(anchor, anchor, -np.repeat(anchor[:, None], 10, 1), temperature=0.01)
    np.testing.assert_allclose(near_zero, 0.0, atol=1e-6)
    # Opposite positive, perfect negatives: the loss is (2 + log N-ish) / tau, still finite.
    huge = info_nce(anchor, -anchor, np.repeat(anchor[:, None], 10, 1), temperature=0.01)
    np.testing.assert_allclose(huge, 200.0 + np.log(10.0), rtol=1e-5)


@pytest.mark.parametrize("scale", [0.0, 1e-30, 1.0, 1e30])
def test_info_nce_jit_and_finite_gradients(scale):
    anchor, positive, negative = random_embeddings(3)
    args = (anchor * scale, positive, negative * scale)
    np.testing.assert_allclose(jax.jit(info_nce)(*args), info_nce(*args), rtol=1e-6)
    chex.assert_tree_all_finite(jax.jit(jax.grad(info_nce, argnums=(0, 1, 2)))(*args))


# ----------------------------------------------------------------------------------------------
# bce_cosine
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**16))
def test_bce_cosine_matches_reference(seed):
    rng = np.random.default_rng(seed)
    # Non-negative embeddings, as the sync encoders emit (ReLU outputs); some pairs orthogonal.
    audio = np.maximum(rng.normal(size=(6, 8)), 0.0).astype(np.float32)
    lip = np.maximum(rng.normal(size=(6, 8)), 0.0).astype(np.float32)
    lip[0] = audio[0]
    lip[1] = np.where(audio[1] > 0, 0.0, 1.0)
    labels = rng.integers(0, 2, 6).astype(np.float32)
    # An identical pair with label 0 costs -log(1 - d) at d = 1 - 1e-7, which float32 rounds to
    # 1 - 1.19e-7 (see the analytic test); label 1 keeps the float64 reference comparable.
    labels[0] = 1.0
    np.testing.assert_allclose(
        bce_cosine(audio, lip, labels), bce_reference(audio, lip, labels), rtol=1e-4
    )


def test_bce_cosine_clipping_analytic():
    x = jnp.array([[1.0, 2.0, 0.0]])
    orthogonal = jnp.array([[0.0, 0.0, 5.0]])
    # Identical pair: d clips to 1 - 1e-7 (float32: 1 - 2^-23 is the nearest value below 1).
    clipped = np.float32(1.0) - np.float32(1e-7)
    np.testing.assert_allclose(bce_cosine(x, x, jnp.ones(1)), -np.log(clipped), rtol=1e-3)
    np.testing.assert_allclose(
        bce_cosine(x, x, jnp.zeros(1)), -np.log1p(-np.float64(clipped)), rtol=1e-3
    )
    np.testing.assert_allclose(bce_cosine(x, orthogonal, jnp.ones(1)), -np.log(1e-7), rtol=1e-5)
    np.testing.assert_allclose(bce_cosine(x, orthogonal, jnp.zeros(1)), 1e-7, rtol=1e-3)
    # Half-similar pair: d = 0.5 gives log 2 for either label.
    half = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, np.sqrt(3.0)]])
    np.testing.assert_allclose(bce_cosine(*half, jnp.ones(1)), np.log(2.0), rtol=1e-5)


@pytest.mark.parametrize("scale", [0.0, 1e-30, 1.0, 1e30])
def test_bce_cosine_jit_and_finite_gradients(scale):
    rng = np.random.default_rng(4)
    audio = (np.abs(rng.normal(size=(5, 6))) * scale).astype(np.float32)
    lip = np.abs(rng.normal(size=(5, 6))).astype(np.float32)
    labels = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(
        jax.jit(bce_cosine)(audio, lip, labels), bce_cosine(audio, lip, labels)
    )
    chex.assert_tree_all_finite(jax.grad(bce_cosine, argnums=(0, 1))(audio, lip, labels))
