"""Sharding rules and host-to-device batch placement.

Rules are pure functions of (abstract pytree, strategy, mesh) -> pytree of ``NamedSharding``, as
in big_vision: the train loop evaluates the state's shapes with ``jax.eval_shape`` and then
initialises it directly into these shardings with ``jax.jit(init, out_shardings=...)``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxhead.train.mesh import DATA_AXIS

PyTree = Any


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, data_axis: str = DATA_AXIS) -> NamedSharding:
    """Leading (batch) axis split over ``data_axis``, the rest replicated."""
    return NamedSharding(mesh, P(data_axis))


def _fsdp_spec(shape: tuple[int, ...], axis_size: int, data_axis: str, min_size: int) -> P:
    """Shards the largest dimension divisible by the data-axis size (ZeRO-3 / FSDP style)."""
    if axis_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % axis_size == 0:
            spec = [None] * len(shape)
            spec[dim] = data_axis
            return P(*spec)
    return P()


def state_shardings(
    abstract_state: PyTree,
    mesh: Mesh,
    strategy: str = "replicate",
    data_axis: str = DATA_AXIS,
    fsdp_min_size: int = 2**18,
) -> PyTree:
    """Shardings for a train state, leaf by leaf.

    Args:
      abstract_state: pytree of arrays or ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape``).
      mesh: the device mesh.
      strategy: ``"replicate"`` (every parameter on every device: the right choice for NeRF-sized
        models) or ``"fsdp"`` (large leaves split along their largest divisible dimension over the
        data axis; small leaves stay replicated).
      data_axis: mesh axis used by ``"fsdp"``.
      fsdp_min_size: leaves with fewer elements stay replicated under ``"fsdp"``.

    Returns:
      A pytree of ``NamedSharding`` with the structure of ``abstract_state``.
    """
    if strategy == "replicate":
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)
    if strategy == "fsdp":
        size = mesh.shape[data_axis]
        return jax.tree.map(
            lambda x: NamedSharding(
                mesh, _fsdp_spec(tuple(np.shape(x)), size, data_axis, fsdp_min_size)
            ),
            abstract_state,
        )
    raise ValueError(f"unknown sharding strategy {strategy!r}; use 'replicate' or 'fsdp'")


def shard_batch(batch: PyTree, mesh: Mesh, data_axis: str = DATA_AXIS) -> PyTree:
    """Places a host batch on the mesh, leading axis split over ``data_axis``.

    Each process passes its *local* part of the global batch (in a single-process run that is the
    whole batch); ``jax.make_array_from_process_local_data`` assembles the global array, so the
    same call serves one CPU and a multi-host cluster.

    Args:
      batch: pytree of NumPy arrays, each ``[local_batch, ...]``.
      mesh: the device mesh.
      data_axis: mesh axis the batch is split over.

    Returns:
      pytree of global ``jax.Array`` of shape ``[local_batch * process_count, ...]``.
    """
    sharding = batch_sharding(mesh, data_axis)
    local_devices = mesh.shape[data_axis] // jax.process_count()

    def put(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % max(local_devices, 1):
            raise ValueError(
                f"batch leaf of shape {x.shape} cannot be split over {local_devices} local devices "
                f"of the '{data_axis}' axis: make the per-process batch size a multiple of "
                f"{local_devices} (config.data.batch_size)"
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batch)
