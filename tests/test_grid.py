"""Multi-resolution grid encodings (jaxhead.nerf.grid) against slow reference loops."""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.nerf import grid


def reference_level(x: np.ndarray, table: np.ndarray, n: int) -> np.ndarray:
    """One level by the book, float64, one point at a time: the dense grid ``G[v] = table[Σ v_i
    (N+1)^i]`` (or the hashed row) interpolated d-linearly over the cell's corners."""
    d = x.shape[-1]
    t = table.shape[0]
    out = np.zeros((len(x), table.shape[1]))
    for p, point in enumerate(np.asarray(x, np.float64)):
        pos = np.clip(point, 0.0, 1.0) * n
        cell = np.minimum(np.floor(pos), n - 1).astype(int)
        frac = pos - cell
        for upper in itertools.product((0, 1), repeat=d):
            v = cell + np.asarray(upper)
            weight = np.prod([f if u else 1.0 - f for f, u in zip(frac, upper, strict=True)])
            if (n + 1) ** d <= t:
                row = sum(int(v[i]) * (n + 1) ** i for i in range(d))
            else:
                h = 0
                for i in range(d):
                    h ^= (int(v[i]) * grid.PRIMES[i]) & 0xFFFFFFFF
                row = h % t
            out[p] += weight * np.asarray(table[row], np.float64)
    return out


def reference(x, tables, resolutions):
    return np.concatenate(
        [reference_level(x, np.asarray(tables[i]), n) for i, n in enumerate(resolutions)], -1
    )


def random_case(seed: int, d: int, table_size: int, levels=3, features=2):
    rng = np.random.default_rng(seed)
    resolutions = grid.level_resolutions(levels, 2, 9)
    tables = rng.normal(size=(levels, table_size, features))
    x = rng.uniform(0, 1, size=(17, d))
    return x, tables, resolutions


def test_level_resolutions_grow_geometrically():
    assert grid.level_resolutions(4, 16, 128) == (16, 32, 64, 128)
    res = grid.level_resolutions(16, 16, 2048)
    assert res[0] == 16 and res[-1] == 2048 and all(np.diff(res) > 0)
    with pytest.raises(ValueError):
        grid.level_resolutions(0, 16, 2048)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_direct_indexing_equals_the_dense_reference_in_float64(d):
    with jax.enable_x64(True):
        x, tables, res = random_case(d, d, table_size=10**d)  # (9+1)^d fits: no hashing
        got = np.asarray(grid.hash_encode(jnp.asarray(x), jnp.asarray(tables), res))
        np.testing.assert_allclose(got, reference(x, tables, res), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [2, 3])
def test_hashed_levels_equal_the_reference(d):
    with jax.enable_x64(True):
        x, tables, res = random_case(10 + d, d, table_size=13)  # every level collides
        got = np.asarray(grid.hash_encode(jnp.asarray(x), jnp.asarray(tables), res))
        np.testing.assert_allclose(got, reference(x, tables, res), rtol=1e-12, atol=1e-12)


def test_spatial_hash_is_instant_ngp_xor_of_primes():
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 5000, size=(50, 3))
    got = np.asarray(grid.corner_indices(jnp.asarray(corners), 4999, 2**14))
    want = [
        ((c[0] * 1) ^ ((c[1] * 2654435761) & 0xFFFFFFFF) ^ ((c[2] * 805459861) & 0xFFFFFFFF))
        % 2**14
        for c in corners.tolist()
    ]
    np.testing.assert_array_equal(got, want)


def test_exact_at_vertices_and_continuous_across_cell_boundaries():
    with jax.enable_x64(True):
        _, tables, res = random_case(1, 3, table_size=1000)
        n = res[-1]
        table = jnp.asarray(tables[-1:])
        vertex = np.array([[3, 5, 7]]) / n
        got = np.asarray(grid.hash_encode(jnp.asarray(vertex), table, (n,)))
        row = 3 + 5 * (n + 1) + 7 * (n + 1) ** 2
        np.testing.assert_allclose(got[0], tables[-1][row], atol=1e-12)
        # Both sides of the face x_0 = 4/n: the cell changes, the value does not jump.
        eps = 1e-9
        left = np.array([[4 / n - eps, 0.31, 0.77]])
        right = np.array([[4 / n + eps, 0.31, 0.77]])
        a = np.asarray(grid.hash_encode(jnp.asarray(left), jnp.asarray(tables), res))
        b = np.asarray(grid.hash_encode(jnp.asarray(right), jnp.asarray(tables), res))
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_gradient_is_the_scatter_of_the_interpolation_weights():
    with jax.enable_x64(True):
        x, tables, res = random_case(3, 3, table_size=40, levels=2, features=1)
        x = x[:3]

        def total(t):
            return jnp.sum(grid.hash_encode(jnp.asarray(x), t, res))

        grad = np.asarray(jax.grad(total)(jnp.asarray(tables)))
        # d(Σ features)/d(table row) = Σ of the weights of the corners that read the row.
        expected = np.zeros_like(tables)
        for level, n in enumerate(res):
            for point in x:
                for row in range(tables.shape[1]):
                    one_hot = np.zeros((tables.shape[1], 1))
                    one_hot[row] = 1.0
                    expected[level, row, 0] += reference_level(point[None], one_hot, n)[0, 0]
        np.testing.assert_allclose(grad, expected, atol=1e-12)
        # ... which is also what a finite difference on one entry gives.
        entry = np.unravel_index(np.argmax(np.abs(expected)), expected.shape)
        bumped = tables.copy()
        bumped[entry] += 1e-6
        fd = (float(total(jnp.asarray(bumped))) - float(total(jnp.asarray(tables)))) / 1e-6
        assert fd == pytest.approx(grad[entry], rel=1e-5)


def test_collisions_only_add():
    """Every level's corner weights sum to one, whatever collides: a table of ones encodes every
    point to one per level, and one hot row reads the summed weights of the corners hashed to it."""
    x = jnp.asarray(np.random.default_rng(4).uniform(size=(64, 3)), jnp.float32)
    res = (50, 90)
    ones = jnp.ones((2, 3, 1))  # T = 3 rows for 8 corners: collisions everywhere
    np.testing.assert_allclose(np.asarray(grid.hash_encode(x, ones, res)), 1.0, atol=1e-5)
    one_hot = jnp.zeros((2, 3, 1)).at[:, 1].set(1.0)
    reads = np.asarray(grid.hash_encode(x, one_hot, res))
    assert (reads >= -1e-6).all() and (reads <= 1 + 1e-6).all()
    assert (reads > 1e-3).any()


def test_jit_vmap_and_traces():
    x, tables, res = random_case(5, 3, table_size=2**10)
    x, tables = jnp.asarray(x, jnp.float32), jnp.asarray(tables, jnp.float32)
    eager = grid.hash_encode(x, tables, res)
    encode = jax.jit(chex.assert_max_traces(grid.hash_encode, n=1), static_argnums=2)
    np.testing.assert_allclose(encode(x, tables, res), eager, rtol=1e-6, atol=1e-6)
    encode(x + 0.01, tables * 2.0, res)  # new values, same shapes: no retrace
    looped = np.stack([np.asarray(grid.hash_encode(p, tables, res)) for p in x])
    mapped = jax.vmap(lambda p: grid.hash_encode(p, tables, res))(x)
    np.testing.assert_allclose(mapped, looped, rtol=1e-6, atol=1e-6)
    assert eager.shape == (17, 3 * 2)


def test_triplane_is_the_three_planes_concatenated():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.uniform(size=(9, 3)), jnp.float32)
    res = grid.level_resolutions(3, 4, 32)
    tables = jnp.asarray(rng.normal(size=(3, 3, 2**8, 2)), jnp.float32)
    got = grid.triplane_encode(x, tables, res)
    planes = [grid.hash_encode(x[:, list(a)], tables[i], res) for i, a in enumerate(grid.PLANES)]
    np.testing.assert_allclose(got, np.concatenate(planes, -1), rtol=1e-6)
    assert got.shape == (9, 3 * 3 * 2)
    with pytest.raises(ValueError):
        grid.triplane_encode(x[:, :2], tables, res)


def test_a_broken_weight_formula_is_caught(monkeypatch):
    """The reference comparison above can fail: swap the corners' weights and it does."""

    def swapped(frac, offsets):
        upper = offsets.astype(frac.dtype).reshape((1,) * (frac.ndim - 1) + offsets.shape)
        frac = frac[..., None, :]
        per_dim = (1.0 - frac) * upper + frac * (1.0 - upper)
        return jnp.prod(per_dim, axis=-1)

    monkeypatch.setattr(grid, "corner_weights", swapped)
    with jax.enable_x64(True):
        x, tables, res = random_case(2, 2, table_size=100)
        got = np.asarray(grid.hash_encode(jnp.asarray(x), jnp.asarray(tables), res))
        assert not np.allclose(got, reference(x, tables, res), atol=1e-3)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(2, 40), st.integers(1, 2000))
def test_any_point_is_a_convex_combination_of_table_rows(d, n, table_size):
    """Weights are non-negative and sum to one: features lie within the table's value range."""
    rng = np.random.default_rng(n * 7 + d)
    x = jnp.asarray(rng.uniform(size=(8, d)), jnp.float32)
    table = jnp.asarray(rng.uniform(-1, 1, size=(1, table_size, 1)), jnp.float32)
    out = np.asarray(grid.hash_encode(x, table, (n,)))
    assert out.min() >= float(table.min()) - 1e-5 and out.max() <= float(table.max()) + 1e-5


@pytest.mark.parametrize("encoding", ["hash", "triplane"])
def test_the_head_nerf_renders_and_trains_with_a_grid_encoding(encoding):
    from flax import nnx

    from jaxhead.nerf.config import HeadNeRFConfig
    from jaxhead.nerf.model import HeadNeRF

    config = HeadNeRFConfig(
        condition_dims=(("id", 4), ("blink", 1)), width=16, depth=2, skip_layer=None,
        feature_dim=8, render_size=(6, 6), num_coarse=4, num_fine=4, upsample=2,
        upsampler_widths=(8,), encoding=encoding, grid_levels=4, grid_features=2,
        grid_log2_table=8, grid_min_resolution=4, grid_max_resolution=32,
    )  # fmt: skip
    model = HeadNeRF(config, rngs=nnx.Rngs(0))
    planes = 3 if encoding == "triplane" else 1
    assert model.field.point_dim == planes * 4 * 2
    assert model.field.tables[...].shape == ((3,) if planes == 3 else ()) + (4, 256, 2)
    c2w = jnp.eye(4)[None].at[0, 2, 3].set(0.6)
    cameras = {"c2w": c2w, "intrinsics": jnp.asarray([[14.0, 14.0, 6.0, 6.0]])}
    conditions = {"id": jnp.ones((1, 4)), "blink": jnp.zeros((1, 1))}
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params):
        out = nnx.merge(graphdef, params)(cameras, conditions, jax.random.key(0))
        return jnp.mean(jnp.square(out["image"] - 0.5))

    grads = jax.grad(loss)(params)
    table_grad = np.asarray(grads["field"]["tables"][...])
    assert np.isfinite(table_grad).all() and np.abs(table_grad).max() > 0
