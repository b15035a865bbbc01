"""Orbax checkpoints of a stage: train state + data-iterator state, atomic, keep the last k."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

PyTree = Any


class Checkpointer:
    """A thin wrapper over ``orbax.checkpoint.CheckpointManager`` for ``DIR/checkpoints``.

    Each checkpoint holds two items: ``state`` (the sharded train state, written with
    ``StandardSave``) and ``data`` (the input pipeline's JSON state, so a resumed run sees the same
    batches). Orbax writes into a temporary folder and renames it when complete, so a run killed
    mid-save leaves the previous checkpoint intact and the partial one is ignored and cleaned up.
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3, async_save=True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: PyTree, data_state: dict | None = None) -> None:
        """Saves ``state`` (and the data-iterator state) as checkpoint ``step``."""
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state if data_state is not None else {}),
            ),
            force=True,
        )

    def restore(
        self, abstract_state: PyTree, shardings: PyTree | None = None, step: int | None = None
    ) -> tuple[PyTree, dict]:
        """Restores checkpoint ``step`` (default: the latest) into the given shardings.

        Args:
          abstract_state: pytree of arrays or ``jax.ShapeDtypeStruct`` giving shapes and dtypes.
          shardings: pytree of ``jax.sharding.Sharding`` with the same structure; the restored
            arrays land directly in these shardings (no host round trip of the whole state).
            ``None``: the shardings of ``abstract_state``'s leaves, else this process's first
            device.
          step: which checkpoint; ``None`` for the latest.

        Returns:
          ``(state, data_state)``.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if shardings is None:
            # Without explicit shardings, restore onto this process's first device (e.g. to inspect
            # a checkpoint written by a run on another topology).
            default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            shardings = jax.tree.map(
                lambda x: getattr(x, "sharding", None) or default, abstract_state
            )
        target = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            abstract_state,
            shardings,
        )
        restored = self._manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["data"] or {})

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
