"""Runs are never lost or silently overwritten (issue 16, items 6-10 and 14) on the toy stage."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest
import toy_stage
from test_train_plumbing import TOY, flat_params, toy_config

from jaxhead.files import publish
from jaxhead.train import loop
from jaxhead.train.checkpoint import BROKEN_DIR, Checkpointer, restore_latest
from jaxhead.train.errors import CheckpointError, WorkdirBusyError, WorkdirConflictError
from jaxhead.train.metrics import read_metrics
from jaxhead.train.validate import check_config, config_problems
from jaxhead.train.workdir import lock_workdir, write_json_atomic


def abstract_state(config):
    return jax.eval_shape(toy_stage.build_task(config, None).init_fn)


# --- 6: at least one checkpoint is always kept -------------------------------------------------


def test_keep_checkpoints_zero_is_refused_and_keeps_the_runs_checkpoints(tmp_path):
    loop.train(toy_config(steps=10, checkpoint_every=5), tmp_path, toy_stage.build_task)
    with pytest.raises(ValueError, match="keep_checkpoints=0 .*>= 1"):
        loop.train(
            toy_config(steps=20, checkpoint_every=5, keep_checkpoints=0),
            tmp_path,
            toy_stage.build_task,
        )
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [5, 10]
    with pytest.raises(ValueError, match="keep_checkpoints must be >= 1"):
        Checkpointer(tmp_path / "other", max_to_keep=0)


# --- 7: a finished run without checkpoints is refused, not retrained -----------------------------


def test_finished_run_without_checkpoints_is_refused(tmp_path):
    loop.train(toy_config(steps=5), tmp_path, toy_stage.build_task)
    before = {name: (tmp_path / name).read_text() for name in ("eval.json", "metrics.jsonl")}
    shutil.rmtree(tmp_path / "checkpoints")
    with pytest.raises(WorkdirConflictError, match="eval.json.*no checkpoint"):
        loop.train(toy_config(steps=5), tmp_path, toy_stage.build_task)
    assert {name: (tmp_path / name).read_text() for name in before} == before
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_run_killed_before_its_first_checkpoint_restarts(tmp_path):
    # metrics of a few steps but no eval.json and no checkpoint: nothing finished to protect.
    tmp_path.joinpath("metrics.jsonl").write_text(json.dumps({"step": 2, "loss": 1.0}) + "\n")
    loop.train(toy_config(steps=4), tmp_path, toy_stage.build_task)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")][-1] == 4


# --- 8: one run per workdir ----------------------------------------------------------------------


def test_second_run_on_a_locked_workdir_is_refused_with_the_holder(tmp_path):
    loop.train(toy_config(steps=5), tmp_path, toy_stage.build_task)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    with lock_workdir(tmp_path):
        with pytest.raises(WorkdirBusyError, match=f"in use by process {os.getpid()}"):
            loop.train(toy_config(steps=10), tmp_path, toy_stage.build_task)
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    loop.train(toy_config(steps=10), tmp_path, toy_stage.build_task)  # released: resumes
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")][-1] == 10


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = (
        "import sys, time\n"
        "from jaxhead.train.workdir import lock_workdir\n"
        "with lock_workdir(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirBusyError, match=f"process {proc.pid} "):
            with lock_workdir(tmp_path):
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert str(proc.pid) in (tmp_path / ".lock").read_text()  # the dead holder's record is left
    with lock_workdir(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_two_runs_started_together_one_trains_one_is_refused(tmp_path):
    workdir = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [
        sys.executable,
        str(TOY),
        f"--config={TOY}",
        f"--workdir={workdir}",
        "--config.train.steps=30",
        "--config.toy.step_delay_s=0.05",
    ]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
    time.sleep(1.0)
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        results.append((proc.returncode, err.decode()))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "is in use by process" in refused and "Traceback" not in refused
    steps = [r["step"] for r in read_metrics(workdir / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 30


# --- 9: a damaged latest checkpoint falls back to the previous one --------------------------------


def _truncate_array_files(folder: pathlib.Path) -> None:
    # The array data of a checkpoint: TensorStore's data files (OCDBT `d/` folders).
    for path in folder.rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_truncated_latest_checkpoint_falls_back_to_previous(tmp_path, capsys):
    straight = loop.train(
        toy_config(steps=10, checkpoint_every=5), tmp_path / "a", toy_stage.build_task
    )
    workdir = tmp_path / "b"
    loop.train(toy_config(steps=10, checkpoint_every=5), workdir, toy_stage.build_task)
    _truncate_array_files(workdir / "checkpoints" / "10" / "state")
    capsys.readouterr()
    config = toy_config(steps=10, checkpoint_every=5)
    _, _, step = restore_latest(workdir / "checkpoints", abstract_state(config))
    assert step == 5  # the read-only path (render / evaluate) falls back too
    assert "cannot read step 10" in capsys.readouterr().out
    (workdir / "eval.json").unlink()
    resumed = loop.train(config, workdir, toy_stage.build_task)
    out = capsys.readouterr().out
    assert "restored the previous good checkpoint, step 5" in out
    assert "from checkpoint step 5" in out
    assert (workdir / BROKEN_DIR / "10").is_dir()
    assert Checkpointer(workdir / "checkpoints").all_steps() == [5, 10]
    np.testing.assert_allclose(flat_params(resumed), flat_params(straight), rtol=1e-6, atol=1e-7)


def test_restore_run_reports_the_step_it_fell_back_to(tmp_path):
    from jaxhead.train.restore import restore_run

    config = toy_config(steps=10, checkpoint_every=5)
    loop.train(config, tmp_path, toy_stage.build_task)
    assert restore_run(tmp_path, "toy", "cmd", abstract_state).step == 10
    _truncate_array_files(tmp_path / "checkpoints" / "10" / "state")
    assert restore_run(tmp_path, "toy", "cmd", abstract_state).step == 5


def test_no_readable_checkpoint_is_one_line_naming_the_step(tmp_path):
    config = toy_config(steps=5, checkpoint_every=5)
    loop.train(config, tmp_path, toy_stage.build_task)
    _truncate_array_files(tmp_path / "checkpoints" / "5" / "state")
    with pytest.raises(CheckpointError, match="cannot restore any checkpoint.*step 5: ") as info:
        restore_latest(tmp_path / "checkpoints", abstract_state(config))
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="holds no checkpoint; train with `cmd`"):
        restore_latest(tmp_path / "none", abstract_state(config), train_command="cmd")


# --- 10: config values are validated; the recorded step is the state's ---------------------------


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("train.steps", -5, "train.steps=-5"),
        ("train.log_every", 0, "train.log_every=0"),
        ("optim.learning_rate", -1e-3, "optim.learning_rate=-0.001"),
        ("optim.end_fraction", 1.5, "optim.end_fraction=1.5"),
        ("data.batch_size", 0, "data.batch_size=0"),
        ("optim.eps", float("nan"), "optim.eps=nan"),
    ],
)
def test_out_of_range_config_values_are_refused(tmp_path, key, value, match):
    config = toy_config()
    block, name = key.split(".")
    with config.unlocked():
        config[block][name] = value
    with pytest.raises(ValueError, match=match.replace(".", r"\.")):
        loop.train(config, tmp_path / "run", toy_stage.build_task)
    assert not (tmp_path / "run").exists()


def test_loss_weights_and_temperatures_are_range_checked():
    config = ml_collections.ConfigDict(
        {"loss": {"rec": -1.0, "mask": float("inf"), "velocity": 0.0, "temperature": 0.0}}
    )
    assert config_problems(config) == [
        "loss.mask=inf (must be a finite number >= 0)",
        "loss.rec=-1.0 (must be a finite number >= 0)",
        "loss.temperature=0.0 (must be a finite number > 0)",
    ]
    with pytest.raises(ValueError, match=r"loss\.mask=inf .*--config\.loss\.mask=\.\.\."):
        check_config(config)


def test_shipped_configs_pass_validation():
    import importlib.util

    for name in ("sync", "gpvae", "disentangle", "voca", "video"):
        path = pathlib.Path(__file__).parents[1] / "configs" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"cfg_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for arg in (None, "smoke"):
            assert config_problems(module.get_config(arg)) == [], (name, arg)
    check_config(toy_config())


def test_shrinking_steps_of_a_finished_run_is_refused(tmp_path):
    loop.train(toy_config(steps=6, checkpoint_every=3), tmp_path, toy_stage.build_task)
    config_before = (tmp_path / "config.json").read_text()
    assert json.loads((tmp_path / "eval.json").read_text())["step"] == 6
    with pytest.raises(WorkdirConflictError, match="step 6, beyond train.steps=3"):
        loop.train(toy_config(steps=3, checkpoint_every=3), tmp_path, toy_stage.build_task)
    assert (tmp_path / "config.json").read_text() == config_before


def test_eval_json_step_is_the_state_step(tmp_path):
    loop.train(toy_config(steps=7, checkpoint_every=7), tmp_path, toy_stage.build_task)
    (tmp_path / "eval.json").unlink()  # re-evaluated at resume, from the checkpoint's state
    loop.train(toy_config(steps=7, checkpoint_every=7), tmp_path, toy_stage.build_task)
    assert json.loads((tmp_path / "eval.json").read_text())["step"] == 7


# --- 14: files written through temporary files get the usual permissions -------------------------


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_atomic_writers_follow_the_umask(tmp_path, umask_027):
    from jaxhead.audio.features import save_features
    from jaxhead.audio.io import save_wav
    from jaxhead.data.media import write_video

    write_json_atomic(tmp_path / "config.json", {"a": 1})
    save_features(tmp_path / "feat.npy", np.zeros((2, 3), np.float32))
    save_wav(tmp_path / "a.wav", np.zeros(160, np.float32), 16_000)
    write_video(tmp_path / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8), 25.0)
    for name in ("config.json", "feat.npy", "a.wav", "v.mp4"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name
    folder = tmp_path / "staged"
    folder.mkdir(mode=0o700)
    publish(folder, tmp_path / "published")
    assert (tmp_path / "published").stat().st_mode & 0o777 == 0o750


def test_training_workdir_files_are_readable_by_the_group(tmp_path, umask_027):
    loop.train(toy_config(steps=2), tmp_path, toy_stage.build_task)
    for name in ("config.json", "eval.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


def test_workdir_in_a_folder_that_cannot_be_written_is_refused_before_work(tmp_path, monkeypatch):
    from jaxhead.train import workdir as workdir_lib

    monkeypatch.setattr(workdir_lib.os, "access", lambda path, mode: False)
    with pytest.raises(WorkdirConflictError, match="is not writable; choose a folder"):
        loop.train(toy_config(steps=2), tmp_path / "run", toy_stage.build_task)
    assert not (tmp_path / "run").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkdirConflictError, match="is a file, not a folder"):
        workdir_lib.check_workdir_path(tmp_path / "file" / "run")


def test_require_checkpoint_names_the_training_command(tmp_path):
    from jaxhead.train.checkpoint import require_checkpoint

    with pytest.raises(CheckpointError, match="holds no checkpoint; train with `python x.py`"):
        require_checkpoint(tmp_path / "checkpoints", "python x.py")
    assert not (tmp_path / "checkpoints").exists()  # a reader creates nothing
    loop.train(toy_config(steps=5, checkpoint_every=5), tmp_path, toy_stage.build_task)
    assert require_checkpoint(tmp_path / "checkpoints", "python x.py") == 5
