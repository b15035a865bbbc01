"""The GP-VAE stage in-process on the shared loop: smoke run, resume, eval.json, generation,
and recompile guards on the train step and the generator."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import chex
import jax
import numpy as np
import pytest
from tracing import no_baked_arrays

from jaxhead.data import synthetic
from jaxhead.experiments import gpvae_ablation
from jaxhead.gpvae import generate, models, stage
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


def test_smoke_run_resume_and_generation(voca_root, tmp_path, monkeypatch):
    config = tiny_config(voca_root)
    chex.clear_trace_counter()

    def train_only(config, mesh):  # the reference run skips evaluation and plots (time)
        task = stage.build_task(config, mesh)
        task.evaluate = task.write_samples = None
        # The loop compiles the step once: 8 steps and a checkpoint trace it once.
        task.train_step = chex.assert_max_traces(no_baked_arrays(task.train_step), n=1)
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
                "diversity", "motion_ratio", "velocity_ratio",
                "velocity_ratio_samples"]:  # fmt: skip
        assert np.isfinite(results[key]), key
    assert results["variant"] == "transformer_gpvae" and results["step"] == 8
    assert (run / "samples" / "traces_000008.png").stat().st_size > 1000
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records)

    # Generation from audio of any length, at another frame rate, reproducible by seed. The run
    # is restored once and its generator compiled once: every audio-driven call below (two
    # lengths, two ways of naming the run) traces the window function once.
    monkeypatch.setattr(models, "cme_window", chex.assert_max_traces(models.cme_window, n=1))
    wave = np.sin(2 * np.pi * 180 * np.arange(20_800) / 16_000).astype(np.float32)  # 1.3 s
    pose, blink = generate.generate_pose_blink(run, wave, fps=30, seed=3)
    assert pose.shape == (39, 6) and blink.shape == (39,)
    assert np.all(np.isfinite(pose)) and np.all(np.isfinite(blink))
    again, _ = generate.generate_pose_blink(run / "checkpoints", wave, fps=30, seed=3)
    np.testing.assert_allclose(again, pose, atol=1e-6)
    short, _ = generate.generate_pose_blink(run, wave[:12_000], fps=30, seed=4)  # 0.75 s
    assert short.shape == (22, 6) and np.all(np.isfinite(short))
    prior_pose, _ = generate.generate_pose_blink(run, None, num_frames=50, seed=1)
    assert prior_pose.shape == (50, 6) and np.all(np.isfinite(prior_pose))
    with pytest.raises(ValueError, match="give num_frames"):
        generate.generate_pose_blink(run, None)
    # A person's own frames to start from: only the first τ (at the model's rate) are the BOP,
    # and frames at another rate are resampled to it first.
    tau = config.data.bop
    history = np.random.default_rng(0).normal(0.0, 0.05, (3 * tau, 7)).astype(np.float32)
    history[:, 6] = 0.0
    first = generate.generate_pose_blink(run, wave, seed=3, bop=history[:tau])[0]
    longer = generate.generate_pose_blink(run, wave, seed=3, bop=history)[0]
    np.testing.assert_allclose(longer, first, atol=1e-6)
    doubled = np.repeat(history, 2, 0)  # the same frames at 50 fps
    resampled = generate.generate_pose_blink(run, wave, seed=3, bop=doubled, bop_fps=50.0)[0]
    np.testing.assert_allclose(
        resampled, generate.generate_pose_blink(run, wave, seed=3, bop=doubled[::2])[0], atol=1e-6
    )
    with pytest.raises(ValueError, match=f"bop must be \\[M >= {tau}"):
        generate.generate_pose_blink(run, wave, bop=history[: tau - 1])
    chex.clear_trace_counter()


def test_missing_checkpoint_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/train_gpvae.py"):
        generate.generate_pose_blink(tmp_path, None, num_frames=10)


def test_config_variants():
    module = load_config_module()
    assert module.get_config().model.variant == "transformer_gpvae"
    assert module.get_config("smoke,variant=lstm_vae").model.variant == "lstm_vae"
    with pytest.raises(ValueError, match="unknown config variant"):
        module.get_config("fast")


def _train_only(config, mesh):
    task = stage.build_task(config, mesh)
    task.evaluate = task.write_samples = None
    return task


@pytest.mark.slow  # ~1 min on 2 free CPU cores (two tiny trainings, two evaluations)
def test_finetune_trains_only_the_cross_modal_encoder(voca_root, tmp_path):
    pre = tiny_config(voca_root, steps=4)
    pretrained = loop.train(pre, tmp_path / "pre", _train_only)
    config = tiny_config(voca_root, steps=4)
    with config.unlocked():
        config.finetune.init_from = str(tmp_path / "pre")
        config.eval.plot_sequences = 0
    tuned = stage.train(config, tmp_path / "tuned")
    before, after = jax.device_get(pretrained.params), jax.device_get(tuned.params)
    for part in before:
        pairs = zip(jax.tree.leaves(before[part]), jax.tree.leaves(after[part]), strict=True)
        same = [np.array_equal(a, b) for a, b in pairs]
        if part == "cme":
            assert not all(same), "E_ah did not change"
        else:
            assert all(same), f"{part} changed while frozen"
    results = json.loads((tmp_path / "tuned" / "eval.json").read_text())
    assert np.isfinite(results["before_finetune"]["d_rot"]) and np.isfinite(results["d_rot"])

    missing = tiny_config(voca_root)
    with missing.unlocked():
        missing.finetune.init_from = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="scripts/train_gpvae.py"):
        stage.build_task(missing, None)
    other = tiny_config(voca_root)
    with other.unlocked():
        other.finetune.init_from = str(tmp_path / "pre")
        other.model.width = 24
    with pytest.raises(ValueError, match="model.width"):
        stage.build_task(other, None)


def test_ablation_table_rows_means_and_baseline():
    base = {"d_rot": 50.0, "d_pos": 40.0, "d_rot_long": 101.0, "d_pos_long": 99.0,
            "blinks_per_s_generated": 0.2, "blinks_per_s_ground_truth": 0.3, "diversity": 0.1,
            "motion_ratio": 0.8, "d_rot_hold": 97.0, "d_pos_hold": 96.0, "d_rot_long_hold": 130.0,
            "d_pos_long_hold": 131.0, "wall_s": 400.0}  # fmt: skip
    rows = [
        {**base, "variant": "mlp_vae", "seed": 0},
        {**base, "variant": "transformer_gpvae", "seed": 0, "d_rot": 10.0},
        {**base, "variant": "transformer_gpvae", "seed": 1, "d_rot": 20.0},
    ]
    table = gpvae_ablation.ablation_table(rows)
    assert "| MLP VAE | 0 | 50.00% |" in table
    assert "| **Trans GP-VAE, mean ± std** | 2 seeds | 15.00 ± 5.00% |" in table
    assert "| hold last BOP frame | - | 97.00% | 96.00% |" in table
    assert "linear extrapolation" not in table  # runs from before the baseline existed
    rows = [{**row, "d_rot_linear": 70.0, "d_pos_linear": 80.0} for row in rows]
    assert "| linear extrapolation of the BOP | - | 70.00% | 80.00% |" in (
        gpvae_ablation.ablation_table(rows)
    )


def test_audio_dropout_hides_the_audio_from_the_cross_modal_encoder(voca_root, tmp_path):
    """With ``model.audio_dropout=1`` the train step's losses do not depend on the audio; with 0
    they do; a value outside [0, 1] is refused."""

    def step_metrics(dropout):
        config = tiny_config(voca_root)
        with config.unlocked():
            config.model.audio_dropout = dropout
        task = stage.build_task(config, None)
        batch, state, step = next(task.data), jax.jit(task.init_fn)(), jax.jit(task.train_step)
        out = []
        for scale in (1.0, 3.0):
            _, metrics = step(state, {**batch, "audio": batch["audio"] * scale})
            out.append((float(metrics["cme_loss"]), float(metrics["vae_loss"])))
        return out

    hidden = step_metrics(1.0)
    assert hidden[0] == hidden[1]
    heard = step_metrics(0.0)
    assert heard[0][0] != heard[1][0] and heard[0][1] == heard[1][1]  # only E_ah hears audio
    config = tiny_config(voca_root)
    with config.unlocked():
        config.model.audio_dropout = 1.5
    with pytest.raises(ValueError, match="audio_dropout"):  # the shared range check, before work
        loop.train(config, tmp_path / "refused", stage.build_task)
    assert not (tmp_path / "refused").exists()


def test_ablation_runs_keep_the_config_overrides_for_every_variant_and_seed():
    """``scripts/gpvae_ablation.py --config.X=Y`` (the shared config flag): every run is a copy of
    the overridden config with its own variant and seed."""
    base = load_config_module().get_config("ablation")
    with base.unlocked():
        base.data.update(source="videos", paths=("a", "b"), mirror=True)
        base.model.update(relative_pose=True, pose_anchor="last", width=32)
    configs = gpvae_ablation.variant_configs(base, ["mlp_vae", "transformer_gpvae"], [0, 1])
    assert sorted(configs) == ["mlp_vae_seed0", "mlp_vae_seed1", "transformer_gpvae_seed0",
                               "transformer_gpvae_seed1"]  # fmt: skip
    for name, config in configs.items():
        assert config.data.source == "videos" and config.data.paths == ("a", "b")
        assert config.model.relative_pose is True and config.data.mirror is True
        assert config.model.pose_anchor == "last" and config.model.width == 32
        assert name == f"{config.model.variant}_seed{config.seed}"
    assert base.model.variant == "transformer_gpvae" and base.seed == 0  # the base untouched
