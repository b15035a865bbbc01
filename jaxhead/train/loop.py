"""The one training loop every stage uses.

A stage provides a :class:`Task` (pure ``init_fn`` and ``train_step``, a resumable data iterator,
optional evaluation and sample writing); :func:`train` does the rest in the order of big_vision's
trainer: mesh -> workdir -> model/opt -> shard -> update step -> checkpoint -> loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import logging
import math
import pathlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np

from jaxhead.train import sharding as sharding_lib
from jaxhead.train.checkpoint import Checkpointer
from jaxhead.train.distributed import maybe_initialize
from jaxhead.train.errors import UserError, WorkdirConflictError
from jaxhead.train.mesh import make_mesh
from jaxhead.train.metrics import MetricsWriter
from jaxhead.train.validate import check_config
from jaxhead.train.workdir import (
    check_workdir_path,
    finished_outputs,
    lock_workdir,
    prepare_workdir,
    write_json_atomic,
)

PyTree = Any
log = logging.getLogger(__name__)


class NonFiniteError(UserError, FloatingPointError):
    """A training metric became NaN or infinite."""


class StoppedByWatchError(UserError, RuntimeError):
    """A stage's ``Task.watch`` recognised a run that will not recover and stopped it."""


class DataIterator(Protocol):
    """A resumable iterator of host batches (grain's ``DatasetIterator`` is one)."""

    def __next__(self) -> PyTree: ...

    def get_state(self) -> dict: ...

    def set_state(self, state: dict) -> None: ...


@dataclasses.dataclass
class Task:
    """Everything stage-specific that the shared loop needs.

    Attributes:
      init_fn: ``() -> state``, pure and traceable: evaluated with ``jax.eval_shape`` for the
        shardings, then run under ``jax.jit(out_shardings=...)`` so parameters are created where
        they live.
      train_step: ``(state, batch) -> (state, metrics)``, pure; ``metrics`` is a flat dict of
        scalars that includes ``loss``.
      data: resumable iterator of host batches (local part of the global batch on each process).
      evaluate: optional ``state -> dict`` run once at the end; written to ``eval.json``.
      validate: optional ``state -> {name: scalar}`` run every ``config.train.eval_every`` steps
        (on every process; the primary writes it): a cheap held-out score logged to
        ``metrics.jsonl`` as ``val_<name>`` beside the step's ``train_time_s``, its own time left
        out of the training time (a time-to-quality curve).
      write_samples: optional ``(state, step, samples_dir) -> None`` run every
        ``config.train.sample_every`` steps on the primary process (images, plots).
      state_sharding: strategy name for :func:`jaxhead.train.sharding.state_shardings`.
      constants: optional frozen pytree (e.g. pre-trained VGG16 weights of a perceptual loss)
        passed to ``train_step(state, batch, constants)`` as a replicated argument: it is not
        trained, not checkpointed, and not baked into the compiled program.
      watch: optional ``(step, {name: float}) -> str | None``, called with the metrics of every
        logged step (on every process): a returned message is logged as a warning — a run that
        trains without error but has gone wrong in a way the stage can recognise (the watch
        returns a message when it has news, not at every step); a run that cannot recover is
        stopped by raising :class:`StoppedByWatchError` (its checkpoints are kept).
      write_run_files: optional ``workdir -> None``, run by the primary process once the
        workdir holds the run's config (before the first step): files a later process reads to
        use the run (e.g. statistics of the training data), written once, not per checkpoint.
    """

    init_fn: Callable[[], PyTree]
    train_step: Callable[[PyTree, PyTree], tuple[PyTree, Mapping[str, jax.Array]]]
    data: DataIterator | Iterator
    evaluate: Callable[[PyTree], dict] | None = None
    write_samples: Callable[[PyTree, int, pathlib.Path], None] | None = None
    state_sharding: str = "replicate"
    constants: PyTree | None = None
    write_run_files: Callable[[pathlib.Path], None] | None = None
    validate: Callable[[PyTree], Mapping[str, float]] | None = None
    watch: Callable[[int, Mapping[str, float]], str | None] | None = None


# Keys the shared train block gained after runs existed, with the value their absence meant.
LOOP_ADDED_KEYS = {"train.eval_every": 0}


def train_config(**overrides) -> ml_collections.ConfigDict:
    """The default ``config.train`` block shared by every stage."""
    config = ml_collections.ConfigDict(
        {
            "steps": 1000,
            "log_every": 50,
            "checkpoint_every": 500,
            "sample_every": 0,  # 0: only at the end
            "eval_every": 0,  # Task.validate every this many steps; 0: never
            "keep_checkpoints": 3,
            "progress": True,
            "async_checkpoints": True,
            "hang_dump_s": 900.0,  # dump all stacks if one step takes longer; 0 disables
        }
    )
    config.update(overrides)
    return config


def _fd_stream():
    """stderr, or the process's original stderr when it was replaced (faulthandler needs an fd)."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    return None


def _first_non_finite(records: list[tuple[int, dict]]) -> tuple[int, str] | None:
    for step, metrics in records:
        for name, value in metrics.items():
            if not np.all(np.isfinite(np.asarray(value))):
                return step, name
    return None


def train(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    build_task: Callable[[ml_collections.ConfigDict, jax.sharding.Mesh], Task],
    *,
    added_keys: Mapping[str, Any] | None = None,
) -> PyTree:
    """Trains (or resumes) a stage in ``workdir``; returns the final train state.

    Args:
      config: the resolved stage config; uses ``config.train``, ``config.mesh`` and, when
        present, ``config.distributed``.
      workdir: the run folder (see :mod:`jaxhead.train.workdir`).
      build_task: ``(config, mesh) -> Task``; called after the mesh exists.
      added_keys: config keys the stage added after runs existed, with the value their absence
        meant (:func:`jaxhead.train.workdir.config_differences`): older runs still resume.

    Raises:
      NonFiniteError: a metric became NaN/inf; the last good checkpoint is kept on disk.
      jaxhead.train.workdir.WorkdirConflictError: the workdir holds a different run.
    """
    # --- distributed & mesh -------------------------------------------------------------------
    check_config(config)  # bad values stop here, before anything is read or written
    maybe_initialize(config.get("distributed"))
    mesh = make_mesh(config.get("mesh"))
    primary = jax.process_index() == 0
    workdir = check_workdir_path(workdir)

    # --- workdir: refuse a different run before any work, write only once the task exists ----
    added = {**LOOP_ADDED_KEYS, **(added_keys or {})}
    prepare_workdir(workdir, config, write=False, added=added)

    # --- model, optimiser, data --------------------------------------------------------------
    task = build_task(config, mesh)  # bad data stops here, leaving no half-made workdir
    with contextlib.ExitStack() as stack:
        if primary:
            stack.enter_context(lock_workdir(workdir))  # a second run on this workdir stops here
        return _train_locked(config, workdir, task, mesh, primary, stack, added)


def _train_locked(config, workdir, task, mesh, primary, stack, added) -> PyTree:
    tcfg = config.train
    total = int(tcfg.steps)
    ckpt = Checkpointer(
        workdir / "checkpoints",
        max_to_keep=int(tcfg.keep_checkpoints),
        async_save=bool(tcfg.get("async_checkpoints", True)),
        writer=True,
    )
    stack.callback(ckpt.close)
    latest = ckpt.latest_step()
    if latest is None and (outputs := finished_outputs(workdir, total)):
        raise WorkdirConflictError(
            f"{workdir} holds a run's results ({', '.join(outputs)}) but no checkpoint in "
            f"{ckpt.directory}; training again from step 0 would overwrite them. Choose a new "
            "--workdir (or restore the checkpoints; or delete the results to retrain here)"
        )
    if latest is not None and latest > total:
        raise WorkdirConflictError(
            f"{workdir} holds a run trained to step {latest}, beyond train.steps={total}; pass "
            f"--config.train.steps={latest} or more to resume or extend it, or choose a new "
            "--workdir"
        )
    prepare_workdir(workdir, config, write=primary, added=added)
    if primary and task.write_run_files is not None:
        task.write_run_files(workdir)
    abstract = jax.eval_shape(task.init_fn)
    state_sh = sharding_lib.state_shardings(abstract, mesh, task.state_sharding)
    batch_sh = sharding_lib.batch_sharding(mesh)
    repl = sharding_lib.replicated(mesh)

    # --- init or resume ----------------------------------------------------------------------
    if latest is None:
        state = jax.jit(task.init_fn, out_shardings=state_sh)()
        start = 0
    else:
        state, data_state = ckpt.restore(abstract, state_sh)
        start = ckpt.restored_step  # an unreadable latest checkpoint falls back to the previous
        if hasattr(task.data, "set_state") and data_state:
            task.data.set_state(data_state)
        log.info("resumed %s from step %d", workdir, start)
        if primary:
            print(f"Resuming {workdir} from checkpoint step {start}.", flush=True)

    # --- update step -------------------------------------------------------------------------
    if task.constants is None:
        step_fn = jax.jit(
            task.train_step,
            in_shardings=(state_sh, batch_sh),
            out_shardings=(state_sh, repl),
            donate_argnums=(0,),
        )
    else:
        constants = jax.device_put(task.constants, repl)
        jitted = jax.jit(
            task.train_step,
            in_shardings=(state_sh, batch_sh, repl),
            out_shardings=(state_sh, repl),
            donate_argnums=(0,),
        )
        step_fn = lambda state, batch: jitted(state, batch, constants)  # noqa: E731

    # --- loop --------------------------------------------------------------------------------
    log_every = max(int(tcfg.log_every), 1)
    ckpt_every = max(int(tcfg.checkpoint_every), 1)
    sample_every = int(tcfg.sample_every)
    eval_every = int(tcfg.get("eval_every", 0))
    writer = MetricsWriter(
        workdir,
        total_steps=total,
        start_step=start,
        enabled=primary,
        progress=bool(tcfg.progress),
        desc=workdir.name,
    )
    pending: list[tuple[int, Mapping[str, jax.Array]]] = []
    # A step that never returns (a wedged runtime, a dead peer process) dumps every thread's stack
    # to stderr every `hang_dump_s` seconds instead of hanging silently.
    hang_dump_s = float(tcfg.get("hang_dump_s", 900.0))
    hang_stream = _fd_stream()
    if hang_stream is None:
        hang_dump_s = 0.0
    if hang_dump_s > 0:
        faulthandler.dump_traceback_later(hang_dump_s, repeat=True, file=hang_stream)
    try:
        for step in range(start + 1, total + 1):
            batch = sharding_lib.shard_batch(next(task.data), mesh)
            with jax.transfer_guard("disallow"):
                state, metrics = step_fn(state, batch)
            pending.append((step, metrics))
            writer.advance()
            is_ckpt = step % ckpt_every == 0 or step == total
            if step % log_every == 0 or is_ckpt:
                host = jax.device_get(pending)
                pending = []
                bad = _first_non_finite(host)
                if bad is not None:
                    last = ckpt.latest_step()
                    raise NonFiniteError(
                        f"non-finite '{bad[1]}' at step {bad[0]} (steps {host[0][0]}-{step} "
                        f"checked); training stopped. The last good checkpoint (step {last}) is "
                        f"kept in {ckpt.directory}; lower the learning rate or check the data "
                        "for NaN, then re-run the same command to resume from it."
                    )
                if step % log_every == 0 or step == total:
                    writer.write(step, host[-1][1])
                    if task.watch is not None:
                        message = task.watch(step, {k: float(v) for k, v in host[-1][1].items()})
                        if message:
                            log.warning("%s", message)
            if is_ckpt:
                data_state = task.data.get_state() if hasattr(task.data, "get_state") else {}
                ckpt.save(step, state, data_state)
            if eval_every and step % eval_every == 0 and task.validate is not None:
                jax.block_until_ready(state)  # the steps' own time stays training time
                began = time.perf_counter()
                scores = task.validate(state)
                record = {"step": step, **{f"val_{k}": float(v) for k, v in scores.items()}}
                writer.exclude(time.perf_counter() - began)
                writer.write_record(record)
            if sample_every and step % sample_every == 0 and task.write_samples and primary:
                task.write_samples(state, step, workdir / "samples")
            if hang_dump_s > 0:
                # re-arm per step
                faulthandler.dump_traceback_later(hang_dump_s, repeat=True, file=hang_stream)
    finally:
        faulthandler.cancel_dump_traceback_later()
        ckpt.wait()
        writer.close()

    # --- final samples and evaluation --------------------------------------------------------
    eval_path = workdir / "eval.json"
    if task.write_samples and primary and start < total:
        task.write_samples(state, total, workdir / "samples")
    if task.evaluate is not None and (start < total or not eval_path.exists()):
        results = task.evaluate(state)
        if primary:
            # The state's own step: what the parameters were trained for, whatever the config says.
            step = int(jax.device_get(state.step)) if hasattr(state, "step") else total
            results = {"step": step, **results}
            write_json_atomic(eval_path, _jsonable(results))
    return state


def _jsonable(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_jsonable(v) for v in tree]
    if isinstance(tree, (str, bool)) or tree is None:
        return tree
    value = np.asarray(tree)
    if value.ndim == 0:
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    return value.tolist()
