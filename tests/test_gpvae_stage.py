"""The GP-VAE stage in-process on the shared loop: smoke run, resume, eval.json, generation."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest

from jaxhead.data import synthetic
from jaxhead.gpvae import stage
from jaxhead.train import loop

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "gpvae.py"


def load_config_module():
    spec = importlib.util.spec_from_file_location("gpvae_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def voca_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpvae") / "voca"
    return synthetic.generate(root, 3, 2, 3.0, 0, mesh_rows=8, mesh_cols=12)


def tiny_config(root, steps=8):
    config = load_config_module().get_config("smoke")
    with config.unlocked():
        config.data.root = str(root)
        config.data.update(window=16, bop=4)
        config.model.update(width=16, heads=2)
        config.train.update(steps=steps, checkpoint_every=4, log_every=4, progress=False)
        config.train.async_checkpoints = False
        config.eval.update(num_samples=2, max_sequences=1)
    return config


class StopAfter:
    """Wraps a task's data iterator and raises after ``n`` batches (a simulated kill)."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    def __next__(self):
        if self.n == 0:
            raise KeyboardInterrupt("simulated kill")
        self.n -= 1
        return next(self.inner)

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, state):
        self.inner.set_state(state)


def flat(state):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params))])


def test_smoke_run_resume_and_generation(voca_root, tmp_path):
    config = tiny_config(voca_root)

    def train_only(config, mesh):  # the reference run skips evaluation and plots (time)
        task = stage.build_task(config, mesh)
        task.evaluate = task.write_samples = None
        return task

    reference = tiny_config(voca_root)
    with reference.unlocked():
        reference.train.checkpoint_every = 8
    straight = loop.train(reference, tmp_path / "straight", train_only)

    run = tmp_path / "run"

    def killed_task(config, mesh):
        task = stage.build_task(config, mesh)
        task.data = StopAfter(task.data, 5)  # killed during step 6, after the step-4 checkpoint
        return task

    with pytest.raises(KeyboardInterrupt):
        loop.train(config, run, killed_task)
    resumed = stage.train(config, run)
    np.testing.assert_allclose(flat(resumed), flat(straight), rtol=1e-5, atol=1e-6)

    results = json.loads((run / "eval.json").read_text())
    for key in ["d_rot", "d_pos", "blinks_per_s_generated", "blinks_per_s_ground_truth",
                "diversity", "motion_ratio"]:  # fmt: skip
        assert np.isfinite(results[key]), key
    assert results["variant"] == "transformer_gpvae" and results["step"] == 8
    assert (run / "samples" / "traces_000008.png").stat().st_size > 1000
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records)

    # Generation from audio of any length, at another frame rate, reproducible by seed.
    wave = np.sin(2 * np.pi * 180 * np.arange(20_800) / 16_000).astype(np.float32)  # 1.3 s
    pose, blink = stage.generate_pose_blink(run, wave, fps=30, seed=3)
    assert pose.shape == (39, 6) and blink.shape == (39,)
    assert np.all(np.isfinite(pose)) and np.all(np.isfinite(blink))
    again, _ = stage.generate_pose_blink(run / "checkpoints", wave, fps=30, seed=3)
    np.testing.assert_allclose(again, pose, atol=1e-6)
    prior_pose, _ = stage.generate_pose_blink(run, None, num_frames=50, seed=1)
    assert prior_pose.shape == (50, 6) and np.all(np.isfinite(prior_pose))
    with pytest.raises(ValueError, match="give num_frames"):
        stage.generate_pose_blink(run, None)


def test_missing_checkpoint_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/train_gpvae.py"):
        stage.generate_pose_blink(tmp_path, None, num_frames=10)


def test_config_variants():
    module = load_config_module()
    assert module.get_config().model.variant == "transformer_gpvae"
    assert module.get_config("smoke,variant=lstm_vae").model.variant == "lstm_vae"
    with pytest.raises(ValueError, match="unknown config variant"):
        module.get_config("fast")
