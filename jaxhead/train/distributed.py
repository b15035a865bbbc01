"""Multi-host start-up: ``jax.distributed.initialize`` from the config or the environment."""

from __future__ import annotations

import os

import jax
import ml_collections


def distributed_config() -> ml_collections.ConfigDict:
    """The default ``config.distributed`` block.

    ``coordinator_address`` empty and ``num_processes`` 0 mean single-process, unless a cluster
    environment (SLURM, Open MPI, TPU pods, ...) is detected by ``jax.distributed.initialize``
    itself (``auto_detect``). The environment variables ``JAXHEAD_COORDINATOR_ADDRESS``,
    ``JAXHEAD_NUM_PROCESSES`` and ``JAXHEAD_PROCESS_ID`` override the three fields, which is how
    one command line is launched on every host.
    """
    return ml_collections.ConfigDict(
        {
            "coordinator_address": "",
            "num_processes": 0,
            "process_id": -1,
            "auto_detect": False,
            # Cross-process collectives on CPU backends ('gloo' or 'mpi').
            "cpu_collectives": "gloo",
        }
    )


_initialized = False


def maybe_initialize(config: ml_collections.ConfigDict | None = None) -> bool:
    """Initialises the JAX distributed runtime when a multi-process run is configured.

    Must run before anything touches JAX devices. Returns True when running multi-process.
    """
    global _initialized
    if _initialized:
        return jax.process_count() > 1
    config = config if config is not None else distributed_config()
    address = os.environ.get("JAXHEAD_COORDINATOR_ADDRESS", config.coordinator_address)
    num = int(os.environ.get("JAXHEAD_NUM_PROCESSES", config.num_processes))
    pid = int(os.environ.get("JAXHEAD_PROCESS_ID", config.process_id))
    if address or num > 1:
        if not address or num < 1 or pid < 0:
            raise ValueError(
                "a multi-process run needs coordinator_address, num_processes and process_id "
                f"(got {address!r}, {num}, {pid}); set config.distributed.* or the "
                "JAXHEAD_COORDINATOR_ADDRESS / JAXHEAD_NUM_PROCESSES / JAXHEAD_PROCESS_ID variables"
            )
        jax.config.update("jax_cpu_collectives_implementation", config.cpu_collectives)
        jax.distributed.initialize(address, num_processes=num, process_id=pid)
        _initialized = True
    elif config.auto_detect:
        jax.config.update("jax_cpu_collectives_implementation", config.cpu_collectives)
        jax.distributed.initialize()
        _initialized = True
    return jax.process_count() > 1
