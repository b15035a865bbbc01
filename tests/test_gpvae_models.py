"""GP-VAE latent math, modules, generation, metrics and sequence readers (paper 001 §3.4)."""

from __future__ import annotations

import functools
import types

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.spatial.transform import Rotation

from jaxhead.gpvae import data as data_lib
from jaxhead.gpvae import kernels, metrics, models
from jaxhead.gpvae.kernels import gp_prior_covariance
from jaxhead.gpvae.losses import posterior_kl

T, TAU, D, A = 12, 4, 7, data_lib.AUDIO_DIM


def tiny_spec(variant="transformer_gpvae"):
    return models.ModelSpec(variant=variant, audio_dim=A, latent_dim=3, width=16, depth=1,
                            heads=2, mlp_ratio=2, cme_depth=1)  # fmt: skip


@functools.cache
def tiny_model(variant="transformer_gpvae"):
    return models.SequenceVAE(tiny_spec(variant), nnx.Rngs(0))


@functools.cache
def jitted(variant="transformer_gpvae"):
    """The tiny model's encode / decode / cme_window under jit (eager NNX is slow on CPU)."""
    graphdef, params = nnx.split(tiny_model(variant))
    model = lambda: nnx.merge(graphdef, params)  # noqa: E731
    return types.SimpleNamespace(
        encode=jax.jit(lambda h: model().encode(h)),
        decode=jax.jit(lambda z: model().decode(z)),
        window=jax.jit(lambda a, b, n: models.cme_window(model(), a, b, n)),
        relative=jax.jit(lambda a, b, n: models.cme_window(model(), a, b, n, True)),
        from_last=jax.jit(lambda a, b, n: models.cme_window(model(), a, b, n, True, "last")),
    )


def random_posterior(seed, batch=(2, 3), size=T):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(*batch, size)).astype(np.float32)
    scale = rng.uniform(0.05, 2.0, (*batch, size)).astype(np.float32)
    coeff = rng.uniform(-0.99, 0.99, (*batch, size)).astype(np.float32)
    return mean, scale, coeff


# --- pure latent math -----------------------------------------------------------------------


def test_ar1_cholesky_matches_reference_loop():
    _, scale, coeff = random_posterior(0, batch=(2,))
    chol = np.asarray(kernels.ar1_cholesky(jnp.asarray(scale), jnp.asarray(coeff)))
    for b in range(2):
        ref = np.zeros((T, T))
        for t in range(T):
            for u in range(t + 1):
                ref[t, u] = scale[b, u] * np.prod(coeff[b, u + 1 : t + 1].astype(np.float64))
        np.testing.assert_allclose(chol[b], ref, rtol=1e-4, atol=1e-6)


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), size=st.sampled_from([2, 7, 24]))
def test_posterior_covariance_is_symmetric_positive_definite(seed, size):
    _, scale, coeff = random_posterior(seed, batch=(3,), size=size)
    cov = np.asarray(
        kernels.posterior_covariance(jnp.asarray(scale), jnp.asarray(coeff)), np.float64
    )
    np.testing.assert_allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-5, atol=1e-6)
    # det(K) = prod(s)^2 > 0 and K = L L^T: every eigenvalue positive.
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    np.testing.assert_allclose(
        np.linalg.slogdet(cov)[1],
        2 * np.log(scale.astype(np.float64)).sum(-1),
        rtol=1e-3,
        atol=1e-3,
    )


def test_precision_is_tridiagonal():
    _, scale, coeff = random_posterior(1, batch=(), size=8)
    cov = np.asarray(
        kernels.posterior_covariance(jnp.asarray(scale), jnp.asarray(coeff)), np.float64
    )
    precision = np.linalg.inv(cov)
    band = np.abs(np.subtract.outer(np.arange(8), np.arange(8))) <= 1
    np.testing.assert_allclose(precision[~band], 0.0, atol=1e-3 * np.abs(precision).max())


def test_encoder_covariance_is_positive_definite():
    h = jax.random.normal(jax.random.key(0), (2, T, D)) * 5.0
    mean, scale, coeff = jitted().encode(h)
    assert mean.shape == scale.shape == coeff.shape == (2, 3, T)
    eig = np.linalg.eigvalsh(np.asarray(kernels.posterior_covariance(scale, coeff), np.float64))
    assert np.all(eig > 0)
    # The diagonal-posterior baselines have zero AR coefficients.
    _, _, coeff_iid = jitted("transformer_vae").encode(h)
    np.testing.assert_array_equal(np.asarray(coeff_iid), 0.0)


def closed_form_kl(mean_q, cov_q, cov_p):
    """Textbook KL(N(mq, Sq) || N(0, Sp)) in float64 with explicit inverses."""
    mean_q, cov_q, cov_p = (np.asarray(x, np.float64) for x in (mean_q, cov_q, cov_p))
    inv_p = np.linalg.inv(cov_p)
    k = len(mean_q)
    return 0.5 * (
        np.trace(inv_p @ cov_q) + mean_q @ inv_p @ mean_q - k
        + np.linalg.slogdet(cov_p)[1] - np.linalg.slogdet(cov_q)[1]
    )  # fmt: skip


@pytest.mark.parametrize("prior", ["gp", "iid"])
def test_kl_matches_closed_form(prior):
    mean, scale, coeff = random_posterior(2, batch=(2, 3))
    scale = np.clip(scale, 0.3, 2.0)
    prior_cov = gp_prior_covariance(T, 1.0, 4.0) if prior == "gp" else jnp.eye(T)
    kl = np.asarray(
        posterior_kl(jnp.asarray(mean), jnp.asarray(scale), jnp.asarray(coeff), prior_cov)
    )
    cov = np.asarray(kernels.posterior_covariance(jnp.asarray(scale), jnp.asarray(coeff)))
    for b in range(2):
        ref = sum(closed_form_kl(mean[b, c], cov[b, c], prior_cov) for c in range(3))
        np.testing.assert_allclose(kl[b], ref, rtol=2e-3)


def test_kl_zero_when_posterior_is_standard_normal():
    zeros, ones = jnp.zeros((1, 3, T)), jnp.ones((1, 3, T))
    np.testing.assert_allclose(
        np.asarray(posterior_kl(zeros, ones, zeros, jnp.eye(T))), 0.0, atol=1e-5
    )


def test_sample_posterior_covariance_monte_carlo():
    _, scale, coeff = random_posterior(3, batch=(), size=6)
    noise = jax.random.normal(jax.random.key(1), (20_000, 6))
    z = kernels.sample_posterior(
        jnp.zeros((20_000, 6)), jnp.asarray(scale), jnp.asarray(coeff), noise
    )
    emp = np.cov(np.asarray(z, np.float64).T)
    cov = np.asarray(kernels.posterior_covariance(jnp.asarray(scale), jnp.asarray(coeff)))
    np.testing.assert_allclose(emp, cov, atol=0.05 * np.abs(cov).max())


def test_gp_conditional_matches_numpy():
    cov = np.asarray(gp_prior_covariance(T, 1.0, 3.0), np.float64)
    obs = np.random.default_rng(4).normal(size=TAU)
    mean, chol = kernels.gp_conditional(
        jnp.asarray(cov, jnp.float32), jnp.asarray(obs, jnp.float32)
    )
    gain = cov[TAU:, :TAU] @ np.linalg.inv(cov[:TAU, :TAU])
    np.testing.assert_allclose(np.asarray(mean), gain @ obs, rtol=1e-3, atol=1e-4)
    ref_cov = cov[TAU:, TAU:] - gain @ cov[:TAU, TAU:]
    got = np.asarray(chol, np.float64) @ np.asarray(chol, np.float64).T
    np.testing.assert_allclose(got, ref_cov, atol=2e-3)


# --- modules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(models.VARIANTS))
def test_shapes_and_decoder_causality(variant):
    model = jitted(variant)
    h = jax.random.normal(jax.random.key(0), (2, T, D))
    mean, scale, coeff = model.encode(h)
    assert mean.shape == (2, 3, T)
    z = jax.random.normal(jax.random.key(1), (2, 3, T))
    out = np.asarray(model.decode(z))
    assert out.shape == (2, T, D)
    # The decoder is causal: latents after frame t do not change frames <= t.
    t = 5
    changed = np.asarray(model.decode(z.at[..., t + 1 :].add(3.0)))
    np.testing.assert_allclose(changed[:, : t + 1], out[:, : t + 1], atol=1e-5)
    assert not np.allclose(changed[:, t + 1 :], out[:, t + 1 :])
    audio = jax.random.normal(jax.random.key(2), (2, T, A))
    assert model.window(audio, h[:, :TAU], jnp.zeros((2, 3, T))).shape == (2, T, D)


def test_jit_matches_eager():
    mean, scale, coeff = (jnp.asarray(x) for x in random_posterior(5))
    noise = jax.random.normal(jax.random.key(4), mean.shape)
    prior_cov = gp_prior_covariance(T, 1.0, 4.0)
    for fn, args in [
        (kernels.sample_posterior, (mean, scale, coeff, noise)),
        (
            lambda m, s, c: posterior_kl(m, s, c, prior_cov),
            (mean, scale, coeff),
        ),  # prior: a constant
        (kernels.gp_conditional, (prior_cov, mean[..., :TAU])),
    ]:
        chex.assert_trees_all_close(jax.jit(fn)(*args), fn(*args), rtol=1e-4, atol=1e-5)


# --- generation ------------------------------------------------------------------------------


def _window_fn(variant, key):
    step = jitted(variant).window

    def fn(audio, bop, k):
        return step(audio, bop, jax.random.normal(jax.random.fold_in(key, k), (bop.shape[0], 3, T)))

    return fn


@pytest.mark.parametrize("variant", ["transformer_gpvae", "lstm_vae"])
def test_generation_is_causal_and_any_length(variant):
    fn = _window_fn(variant, jax.random.key(7))
    n = 41  # not a multiple of the stride T - TAU = 8
    audio = jax.random.normal(jax.random.key(5), (1, n, A))
    bop = jax.random.normal(jax.random.key(6), (1, TAU, D))
    out = np.asarray(models.generate(fn, audio, bop, n, T))
    assert out.shape == (1, n, D)
    np.testing.assert_array_equal(out[:, :TAU], np.asarray(bop))
    # Changing the audio after frame t leaves frames <= t unchanged ...
    t = 17
    changed = np.asarray(models.generate(fn, audio.at[:, t + 1 :].add(2.0), bop, n, T))
    np.testing.assert_allclose(changed[:, : t + 1], out[:, : t + 1], atol=1e-5)
    assert not np.allclose(changed[:, t + 1 :], out[:, t + 1 :])
    # ... and so does asking for fewer or more frames.
    short = np.asarray(models.generate(fn, audio[:, :25], bop, 25, T))
    np.testing.assert_allclose(short, out[:, :25], atol=1e-5)
    longer = np.asarray(models.generate(fn, audio, bop, 60, T))
    np.testing.assert_allclose(longer[:, :n], out, atol=1e-5)


def test_prior_latents_any_length_and_prefix_stable():
    cov = gp_prior_covariance(T, 1.0, 4.0)
    key = jax.random.key(3)
    z = np.asarray(models.sample_prior_latents(cov, 2, 3, 30, TAU, key))
    assert z.shape == (2, 3, 30) and np.all(np.isfinite(z))
    z_long = np.asarray(models.sample_prior_latents(cov, 2, 3, 50, TAU, key))
    np.testing.assert_allclose(z_long[..., :30], z, atol=1e-5)
    frames = models.decode_long(jitted(), jnp.asarray(z_long), T, TAU)
    assert frames.shape == (2, 50, D)


def test_bop_offset_is_the_mean_pose_without_blink():
    bop = jnp.asarray(np.random.default_rng(0).normal(size=(2, TAU, D)), jnp.float32)
    offset = models.bop_offset(bop)
    assert offset.shape == (2, 1, D)
    np.testing.assert_allclose(offset[..., :6], np.mean(bop[..., :6], axis=1, keepdims=True),
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(offset[..., 6], 0.0)
    last = models.bop_offset(bop, "last")
    np.testing.assert_array_equal(last[..., :6], bop[:, -1:, :6])
    np.testing.assert_array_equal(last[..., 6], 0.0)
    with pytest.raises(ValueError, match="pose anchor"):
        models.bop_offset(bop, "first")


def test_last_frame_anchor_moves_with_the_last_bop_frame_and_zero_output_holds_it():
    """Anchored on the last BOP frame, shifting that frame alone shifts the prediction by the
    same amount only through the anchor; a decoder that outputs zeros holds that frame."""
    rng = np.random.default_rng(2)
    audio = jnp.asarray(rng.normal(size=(2, T, A)), jnp.float32)
    bop = jnp.asarray(rng.normal(size=(2, TAU, D)), jnp.float32)
    noise = jnp.zeros((2, 3, T), jnp.float32)
    shift = jnp.asarray([0.5, -1.0, 0.2, 2.0, 0.0, -3.0, 0.0], jnp.float32)
    fn = jitted()
    out = fn.from_last(audio, bop, noise)
    moved = fn.from_last(audio, bop + jnp.broadcast_to(shift, bop.shape), noise)
    np.testing.assert_allclose(moved, out + jnp.broadcast_to(shift, out.shape), atol=1e-5)
    # The mean anchor differs from the last one on the same inputs.
    assert not np.allclose(np.asarray(out), np.asarray(fn.relative(audio, bop, noise)), atol=1e-3)
    # A model whose decoder outputs zeros predicts "hold the last BOP frame" (pose channels).
    graphdef, params = nnx.split(tiny_model())
    zero = jax.tree.map(jnp.zeros_like, params)
    held = models.cme_window(nnx.merge(graphdef, zero), audio, bop, noise, True, "last")
    last = jnp.broadcast_to(bop[:, -1:, :6], held[..., :6].shape)
    np.testing.assert_allclose(held[..., :6], last, atol=1e-6)


def test_relative_pose_window_moves_with_the_bop():
    """With relative_pose, a head that starts elsewhere (same motion, other offset) gets the same
    predicted motion shifted by the offset; the blink channel does not move."""
    rng = np.random.default_rng(1)
    audio = jnp.asarray(rng.normal(size=(2, T, A)), jnp.float32)
    bop = jnp.asarray(rng.normal(size=(2, TAU, D)), jnp.float32)
    noise = jnp.asarray(rng.normal(size=(2, 3, T)), jnp.float32)
    shift = jnp.asarray([0.5, -1.0, 0.2, 2.0, 0.0, -3.0, 0.0], jnp.float32)
    fn = jitted()
    out = fn.relative(audio, bop, noise)
    moved = fn.relative(audio, bop + jnp.broadcast_to(shift, bop.shape), noise)
    np.testing.assert_allclose(moved, out + jnp.broadcast_to(shift, out.shape), atol=1e-5)
    # The absolute model is not equivariant (what relative_pose fixes).
    absolute = np.asarray(fn.window(audio, bop + jnp.broadcast_to(shift, bop.shape), noise))
    assert not np.allclose(
        absolute, np.asarray(fn.window(audio, bop, noise)) + np.asarray(shift), atol=1e-3
    )


def test_relative_normalizer_scales_pose_by_the_motion_not_the_offsets():
    t = np.linspace(0, 6, 50)
    seqs = []
    for offset in (0.0, 10.0):
        pose = np.stack([np.sin(t)] * 6, -1) * 0.1 + offset
        seqs.append(data_lib.PoseSequence("s", pose.astype(np.float32), np.zeros(50, np.float32)))
    mean, std = data_lib.normalizer(seqs)
    np.testing.assert_allclose(std[:6], 5.0, rtol=1e-3)  # the offsets' spread
    _, rel_std = data_lib.normalizer(seqs, relative_pose=True)
    np.testing.assert_allclose(rel_std[:6], 0.1 * np.sin(t).std(), rtol=1e-3)
    assert rel_std[6] == std[6] == 1e-6  # blink all zeros: the floor


def test_window_starts_cover_the_sequence():
    assert models.window_starts(12, 12, 4) == [0]
    assert models.window_starts(13, 12, 4) == [0, 8]
    assert models.window_starts(41, 12, 4) == [0, 8, 16, 24, 32]
    with pytest.raises(ValueError, match="longer than the BOP"):
        models.window_starts(20, 4, 4)


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model.variant 'gru_vae'"):
        models.ModelSpec(variant="gru_vae")


# --- metrics ---------------------------------------------------------------------------------


def test_relative_mae_analytic():
    t = np.linspace(0, 2 * np.pi, 100, endpoint=False)
    target = np.stack([np.sin(t), 5.0 + np.cos(t)], -1)  # offset must not matter
    np.testing.assert_allclose(metrics.relative_mae([target], [target]), 0.0)
    const = np.broadcast_to(target.mean(0), target.shape)
    np.testing.assert_allclose(metrics.relative_mae([const], [target]), 100.0, rtol=1e-9)
    np.testing.assert_allclose(metrics.relative_mae([target + 0.1], [target]),
                               100 * 0.1 / np.abs(np.sin(t)).mean(), rtol=1e-9)  # fmt: skip
    pose = np.concatenate([target, target, target[:, :1] * 0, target[:, :1]], -1)
    out = metrics.pose_distances([pose + [0, 0, 0, 0, 0, 0]], [pose])
    assert out == {"d_rot": 0.0, "d_pos": 0.0, "d_rot_deg": 0.0, "d_pos_abs": 0.0}


def test_absolute_pose_differences_are_the_geodesic_angle_and_the_distance():
    rng = np.random.default_rng(0)
    true = np.concatenate([rng.normal(size=(20, 3)), rng.normal(size=(20, 3))], -1)
    # Rotating every true pose further by 10 degrees about a fixed axis, and moving it by (3, 4, 0).
    turn = Rotation.from_rotvec(np.radians(10.0) * np.array([0.0, 0.6, 0.8]))
    pred = np.concatenate(
        [(turn * Rotation.from_rotvec(true[:, :3])).as_rotvec(), true[:, 3:] + [3.0, 4.0, 0.0]], -1
    )
    out = metrics.pose_distances([pred[:7], pred[7:]], [true[:7], true[7:]])
    np.testing.assert_allclose(out["d_rot_deg"], 10.0, rtol=1e-9)
    np.testing.assert_allclose(out["d_pos_abs"], 5.0, rtol=1e-9)
    # Not the difference of the axis-angle vectors: the two differ away from the identity.
    naive = np.degrees(np.linalg.norm(pred[:, :3] - true[:, :3], axis=-1)).mean()
    assert abs(naive - 10.0) > 0.5


def test_blink_detection_hysteresis_and_gap():
    fps = 25
    sig = np.zeros(100)
    sig[10:14] = 1.0  # a blink
    sig[14] = 0.4  # stays above `low`: reopening, not a new blink
    sig[15:17] = 0.9
    sig[30:33] = 0.8  # second blink
    sig[34:36] = 0.8  # 4 frames after: closer than 0.2 s -> ignored
    sig[80:82] = 0.45  # below `high`: not a blink
    np.testing.assert_array_equal(metrics.detect_blinks(sig, fps), [10, 30])
    np.testing.assert_allclose(metrics.blinks_per_second(sig, fps), 2 / 4.0)
    with pytest.raises(ValueError, match="low < high"):
        metrics.detect_blinks(sig, fps, high=0.2, low=0.3)


def test_blink_intervals_and_closures_on_known_onsets():
    fps = 25
    sig = np.zeros(250)  # 10 s
    sig[25:28] = 1.0  # onset 25, reopens (< low) at 28: 3 frames
    sig[75:80] = 0.9  # onset 75, 5 frames
    sig[100:102] = 0.7
    sig[102] = 0.3  # above `low`: still the same closure
    sig[200:203] = 1.0  # onset 200, reopens at 203: 3 frames ...
    sig[204:206] = 0.8  # ... re-closure 4 frames after the onset (< 0.2 s): the same blink
    sig[150:153] = 0.45  # below `high`: no blink
    np.testing.assert_array_equal(metrics.detect_blinks(sig, fps), [25, 75, 100, 200])
    np.testing.assert_allclose(metrics.closure_durations(sig, fps), [0.12, 0.2, 0.12, 0.12])
    stats = metrics.blink_statistics([sig], fps)
    # Intervals 2, 1 and 4 s.
    assert stats["num_blinks"] == 4 and stats["num_intervals"] == 3
    np.testing.assert_allclose(stats["interval_mean_s"], 7 / 3)
    np.testing.assert_allclose(stats["interval_median_s"], 2.0)
    np.testing.assert_allclose(stats["interval_cv"], np.sqrt(14) / 7)  # std sqrt(14)/3, mean 7/3
    np.testing.assert_allclose(stats["closure_mean_s"], 0.14)
    # A second signal: one blink cut by its end (2 frames), no interval across signals.
    tail = np.zeros(50)
    tail[48:] = 1.0
    pooled = metrics.blink_statistics([sig, tail], fps)
    assert pooled["num_blinks"] == 5 and pooled["num_intervals"] == 3
    np.testing.assert_allclose(pooled["interval_mean_s"], 7 / 3)
    np.testing.assert_allclose(pooled["closure_mean_s"], (0.56 + 0.08) / 5)
    # Fewer than two intervals: no coefficient of variation; no blink: no statistics.
    assert np.isnan(metrics.blink_statistics([sig[:90]], fps)["interval_cv"])  # 1 interval
    empty = metrics.blink_statistics([np.zeros(100)], fps)
    assert empty["num_blinks"] == 0
    assert all(np.isnan(empty[k]) for k in ("interval_mean_s", "interval_cv", "closure_mean_s"))


def test_velocity_ratio_identical_frozen_scaled():
    t = np.linspace(0, 4, 100)[:, None]
    rot = np.concatenate([np.sin(3 * t), 0.5 * np.cos(2 * t), 0.1 * np.sin(5 * t)], -1)
    other = rot[:60] * 2.0
    np.testing.assert_allclose(metrics.velocity_ratio([rot, other], [rot, other]), 1.0)
    frozen = [np.broadcast_to(rot[7], rot.shape), np.broadcast_to(other[0], other.shape)]
    assert metrics.velocity_ratio(frozen, [rot, other]) == 0.0
    np.testing.assert_allclose(metrics.velocity_ratio([0.5 * rot], [rot]), 0.5)
    # An offset or a steady drift does not change the velocity's spread.
    np.testing.assert_allclose(metrics.velocity_ratio([rot + 0.3 + 0.01 * t], [rot]), 1.0)
    assert np.isnan(metrics.velocity_ratio([rot], [np.zeros_like(rot)]))
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.velocity_ratio([rot[:5]], [rot])


def test_linear_baseline_continues_steady_motion_and_cannot_predict_noise():
    """On heads turning at a steady rate the fitted extrapolator continues the motion (D ≈ 0);
    on white-noise poses, which no extrapolation can predict, it does not beat predicting the
    mean and predicts a calm head (a low velocity ratio)."""
    from jaxhead.gpvae.evaluate import linear_baseline

    rng = np.random.default_rng(0)

    def seq(pose):
        return data_lib.PoseSequence("s", pose.astype(np.float32), np.zeros(len(pose), np.float32))

    def ramp(n):
        t = np.arange(n)[:, None]
        return seq(rng.normal(size=6) + rng.normal(size=6) * 0.01 * t)

    std = np.ones(7)
    # one window per training ramp, so that the windows' velocities span every direction
    steady = linear_baseline(
        [ramp(16) for _ in range(100)], [ramp(64) for _ in range(2)], 16, 4, std
    )
    assert steady["d_rot_linear"] < 0.5 and steady["d_pos_linear"] < 0.5
    noise = linear_baseline([seq(rng.normal(size=(200, 6))) for _ in range(6)],
                            [seq(rng.normal(size=(200, 6)))], 16, 4, std)  # fmt: skip
    assert noise["d_rot_linear"] > 95 and noise["d_pos_linear"] > 95
    assert noise["velocity_ratio_linear"] < 0.5  # it predicts a calm head, not the noise
    nothing = linear_baseline([ramp(80)], [ramp(10)], 16, 4, std)  # held out shorter than a window
    assert np.isnan(nothing["d_rot_linear"])


def test_diversity_and_motion_ratio():
    assert metrics.sample_diversity(np.ones((1, 5, 2))) == 0.0
    samples = np.stack([np.zeros((5, 2)), 2 * np.ones((5, 2))])
    np.testing.assert_allclose(metrics.sample_diversity(samples), 1.0)
    x = np.sin(np.linspace(0, 6, 50))[:, None]
    np.testing.assert_allclose(metrics.motion_ratio([0.5 * x], [x]), 0.5)


# --- data ------------------------------------------------------------------------------------


def test_audio_frame_features_shape_and_normalisation():
    t = np.arange(16_000) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    feats = data_lib.audio_frame_features(audio, 16_000, 25)
    assert feats.shape == (25, A) and np.all(np.isfinite(feats))
    with pytest.raises(ValueError, match="too short"):
        data_lib.audio_frame_features(audio[:100], 16_000, 1)


def test_real_pose_readers(shared_data):
    seqs = shared_data / "real" / "sequences"
    obama = data_lib.read_pose_file(seqs / "adnerf_obama_transforms_val.json")
    assert obama.pose.shape == (728, 6)
    deep3d = data_lib.read_pose_file(seqs / "RichardShelby_front_neutral_level1_001_3dmm.mat")
    assert deep3d.pose.shape == (2077, 6)
    ani = data_lib.read_pose_file(seqs / "aniportrait_head_pose_temp.npy")
    assert ani.pose.shape == (137, 6)  # 165 frames at 30 fps -> 25 fps
    for seq in (obama, deep3d, ani):
        assert np.all(np.isfinite(seq.pose)) and seq.features.shape == (len(seq), D)
        # Head rotations of talking-head footage stay within ~45 degrees.
        assert np.abs(seq.pose[:, :3]).max() < np.pi / 4
    with pytest.raises(FileNotFoundError, match="config.data.paths"):
        data_lib.read_pose_file(seqs / "missing.mat")
