"""Process-level plumbing tests: 2 processes x 4 devices == 1 x 8, and SIGKILL + resume."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import toy_stage

from jaxhead.train import loop
from jaxhead.train.checkpoint import Checkpointer

TOY = pathlib.Path(__file__).with_name("toy_stage.py")


def _env(devices: int, **extra) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _restore_params(workdir: pathlib.Path, config) -> np.ndarray:
    abstract = jax.eval_shape(toy_stage.build_task(config, None).init_fn)
    ckpt = Checkpointer(workdir / "checkpoints")
    state, _ = ckpt.restore(abstract, step=int(config.train.steps))
    ckpt.close()
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params))])


def test_two_processes_match_one_process(tmp_path):
    steps = 12
    port = _free_port()
    cmd = [
        sys.executable,
        str(TOY),
        f"--config={TOY}",
        f"--workdir={tmp_path / 'multi'}",
        f"--config.train.steps={steps}",
    ]
    procs = [
        subprocess.Popen(
            cmd,
            env=_env(
                4,
                JAXHEAD_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAXHEAD_NUM_PROCESSES=2,
                JAXHEAD_PROCESS_ID=pid,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=300)
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]

    config = toy_stage.get_config()
    with config.unlocked():
        config.train.steps = steps
    single = loop.train(config, tmp_path / "single", toy_stage.build_task)
    assert jax.device_count() == 8
    single_params = np.concatenate([np.ravel(x) for x in jax.tree.leaves(single.params)])
    multi_params = _restore_params(tmp_path / "multi", config)
    np.testing.assert_allclose(multi_params, single_params, rtol=1e-5, atol=1e-6)


def test_sigkill_mid_training_then_rerun_resumes(tmp_path):
    steps, every = 60, 10
    workdir = tmp_path / "killed"
    cmd = [
        sys.executable,
        str(TOY),
        f"--config={TOY}",
        f"--workdir={workdir}",
        f"--config.train.steps={steps}",
        f"--config.train.checkpoint_every={every}",
        "--config.toy.step_delay_s=0.05",
    ]
    proc = subprocess.Popen(cmd, env=_env(8), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    ckpt_dir = workdir / "checkpoints"
    try:
        while not (ckpt_dir / "20").is_dir():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "toy run never reached step 20"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
    assert killed_at < steps, "the run finished before it was killed"

    resumed = subprocess.run(cmd, env=_env(8), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"from checkpoint step {killed_at}" in resumed.stdout

    config = toy_stage.get_config()
    with config.unlocked():
        config.train.steps = steps
        config.train.checkpoint_every = every
    straight = loop.train(config, tmp_path / "straight", toy_stage.build_task)
    straight_params = np.concatenate([np.ravel(x) for x in jax.tree.leaves(straight.params)])
    np.testing.assert_allclose(
        _restore_params(workdir, config), straight_params, rtol=1e-6, atol=1e-7
    )
