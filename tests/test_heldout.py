"""Pieces of the one held-out protocol (jaxhead.nerf.heldout) that need no trained run."""

from __future__ import annotations

import numpy as np
import pytest

from jaxhead.nerf.heldout import frames_per_second, heldout_codes, true_openings
from jaxhead.nerf.step import NeRFSetup


def test_true_openings_only_where_the_data_has_a_jaw_parameter():
    jaw = [{"expression": np.array([v, 0.1, 0.0], np.float32)} for v in (0.0, 0.4, 0.9)]
    np.testing.assert_allclose(true_openings("voca", jaw), [0.0, 0.4, 0.9], atol=1e-6)
    # A video's frames carry zeros: no jaw parameter, so no jaw-referenced motion score.
    zeros = [{"expression": np.zeros(1, np.float32)} for _ in range(3)]
    assert true_openings("video", jaw) is None
    assert true_openings("voca", zeros) is None  # real VOCASET: no factors, all zero
    assert true_openings("voca", []) is None


def test_heldout_codes_use_the_identity_the_mean_expression_and_a_zero_illumination():
    tables = {
        "id": np.arange(6, dtype=np.float32).reshape(3, 2),
        "ex": np.array([[1.0, 3.0], [3.0, 5.0]], np.float32),
        "ill": np.ones((2, 4), np.float32),
    }
    setup = NeRFSetup(None, {"id": (3, 2), "ex": (2, 2), "ill": (2, 4)}, 2, 0)
    codes = heldout_codes(setup, tables, identity=2)
    np.testing.assert_array_equal(codes["id"], [[4.0, 5.0]])
    np.testing.assert_array_equal(codes["ex"], [[2.0, 4.0]])
    np.testing.assert_array_equal(codes["ill"], np.zeros((1, 4)))


def test_ex_dropout_replaces_codes_by_the_tables_mean():
    """``drop_ex``: rate 0 keeps every frame's C_ex, rate 1 gives every frame the table's mean
    (the held-out code of ``heldout_codes``), a rate in between drops about that share, and the
    dropped frames' gradient reaches every row of the table through the mean."""
    import jax
    import jax.numpy as jnp

    from jaxhead.nerf.step import drop_ex

    table = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    rows = jnp.asarray([0, 2, 5, 1])
    codes = {"ex": table[rows], "id": jnp.ones((4, 2))}
    key = jax.random.key(0)
    kept = drop_ex(codes, table, 0.0, key)
    np.testing.assert_array_equal(kept["ex"], codes["ex"])
    np.testing.assert_array_equal(kept["id"], codes["id"])
    dropped = drop_ex(codes, table, 1.0, key)
    np.testing.assert_allclose(dropped["ex"], np.repeat(table.mean(0, keepdims=True), 4, 0))
    many = jnp.zeros((4000, 3)) + 1.0
    share = float(jnp.mean(drop_ex({"ex": many}, jnp.zeros((6, 3)), 0.3, key)["ex"][:, 0] == 0))
    assert abs(share - 0.3) < 0.03
    grad = jax.grad(lambda t: jnp.sum(drop_ex({"ex": t[rows]}, t, 1.0, key)["ex"]))(table)
    np.testing.assert_allclose(grad, np.full((6, 3), 4 / 6), rtol=1e-6)


def test_frames_per_second_leaves_out_the_compiling_first_call():
    # 8 frames in 10 s (compiling), then 8 + 3 frames in 2 s: 5.5 frames/s.
    assert frames_per_second([(8, 10.0), (8, 1.0), (3, 1.0)]) == pytest.approx(5.5)
    assert frames_per_second([(4, 2.0)]) == pytest.approx(2.0)  # one call: all there is
    assert np.isnan(frames_per_second([]))
