"""The shared training plumbing (jaxhead.train) on the toy stage of tests/toy_stage.py."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
import toy_stage
from flax import nnx

from jaxhead.train import loop
from jaxhead.train.checkpoint import Checkpointer, finish_before_interrupt
from jaxhead.train.mesh import make_mesh, mesh_config
from jaxhead.train.metrics import read_metrics
from jaxhead.train.sharding import shard_batch, state_shardings
from jaxhead.train.workdir import WorkdirConflictError

TOY = pathlib.Path(__file__).with_name("toy_stage.py")


def toy_config(**train):
    config = toy_stage.get_config()
    with config.unlocked():
        config.train.update(train)
    return config


def flat_params(state):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params))])


def test_make_mesh_uses_all_devices_by_default():
    mesh = make_mesh(mesh_config())
    assert mesh.shape == {"data": 8, "model": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_make_mesh_sub_mesh_and_errors():
    cfg = mesh_config()
    cfg.data = 2
    assert make_mesh(cfg).devices.shape == (2, 1)
    cfg.data = 16
    with pytest.raises(ValueError, match="only 8 are available"):
        make_mesh(cfg)
    cfg.data, cfg.model = -1, 3
    with pytest.raises(ValueError, match="does not divide"):
        make_mesh(cfg)


def test_state_shardings_fsdp_shards_large_leaves_only():
    mesh = make_mesh(mesh_config())
    tree = {
        "big": jax.ShapeDtypeStruct((1024, 512), np.float32),
        "odd": jax.ShapeDtypeStruct((1023, 511), np.float32),
        "small": jax.ShapeDtypeStruct((8,), np.float32),
    }
    sh = state_shardings(tree, mesh, "fsdp", fsdp_min_size=1000)
    assert sh["big"].spec == jax.sharding.PartitionSpec("data", None)
    assert sh["odd"].spec == jax.sharding.PartitionSpec()
    assert sh["small"].spec == jax.sharding.PartitionSpec()
    with pytest.raises(ValueError, match="unknown sharding strategy"):
        state_shardings(tree, mesh, "zero9")


def test_shard_batch_splits_leading_axis_and_rejects_bad_sizes():
    mesh = make_mesh(mesh_config())
    batch = {"x": np.arange(16 * 3, dtype=np.float32).reshape(16, 3)}
    out = shard_batch(batch, mesh)
    assert out["x"].shape == (16, 3)
    assert len(out["x"].addressable_shards) == 8
    assert out["x"].addressable_shards[1].data.shape == (2, 3)
    np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])
    with pytest.raises(ValueError, match="multiple of 8"):
        shard_batch({"x": np.zeros((12, 3))}, mesh)


def test_sharded_step_matches_single_device(tmp_path):
    one = toy_config(steps=12)
    with one.unlocked():
        one.mesh.data = 1
    eight = toy_config(steps=12)
    state1 = loop.train(one, tmp_path / "one", toy_stage.build_task)
    state8 = loop.train(eight, tmp_path / "eight", toy_stage.build_task)
    assert len(state8.params["hidden"]["kernel"].sharding.device_set) == 8
    p1, p8 = flat_params(state1), flat_params(state8)
    assert not np.allclose(p1, flat_params(jax.jit(toy_stage.build_task(one, None).init_fn)()))
    np.testing.assert_allclose(p8, p1, rtol=1e-5, atol=1e-6)


def test_workdir_layout_metrics_and_eval(tmp_path):
    loop.train(
        toy_config(steps=10, log_every=5, checkpoint_every=5), tmp_path, toy_stage.build_task
    )
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 10
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10]
    for key in ("loss", "l2_grads", "l2_params", "l2_updates"):
        assert np.isfinite(records[-1][key])
    assert (tmp_path / "train.log").read_text().count("loss=") == 2
    assert "mse" in json.loads((tmp_path / "eval.json").read_text())
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [5, 10]


def test_rerun_resumes_and_extends(tmp_path):
    straight = loop.train(toy_config(steps=20), tmp_path / "a", toy_stage.build_task)
    loop.train(toy_config(steps=10), tmp_path / "b", toy_stage.build_task)
    resumed = loop.train(toy_config(steps=20), tmp_path / "b", toy_stage.build_task)
    np.testing.assert_allclose(flat_params(resumed), flat_params(straight), rtol=1e-6, atol=1e-7)
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 20


def test_validation_every_k_steps_is_logged_and_left_out_of_the_training_time(tmp_path):
    config = toy_config(steps=6, log_every=1, checkpoint_every=3, eval_every=2)
    with config.unlocked():
        config.toy.validate_delay_s = 1.0
    loop.train(config, tmp_path, toy_stage.build_task)
    records = read_metrics(tmp_path / "metrics.jsonl")
    val = [r for r in records if "val_mse" in r]
    assert [r["step"] for r in val] == [2, 4, 6]
    assert all(np.isfinite(r["val_mse"]) for r in val)
    steps = {r["step"]: r for r in records if "loss" in r}
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    times = [r["train_time_s"] for r in records]
    assert times == sorted(times)
    # The second validation (1 s) ran between the records of steps 4 and 5: not training time.
    assert steps[5]["train_time_s"] - steps[4]["train_time_s"] < 0.5
    assert steps[5]["steps_per_s"] > 2.0
    # A resumed run continues the clock instead of restarting it.
    with config.unlocked():
        config.train.steps = 9
    loop.train(config, tmp_path, toy_stage.build_task)
    resumed = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["step"] > 6]
    assert resumed and resumed[0]["train_time_s"] >= steps[6]["train_time_s"]


def test_watch_sees_every_logged_step_and_can_stop_the_run(tmp_path, caplog):
    seen = []

    def watched(config, mesh):
        task = toy_stage.build_task(config, mesh)

        def watch(step, metrics):
            seen.append((step, sorted(metrics)))
            if step == 4:
                raise loop.StoppedByWatchError("hopeless at step 4")
            return f"odd at step {step}" if step == 2 else None

        task.watch = watch
        return task

    config = toy_config(steps=6, log_every=1, checkpoint_every=2)
    with caplog.at_level(logging.WARNING, logger=loop.__name__):
        with pytest.raises(loop.StoppedByWatchError, match="hopeless"):
            loop.train(config, tmp_path, watched)
    assert [step for step, _ in seen] == [1, 2, 3, 4]  # asked at every logged step
    assert "loss" in seen[0][1]
    assert [r.getMessage() for r in caplog.records if "odd at" in r.getMessage()] == [
        "odd at step 2"
    ]
    # Stopped, not broken: the checkpoints written so far are there.
    assert max(r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")) == 4
    assert (tmp_path / "checkpoints" / "2").exists()


def test_workdir_with_other_config_is_not_overwritten(tmp_path):
    loop.train(toy_config(steps=5), tmp_path, toy_stage.build_task)
    before = (tmp_path / "config.json").read_text()
    other = toy_config(steps=5)
    with other.unlocked():
        other.optim.learning_rate = 0.5
    with pytest.raises(WorkdirConflictError, match="optim.learning_rate"):
        loop.train(other, tmp_path, toy_stage.build_task)
    assert (tmp_path / "config.json").read_text() == before


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = toy_config(steps=30, checkpoint_every=10, log_every=5)
    with config.unlocked():
        config.toy.nan_at_step = 13
    with pytest.raises(loop.NonFiniteError, match="at step 13") as info:
        loop.train(config, tmp_path, toy_stage.build_task)
    assert "step 10" in str(info.value)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.all_steps() == [10]
    abstract = jax.eval_shape(toy_stage.build_task(config, None).init_fn)
    state, data_state = ckpt.restore(abstract)
    assert np.all(np.isfinite(flat_params(state)))
    assert data_state  # the iterator position travels with the checkpoint


def test_unknown_config_override_fails_with_clear_message(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(TOY),
            f"--config={TOY}",
            f"--workdir={tmp_path}",
            "--config.no_such_key=1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown config key 'no_such_key'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "config.json").exists()


def test_nnx_params_round_trip_through_checkpoint(tmp_path):
    model = toy_stage.ToyModel(4, 8, nnx.Rngs(3))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    ckpt = Checkpointer(tmp_path, async_save=False)
    ckpt.save(1, params, {"next_index": 7})
    restored, data_state = ckpt.restore(jax.eval_shape(lambda: params))
    ckpt.close()
    assert data_state == {"next_index": 7}
    jax.tree.map(np.testing.assert_array_equal, restored, params)


def test_failing_data_setup_leaves_no_workdir(tmp_path):
    def broken(config, mesh):
        raise FileNotFoundError("no such dataset: /nowhere")

    with pytest.raises(FileNotFoundError):
        loop.train(toy_config(steps=2), tmp_path / "run", broken)
    assert not (tmp_path / "run").exists()


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler during the test, whatever the runner inherited (a job put
    in the background by a non-interactive shell starts with SIGINT ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_inside_a_checkpoint_save_waits_for_the_save_to_finish(tmp_path, python_sigint):
    # Orbax's async save hangs the interpreter's exit when a KeyboardInterrupt lands inside it
    # (its signalling threads wait forever): the interrupt is held until the block ends.
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with finish_before_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")  # the block was not cut short
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    # A second Ctrl-C inside the block is not held.
    with pytest.raises(KeyboardInterrupt):
        with finish_before_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("not reached")
    assert steps == ["after the signal"]
    # A real save interrupted from inside completes on disk before the interrupt is raised.
    ckpt = Checkpointer(tmp_path / "checkpoints")
    state = {"w": np.arange(4.0)}
    real_save = ckpt._manager.save

    def save_with_ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_save(*args, **kwargs)

    ckpt._manager.save = save_with_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(3, state)
    ckpt.wait()
    assert ckpt.latest_step() == 3
    restored, _ = ckpt.restore(jax.eval_shape(lambda: state))
    np.testing.assert_array_equal(restored["w"], state["w"])
    ckpt.close()
