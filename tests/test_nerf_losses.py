"""Tests for jaxhead.nerf.losses (paper 000 eqs. 5-7)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.nerf.losses import disentangle_loss, masked_photometric, velocity_loss

SETTINGS = settings(max_examples=20, deadline=None)


def masked_photometric_reference(pred, target, mask):
    """Pixel by pixel, channel by channel; mask is [..., ] (one value per pixel)."""
    total, count = 0.0, 0.0
    for index in np.ndindex(*mask.shape):
        for c in range(pred.shape[-1]):
            total += mask[index] * (float(pred[index][c]) - float(target[index][c])) ** 2
            count += mask[index]
    return total / max(count, 1.0)


def velocity_reference(pred, target):
    terms = []
    for j in range(1, pred.shape[0]):
        difference = (pred[j].astype(np.float64) - pred[j - 1]) - (target[j] - target[j - 1])
        terms.extend(np.ravel(difference) ** 2)
    return np.mean(terms)


@SETTINGS
@given(seed=st.integers(0, 2**16), soft=st.booleans(), keep=st.sampled_from([0.0, 0.3, 1.0]))
def test_masked_photometric_matches_reference(seed, soft, keep):
    rng = np.random.default_rng(seed)
    pred, target = rng.uniform(size=(2, 4, 5, 3)).astype(np.float32)
    mask = rng.uniform(size=(4, 5)) if soft else (rng.uniform(size=(4, 5)) < keep)
    mask = mask.astype(np.float32)
    want = masked_photometric_reference(pred, target, mask)
    for shaped_mask in (mask, mask[..., None], np.repeat(mask[..., None], 3, -1)):
        np.testing.assert_allclose(masked_photometric(pred, target, shaped_mask), want, rtol=1e-5)


def test_masked_photometric_analytic_cases():
    pred = jnp.zeros((2, 2, 3))
    target = jnp.ones((2, 2, 3)) * 2.0
    np.testing.assert_allclose(masked_photometric(pred, target, jnp.ones((2, 2))), 4.0)
    np.testing.assert_array_equal(masked_photometric(pred, target, jnp.zeros((2, 2))), 0.0)
    # One masked pixel (3 channels): the sum over 3 entries divided by 3.
    target = target.at[0, 0].set(jnp.array([1.0, 0.0, 0.0]))
    one = jnp.zeros((2, 2)).at[0, 0].set(1.0)
    np.testing.assert_allclose(masked_photometric(pred, target, one), 1.0 / 3.0, rtol=1e-6)
    # Errors outside the mask cost nothing, whatever their size.
    np.testing.assert_allclose(
        masked_photometric(pred, target * 1e6 * (1 - one[..., None]), one), 0
    )


def test_velocity_loss_matches_reference_and_ignores_constant_offsets():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(velocity_loss(pred, target), velocity_reference(pred, target), 1e-5)
    # The same motion with a constant offset has zero velocity error, unlike a photometric loss.
    np.testing.assert_allclose(velocity_loss(target + 3.0, target), 0.0, atol=1e-6)
    # Frames [0, 1] vs [0, 3]: one velocity entry differing by 2, squared.
    np.testing.assert_allclose(velocity_loss(jnp.array([0.0, 1.0]), jnp.array([0.0, 3.0])), 4.0)
    with pytest.raises(ValueError, match="2 frames"):
        velocity_loss(jnp.ones((1, 3)), jnp.ones((1, 3)))


def test_disentangle_loss_weighted_sum_of_batch_mean_squared_distances():
    rng = np.random.default_rng(1)
    sizes = {"id": 5, "ex": 4, "al": 3, "ill": 2}
    codes = {k: rng.normal(size=(6, d)).astype(np.float32) for k, d in sizes.items()}
    refs = {k: rng.normal(size=(6, d)).astype(np.float32) for k, d in sizes.items()}
    weights = {"id": 1.0, "ex": 0.5, "al": 0.1, "ill": 2.0}
    want = 0.0
    for k in sizes:
        per_example = [np.sum((codes[k][b] - refs[k][b]).astype(np.float64) ** 2) for b in range(6)]
        want += weights[k] * np.mean(per_example)
    np.testing.assert_allclose(disentangle_loss(codes, refs, weights), want, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(disentangle_loss)(codes, refs, weights), want, rtol=1e-5)
    # Analytic: one key, distance 3 in a 2-d code -> 9, times lambda.
    one = disentangle_loss({"ex": jnp.array([[3.0, 0.0]])}, {"ex": jnp.zeros((1, 2))}, weights)
    np.testing.assert_allclose(one, 4.5)
    with pytest.raises(ValueError, match="unknown"):
        disentangle_loss({"pose": jnp.ones((1, 2))}, {"pose": jnp.ones((1, 2))}, {"pose": 1.0})
    with pytest.raises(ValueError, match="lack"):
        disentangle_loss({"id": jnp.ones((1, 2))}, {}, {"id": 1.0})


@pytest.mark.parametrize("scale", [1e-20, 1.0, 1e15])
def test_losses_jit_match_eager_with_finite_gradients(scale):
    rng = np.random.default_rng(2)
    pred, target = (scale * rng.normal(size=(2, 3, 4, 4, 3))).astype(np.float32)
    mask = (rng.uniform(size=(3, 4, 4)) < 0.5).astype(np.float32)
    for fn, args in ((masked_photometric, (pred, target, mask)), (velocity_loss, (pred, target))):
        np.testing.assert_allclose(jax.jit(fn)(*args), fn(*args), rtol=1e-5)
        chex.assert_tree_all_finite(jax.grad(fn)(*args))
    codes = {"id": jnp.asarray(pred[:, 0, 0, 0])}
    grad = jax.grad(disentangle_loss)(codes, {"id": jnp.zeros_like(codes["id"])}, {"id": 1.0})
    chex.assert_tree_all_finite(grad)


def test_the_masked_term_scores_the_person_before_compositing():
    """Full frames: with a ``foreground`` output the masked photometric term reads it (the
    person as drawn), the whole-image term reads the composite; a transparent render whose
    composite shows the background is no escape from the masked term."""
    from jaxhead.nerf.losses import reconstruction_losses

    truth = jnp.full((1, 12, 12, 3), 0.8)
    mask = jnp.zeros((1, 12, 12, 1)).at[:, 3:9, 3:9].set(1.0)
    frames = {"image": truth, "mask": mask, "image_lr": jnp.full((1, 3, 3, 3), 0.8),
              "mask_lr": jnp.zeros((1, 3, 3, 1))}  # fmt: skip
    out = {
        "image": truth,  # the composite matches (the background is the truth's colour)
        "foreground": jnp.full((1, 12, 12, 3), 0.3),  # the person is not drawn yet
        "rgb_lowres": jnp.full((1, 3, 3, 3), 0.8),
        "accumulation": jnp.zeros((1, 3, 3)),
    }
    terms = reconstruction_losses(out, frames)
    np.testing.assert_allclose(float(terms["pho"]), 0.25, rtol=1e-6)
    assert float(terms["whole"]) == 0.0
    without = reconstruction_losses({k: v for k, v in out.items() if k != "foreground"}, frames)
    assert float(without["pho"]) == 0.0
