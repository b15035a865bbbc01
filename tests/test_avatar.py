"""``scripts/avatar.py`` / :mod:`jaxhead.avatar`: video -> preprocessing -> own sync -> NeRF ->
evaluation -> demo -> new speech, each step once, resumable, refusing a different input.

The preprocessing runs with the MediaPipe stand-in of ``preprocess_fixture`` (a synthetic face
on a small generated clip); the NeRF is the ``smoke`` variant of ``configs/video.py``."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from preprocess_fixture import FakeFace, fake_mediapipe, write_clip

from jaxhead.audio.io import save_wav
from jaxhead.avatar import STATE_FILE, Layout, Pipeline
from jaxhead.gpvae import stage as gpvae_stage
from jaxhead.nerf.config import video_config
from jaxhead.preprocess import pipeline as preprocess_pipeline
from jaxhead.train.errors import UserError, WorkdirConflictError


@pytest.fixture
def fake_face(monkeypatch):
    monkeypatch.setattr(preprocess_pipeline, "run_mediapipe", fake_mediapipe(FakeFace()))
    monkeypatch.setattr(preprocess_pipeline, "mediapipe_python", lambda option: None)


def _config(cache):
    config = video_config("smoke")
    with config.unlocked():
        config.data.cache_dir = str(cache)
        config.train.progress = False
        config.mesh.data = 1  # the smoke batch (2 pairs) does not split over 8 test devices
    return config


def _pretrained_gpvae(folder, workdir):
    """A tiny GP-VAE trained on the avatar's own data folder (its training part), standing in for
    one pre-trained on other people's videos."""
    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "gpvae.py"
    spec = importlib.util.spec_from_file_location("gpvae_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    with config.unlocked():
        config.data.update(
            source="videos", paths=(str(folder),), held_out_split="video", window=16, bop=4,
            batch_size=8,
        )  # fmt: skip
        config.model.update(width=16, heads=2, relative_pose=True, pose_anchor="last")
        config.train.update(steps=4, checkpoint_every=4, log_every=2, progress=False)
        config.train.async_checkpoints = False
        config.eval.update(num_samples=2, max_sequences=2, plot_sequences=1)
    gpvae_stage.train(config, workdir)
    return workdir


def test_one_command_from_video_to_avatar_resumes_and_refuses_other_inputs(tmp_path, fake_face):
    clip = write_clip(tmp_path / "me.mp4", num_frames=75, size=128)
    speech = tmp_path / "new.wav"
    save_wav(speech, 0.2 * np.sin(np.linspace(0, 900, 16000)).astype(np.float32))
    layout = Layout(tmp_path / "runs" / "me")
    lines: list[str] = []

    def pipeline(video=clip, val_seconds=1.0):
        return Pipeline(
            str(video), layout, _config(tmp_path / "cache"), val_seconds=val_seconds,
            audio=[str(speech)], progress=False, say=lines.append,
        )  # fmt: skip

    result = pipeline().run()
    assert [line.split(":")[0] for line in lines if "running" not in line] == [
        "[1/5] preprocess", "[2/5] nerf", "[3/5] evaluate", "[4/5] demo", "[5/5] drive",
    ]  # fmt: skip
    assert all(" done in " in line for line in lines if "running" not in line)
    for path in ("data/transforms_val.json", "nerf/sync/eval.json", "nerf/eval.json",
                 "nerf/eval.md", "heldout.mp4", "speech_new.mp4"):  # fmt: skip
        assert (layout.root / path).is_file(), path
    evaluated = json.loads((layout.root / "nerf" / "eval.json").read_text())
    assert evaluated["val"]["frames"] > 0 and np.isfinite(evaluated["val"]["psnr"])
    assert "val.psnr" in result["table"]
    state = json.loads((layout.root / STATE_FILE).read_text())
    assert sorted(state["steps"]) == ["demo", "drive", "evaluate", "nerf", "preprocess"]

    # The same command again: every step is found done, nothing is rewritten.
    stamps = {p: (layout.root / p).stat().st_mtime_ns for p in ("heldout.mp4", "nerf/eval.json")}
    lines.clear()
    pipeline().run()
    assert len(lines) == 5 and all(": done (" in line for line in lines)
    assert stamps == {p: (layout.root / p).stat().st_mtime_ns for p in stamps}
    # A copy of the video in another place, with another modification time, is the same input.
    copy = tmp_path / "elsewhere.mp4"
    shutil.copyfile(clip, copy)
    os.utime(copy, (1_000_000, 1_000_000))
    lines.clear()
    pipeline(video=copy).run()
    assert len(lines) == 5 and all(": done (" in line for line in lines)
    assert stamps == {p: (layout.root / p).stat().st_mtime_ns for p in stamps}

    # Pose and blinks generated from the new speech by a GP-VAE fine-tuned on this video first:
    # two more steps, the finished ones untouched.
    pretrained = _pretrained_gpvae(layout.data, tmp_path / "gpvae")

    def generated(gpvae=pretrained):
        return Pipeline(
            str(clip), layout, _config(tmp_path / "cache"), val_seconds=1.0, audio=[str(speech)],
            pose_from="gpvae", gpvae_workdir=str(gpvae), gpvae_finetune_steps=3, progress=False,
            say=lines.append,
        )  # fmt: skip

    lines.clear()
    generated().run()
    assert [line.split(":")[0] for line in lines if "running" not in line] == [
        "[1/6] preprocess", "[2/6] nerf", "[3/6] evaluate", "[4/6] demo", "[5/6] gpvae",
        "[6/6] drive",
    ]  # fmt: skip
    assert sum(": done (" in line for line in lines) == 4  # the first four were done
    assert stamps == {p: (layout.root / p).stat().st_mtime_ns for p in stamps}
    tuned = json.loads((layout.root / "gpvae" / "eval.json").read_text())
    assert tuned["step"] == 3 and tuned["init_from"] == str(pretrained.resolve())
    assert tuned["num_sequences"] == 1 and np.isfinite(tuned["d_rot"])
    tuned_config = json.loads((layout.root / "gpvae" / "config.json").read_text())
    assert tuned_config["data"]["held_out_split"] == "video"  # the video's own held-out end
    assert tuned_config["data"]["paths"] == [str(layout.data)]
    with np.load(layout.root / "speech_new_gpvae.npz") as motion:
        assert motion["pose"].shape == (25, 6) and motion["blink"].shape == (25,)  # 1 s, 25 fps
        assert np.isfinite(motion["pose"]).all()
    assert (layout.root / "speech_new_gpvae.mp4").is_file()
    assert (layout.root / "speech_new.mp4").is_file()  # the replayed render stays
    lines.clear()
    generated().run()
    assert len(lines) == 6 and all(": done (" in line for line in lines)
    # Another pre-trained GP-VAE for the same workdir's fine-tuned one: refused.
    other_gpvae = tmp_path / "gpvae_other"
    shutil.copytree(pretrained, other_gpvae)
    with pytest.raises(WorkdirConflictError, match="fine-tuned from"):
        generated(other_gpvae).run()

    # Another video, or another held-out split, in the same workdir: refused, nothing touched.
    other = write_clip(tmp_path / "other.mp4", num_frames=75, size=128, seed=1, noise=True)
    with pytest.raises(WorkdirConflictError, match="choose a new --workdir"):
        pipeline(video=other).run()
    with pytest.raises(WorkdirConflictError, match="--val_seconds"):
        pipeline(val_seconds=2.0).run()
    assert stamps == {p: (layout.root / p).stat().st_mtime_ns for p in stamps}


def test_user_mistakes_are_one_line_before_any_work(tmp_path):
    layout = Layout(tmp_path / "w")
    config = _config(tmp_path / "cache")
    with pytest.raises(UserError, match="no such video file"):
        Pipeline(str(tmp_path / "none.mp4"), layout, config)
    clip = write_clip(tmp_path / "me.mp4", num_frames=10, size=64)
    with pytest.raises(UserError, match="--audio .*no such file"):
        Pipeline(str(clip), layout, config, audio=[str(tmp_path / "none.wav")])
    with pytest.raises(UserError, match="need --gpvae_workdir"):
        Pipeline(str(clip), layout, config, pose_from="gpvae")
    with pytest.raises(UserError, match="not a trained GP-VAE run"):
        Pipeline(str(clip), layout, config, pose_from="gpvae", gpvae_workdir=str(tmp_path))
    with pytest.raises(UserError, match="--pose_from sideways"):
        Pipeline(str(clip), layout, config, pose_from="sideways")
    with config.unlocked():
        config.data.root = str(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="scripts/train_nerf.py"):
        Pipeline(str(clip), layout, config)
    with config.unlocked():
        config.data.root, config.data.val_seconds = "", 3.0
    with pytest.raises(UserError, match="--val_seconds"):
        Pipeline(str(clip), layout, config)
    assert not layout.root.exists()


def test_no_progress_reaches_the_training_steps(tmp_path):
    # --noprogress silences the sync stage's and the NeRF's bars too (train.progress may differ
    # on resume), not only the preprocessing's.
    config = _config(tmp_path / "cache")
    with config.unlocked():
        config.train.progress = True
    clip = write_clip(tmp_path / "me.mp4", num_frames=10, size=64)
    layout = Layout(tmp_path / "w")
    assert Pipeline(str(clip), layout, config).nerf.train.progress
    assert not Pipeline(str(clip), layout, config, progress=False).nerf.train.progress
