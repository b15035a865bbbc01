"""Orbax checkpoints of a stage: train state + data-iterator state, atomic, keep the last k."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import shutil
import signal
import sys
import threading
import traceback
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxhead.train.errors import CheckpointError

PyTree = Any
log = logging.getLogger(__name__)

# Orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp-<time>` and renames it when complete.
_TMP_MARK = ".orbax-checkpoint-tmp"
# Where the training run moves a checkpoint that cannot be read (kept for inspection, not deleted).
BROKEN_DIR = "checkpoints_broken"


def _short(exc: BaseException) -> str:
    """The file a TensorStore error names (its messages run to 150 lines), else the last line."""
    files = re.findall(r'local file "([^"]+)"', str(exc))
    data_files = [f for f in files if not f.endswith("/")]
    if data_files or files:
        return f"cannot read {(data_files or files)[-1]}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _quiet_closed_loop_callbacks() -> None:
    """When a restore fails, TensorStore completes the other pending reads from its own threads
    into orbax's event loop, which is closed by then; each reports an "Event loop is closed"
    traceback through ``sys.unraisablehook``. Those (and only those) are dropped."""
    previous = sys.unraisablehook
    if getattr(previous, "_jaxhead_closed_loop_filter", False):
        return

    def hook(unraisable):
        frames = traceback.extract_tb(unraisable.exc_traceback)
        if (
            unraisable.exc_type is RuntimeError
            and str(unraisable.exc_value) == "Event loop is closed"
            and frames
            and frames[-1].filename.endswith(os.path.join("asyncio", "base_events.py"))
        ):
            return
        previous(unraisable)

    hook._jaxhead_closed_loop_filter = True
    sys.unraisablehook = hook


@contextlib.contextmanager
def finish_before_interrupt():
    """Holds a Ctrl-C (SIGINT) that arrives inside the block until the block has ended, then
    raises it as ``KeyboardInterrupt``; a second Ctrl-C inside the block raises at once.

    Orbax starts an asynchronous save by spawning signalling threads that wait for the main
    thread to post the save's stages; a ``KeyboardInterrupt`` raised in between leaves them
    waiting forever, and the interpreter then hangs at exit joining them. Saves and the final
    wait run inside this block. Outside the main thread (where no handler can be installed) or
    under a handler Python did not install, the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:
        yield
        return
    caught: list[int] = []

    def hold(signum, frame):
        caught.append(signum)
        if len(caught) > 1:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is hold:
            signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class Checkpointer:
    """A thin wrapper over ``orbax.checkpoint.CheckpointManager`` for ``DIR/checkpoints``.

    Each checkpoint holds two items: ``state`` (the sharded train state, written with
    ``StandardSave``) and ``data`` (the input pipeline's JSON state, so a resumed run sees the same
    batches). Orbax writes into a temporary folder and renames it when complete, so a run killed
    mid-save leaves the previous checkpoint intact; the writer (``writer=True``, the training run
    holding the workdir lock) removes such partial folders when it opens the directory. Readers
    (render, evaluate, a later stage) never touch the folder, so they are safe beside a live run.

    Use it as a context manager (or call :meth:`close`) so no background work outlives it.
    """

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        max_to_keep: int = 3,
        async_save: bool = True,
        writer: bool = False,
    ):
        if int(max_to_keep) < 1:
            # Orbax reads 0 as "keep none": a run would delete every checkpoint it has.
            raise ValueError(
                f"keep_checkpoints must be >= 1 (got {max_to_keep}): a run always keeps its "
                "latest checkpoint; pass --config.train.keep_checkpoints=1 or more"
            )
        self.directory = pathlib.Path(directory).absolute()
        self.writer = writer
        if writer and jax.process_index() == 0 and self.directory.is_dir():
            # Done here, synchronously: orbax's own clean-up runs in a background thread that a
            # process exiting right away (an error message) interrupts with a traceback.
            for path in self.directory.iterdir():
                if _TMP_MARK in path.name:
                    shutil.rmtree(path, ignore_errors=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(max_to_keep),
            create=writer,
            cleanup_tmp_directories=False,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data")
        )

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(int(s) for s in self._manager.all_steps())

    def save(self, step: int, state: PyTree, data_state: dict | None = None) -> None:
        """Saves ``state`` (and the data-iterator state) as checkpoint ``step``; a Ctrl-C
        during the call takes effect when it returns (:func:`finish_before_interrupt`)."""
        with finish_before_interrupt():
            self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    data=ocp.args.JsonSave(data_state if data_state is not None else {}),
                ),
                force=True,
            )

    def _restore_step(self, step: int, target: PyTree) -> tuple[PyTree, dict]:
        restored = self._manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["data"] or {})

    def restore(
        self,
        abstract_state: PyTree,
        shardings: PyTree | None = None,
        step: int | None = None,
        *,
        train_command: str | None = None,
    ) -> tuple[PyTree, dict]:
        """Restores checkpoint ``step`` (default: the latest readable one) into the shardings.

        With ``step=None`` a checkpoint that cannot be read (a truncated file, a disk error) is
        skipped with a warning and the previous one is restored; :attr:`restored_step` says
        which. A training run (``writer=True``) moves the unreadable ones to
        ``../checkpoints_broken/`` so that its next save of that step starts clean.

        Args:
          abstract_state: pytree of arrays or ``jax.ShapeDtypeStruct`` giving shapes and dtypes.
          shardings: pytree of ``jax.sharding.Sharding`` with the same structure; the restored
            arrays land directly in these shardings (no host round trip of the whole state).
            ``None``: the shardings of ``abstract_state``'s leaves, else this process's first
            device.
          step: which checkpoint; ``None`` for the latest readable one.
          train_command: the command that makes a checkpoint, for the error message.

        Returns:
          ``(state, data_state)``.

        Raises:
          CheckpointError: there is no checkpoint, or none can be read into ``abstract_state``
            (the message names the step and the unreadable file or mismatch).
        """
        steps = self.all_steps()
        if not steps:
            how = (
                f"; train with `{train_command}`"
                if train_command
                else ("; let the training command run until its first checkpoint")
            )
            raise CheckpointError(f"{self.directory} holds no checkpoint{how}")
        if step is not None and int(step) not in steps:
            raise CheckpointError(
                f"{self.directory} has no checkpoint at step {step} (it has steps {steps})"
            )
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
        candidates = [int(step)] if step is not None else sorted(steps, reverse=True)
        _quiet_closed_loop_callbacks()  # before: the reports come while orbax still unwinds
        failures: list[tuple[int, str]] = []
        for candidate in candidates:
            try:
                result = self._restore_step(candidate, target)
            except Exception as e:  # noqa: BLE001 - orbax/TensorStore raise many types
                failures.append((candidate, _short(e)))
                log.info("checkpoint %s/%d cannot be read: %s", self.directory, candidate, e)
                continue
            self.restored_step = candidate
            if failures:
                skipped = ", ".join(f"step {s} ({why})" for s, why in failures)
                print(
                    f"warning: {self.directory}: cannot read {skipped}; restored the previous "
                    f"good checkpoint, step {candidate}.",
                    flush=True,
                )
                if self.writer:
                    self._set_aside([s for s, _ in failures])
            return result
        detail = "; ".join(f"step {s}: {why}" for s, why in failures)
        raise CheckpointError(
            f"cannot restore any checkpoint in {self.directory} ({detail}). The files are damaged "
            "or were written by another stage or configuration: point to the right run folder, "
            "or move the damaged checkpoint folders away to resume from an earlier one"
        )

    def _set_aside(self, steps: list[int]) -> None:
        if jax.process_index() != 0:
            return
        aside = self.directory.parent / BROKEN_DIR
        aside.mkdir(exist_ok=True)
        for step in steps:
            source = self.directory / str(step)
            if source.exists():
                shutil.move(str(source), str(aside / str(step)))
                print(f"warning: moved the unreadable checkpoint to {aside / str(step)}")
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk (a Ctrl-C meanwhile takes effect
        after them)."""
        with finish_before_interrupt():
            self._manager.wait_until_finished()

    def close(self) -> None:
        with finish_before_interrupt():
            self._manager.wait_until_finished()
            self._manager.close()


def restore_latest(
    directory: str | pathlib.Path,
    abstract_state: PyTree,
    shardings: PyTree | None = None,
    *,
    step: int | None = None,
    train_command: str | None = None,
) -> tuple[PyTree, dict, int]:
    """Reads one checkpoint of a finished or running run: ``(state, data_state, step)``.

    The read-only path of render / evaluate / a later stage: opens ``directory``, restores the
    latest readable checkpoint (or ``step``), and closes it again, also on error. Raises
    :class:`CheckpointError` with one line when there is none (naming ``train_command``).
    """
    with Checkpointer(directory, async_save=False) as ckpt:
        state, data_state = ckpt.restore(
            abstract_state, shardings, step=step, train_command=train_command
        )
        return state, data_state, ckpt.restored_step


def require_checkpoint(directory: str | pathlib.Path, train_command: str) -> int:
    """The latest checkpoint step in ``directory``, checked before any expensive set-up.

    Raises:
      CheckpointError: there is none (one line naming ``train_command``).
    """
    with Checkpointer(directory, async_save=False) as ckpt:
        steps = ckpt.all_steps()
    if not steps:
        raise CheckpointError(
            f"{pathlib.Path(directory).absolute()} holds no checkpoint; train with "
            f"`{train_command}`"
        )
    return steps[-1]
