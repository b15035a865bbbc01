"""Sync encoders, SyncNet offset scoring, mouth normalisation and the stage's loss registry."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.sync import scoring
from jaxhead.sync.data import normalize_mouth
from jaxhead.sync.models import SyncModel, WindowEncoder
from jaxhead.sync.stage import LOSSES, contrastive_loss

# --- encoders ------------------------------------------------------------------------------------


def small_model(seed=0):
    # Built under jit: one compilation instead of one per initialiser op (CPU time in CI).
    return nnx.jit(lambda: SyncModel((20, 13), (5, 40), (8, 16), 16, 12, rngs=nnx.Rngs(seed)))()


def test_encoders_shapes_and_non_negative_embeddings():
    model = small_model()
    key_a, key_l = jax.random.split(jax.random.key(0))
    audio = 3.0 * jax.random.normal(key_a, (2, 3, 20, 13))
    lips = jax.random.normal(key_l, (7, 5, 40))
    f_al, f_lip = nnx.jit(lambda m, a, v: m(a, v))(model, audio, lips)
    assert f_al.shape == (2, 3, 12) and f_lip.shape == (7, 12)
    assert bool(jnp.all(f_al >= 0)) and bool(jnp.all(f_lip >= 0))
    # Some units are active: a dead encoder would also be non-negative.
    assert bool(jnp.any(f_al > 0)) and bool(jnp.any(f_lip > 0))


def test_encoder_batch_dims_equal_loop_and_jit_equals_eager():
    encoder = WindowEncoder(13, 20, (8, 16), 16, 12, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(2), (4, 20, 13))
    graphdef, params = nnx.split(encoder)
    eager = encoder(x)
    # vmap over the batch == the batched call (the encoder flattens leading axes itself).
    mapped = jax.jit(jax.vmap(lambda p, xi: nnx.merge(graphdef, p)(xi), (None, 0)))(params, x)
    np.testing.assert_allclose(mapped, eager, rtol=1e-5, atol=1e-6)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(params, x):
        return nnx.merge(graphdef, params)(x)

    np.testing.assert_allclose(apply(params, x), eager, rtol=1e-5, atol=1e-6)
    apply(params, x + 1.0)  # same shapes: no retrace


def test_encoder_rejects_wrong_window_shape():
    encoder = nnx.eval_shape(lambda: WindowEncoder(13, 20, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"\[\.\.\., 20, 13\]"):
        encoder(jnp.zeros((2, 16, 13)))
    with pytest.raises(ValueError, match="in_features >= 1"):
        WindowEncoder(0, 20, rngs=nnx.Rngs(0))


def test_encoder_output_depends_on_event_position_in_window():
    # Flattened (not pooled) conv features: moving an impulse inside the window changes the code.
    encoder = nnx.jit(lambda: WindowEncoder(1, 5, (8,), 16, 12, rngs=nnx.Rngs(3)))()
    impulses = jnp.zeros((2, 5, 1)).at[0, 1, 0].set(1.0).at[1, 3, 0].set(1.0)
    codes = nnx.jit(lambda m, x: m(x))(encoder, impulses)
    assert float(jnp.max(jnp.abs(codes[0] - codes[1]))) > 1e-4


# --- losses by name ------------------------------------------------------------------------------


def test_losses_by_name_order_aligned_above_misaligned():
    key = jax.random.key(4)
    lip = jax.nn.relu(jax.random.normal(key, (6, 8)))
    positive = lip + 0.01
    negatives = jax.nn.relu(jax.random.normal(jax.random.key(5), (6, 10, 8)))
    swapped = jnp.concatenate([positive[:, None], negatives[:, 1:]], 1)
    for name in LOSSES:
        loss = jax.jit(lambda *args, name=name: contrastive_loss(name, *args, 0.5))
        # Swapping the roles (a negative as the positive) must cost more.
        good, bad = loss(lip, positive, negatives), loss(lip, negatives[:, 0], swapped)
        assert float(good) < float(bad), name
    # InfoNCE with all similarities equal is log(N + 1) (paper 000 eq. 8).
    ones = jnp.ones((3, 4))
    uniform = jax.jit(lambda x, n: contrastive_loss("info_nce", x, x, n, 0.5))
    np.testing.assert_allclose(uniform(ones, jnp.ones((3, 10, 4))), np.log(11.0), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown config.loss.name"):
        contrastive_loss("triplet", lip, positive, negatives, 0.5)


# --- scoring -------------------------------------------------------------------------------------


def reference_distances(audio, lips, max_offset, distance="cosine"):
    """Slow loop over shifts and frames (the definition in scoring's docstring)."""
    out = []
    for s in range(-max_offset, max_offset + 1):
        ds = []
        for t in range(len(lips)):
            if 0 <= t + s < len(audio):
                a, v = audio[t + s], lips[t]
                cos = a @ v / (np.linalg.norm(a) * np.linalg.norm(v))
                ds.append(1 - cos if distance == "cosine" else np.sqrt(max(2 - 2 * cos, 0)))
        out.append(np.mean(ds))
    return np.array(out)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_offset_distances_match_reference_loop(distance):
    rng = np.random.default_rng(0)
    audio = rng.random((24, 6)) + 0.1
    lips = rng.random((24, 6)) + 0.1
    got = scoring.offset_distances(audio, lips, 5, distance)
    np.testing.assert_allclose(got, reference_distances(audio, lips, 5, distance), rtol=1e-5)


def test_scoring_recovers_known_offset_analytic():
    # Lip embedding of frame t equals the audio embedding of frame t + 3: the sound of lip frame
    # t sits 3 frames later, i.e. the audio lags (SyncNet offset -3). Distance is exactly 0 there.
    rng = np.random.default_rng(1)
    base = rng.random((80, 16))
    audio, lips = base[:60], base[3:63]
    result = scoring.score_clip(audio, lips, max_offset=15)
    assert result["offset"] == -3
    assert result["min_distance"] == pytest.approx(0.0, abs=1e-6)
    assert result["confidence"] > 0.05
    d = result["distances"]
    assert d.shape == (31,) and int(np.argmin(d)) == 15 + 3


@given(lead=st.integers(-10, 10), base=st.integers(-3, 3))
@settings(max_examples=15, deadline=None)
def test_shift_audio_adds_its_lead_to_the_offset(lead, base):
    rng = np.random.default_rng(lead + 100 * base + 1000)
    seq = rng.random((120, 8))
    # A clip whose audio already leads by `base` frames: audio[t] = seq[t + base], lips[t] = seq[t].
    audio, lips = seq[10 + base : 100 + base], seq[10:100]
    assert scoring.score_clip(audio, lips, 15)["offset"] == base
    shifted_audio, shifted_lips = scoring.shift_audio(audio, lips, lead)
    assert len(shifted_audio) == len(shifted_lips) == 90 - abs(lead)
    if abs(lead + base) <= 15:
        assert scoring.score_clip(shifted_audio, shifted_lips, 15)["offset"] == lead + base


def test_sync_offset_median_minus_min_and_errors():
    d = np.array([0.9, 0.8, 0.2, 0.7, 0.6])  # K = 2; minimum at index 2 -> offset 0
    offset, confidence, minimum = scoring.sync_offset(d)
    assert int(offset) == 0
    np.testing.assert_allclose(confidence, 0.7 - 0.2, rtol=1e-6)
    np.testing.assert_allclose(minimum, 0.2)
    with pytest.raises(ValueError, match="2K \\+ 1"):
        scoring.sync_offset(np.ones(4))
    with pytest.raises(ValueError, match="too short"):
        scoring.offset_distances(np.ones((10, 3)), np.ones((10, 3)), 15)
    with pytest.raises(ValueError, match="unknown distance"):
        scoring.offset_distances(np.ones((20, 3)), np.ones((20, 3)), 5, "l1")


def test_summarize_accuracy_within_tolerance():
    records = [
        {"offset": 0, "true_offset": 0, "confidence": 0.5, "min_distance": 0.1},
        {"offset": 3, "true_offset": 2, "confidence": 0.3, "min_distance": 0.2},
        {"offset": -5, "true_offset": 2, "confidence": 0.1, "min_distance": 0.3},
        {"offset": 4, "true_offset": 4, "confidence": 0.3, "min_distance": 0.2},
    ]
    s = scoring.summarize(records, tolerance=1)
    assert s["accuracy"] == 0.75 and s["exact_accuracy"] == 0.5
    assert s["mean_abs_error"] == pytest.approx(2.0)
    assert s["mean_confidence"] == pytest.approx(0.3)


# --- mouth normalisation -------------------------------------------------------------------------


@given(
    angle=st.floats(-0.6, 0.6),
    scale=st.floats(0.2, 50.0),
    tx=st.floats(-300, 300),
    ty=st.floats(-300, 300),
)
@settings(max_examples=20, deadline=None)
def test_normalize_mouth_invariant_to_similarity_transforms(angle, scale, tx, ty):
    # The same mouth motion seen after head translation, roll and camera zoom normalises the same.
    rng = np.random.default_rng(7)
    mouth = rng.normal(size=(1, 20, 2)) * 0.1 + rng.normal(size=(12, 20, 2)) * 0.02
    mouth[:, 0] = [-1.0, 0.0]
    mouth[:, 6] = [1.0, 0.0]
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = scale * mouth @ rotation.T + np.array([tx, ty])
    np.testing.assert_allclose(normalize_mouth(moved), normalize_mouth(mouth), atol=2e-5)


def test_normalize_mouth_removes_mean_shape_and_rejects_bad_input():
    rng = np.random.default_rng(8)
    mouth = rng.normal(size=(10, 20, 2))
    out = normalize_mouth(mouth)
    assert out.shape == (10, 40) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[T, 20, 2\]"):
        normalize_mouth(np.zeros((10, 68, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        normalize_mouth(np.zeros((3, 20, 2)))
