"""Sync stage data (negatives, windows, video folders), smoke run on the shared loop, resumption,
and the F_lip loader for the NeRF stage."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.audio.io import save_wav
from jaxhead.data.errors import DatasetError
from jaxhead.face import MEDIAPIPE_MOUTH
from jaxhead.nerf.config import sync_block
from jaxhead.sync import data as data_lib
from jaxhead.sync import stage
from jaxhead.train.errors import UserError
from jaxhead.train.metrics import read_metrics

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def load_config_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_config", CONFIGS / "sync.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_clips(lengths, window=5, steps=4, features=3, seed=0):
    """Clips of random audio windows and lip rows; every frame valid except the window edges."""
    rng = np.random.default_rng(seed)
    clips = []
    for i, n in enumerate(lengths):
        audio = rng.normal(size=(n, steps, features)).astype(np.float32)
        lips = rng.normal(size=(n, 40)).astype(np.float32)
        clips.append(data_lib.SyncClip(f"clip{i}", audio, lips, window, window // 2, n - 2, i))
    return clips


def example_config(**overrides):
    config = data_lib.sync_data_config()
    config.update(dict(batch_size=16, negatives=10, same_clip_fraction=0.5, min_shift=3))
    config.update(overrides)
    return config


# --- negatives -----------------------------------------------------------------------------------


@given(
    lengths=st.lists(st.integers(8, 40), min_size=1, max_size=4),
    min_shift=st.integers(1, 5),
    extra=st.integers(0, 10),
    same=st.integers(0, 10),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=40, deadline=None)
def test_sample_negatives_respect_the_margin(lengths, min_shift, extra, same, seed):
    clips = fake_clips(lengths)
    rng = np.random.default_rng(seed)
    clip = int(rng.integers(len(clips)))
    frame = int(rng.integers(clips[clip].lo, clips[clip].hi))
    max_shift = min_shift + extra
    try:
        neg_clip, neg_frame = data_lib.sample_negatives(
            rng, clips, clip, frame, 10, same, min_shift, max_shift
        )
    except ValueError as err:  # a single clip too short for any shifted negative
        assert len(clips) == 1 and "no negatives possible" in str(err)
        return
    assert neg_clip.shape == neg_frame.shape == (10,)
    for j, t in zip(neg_clip, neg_frame, strict=True):
        assert clips[j].lo <= t < clips[j].hi  # only valid frames
        if j == clip:
            assert min_shift <= abs(t - frame) <= max_shift
    if len(clips) > 1:
        shiftable = any(
            min_shift <= abs(t - frame) <= max_shift for t in range(clips[clip].lo, clips[clip].hi)
        )
        assert np.sum(neg_clip == clip) == (same if shiftable else 0)


def test_examples_batches_hold_the_indexed_windows_and_resume_exactly():
    clips = fake_clips([30, 25, 40])
    config = example_config()
    it = data_lib.SyncExamples(clips, config, seed=3)
    for _ in range(3):
        batch = next(it)
    assert batch["lips"].shape == (16, 5, 40) and batch["audio"].shape == (16, 4, 3)
    assert batch["negatives"].shape == (16, 10, 4, 3)
    for b in range(16):
        c, t = batch["clip"][b], batch["frame"][b]
        np.testing.assert_array_equal(batch["audio"][b], clips[c].audio[t])  # aligned positive
        np.testing.assert_array_equal(batch["lips"][b], clips[c].lips[t - 2 : t + 3])
        for k in range(10):
            j, u = batch["negative_clip"][b, k], batch["negative_frame"][b, k]
            np.testing.assert_array_equal(batch["negatives"][b, k], clips[j].audio[u])
            if j == c:
                assert abs(u - t) >= config.min_shift
        assert np.sum(batch["negative_clip"][b] == c) == 5  # same_clip_fraction 0.5 of N = 10
    state = it.get_state()
    expected = [next(it) for _ in range(2)]
    resumed = data_lib.SyncExamples(clips, config, seed=3)
    resumed.set_state(json.loads(json.dumps(state)))  # the state survives a JSON round trip
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_single_clip_uses_shifted_negatives_only():
    clips = fake_clips([50])
    batch = next(data_lib.SyncExamples(clips, example_config(same_clip_fraction=0.0), seed=0))
    assert np.all(batch["negative_clip"] == 0)
    assert np.all(np.abs(batch["negative_frame"] - batch["frame"][:, None]) >= 3)


# --- audio windows and video folders -------------------------------------------------------------


def test_audio_feature_windows_span_the_lip_window():
    audio = np.random.default_rng(0).normal(size=16_000).astype(np.float32) * 0.1
    windows, valid = data_lib.audio_feature_windows(audio, 25, 25.0, "mfcc", 5)
    assert windows.shape == (25, 20, 13)  # 5 frames = 0.2 s = 20 MFCC steps, as SyncNet
    # Frame t's window is centred on its time: the first two frames reach before the audio.
    assert not valid[:3].any() and valid[3:-2].all()
    np.testing.assert_allclose(windows.reshape(-1, 13).mean(0), 0.0, atol=0.5)  # CMVN
    mel, _ = data_lib.audio_feature_windows(audio, 25, 25.0, "logmel", 5)
    assert mel.shape == (25, 16, 80)  # Wav2Lip's 16 mel steps
    with pytest.raises(ValueError, match="unknown audio features"):
        data_lib.audio_feature_windows(audio, 25, 25.0, "hubert", 5)


def test_resample_in_time_is_exact_on_linear_motion():
    t = np.arange(24) / 24.0
    values = np.stack([3.0 * t + 1.0, -t], -1)[:, None, :]  # [24, 1, 2], linear in time
    out = data_lib.resample_in_time(values, 24.0, 25.0)
    assert out.shape == (24, 1, 2)  # frames of 25 fps within the 23/24 s span
    u = np.arange(24) / 25.0
    np.testing.assert_allclose(out[:, 0], np.stack([3.0 * u + 1.0, -u], -1), atol=1e-12)
    np.testing.assert_allclose(data_lib.resample_in_time(values, 24.0, 24.0), values)


def write_video_folder(root: pathlib.Path, frames: int, seconds: float, skip=()):
    rng = np.random.default_rng(1)
    (root / "ori_imgs").mkdir(parents=True)
    base = rng.uniform(100, 400, size=(68, 2))
    base[48], base[54] = (200, 300), (260, 300)
    for i in range(frames):
        if i not in skip:
            lms = base + rng.normal(scale=1.0, size=(68, 2))
            np.savetxt(root / "ori_imgs" / f"{i}.lms", lms, fmt="%.2f")
    save_wav(root / "aud.wav", 0.1 * rng.normal(size=int(seconds * 16_000)).astype(np.float32))


def test_load_video_clip_reads_landmarks_and_audio(tmp_path):
    write_video_folder(tmp_path / "May", 30, 1.2)
    clip = data_lib.load_video_clip(tmp_path / "May")
    assert clip.audio.shape == (30, 20, 13) and clip.lips.shape == (30, 40)
    assert clip.lo >= 2 and clip.hi <= 28 and clip.num_valid > 20
    config = data_lib.sync_data_config()
    config.update(kind="video", video_roots=(str(tmp_path / "May"),), video_val_fraction=0.25)
    splits = data_lib.load_clips(config)
    train, val = splits["train"][0], splits["heldout_time"][0]
    assert train.hi + train.window <= val.lo  # held-out frames share no window with training


def test_video_folder_errors_name_the_problem(tmp_path):
    write_video_folder(tmp_path / "gaps", 20, 0.8, skip=(7,))
    with pytest.raises(DatasetError, match=r"no landmarks for frames \[7\]"):
        data_lib.load_video_clip(tmp_path / "gaps")
    write_video_folder(tmp_path / "short", 40, 0.5)
    with pytest.raises(DatasetError, match="landmark files"):
        data_lib.load_video_clip(tmp_path / "short")
    with pytest.raises(DatasetError, match="file not found"):
        data_lib.load_video_clip(tmp_path / "absent")


# --- the stage on the shared loop ----------------------------------------------------------------


def tiny_config(tmp_path, steps):
    config = load_config_module().get_config("smoke")
    video = tmp_path / "video" / "May"
    if not video.exists():
        write_video_folder(video, 30, 1.2)
    with config.unlocked():
        config.eval.video_roots = (str(video),)  # scored too, with no ground-truth offset
        config.data.cache_dir = str(tmp_path / "cache")
        config.data.synthetic.update(identities=3, sequences=2, seconds=1.6)
        config.train.update(steps=steps, checkpoint_every=4, log_every=2, async_checkpoints=False)
        config.optim.schedule = "constant"  # the schedule would otherwise depend on train.steps
        config.model.update(channels=(8,), hidden=8, embed_dim=8)
        config.eval.update(leads=(0, 3), max_offset=5, plot_clips=1)
    return config


def test_smoke_run_resumes_and_loads_as_f_lip(tmp_path, capsys):
    # Eight forced host devices: the batch of 16 is sharded 2 per device by the shared loop.
    assert jax.device_count() == 8
    first = tmp_path / "run"
    straight_state = stage.train(tiny_config(tmp_path, 8), first)  # checkpoints at 4 and 8
    # As if the run had been killed after its step-4 checkpoint: re-running the same command
    # resumes there (train state + data-iterator state) and must land on the same parameters.
    shutil.rmtree(first / "checkpoints" / "8")
    capsys.readouterr()
    resumed_state = stage.train(tiny_config(tmp_path, 8), first)
    assert "from checkpoint step 4" in capsys.readouterr().out
    for a, b in zip(
        jax.tree.leaves(jax.device_get(resumed_state.params)),
        jax.tree.leaves(jax.device_get(straight_state.params)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    records = read_metrics(first / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert all(np.isfinite(r["loss"]) for r in records)
    result = json.loads((first / "eval.json").read_text())
    assert result["step"] == 8
    assert set(result["splits"]) == {"heldout_sentences", "heldout_subjects"}
    assert 0.0 <= result["overall"]["accuracy"] <= 1.0
    assert {r["true_offset"] for r in result["clips"]} == {0, 3}
    assert (first / "samples" / "offsets_000008.png").is_file()
    (video,) = result["videos"]
    assert video["clip"].endswith("May") and -5 <= video["offset"] <= 5

    encoder = stage.load_sync_encoder(first)
    assert encoder.step == 8 and encoder.embed_dim == 8
    audio = np.random.default_rng(0).normal(size=16_000).astype(np.float32) * 0.1
    windows = encoder.audio_windows(audio, 25)
    f_lip = encoder.embed_audio(windows)
    assert f_lip.shape == (25, 8) and bool(np.all(np.asarray(f_lip) >= 0))
    # The loaded function is the trained audio encoder.
    shapes = nnx.eval_shape(
        lambda: stage.build_model(tiny_config(tmp_path, 8), windows.shape[1:], (5, 40), 0)
    )
    apply = jax.jit(lambda params, w: stage._apply(nnx.graphdef(shapes), params, audio=w)[0])
    expected = apply(straight_state.params, windows)
    np.testing.assert_allclose(f_lip, expected, rtol=1e-4, atol=1e-5)
    # Scoring a clip built from raw arrays (the route for landmarks from any face tracker).
    mouth = np.random.default_rng(1).normal(size=(25, 20, 2)) + np.linspace(-3, 3, 20)[:, None]
    clip = data_lib.clip_from_arrays("noise", mouth, audio, 25.0)
    score = encoder.score(clip, max_offset=5)
    assert -5 <= score["offset"] <= 5 and score["confidence"] >= 0.0


def test_mediapipe_mouth_points_follow_the_68_point_layout(shared_data):
    path = shared_data / "real" / "sequences" / "echomimic_landmarks478.npy"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    mouth = np.load(path)[:, list(MEDIAPIPE_MOUTH), :2]  # [T, 20, 2] pixels, y down
    outer, inner = mouth[:, :12], mouth[:, 12:]
    x, y = mouth[..., 0], mouth[..., 1]
    assert np.all(x[:, 0] < x[:, 6])  # 48 is the image-left corner, 54 the right one
    assert np.all(np.argmin(outer[..., 0], axis=1) == 0)
    assert np.all(y[:, 3] < y[:, 14])  # outer upper lip (51) above the inner one (62)
    assert np.median(y[:, 18] - y[:, 14]) > 0  # inner lips 62 above 66 (they touch when closed)
    assert np.all(y[:, 18] < y[:, 9])  # inner lower lip (66) above the outer one (57)
    assert np.all((inner[..., 0] > x[:, :1]) & (inner[..., 0] < x[:, 6:7]))
    lips = data_lib.normalize_mouth(mouth)
    assert lips.shape == (len(mouth), 40) and np.isfinite(lips).all()


def test_load_sync_encoder_without_a_run_says_how_to_make_one(tmp_path):
    config = sync_block(str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="scripts/train_sync.py --config configs/sync.py"):
        stage.load_sync_encoder(config.init_from)


def test_config_variants():
    module = load_config_module()
    assert module.get_config().loss.name == "info_nce"
    assert module.get_config("loss=bce").loss.name == "bce"
    assert module.get_config().data.negatives == 10 and module.get_config().loss.temperature == 0.5
    with pytest.raises(ValueError, match="unknown config variant"):
        module.get_config("tiny")


def test_video_split_by_seconds_holds_out_the_nerfs_val_end():
    import numpy as np

    from jaxhead.sync.data import SyncClip, _split_in_time

    clip = SyncClip("v", np.zeros((100, 4, 13)), np.zeros((100, 40)), window=5, lo=2, hi=98)
    train, val = _split_in_time(clip, 0.2, val_frames=25.0)  # the last 25 frames: 75..99
    # No training window (t - 2 .. t + 2) reaches frame 75; every held-out window lies in 75..99.
    assert train.hi - 1 + 2 < 75 and (train.lo, train.hi) == (2, 73)
    assert val.lo - 2 >= 75 and val.hi == 98
    # Without seconds, the fraction of valid windows as before.
    train, val = _split_in_time(clip, 0.25)
    assert (train.hi, val.lo) == (2 + 72, 2 + 72 + 5)


# --- pre-training across speakers, adaptation, short-window scores ----------------------------


def test_augmentation_jitters_scale_rotation_gain_and_noise():
    rng = np.random.default_rng(0)
    lips = rng.normal(size=(5, 40)).astype(np.float32)
    assert data_lib.augment_lips(lips, rng, 0.0, 0.0) is lips  # off: untouched
    rotated = data_lib.augment_lips(lips, np.random.default_rng(1), 0.0, 30.0)
    norms = lambda x: np.linalg.norm(x.reshape(5, 20, 2), axis=-1)  # noqa: E731
    np.testing.assert_allclose(norms(rotated), norms(lips), rtol=1e-5)  # a rotation
    assert not np.allclose(rotated, lips)
    scaled = data_lib.augment_lips(lips, np.random.default_rng(2), 0.2, 0.0)
    ratio = norms(scaled) / norms(lips)
    assert np.allclose(ratio, ratio.flat[0], rtol=1e-5) and 0.8 <= ratio.flat[0] <= 1.2
    audio = rng.normal(size=(3, 20, 13)).astype(np.float32)
    gained = data_lib.augment_audio(audio, np.random.default_rng(3), 0.5, 0.0, "mfcc")
    np.testing.assert_array_equal(gained[..., 1:], audio[..., 1:])  # MFCC: c0 only
    offsets = gained[..., 0] - audio[..., 0]
    assert np.allclose(offsets, offsets[:, :1]) and np.all(offsets[:, 0] != 0)  # per window
    mel = data_lib.augment_audio(audio, np.random.default_rng(3), 0.5, 0.0, "logmel")
    assert np.allclose(mel - audio, (mel - audio)[:, :1, :1])  # every bin, per window
    noisy = data_lib.augment_audio(audio, np.random.default_rng(4), 0.0, 0.1, "")
    assert 0.05 < np.std(noisy - audio) < 0.15


def test_synthetic_and_videos_load_together_as_separate_speakers(tmp_path):
    config = tiny_config(tmp_path, 2)
    videos = []
    for name in ("May", "Obama"):
        if not (tmp_path / name).exists():
            write_video_folder(tmp_path / name, 30, 1.2)
        videos.append(str(tmp_path / name))
    with config.unlocked():
        config.data.update(kind="synthetic+video", video_roots=tuple(videos))
    splits = data_lib.load_clips(config.data, progress=False)
    assert set(splits) == {"train", "heldout_sentences", "heldout_subjects", "heldout_time"}
    names = [c.name for c in splits["train"]]
    assert "May[train]" in names and "Obama[train]" in names
    groups = {c.name: c.group for c in splits["train"]}
    synthetic_groups = {g for n, g in groups.items() if "[train]" not in n}
    assert groups["May[train]"] not in synthetic_groups | {groups["Obama[train]"]}
    with config.unlocked():
        config.data.kind = "video+voxels"
    with pytest.raises(ValueError, match="unknown config.data.kind"):
        data_lib.load_clips(config.data)


def test_adaptation_starts_from_the_pretrained_encoders(tmp_path):
    pretrained = tmp_path / "pre"
    state = stage.train(tiny_config(tmp_path, 4), pretrained)
    config = tiny_config(tmp_path, 2)
    with config.unlocked():
        config.init_from = str(pretrained)
        config.optim.learning_rate = 1e-12  # nothing moves: the run holds what it started from
    adapted = stage.train(config, tmp_path / "adapted")
    for a, b in zip(
        jax.tree.leaves(jax.device_get(adapted.params)),
        jax.tree.leaves(jax.device_get(state.params)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    with config.unlocked():
        config.model.hidden = 16
    with pytest.raises(UserError, match=r"model.hidden 8 there vs 16 here"):
        stage.train(config, tmp_path / "other")


def test_short_window_scores_find_the_planted_offsets():
    rng = np.random.default_rng(0)
    n, dim = 130, 8
    lips = rng.normal(size=(n, dim)).astype(np.float32)
    clip = data_lib.SyncClip("c", np.zeros((n + 4, 2, 1)), np.zeros((n + 4, 40)), 5, 2, n + 2)

    def embed_fn(audio, lip_windows):  # audio embeddings equal the lip embeddings: in sync
        return lips, lips

    config = ml_collections.ConfigDict(
        {"leads": (0, 4, -8), "max_offset": 15, "tolerance": 1, "distance": "cosine",
         "window_seconds": 2.0}
    )  # fmt: skip
    result = stage.evaluate_clips(embed_fn, {"val": [clip]}, config, fps=25.0)
    starts = sorted({r["start"] for r in result["clips"]})
    assert starts == [2, 52]  # two whole 50-frame windows of 130 valid frames
    assert len(result["clips"]) == 2 * 3
    assert result["overall"]["accuracy"] == 1.0
    assert {(r["true_offset"], r["offset"]) for r in result["clips"]} <= {(0, 0), (4, 4), (-8, -8)}


def test_leave_one_speaker_out_protocol_end_to_end(tmp_path):
    from jaxhead.experiments import sync_loso

    roots = []
    for name in ("alice", "bob"):
        write_video_folder(tmp_path / name, 150, 6.0)
        roots.append(str(tmp_path / name))
    protocol = sync_loso.Protocol(val_fraction=0.2, window_seconds=2.0, leads=(0, 4), smoke=True)
    results = sync_loso.run(roots, tmp_path / "loso", protocol, str(tmp_path / "cache"))
    assert set(results) == {"alice", "bob"}
    for name, arms in results.items():
        assert set(arms) == set(sync_loso.ARMS)
        for r in arms.values():
            # 30 held-out frames, fewer than one 2 s window: scored whole, once per lead.
            assert r["windows"] == 1 and len(r["offsets_aligned"]) == 1
            assert 0.0 <= r["found_aligned"] <= 1.0 and r["confidence_aligned"] >= 0.0
        folder = tmp_path / "loso" / name
        pre = json.loads((folder / "pretrain" / "config.json").read_text())
        assert pre["data"]["kind"] == "synthetic+video"
        assert [pathlib.Path(r).name for r in pre["data"]["video_roots"]] == [
            n for n in ("alice", "bob") if n != name
        ]  # the held-out speaker is never pre-trained on
        adapted = json.loads((folder / "adapted" / "config.json").read_text())
        assert adapted["init_from"] == str(folder / "pretrain")
    text = sync_loso.table(results)
    assert text.count("\n") == 2 + 2 * 3 + 3 - 1 and "**all**" in text
    real_only = dataclasses.replace(protocol, synthetic=False)
    assert sync_loso.pretrain_config(roots[1:], real_only).data.kind == "video"
    with pytest.raises(ValueError, match="needs other videos"):
        sync_loso.pretrain_config([], real_only)
