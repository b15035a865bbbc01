"""Occupancy-guided sampling (jaxhead.nerf.render.render_ray_occupancy) against dense sampling."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxhead.nerf import render

CENTRE = jnp.asarray([0.1, -0.05, 0.0])


def blob_field(points, unit_dir):
    """A toy head: a compact Gaussian density blob (peak 400, σ 0.06: nearly a surface at 16
    samples per ray) whose colour varies in space."""
    del unit_dir
    r2 = jnp.sum(jnp.square(points - CENTRE.reshape((1,) * (points.ndim - 1) + (3,))), axis=-1)
    density = 400.0 * jnp.exp(-r2 / (2 * 0.06**2))
    values = jnp.stack([0.5 + points[..., 0], 0.5 - points[..., 1], 0.5 + points[..., 2]], -1)
    return density, values


def occupancy_of(field, resolution=32, threshold=0.05):
    """Cells where the density at the centre or a corner exceeds ``threshold`` (the grid a
    trained field's densities would give)."""
    axis = (np.arange(resolution) + 0.5) / resolution * 2 - 1
    centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)
    h = 1.0 / resolution
    offsets = np.asarray([[x, y, z] for x in (-h, 0, h) for y in (-h, 0, h) for z in (-h, 0, h)])
    probes = (centres[..., None, :] + offsets).reshape(-1, 3)
    density, _ = field(jnp.asarray(probes, jnp.float32), None)
    density = np.asarray(density).reshape(resolution, resolution, resolution, len(offsets))
    return jnp.asarray(density.max(-1) > threshold, jnp.float32)


def rays(num=64, seed=0):
    rng = np.random.default_rng(seed)
    origins = np.tile([0.0, 0.0, 2.5], (num, 1)) + rng.uniform(-0.1, 0.1, (num, 3))
    targets = rng.uniform(-0.15, 0.15, (num, 3)) + np.asarray(CENTRE)
    return jnp.asarray(origins, jnp.float32), jnp.asarray(targets - origins, jnp.float32)


def test_occupancy_lookup_maps_the_unit_cube():
    grid = jnp.zeros((4, 4, 4)).at[3, 0, 1].set(1.0)
    points = jnp.asarray([[0.8, -0.9, -0.3], [0.8, -0.9, 0.3], [1.2, -0.9, -0.3]])
    np.testing.assert_array_equal(render.occupancy_at(grid, points), [1.0, 0.0, 0.0])


def test_occupancy_guided_rendering_matches_dense_sampling():
    grid = occupancy_of(blob_field)
    assert 0.01 < float(grid.mean()) < 0.3  # the grid holds the blob and skips the rest
    origins, directions = rays()
    dense = jax.vmap(
        lambda o, d: render.render_ray(blob_field, o, d, None, num_coarse=2048, num_fine=0)
    )(origins, directions)
    guided = jax.vmap(
        lambda o, d: render.render_ray_occupancy(
            blob_field, o, d, None, grid, num_candidates=128, num_samples=16
        )
    )(origins, directions)
    for want, got in zip(dense, guided, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=0.02)
    assert float(jnp.max(dense[1])) > 0.9  # some rays are nearly opaque: the test has teeth
    # The same 16 samples spread over the whole ray (no grid) are far off.
    uniform = jax.vmap(
        lambda o, d: render.render_ray(blob_field, o, d, None, num_coarse=16, num_fine=0)
    )(origins, directions)
    err_guided = float(jnp.max(jnp.abs(guided[0] - dense[0])))
    err_uniform = float(jnp.max(jnp.abs(uniform[0] - dense[0])))
    assert err_guided < 0.5 * err_uniform


def test_rays_through_empty_space_stay_transparent_and_jit_matches_eager():
    grid = occupancy_of(blob_field)
    origin = jnp.asarray([0.0, 0.9, 2.5])
    direction = jnp.asarray([0.0, 0.0, -1.0])  # passes above the blob
    fn = functools.partial(
        render.render_ray_occupancy, blob_field, num_candidates=64, num_samples=16
    )
    eager = fn(origin, direction, None, grid)
    jitted = jax.jit(fn)(origin, direction, None, grid)
    assert float(eager[1]) < 1e-3
    np.testing.assert_allclose(np.asarray(jitted[0]), np.asarray(eager[0]), atol=1e-6)
    keyed = fn(origin, direction * 1.0, jax.random.key(0), grid)
    assert np.isfinite(np.asarray(keyed[0])).all()
