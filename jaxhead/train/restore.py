"""Restoring a finished run of any stage from its workdir: one function, one error message.

Every stage that consumes another stage's result (the NeRF reads the sync stage and the
extractor, rendering reads the NeRF, ``--pose_from gpvae`` reads the GP-VAE) loads it here::

    run = restore_run(workdir, "sync", TRAIN_COMMAND.format(workdir=workdir), abstract_fn)
    run.config, run.state.params, run.step

``abstract_fn(config)`` gives the state's shapes (``jax.eval_shape`` of the stage's own
initialisation), so nothing is computed twice and no parameters are initialised for nothing.
A workdir without ``config.json`` or without a checkpoint is a :class:`RunNotFoundError`
(a ``FileNotFoundError``) whose one line names the workdir, what is missing, and the command that
makes the run.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from jaxhead.train.checkpoint import Checkpointer
from jaxhead.train.workdir import read_run_config

PyTree = Any


class RunNotFoundError(FileNotFoundError):
    """A workdir that holds no finished run of the expected stage; the message says how to make
    one."""


@dataclasses.dataclass(frozen=True)
class Restored:
    """A restored run: its resolved config, its state (as the stage saved it), the state's step
    and the workdir it came from."""

    config: ml_collections.ConfigDict
    state: PyTree
    step: int
    workdir: pathlib.Path


def _missing(workdir: pathlib.Path, stage: str, what: str, command: str) -> RunNotFoundError:
    return RunNotFoundError(
        f"{workdir} holds no finished {stage} run ({what}); make it with `{command}`"
    )


def finished_run_config(
    workdir: str | pathlib.Path,
    stage: str,
    command: str,
    required: Sequence[str] = (),
    keys: Sequence[str] = (),
) -> ml_collections.ConfigDict:
    """``config.json`` of a run in ``workdir``, checked to exist with the ``required`` files and
    to be this stage's: ``keys`` are dotted config keys only this stage has
    (:func:`jaxhead.train.workdir.read_run_config` names another stage's run as such)."""
    workdir = pathlib.Path(workdir).expanduser()
    for name in ("config.json", *required):
        if not (workdir / name).is_file():
            raise _missing(workdir, stage, f"no {name}", command)
    return read_run_config(workdir, tuple(keys), f"a {stage}", command)


def restore_run(
    workdir: str | pathlib.Path,
    stage: str,
    command: str,
    abstract_fn: Callable[[ml_collections.ConfigDict], PyTree],
    *,
    step: int | None = None,
    required: Sequence[str] = (),
    keys: Sequence[str] = (),
    config: ml_collections.ConfigDict | None = None,
) -> Restored:
    """Restores checkpoint ``step`` (default: the latest) of the ``stage`` run in ``workdir``.

    Args:
      workdir: the run's folder (``config.json``, ``checkpoints/``).
      stage: the stage's name, for the error message (``"sync"``, ``"NeRF"``, ...).
      command: the command that makes such a run, for the error message.
      abstract_fn: ``config -> abstract state`` (shapes and dtypes) of what the stage saved.
      step: which checkpoint; ``None`` for the latest.
      required: files besides ``config.json`` that a finished run of this stage holds.
      keys: dotted config keys only this stage has (another stage's run is named as such).
      config: the run's config when the caller has read it already (:func:`finished_run_config`).

    Raises:
      RunNotFoundError: no config.json, no required file, no checkpoint (or not that step).
    """
    workdir = pathlib.Path(workdir).expanduser()
    if config is None:
        config = finished_run_config(workdir, stage, command, required, keys)
    ckpt_dir = workdir / "checkpoints"
    if not ckpt_dir.is_dir():
        raise _missing(workdir, stage, "no checkpoints/", command)
    ckpt = Checkpointer(ckpt_dir, async_save=False)
    try:
        steps = ckpt.all_steps()
        if not steps:
            raise _missing(workdir, stage, "checkpoints/ holds no checkpoint", command)
        if step is not None and int(step) not in steps:
            raise _missing(workdir, stage, f"no checkpoint of step {step}; it has {steps}", command)
        # Shapes only once a checkpoint is known to exist: a folder without one costs nothing.
        # The latest readable checkpoint: an unreadable one is skipped with a warning.
        state, _ = ckpt.restore(abstract_fn(config), step=step, train_command=command)
        restored_step = int(ckpt.restored_step)
    finally:
        ckpt.close()
    return Restored(config, state, restored_step, workdir)
