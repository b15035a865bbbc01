"""The NeRF's compiled functions trace once: the train step over batches, the renderer and the
illumination fit over held-out sequences and drives (chex.assert_max_traces)."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest
from test_nerf_stage import smoke_config
from tracing import no_baked_arrays

from jaxhead.data.pipeline import make_pipeline
from jaxhead.nerf import render_video, stage, step
from jaxhead.train.optim import make_optimizer
from jaxhead.train.state import TrainState


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("compile_cache")


def test_the_train_step_traces_once(cache):
    config = smoke_config(cache)
    prepared = stage.prepare(config)
    tx = make_optimizer(config.optim, config.train.steps)
    train_step = step.make_train_step(prepared.setup, prepared.graphdefs, tx, config.loss)
    jitted = jax.jit(chex.assert_max_traces(train_step, n=1))
    state = TrainState.create(step.param_dict(*step.build_models(prepared.setup, 0)), tx)
    pipeline = make_pipeline(prepared.frames, batch_size=2, seed=0, num_threads=1)
    batches = step.Batches(pipeline, step.frame_keys(prepared.setup))
    no_baked_arrays(train_step)(state, next(batches))  # what accelerators refuse (tracing.py)
    for _ in range(3):  # new batches, new state: the same program
        state, metrics = jitted(state, next(batches))
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 3
    # The guard bites: a batch of another shape is a second trace.
    half = jax.tree.map(lambda x: x[:1], next(batches))
    with pytest.raises(AssertionError, match="traced > 1 times"):
        jitted(state, half)


def test_rendering_sequences_and_drives_traces_once(cache, tmp_path):
    config = smoke_config(cache, steps=2)
    stage.train(config, tmp_path)
    trained = render_video.load_trained(tmp_path)
    assert trained.config.eval.fit_steps > 0  # the held-out sequences fit C_ill
    # Two traces in all: the render function's own, and the fit step's (which renders inside).
    render_fn = chex.assert_max_traces(step.make_render_fn(trained.graphdefs), n=2)
    trained.renderer = step.Renderer(render_fn)
    source, sequences = render_video.heldout_sequences(trained, "val")
    assert len(sequences) >= 2
    for rows in sequences[:2]:
        held = render_video.render_sequence(trained, source, rows)
        assert np.isfinite(held.pred).all()
    rng = np.random.default_rng(0)
    for seconds in (0.5, 0.9):  # two drives of different lengths
        audio = 0.1 * rng.standard_normal(int(16000 * seconds)).astype(np.float32)
        frames = render_video.drive(trained, audio, identity=1)
        assert len(frames) == int(seconds * 25)
    assert trained.renderer.render._cache_size() == 1
    assert trained.renderer._fit_step._cache_size() == 1
