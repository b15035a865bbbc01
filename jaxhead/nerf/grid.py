"""Multi-resolution grid encodings of points (pure JAX): instant-NGP's hash grid and tri-planes.

**Hash grid** (Müller et al. 2022, sec. 3): ``L`` levels of resolution
``N_l = floor(N_min · b^l)``, ``b = exp((ln N_max − ln N_min) / (L − 1))``
(:func:`level_resolutions`). At level ``l`` a point ``x ∈ [0, 1]^d`` lies in the grid cell with
lower corner ``c = floor(x N_l)`` (vertices at the integers ``0 ... N_l``); each of the cell's
``2^d`` corners ``v`` reads an ``F``-vector from the level's table of ``T`` entries, at

* ``Σ_i v_i (N_l + 1)^i`` when the level's ``(N_l + 1)^d`` vertices fit in the table (direct
  indexing: coarse levels have no collisions), else
* the spatial hash ``(⊕_i v_i π_i) mod T`` with ``π = (1, 2654435761, 805459861)`` (eq. 4; XOR of
  the coordinate-prime products, in wrapping uint32 arithmetic as the CUDA code computes it),

and the level's feature is the d-linear interpolation of the corners' vectors with weights
``Π_i (frac_i if v_i is the upper corner else 1 − frac_i)``, ``frac = x N_l − c``. The levels'
features are concatenated: ``[..., L · F]``. Tables are one array ``[L, T, F]`` (fixed shapes; a
directly indexed level uses the first ``(N_l + 1)^d`` rows), so the encoding is one gather per
level and batches with ``jax.vmap``; its gradient with respect to the tables is the scatter-add
of the interpolation weights (collisions sum).

**Tri-plane** (ER-NeRF's form, Li et al. 2023): a 3D point is encoded by three 2D hash grids on
the ``xy``, ``yz`` and ``xz`` planes (:data:`PLANES`), concatenated: ``[..., 3 · L · F]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

PRIMES = (1, 2654435761, 805459861)  # instant-NGP's π_1..π_3
PLANES = ((0, 1), (1, 2), (0, 2))  # xy, yz, xz (ER-NeRF's three planes)


def level_resolutions(num_levels: int, min_resolution: int, max_resolution: int) -> tuple:
    """``(N_0, ..., N_{L-1})``: ``floor(N_min · b^l)`` with the growth factor ``b`` that takes
    ``N_min`` to ``N_max`` in ``L`` levels (instant-NGP eq. 2-3)."""
    if num_levels < 1 or min_resolution < 1 or max_resolution < min_resolution:
        raise ValueError(
            f"need num_levels >= 1 and 1 <= min_resolution <= max_resolution, got {num_levels}, "
            f"{min_resolution}, {max_resolution}"
        )
    if num_levels == 1:
        return (int(min_resolution),)
    growth = math.exp((math.log(max_resolution) - math.log(min_resolution)) / (num_levels - 1))
    # The small epsilon keeps exact powers (e.g. N_max itself) from flooring one below.
    return tuple(
        int(math.floor(min_resolution * growth**level + 1e-9)) for level in range(num_levels)
    )


def _corner_offsets(dim: int) -> np.ndarray:
    """``[2^d, d]`` 0/1 offsets of a cell's corners (bit ``i`` of corner ``k`` is ``v_i``)."""
    return ((np.arange(2**dim)[:, None] >> np.arange(dim)[None, :]) & 1).astype(np.int32)


def corner_indices(corners: jax.Array, resolution: int, table_size: int) -> jax.Array:
    """Table rows of integer grid vertices ``[..., d]`` at one level of resolution ``N``.

    Direct indexing ``Σ_i v_i (N + 1)^i`` when ``(N + 1)^d <= T``, else instant-NGP's spatial hash
    ``(⊕_i v_i π_i) mod T`` in uint32 arithmetic.
    """
    dim = corners.shape[-1]
    if dim > len(PRIMES):
        raise ValueError(f"hash encodings of d <= {len(PRIMES)} dimensions; got d={dim}")
    corners = corners.astype(jnp.uint32)
    if (resolution + 1) ** dim <= table_size:
        strides = np.asarray([(resolution + 1) ** i for i in range(dim)], np.uint32)
        strides = jnp.asarray(strides.reshape((1,) * (corners.ndim - 1) + (dim,)))
        return jnp.sum(corners * strides, axis=-1).astype(jnp.int32)
    hashed = corners[..., 0] * jnp.uint32(PRIMES[0])
    for i in range(1, dim):
        hashed = hashed ^ (corners[..., i] * jnp.uint32(PRIMES[i]))
    return (hashed % jnp.uint32(table_size)).astype(jnp.int32)


def corner_weights(frac: jax.Array, offsets: jax.Array) -> jax.Array:
    """``[..., 2^d]`` d-linear weights of a cell's corners, ``frac [..., d]`` in the cell."""
    upper = offsets.astype(frac.dtype).reshape((1,) * (frac.ndim - 1) + offsets.shape)
    frac = frac[..., None, :]  # [..., 1, d] against the corners' [1.., 2^d, d]
    per_dim = frac * upper + (1.0 - frac) * (1.0 - upper)
    return jnp.prod(per_dim, axis=-1)


def _encode_level(x: jax.Array, table: jax.Array, resolution: int) -> jax.Array:
    """``[..., F]`` one level's interpolated feature of points ``x [..., d]`` in [0, 1]."""
    dim = x.shape[-1]
    pos = jnp.clip(x, 0.0, 1.0) * resolution
    # The cell's lower corner, clipped so that x = 1 uses the last cell (frac = 1 there).
    cell = jnp.clip(jnp.floor(pos), 0, resolution - 1)
    frac = pos - cell
    offsets = jnp.asarray(_corner_offsets(dim))
    corners = cell.astype(jnp.int32)[..., None, :] + offsets.reshape(
        (1,) * (cell.ndim - 1) + offsets.shape
    )  # [..., 2^d, d]
    rows = corner_indices(corners, resolution, table.shape[0])  # [..., 2^d]
    values = jnp.take(table, rows, axis=0)  # [..., 2^d, F]
    weights = corner_weights(frac, offsets)  # [..., 2^d]
    return jnp.einsum("...c,...cf->...f", weights, values)


def hash_encode(x: jax.Array, tables: jax.Array, resolutions: Sequence[int]) -> jax.Array:
    """Multi-resolution hash encoding (module docstring) of points in ``[0, 1]^d``.

    Args:
      x: ``[..., d]`` points, ``d`` in 1..3 (values outside [0, 1] are clamped).
      tables: ``[L, T, F]`` feature tables, one per level.
      resolutions: ``L`` static grid resolutions (:func:`level_resolutions`).

    Returns:
      ``[..., L · F]`` the levels' features, concatenated coarse to fine.
    """
    tables = jnp.asarray(tables)
    if tables.ndim != 3 or tables.shape[0] != len(resolutions):
        raise ValueError(
            f"tables must be [L, T, F] with L = {len(resolutions)} levels, got {tables.shape}"
        )
    x = jnp.asarray(x, tables.dtype)
    features = [
        _encode_level(x, tables[level], int(resolution))
        for level, resolution in enumerate(resolutions)
    ]
    return jnp.concatenate(features, axis=-1)


def triplane_encode(x: jax.Array, tables: jax.Array, resolutions: Sequence[int]) -> jax.Array:
    """ER-NeRF's tri-plane encoding: 2D hash grids on the xy, yz and xz planes, concatenated.

    Args:
      x: ``[..., 3]`` points in ``[0, 1]^3``.
      tables: ``[3, L, T, F]``, one table stack per plane (:data:`PLANES` order).
      resolutions: ``L`` static resolutions of each plane's levels.

    Returns:
      ``[..., 3 · L · F]``.
    """
    tables = jnp.asarray(tables)
    if x.shape[-1] != 3 or tables.ndim != 4 or tables.shape[0] != len(PLANES):
        raise ValueError(
            f"triplane_encode takes x [..., 3] and tables [3, L, T, F]; got {x.shape}, "
            f"{tables.shape}"
        )
    return jnp.concatenate(
        [hash_encode(x[..., list(axes)], tables[p], resolutions) for p, axes in enumerate(PLANES)],
        axis=-1,
    )


def init_tables(
    key: jax.Array, num_levels: int, table_size: int, features: int, scale: float = 1e-4
) -> jax.Array:
    """``[L, T, F]`` tables drawn from ``U(-scale, scale)`` (instant-NGP's initialisation)."""
    return jax.random.uniform(
        key, (num_levels, table_size, features), jnp.float32, minval=-scale, maxval=scale
    )
