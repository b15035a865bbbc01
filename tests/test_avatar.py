"""``scripts/avatar.py`` / :mod:`jaxhead.avatar`: video -> preprocessing -> own sync -> NeRF ->
evaluation -> demo -> new speech, each step once, resumable, refusing a different input.

The preprocessing runs with the MediaPipe stand-in of ``preprocess_fixture`` (a synthetic face
on a small generated clip); the NeRF is the ``smoke`` variant of ``configs/video.py``."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from preprocess_fixture import FakeFace, fake_mediapipe, write_clip

from jaxhead.audio.io import save_wav
from jaxhead.avatar import STATE_FILE, Layout, Pipeline
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
    with config.unlocked():
        config.data.root = str(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="scripts/train_nerf.py"):
        Pipeline(str(clip), layout, config)
    with config.unlocked():
        config.data.root, config.data.val_seconds = "", 3.0
    with pytest.raises(UserError, match="--val_seconds"):
        Pipeline(str(clip), layout, config)
    assert not layout.root.exists()
