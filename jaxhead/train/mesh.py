"""Device mesh construction from a config block.

Every stage runs on a 2-axis mesh ``("data", "model")``: the batch (frames, rays, sequences) is
split over ``data``; parameters are replicated or sharded by the rules in
:mod:`jaxhead.train.sharding`. The same code serves 1 CPU, 8 forced host devices, one GPU and a
multi-host cluster (after :func:`jaxhead.train.distributed.maybe_initialize`).
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh

DATA_AXIS = "data"
MODEL_AXIS = "model"


def mesh_config() -> ml_collections.ConfigDict:
    """The default ``config.mesh`` block: all devices on the data axis."""
    return ml_collections.ConfigDict(
        {
            # -1: every device not used by the model axis. A positive number uses only the first
            # data * model devices (handy to compare 1 device against 8 in one process).
            "data": -1,
            "model": 1,
        }
    )


def make_mesh(config: ml_collections.ConfigDict | None = None) -> Mesh:
    """Builds the ``(data, model)`` mesh described by ``config`` (see :func:`mesh_config`).

    Axis types are passed explicitly (``Auto``: the compiler propagates shardings between the
    explicit ``in_shardings``/``out_shardings`` of each jitted step).
    """
    config = config if config is not None else mesh_config()
    devices = jax.devices()
    model = int(config.model)
    if model < 1:
        raise ValueError(f"config.mesh.model must be >= 1, got {model}")
    data = int(config.data)
    if data == -1:
        if len(devices) % model:
            raise ValueError(
                f"config.mesh.model={model} does not divide the {len(devices)} available devices"
            )
        data = len(devices) // model
    if data < 1 or data * model > len(devices):
        raise ValueError(
            f"config.mesh asks for data={data} x model={model} devices but only {len(devices)} "
            f"are available; set --config.mesh.data=-1 to use them all"
        )
    if data * model == len(devices):
        return jax.make_mesh(
            (data, model), (DATA_AXIS, MODEL_AXIS), axis_types=(AxisType.Auto, AxisType.Auto)
        )
    # A sub-mesh of the first devices (single-process only: multi-host meshes use every device).
    grid = np.asarray(devices[: data * model]).reshape(data, model)
    return Mesh(grid, (DATA_AXIS, MODEL_AXIS), axis_types=(AxisType.Auto, AxisType.Auto))
