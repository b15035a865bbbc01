"""Trained runs as users keep them: a run made before the NeRF's split still renders and scores
the same, and rendering new audio reads only the run itself (no training split, no encoder pass
over it)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxhead.nerf import conditions as cond
from jaxhead.nerf import render_video, stage

# configs/voca.py:smoke trained for 6 steps by the code before WORKDIR/conditions.npz existed
# (commit 8c2c7b2): config.json, eval.json and the step-6 checkpoint.
OLD_RUN = pathlib.Path(__file__).resolve().parent / "fixtures" / "nerf_smoke_v0"


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXHEAD_CACHE", str(tmp_path / "cache"))  # its data, made again here
    workdir = tmp_path / "old_run"
    shutil.copytree(OLD_RUN, workdir)
    return workdir


def test_a_run_made_before_the_split_renders_and_scores_the_same(old_run):
    assert not (old_run / cond.RUN_CONDITIONS).exists()
    trained = render_video.load_trained(old_run)
    assert trained.step == 6 and trained.setup.lip == "audio_net"
    before = json.loads((old_run / "eval.json").read_text())
    for split in ("val", "val_views"):
        now = stage.evaluate_split(
            trained.config, trained.setup, trained.renderer, trained.graphdefs, trained.params,
            trained.load_split(split),
        )  # fmt: skip
        assert now["frames"] == before[split]["frames"]
        for key in ("psnr", "ssim", "mouth_psnr", "mouth_l1"):
            assert now[key] == pytest.approx(before[split][key], rel=1e-4, abs=1e-4), key
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000).astype(np.float32)
    frames = render_video.drive(trained, tone, identity=1)
    assert frames.shape == (12, 64, 64, 3) and np.isfinite(frames).all()


def test_driving_a_run_reads_no_training_split_and_runs_no_encoder_over_it(tmp_path):
    """A sync-stage run rendered in a fresh process: the training split is never loaded and the
    sync encoder sees only the new audio (F_lip standardised with the run's recorded statistics,
    exactly as the training-time front-end would)."""
    from test_nerf_pretrained import config_of
    from test_nerf_stage import smoke_config

    from jaxhead.sync import stage as sync_stage

    sync = config_of("sync", "smoke")
    with sync.unlocked():
        sync.data.cache_dir = str(tmp_path / "cache")
        sync.train.progress = False
        sync.mesh.data = 1
    sync_stage.train(sync, tmp_path / "sync")
    config = smoke_config(tmp_path / "cache", steps=2)
    with config.unlocked():
        config.sync.init_from = str(tmp_path / "sync")
    stage.train(config, tmp_path / "run")
    recorded = cond.read_run_conditions(tmp_path / "run")
    assert recorded is not None and recorded.statistics is not None

    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from jaxhead.data import voca_frames
        from jaxhead.nerf import conditions, render_video

        def refuse(config, split, **kwargs):
            if split == "train":
                raise AssertionError("the training split was loaded")
            return original(config, split, **kwargs)

        original = voca_frames.load_frames
        voca_frames.load_frames = refuse
        seen = []
        outputs = conditions.LipSource.outputs
        def counted(self, samples, frame_numbers):
            seen.append(len(samples))
            return outputs(self, samples, frame_numbers)
        conditions.LipSource.outputs = counted

        trained = render_video.load_trained({str(tmp_path / "run")!r})
        tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)).astype(np.float32)
        frames = render_video.drive(trained, tone, identity=0)
        lip = trained.lip.audio_conditions(tone, 12)["lip"]
        json.dump({{"seen": seen, "shape": list(frames.shape), "lip": lip.tolist()}}, sys.stdout)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["seen"] == [8000, 8000]  # the drive's audio and the check below, nothing else
    assert result["shape"] == [12, 64, 64, 3]
    # The same F_lip as the training-time front-end computes with the training statistics.
    lip = cond.LipSource(config)
    lip.frames("train", cond.frames_module(config.data).load_frames(config.data, "train"))
    np.testing.assert_allclose(lip.statistics[0], recorded.statistics[0], rtol=1e-6)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)).astype(np.float32)
    expected = lip.audio_conditions(tone, 12)["lip"]
    np.testing.assert_allclose(np.asarray(result["lip"]), expected, rtol=1e-4, atol=1e-5)


def test_a_run_made_before_the_grid_keys_resumes_with_todays_config():
    """The model keys added since (encoding, grid sizes) meant NeRF's positional encoding: the old
    run's config matches today's smoke config, and a grid field would be a different run."""
    from test_nerf_stage import smoke_config

    from jaxhead.nerf.config import ADDED_KEYS as NERF_ADDED
    from jaxhead.train.loop import LOOP_ADDED_KEYS
    from jaxhead.train.workdir import config_differences, config_to_json

    ADDED_KEYS = {**LOOP_ADDED_KEYS, **NERF_ADDED}
    old = json.loads((OLD_RUN / "config.json").read_text())
    today = config_to_json(smoke_config(""))
    ignore = ("data.cache_dir", "mesh.data", "train.progress")  # what the test helper sets
    diffs = config_differences(old, today, added=ADDED_KEYS)
    assert [d for d in diffs if d[0] not in ignore] == []

    def has(config: dict, dotted: str) -> bool:
        for part in dotted.split("."):
            if not isinstance(config, dict) or part not in config:
                return False
            config = config[part]
        return True

    # Every added key the VOCASET config holds (the video data block's keys are not in it).
    assert [d[0] for d in config_differences(old, today) if d[0] not in ignore] == sorted(
        k for k in NERF_ADDED if has(today, k)
    )
    with_grid = json.loads(json.dumps(today))
    with_grid["model"]["encoding"] = "hash"
    changed = [
        d for d in config_differences(old, with_grid, added=ADDED_KEYS) if d[0] not in ignore
    ]
    assert changed == [("model.encoding", "<absent>", "hash")]
