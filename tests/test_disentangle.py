"""Pure parts of the disentangle stage: factor InfoNCE, swap loss, ridge probes, module shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxhead.disentangle import data, losses
from jaxhead.disentangle.models import CodeExtractor, LandmarkAutoencoder, unit_rms
from jaxhead.eval import probe

# --- factor InfoNCE ------------------------------------------------------------------------------


def reference_factor_info_nce(codes, shares, tau):
    """Slow float64 loop over groups and positives."""
    codes = np.asarray(codes, np.float64)
    unit = codes / np.linalg.norm(codes, axis=-1, keepdims=True)
    g_count, s_count, _ = codes.shape
    total, count = 0.0, 0
    for p in range(1, s_count):
        if not shares[p]:
            continue
        for g in range(g_count):
            negatives = [unit[g, s] for s in range(s_count) if not shares[s]]
            negatives += [unit[h, s] for h in range(g_count) if h != g for s in range(s_count)]
            logits = np.array([unit[g, 0] @ unit[g, p]] + [unit[g, 0] @ n for n in negatives])
            logits = logits / tau
            total += np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[0]
            count += 1
    return total / count


def test_group_sharing_table_matches_the_paper():
    # Expression head: "different people, same expression" is positive ...
    ex = dict(zip(data.GROUP_SLOTS, data.SHARES[data.CODE_FACTORS.index("ex")], strict=True))
    assert ex["keep_ex"] and ex["change_id"] and ex["change_al"] and ex["change_ill"]
    # ... "same person, different expression" negative, as are images keeping another factor.
    assert not ex["change_ex"] and not ex["keep_id"] and not ex["keep_al"]


def test_factor_info_nce_matches_reference_loop_and_jit():
    codes = jax.random.normal(jax.random.key(0), (3, 9, 6))
    every = jax.jit(
        lambda c: jnp.stack([losses.factor_info_nce(c, shares, 0.3) for shares in data.SHARES])
    )
    jitted = every(codes)
    for k, shares in enumerate(data.SHARES):
        expected = reference_factor_info_nce(codes, shares, 0.3)
        np.testing.assert_allclose(jitted[k], expected, rtol=1e-5)
    eager = losses.factor_info_nce(codes, data.SHARES[2], 0.3)
    np.testing.assert_allclose(eager, jitted[2], rtol=1e-6)


def test_factor_info_nce_analytic_cases():
    groups, tau = 3, 0.5
    shares = np.array([True, False, True, True, False])
    slots = len(shares)
    num_negatives = 2 + (groups - 1) * slots
    # All codes equal: every logit is 1/τ, the loss is log(N + 1).
    same = jnp.ones((groups, slots, 4))
    np.testing.assert_allclose(
        losses.factor_info_nce(same, shares, tau), np.log(num_negatives + 1), rtol=1e-6
    )
    # Perfect head: the images sharing the factor are one direction per group, the others and
    # every other group orthogonal to it -> log(1 + N exp(-1/τ)).
    basis = np.eye(2 * groups)
    codes = np.zeros((groups, slots, 2 * groups))
    for g in range(groups):
        codes[g] = basis[2 * g]
        codes[g, ~shares] = basis[2 * g + 1]
    expected = np.log(1 + num_negatives * np.exp(-1.0 / tau))
    np.testing.assert_allclose(losses.factor_info_nce(codes, shares, tau), expected, rtol=1e-6)
    assert float(losses.factor_accuracy(jnp.asarray(codes), shares)) == 1.0
    # The same codes read with the opposite sharing: every positive loses.
    flipped = ~shares
    flipped[0] = True
    assert float(losses.factor_accuracy(jnp.asarray(codes), flipped)) == 0.0


def test_factor_info_nce_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shares has shape"):
        losses.factor_info_nce(jnp.ones((2, 5, 3)), data.SHARES[0], 0.5)
    with pytest.raises(ValueError, match=">= 2 groups"):
        losses.factor_info_nce(jnp.ones((1, 9, 3)), data.SHARES[0], 0.5)


# --- swap loss (paper 001 eq. 2) -----------------------------------------------------------------


def test_swap_loss_is_zero_for_a_perfect_autoencoder():
    mouth_dim = 6
    key_a, key_b = jax.random.split(jax.random.key(1))
    a = jax.random.normal(key_a, (4, 10))
    b = jax.random.normal(key_b, (4, 10))

    def encode(x):  # f_m = the mouth part, f_e = the eye part: disentangled by construction
        return x[:, :mouth_dim], x[:, mouth_dim:]

    def decode(f_m, f_e):
        return jnp.concatenate([f_m, f_e], -1)

    parts_a, parts_b = encode(a), encode(b)
    terms = losses.swap_reconstruction_loss(decode, encode(a), encode(b), parts_a, parts_b)
    assert float(terms["rec"]) == 0.0 and float(terms["swap"]) == 0.0


def test_swap_loss_penalises_an_entangled_autoencoder():
    mouth_dim, eye_dim = 6, 4
    key_a, key_b = jax.random.split(jax.random.key(2))
    a = jax.random.normal(key_a, (5, mouth_dim + eye_dim))
    b = jax.random.normal(key_b, (5, mouth_dim + eye_dim))

    def encode(x):  # both embeddings carry everything; the decoder reads f_m only
        return x, x

    def decode(f_m, f_e):
        del f_e
        return f_m

    parts = lambda x: (x[:, :mouth_dim], x[:, mouth_dim:])  # noqa: E731
    terms = losses.swap_reconstruction_loss(decode, encode(a), encode(b), parts(a), parts(b))
    assert float(terms["rec"]) == 0.0  # plain reconstruction cannot tell
    eye_gap = np.mean(np.abs(np.asarray(a[:, mouth_dim:] - b[:, mouth_dim:])))
    expected = 2 * eye_gap * eye_dim / (mouth_dim + eye_dim)
    np.testing.assert_allclose(terms["swap"], expected, rtol=1e-5)


# --- probes --------------------------------------------------------------------------------------


def test_probe_recovers_a_known_linear_map_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) * rng.uniform(0.1, 10, 5)
    w = rng.normal(size=(5, 3))
    y = x @ w + np.array([1.0, -2.0, 0.5])
    r2 = probe.probe_r2(x[:200], y[:200], x[200:], y[200:], alpha=1e-10)
    np.testing.assert_allclose(r2, 1.0, atol=1e-9)
    per_dim = probe.probe_r2_per_dim(x[:200], y[:200], x[200:], y[200:], alpha=1e-10)
    np.testing.assert_allclose(per_dim, 1.0, atol=1e-9)
    params = probe.ridge_fit(x[:200], y[:200], alpha=1e-10)
    np.testing.assert_allclose(probe.ridge_predict(params, x[200:]), y[200:], atol=1e-6)


def test_probe_gives_about_zero_on_independent_noise():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4000, 8)), rng.normal(size=(4000, 2))
    r2 = probe.probe_r2(x[:2000], y[:2000], x[2000:], y[2000:])
    assert abs(r2) < 0.02


def test_kernel_probe_reads_a_nonlinear_code_and_not_noise():
    rng = np.random.default_rng(5)
    angle = rng.uniform(-np.pi, np.pi, 600)
    code = np.stack([np.cos(angle), np.sin(angle)], -1)  # a factor on a circle, as on a sphere
    factor = np.sin(2 * angle)[:, None]  # = 2 sin cos: not linear in the code
    linear = probe.probe_r2(code[:300], factor[:300], code[300:], factor[300:])
    kernel = probe.kernel_probe_r2(code[:300], factor[:300], code[300:], factor[300:], 1e-4)
    assert kernel > 0.98 and linear < 0.1
    noise = rng.normal(size=(600, 1))
    assert abs(probe.kernel_probe_r2(code[:300], noise[:300], code[300:], noise[300:])) < 0.05


def test_r2_score_reference():
    rng = np.random.default_rng(2)
    y, pred = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    per_column = [
        1 - np.sum((y[:, k] - pred[:, k]) ** 2) / np.sum((y[:, k] - y[:, k].mean()) ** 2)
        for k in range(3)
    ]
    np.testing.assert_allclose(probe.r2_score(y, pred), np.mean(per_column))
    np.testing.assert_allclose(probe.r2_score(y, np.broadcast_to(y.mean(0), y.shape)), 0.0)


def test_probe_table_and_diagonal_summary():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    codes = {"c_a": (a[:200], a[200:]), "c_b": (b[:200], b[200:])}
    factors = {"a": (a[:200] * 2, a[200:] * 2), "b": (b[:200] - 1, b[200:] - 1)}
    table = probe.probe_table(codes, factors, alpha=1e-8)
    summary = probe.diagonal_summary(table, {"c_a": "a", "c_b": "b"})
    assert summary["goal_met"]
    assert summary["codes"]["c_a"]["own"] > 0.999 and summary["codes"]["c_a"]["max_other"] < 0.05
    text = probe.markdown_table(table, {"c_a": "a", "c_b": "b"})
    assert "| c_a | **1.000** |" in text
    swapped = probe.diagonal_summary(table, {"c_a": "b", "c_b": "a"})
    assert not swapped["goal_met"]


# --- modules -------------------------------------------------------------------------------------


def test_extractor_shapes_sizes_and_jit():
    sizes = (("id", 7), ("ex", 3), ("al", 5), ("ill", 2))
    model = nnx.eval_shape(lambda: CodeExtractor(sizes, 16, (4, 8), 16, rngs=nnx.Rngs(0)))
    shapes = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((2, 16, 16, 3), "f4"))
    assert {k: v.shape for k, v in shapes.items()} == {k: (2, d) for k, d in sizes}
    sizes = (("id", 3), ("ex", 2))
    model = nnx.jit(lambda: CodeExtractor(sizes, 8, channels=(4,), hidden=8, rngs=nnx.Rngs(0)))()
    images = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3))
    out = model(images)
    assert {k: v.shape for k, v in out.items()} == {k: (2, d) for k, d in sizes}
    graphdef, state = nnx.split(model)
    jitted = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, images)
    for k in out:
        np.testing.assert_allclose(jitted[k], out[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expects"):
        model(jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="divisible"):
        CodeExtractor(sizes, 18, channels=(4, 8), hidden=8, rngs=nnx.Rngs(0))


def test_unit_rms_and_landmark_autoencoder_shapes():
    code = jax.random.normal(jax.random.key(4), (3, 16)) * 7.0
    np.testing.assert_allclose(jnp.linalg.norm(unit_rms(code), axis=-1), 4.0, rtol=1e-5)
    model = nnx.eval_shape(
        lambda: LandmarkAutoencoder(30, mouth_dim=5, eye_dim=2, hidden=(16, 8), rngs=nnx.Rngs(0))
    )
    f_m, f_e = nnx.eval_shape(lambda m, x: m.encode(x), model, jax.ShapeDtypeStruct((4, 30), "f4"))
    assert f_m.shape == (4, 5) and f_e.shape == (4, 2)
    assert nnx.eval_shape(lambda m, a, b: m.decode(a, b), model, f_m, f_e).shape == (4, 30)
