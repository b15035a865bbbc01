"""The head-NeRF stage end to end on the smoke config: workdir, resume, sharding, NaN guard."""

from __future__ import annotations

import dataclasses
import json

import av
import jax
import numpy as np
import pytest

from jaxhead.data.media import write_video
from jaxhead.nerf import heldout, render_video, stage, step
from jaxhead.nerf.config import GRID_TRUNK
from jaxhead.train import loop
from jaxhead.train.checkpoint import Checkpointer
from jaxhead.train.metrics import read_metrics

CONFIG_FILE = "configs/voca.py"


def smoke_config(cache, own_sync=False, **train):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / CONFIG_FILE
    spec = importlib.util.spec_from_file_location("voca_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    with config.unlocked():
        config.data.cache_dir = str(cache)
        config.mesh.data = 1  # the smoke batch (2 pairs) does not split over 8 devices
        config.train.update(progress=False, **train)
        # The default trains the run's own sync stage first: tests of the NeRF alone leave it
        # out (test_own_sync_stage_is_trained_first_and_drives_the_nerf keeps it).
        config.sync.train = own_sync
        config.sync.train_config = "smoke" if own_sync else ""
    return config


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("nerf_cache")


def flat(params):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(params))])


def test_a_field_stuck_transparent_is_named_with_the_fix():
    assert stage.transparent_field_warning(100, {"person_alpha": 0.01}) is None  # too early
    assert stage.transparent_field_warning(400, {"person_alpha": 0.9}) is None
    assert stage.transparent_field_warning(400, {"loss": 1.0}) is None  # no such metric
    message = stage.transparent_field_warning(400, {"person_alpha": 0.04})
    assert "0.04" in message and "--config.loss.mask=1.0" in message and "--config.seed" in message

    # The stage's watch: a lone low patch is no news; warns once when it lasts, forgives a
    # recovery, stops a run that stays stuck.
    watch = stage.TransparentFieldWatch("W")
    assert watch(300, {"person_alpha": 0.9}) is None
    assert watch(325, {"person_alpha": 0.0}) is None  # one patch with little of the person
    assert watch(350, {"person_alpha": 0.95}) is None
    assert watch(375, {"person_alpha": 0.05}) is None
    assert watch(400, {"person_alpha": 0.06}) is None
    assert "0.05" in watch(425, {"person_alpha": 0.05})  # low since step 375
    assert watch(450, {"person_alpha": 0.05}) is None  # warned already
    assert watch(475, {"person_alpha": 0.8}) is None  # drawn again: starts over
    assert watch(500, {"person_alpha": 0.1}) is None
    assert watch(675, {"loss": 1.0}) is None  # no opacity logged: no news either way
    assert watch(675, {"person_alpha": 0.1}) is None  # 175 steps stuck
    with pytest.raises(
        loop.StoppedByWatchError,
        match=r"step 700 \(its checkpoints are kept in W\).*since step 500",
    ):
        watch(700, {"person_alpha": 0.02})


def test_smoke_run_writes_the_workdir_and_resumes(cache, tmp_path):
    config = smoke_config(cache, steps=4, log_every=2, checkpoint_every=2, eval_every=4)
    with config.unlocked():
        config.eval.validate_stride = 2
    stage.train(config, tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [2, 4]
    train = [r for r in records if "loss" in r][-1]
    for key in ("loss", "psnr", "loss_pho", "loss_per", "loss_velocity", "l2_grads"):
        assert np.isfinite(train[key]), key
    assert 0.0 <= train["person_alpha"] <= 1.0  # the field's opacity where the person is
    results = json.loads((tmp_path / "eval.json").read_text())
    for split in ("val", "val_views"):
        assert results[split]["frames"] > 0
        assert 0.0 < results[split]["psnr"] < 60.0
        assert -1.0 <= results[split]["ssim"] <= 1.0
        assert results[split]["render_fps"] > 0
    # The validation during training rendered every second held-out frame (those of them the
    # protocol scores), the final evaluation all of them.
    (validation,) = [r for r in records if "val_psnr" in r]
    assert 0 < validation["val_frames"] < results["val"]["frames"]
    assert (tmp_path / "samples" / "eval_val.png").exists()
    assert results["video"] == "samples/heldout_0.mp4"
    with av.open(str(tmp_path / results["video"])) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 4

    longer = smoke_config(cache, steps=6, log_every=2, checkpoint_every=2)
    stage.train(longer, tmp_path)
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert steps == [2, 4, 6]

    # Rendering from the workdir: new speech with a yaw sweep, a held-out sentence, a swap.
    trained = render_video.load_trained(tmp_path)
    assert trained.step == 6
    # The final evaluation keeps its renders; the suite and the held-out video of the same step
    # read them instead of rendering again: the same frames, to the 8 bits a video holds.
    source, sequences = render_video.heldout_sequences(trained, "val")
    saved = heldout.renders_path(tmp_path, "val")
    cached = heldout.cached_render(saved, 6, sequences[0])
    assert cached is not None and heldout.cached_render(saved, 4, sequences[0]) is None
    assert heldout.cached_render(saved, 6, sequences[0][1:]) is None
    uncached = dataclasses.replace(trained, workdir=None)
    fresh = render_video.render_sequence(uncached, source, sequences[0], split="val")
    assert np.abs(cached[0] - fresh.pred).max() <= 0.5 / 255 + 1e-4
    read = render_video.render_sequence(trained, source, sequences[0], split="val")
    assert np.array_equal(read.pred, cached[0]) and read.render_fps == cached[1]
    broken = tmp_path / "broken.npz"
    broken.write_bytes(saved.read_bytes()[:100])
    assert heldout.cached_render(broken, 6, sequences[0]) is None
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000).astype(np.float32)
    frames = render_video.drive(trained, tone, identity=1, yaw_sweep=20.0)
    assert frames.shape == (12, 64, 64, 3) and np.isfinite(frames).all()
    assert np.abs(frames[0] - frames[-1]).mean() > 1e-4  # the camera moved
    side_by_side, audio = render_video.held_out_sequence(trained, 0)
    assert side_by_side.shape[2] == 128 and audio is not None and len(audio) > 0
    video = write_video(tmp_path / "out.mp4", side_by_side, 25, audio)
    with av.open(str(video)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
    with pytest.raises(ValueError, match="identity 5 is not in this run"):
        render_video.drive(trained, tone, identity=5)
    # Generated pose/blink (what --pose_from gpvae passes): the head turns as the pose says.
    pose = np.zeros((12, 6), np.float32)
    pose[:, 1] = np.linspace(-0.3, 0.3, 12)  # yaw, radians
    posed = render_video.drive(trained, tone, identity=1, pose_blink=(pose, np.zeros(12)))
    still = render_video.drive(trained, tone, identity=1, pose_blink=(pose * 0, np.zeros(12)))
    assert np.abs(posed[0] - posed[-1]).mean() > np.abs(still[0] - still[-1]).mean() + 1e-4
    with pytest.raises(ValueError, match="must cover the 12 frames"):
        render_video.drive(trained, tone, pose_blink=(pose[:5], np.zeros(5)))


@pytest.mark.parametrize("encoding", ["frequency", "hash", "triplane"])
def test_eight_devices_give_the_same_update_as_one(cache, tmp_path, encoding):
    """Every field choice: a grid's table gradients are scatters, summed across the devices."""
    one = smoke_config(cache, steps=2, log_every=1, checkpoint_every=2)
    eight = smoke_config(cache, steps=2, log_every=1, checkpoint_every=2)
    with one.unlocked(), eight.unlocked():
        eight.mesh.data = -1
        one.data.batch_size = eight.data.batch_size = 8
        if encoding != "frequency":
            for c in (one, eight):
                c.model.update(encoding=encoding, grid_levels=4, grid_log2_table=10, **GRID_TRUNK)
                c.model.grid_conditions = ("blink",)

    def builder(c, m):  # the update is what is compared: no evaluation, no samples
        return dataclasses.replace(stage.build_task(c, m), evaluate=None, write_samples=None)

    state1 = loop.train(one, tmp_path / "one", builder)
    state8 = loop.train(eight, tmp_path / "eight", builder)
    leaf = jax.tree.leaves(state8.params)[0]
    assert len(leaf.sharding.device_set) == 8
    np.testing.assert_allclose(flat(state8.params), flat(state1.params), rtol=2e-4, atol=2e-6)


def test_nan_in_the_data_stops_training_and_keeps_the_last_checkpoint(cache, tmp_path, monkeypatch):
    config = smoke_config(cache, steps=6, log_every=1, checkpoint_every=2)
    calls = {"n": 0}
    original = step.Batches.__next__

    def poisoned(self):
        batch = original(self)
        calls["n"] += 1
        if calls["n"] == 3:
            batch["image"] = np.full_like(batch["image"], np.nan)
        return batch

    monkeypatch.setattr(step.Batches, "__next__", poisoned)
    with pytest.raises(loop.NonFiniteError, match="at step 3"):
        stage.train(config, tmp_path)
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [2]


def test_vgg_perceptual_loss_is_used_when_weights_are_configured(cache, tmp_path, capsys):
    from test_vgg import random_state_dict

    weights = tmp_path / "vgg16.npz"
    np.savez(weights, **random_state_dict(seed=1))
    config = smoke_config(cache, steps=2, log_every=1, checkpoint_every=2)
    with config.unlocked():
        config.loss.vgg_weights = str(weights)

    def builder(c, m):
        return dataclasses.replace(stage.build_task(c, m), evaluate=None, write_samples=None)

    loop.train(config, tmp_path / "run", builder)
    assert "VGG16 features" in capsys.readouterr().out
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    # The VGG term of random weights is not an SSIM value in [0, 2]: it is a feature distance.
    assert np.isfinite(records[-1]["loss_per"]) and records[-1]["loss_per"] > 0
    ssim_config = smoke_config(cache, steps=2, log_every=1, checkpoint_every=2)
    loop.train(ssim_config, tmp_path / "ssim", builder)
    ssim_records = read_metrics(tmp_path / "ssim" / "metrics.jsonl")
    assert records[-1]["loss_per"] != ssim_records[-1]["loss_per"]


def test_sigkill_mid_training_then_rerun_resumes(cache, tmp_path):
    """The README's main command, killed with SIGKILL and re-run, ends where a straight run ends."""
    import os
    import pathlib
    import signal
    import subprocess
    import sys
    import time

    root = pathlib.Path(__file__).resolve().parents[1]
    steps, every = 40, 2
    overrides = [
        f"--config.data.cache_dir={cache}", "--config.mesh.data=1", f"--config.train.steps={steps}",
        f"--config.train.checkpoint_every={every}", "--config.train.log_every=2",
        "--config.train.progress=False", "--config.eval.fit_steps=0", "--config.sync.train=False",
    ]  # fmt: skip
    workdir = tmp_path / "killed"
    cmd = [sys.executable, str(root / "scripts" / "train_nerf.py"),
           f"--config={root / CONFIG_FILE}:smoke", f"--workdir={workdir}", *overrides]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = workdir / "checkpoints" / str(every)
    deadline = time.time() + 300
    try:
        while not first.is_dir():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the run never wrote its first checkpoint"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = Checkpointer(workdir / "checkpoints").latest_step()
    assert killed_at is not None and killed_at < steps, "the run finished before it was killed"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Resuming" in rerun.stdout

    straight = smoke_config(cache, steps=steps, log_every=2, checkpoint_every=every)
    with straight.unlocked():
        straight.eval.fit_steps = 0
    stage.train(straight, tmp_path / "straight")
    resumed = render_video.load_trained(workdir)
    reference = render_video.load_trained(tmp_path / "straight")
    assert resumed.step == reference.step == steps
    # Separate processes differ in float summation order (a few elements by ~2e-6); a resume that
    # lost the optimiser or data-iterator state would differ by orders of magnitude more.
    np.testing.assert_allclose(flat(resumed.params), flat(reference.params), rtol=1e-4, atol=1e-5)


def test_own_sync_stage_is_trained_first_and_drives_the_nerf(cache, tmp_path):
    from jaxhead.nerf import own_sync, render_video, stage
    from jaxhead.train.metrics import read_metrics

    config = smoke_config(cache, own_sync=True, steps=2)
    sync_config = own_sync.own_sync_config(config)
    # The sync stage trains on the NeRF's own data with the NeRF's held-out sentences held out.
    assert sync_config.data.kind == "synthetic"
    assert sync_config.data.synthetic.to_dict() == config.data.synthetic.to_dict()
    assert sync_config.data.heldout_sentences == config.data.val_sentences
    assert sync_config.data.heldout_subjects == 0
    assert sync_config.train.progress is False  # the NeRF's setting (smoke_config: off)
    workdir = tmp_path / "run"
    stage.train(config, workdir)
    sync_dir = workdir / "sync"
    assert (sync_dir / "eval.json").is_file()
    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["sync"]["init_from"] == str(sync_dir.resolve())
    trained = render_video.load_trained(workdir)
    assert trained.setup.lip == "sync"
    # Re-running (here: extending) finds the sync stage finished and does not retrain it.
    before = read_metrics(sync_dir / "metrics.jsonl")
    with config.unlocked():
        config.train.steps = 3
    stage.train(config, workdir)
    assert read_metrics(sync_dir / "metrics.jsonl") == before
    assert json.loads((workdir / "eval.json").read_text())["step"] == 3


def test_own_sync_stage_refuses_data_without_mouth_landmarks(tmp_path):
    from jaxhead.nerf import own_sync
    from jaxhead.train.errors import UserError

    config = smoke_config(tmp_path, own_sync=True)
    with config.unlocked():
        config.data.root = str(tmp_path)  # a VOCASET-format folder without factors.npz
    with pytest.raises(UserError, match="no factors.npz.*--config.sync.init_from"):
        own_sync.own_sync_config(config)
    from jaxhead.nerf.config import video_config

    video = video_config("smoke")  # the held-out end: val_seconds, or transforms_val.json's
    assert own_sync.trains_own_sync(video) and video.data.val_seconds == 0
    with video.unlocked():
        video.data.root = str(tmp_path)
    with pytest.raises(UserError, match="cannot read the frame ids.*val_seconds"):
        own_sync.own_sync_config(video)
    for split, ids in (("train", range(0, 80)), ("val", range(80, 100))):
        frames = [{"img_id": i} for i in ids]
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"frames": frames}))
    assert own_sync.own_sync_config(video).data.video_val_seconds == pytest.approx(20 / 25)
    (tmp_path / "transforms_val.json").write_text(json.dumps({"frames": [{"img_id": 5}]}))
    with pytest.raises(UserError, match="not the end of the video"):
        own_sync.own_sync_config(video)
    with video.unlocked():
        video.data.update(root=str(tmp_path), val_seconds=10.0)
    sync = own_sync.own_sync_config(video)
    assert sync.data.kind == "video" and sync.data.video_val_seconds == 10.0
    assert list(sync.data.video_roots) == [str(tmp_path)]
