"""The one audio front-end (jaxhead.audio.frontend) against the windowing each stage did before.

Each ``old_*`` function is the previous implementation of a call site, kept verbatim here as the
reference: switching the stages to the front-end must not change one number they compute."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhead.audio import features as features_lib
from jaxhead.audio import frontend, spectral
from jaxhead.audio.frontend import WindowSpec
from jaxhead.data import video
from jaxhead.gpvae import data as gpvae_data
from jaxhead.nerf import conditions
from jaxhead.sync import data as sync_data


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    tone = np.sin(2 * np.pi * (180 + 60 * np.sin(2 * np.pi * 0.7 * t)) * t)
    return (0.3 * envelope * tone + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def old_nerf_windows(wave, num, fps, window):  # voca_frames / video_frames / audio_conditions
    feats = jax.jit(spectral.log_mel)(jnp.asarray(wave))
    return np.asarray(spectral.window_features(feats, num, fps, 16000 / 200.0, window))


def old_sync_windows(audio, num_frames, fps, features, window):
    rates = {"mfcc": 100.0, "logmel": 80.0}
    rate = rates[features]
    steps = max(int(round(window * rate / fps)), 1)
    fn = spectral.mfcc if features == "mfcc" else spectral.log_mel
    feats = np.asarray(fn(jnp.asarray(audio)), np.float64)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-5)
    index = spectral.window_indices(num_frames, fps, rate, len(feats), steps)
    centres = np.floor(np.arange(num_frames) * rate / fps + 0.5).astype(np.int64)
    valid = (centres - steps // 2 >= 0) & (centres - steps // 2 + steps <= len(feats))
    return feats[index].astype(np.float32), valid


def old_gpvae_features(audio, num_frames, fps):
    mfcc = np.asarray(spectral.mfcc(jax.numpy.asarray(audio)))
    mfcc = (mfcc - mfcc.mean(0)) / (mfcc.std(0) + 1e-5)
    index = spectral.window_indices(num_frames, fps, 100.0, len(mfcc), 4)
    return mfcc[index].reshape(num_frames, -1).astype(np.float32)


def old_frame_pairs(steps, fps, num_frames):
    first = np.floor(np.arange(num_frames) * 50.0 / fps + 1e-9).astype(np.int64)
    index = np.clip(first[:, None] + np.arange(2)[None, :], 0, steps.shape[0] - 1)
    return steps[index]


@pytest.mark.parametrize("fps, window", [(25.0, 16), (30.0, 12)])
def test_nerf_windows_are_unchanged(fps, window, tmp_path):
    wave = speech_like(1.3)
    num = int(1.3 * fps)
    spec = WindowSpec("logmel", window)
    np.testing.assert_array_equal(
        frontend.frame_windows(wave, num, fps, spec), old_nerf_windows(wave, num, fps, window)
    )
    # ... and so are a render's audio conditions (the same front-end as the frame caches).
    from test_nerf_stage import smoke_config

    config = smoke_config(tmp_path)
    with config.unlocked():
        config.data.fps, config.data.audio_window = fps, window
    got = conditions.LipSource(config).audio_conditions(wave, num)["audio"]
    np.testing.assert_array_equal(got, old_nerf_windows(wave, num, fps, window))


@pytest.mark.parametrize("kind", ["mfcc", "logmel"])
def test_sync_windows_and_validity_are_unchanged(kind):
    wave = speech_like(2.0, seed=1)
    got, valid = sync_data.audio_feature_windows(wave, 50, 25.0, kind, 5)
    want, want_valid = old_sync_windows(wave, 50, 25.0, kind, 5)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(valid, want_valid)


def test_gpvae_features_are_unchanged():
    wave = speech_like(1.7, seed=2)
    got = gpvae_data.audio_frame_features(wave, 16_000, 42)
    # The clip normalisation now runs in float64 (as the sync stage's did): float32 rounding.
    np.testing.assert_allclose(got, old_gpvae_features(wave, 42, 25.0), rtol=1e-5, atol=1e-5)


def test_hubert_pairs_and_feature_files_are_unchanged():
    steps = np.random.default_rng(3).normal(size=(37, 5)).astype(np.float32)
    for fps in (25.0, 30.0):
        num = int(np.ceil(37 * fps / 50))
        np.testing.assert_array_equal(
            features_lib.frame_pairs(steps, fps), old_frame_pairs(steps, fps, num)
        )
    wave = speech_like(0.8, seed=4)
    for kind, rate in (("mfcc", 100.0), ("logmel", 80.0)):
        fn = spectral.mfcc if kind == "mfcc" else spectral.log_mel
        want = np.asarray(spectral.window_features(fn(jnp.asarray(wave)), 20, 25.0, rate, 16))
        got = frontend.frame_windows(wave, 20, 25.0, WindowSpec(kind, 16))
        np.testing.assert_array_equal(got, want)


def test_context_window_is_the_video_readers():
    feats = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    assert video.audio_window is frontend.context_window
    out = frontend.context_window(feats, 0, 4)
    np.testing.assert_array_equal(out[:2], 0.0)  # rows -2, -1: zeros (AD-NeRF's padding)
    np.testing.assert_array_equal(out[2:], feats[:2].reshape(2, 6))


def test_rates_are_defined_once_and_windows_cover_their_frame():
    assert frontend.RATES == {"mfcc": 100.0, "logmel": 80.0, "hubert": 50.0}
    spec = WindowSpec("logmel", 16)
    index = frontend.window_index(10, 25.0, 1000, spec)
    centres = index[:, 8]  # step 8 of 16 is the frame's own time, i / 25 s at 80 Hz
    np.testing.assert_array_equal(centres, np.round(np.arange(10) * 80 / 25))
    pairs = frontend.window_index(4, 25.0, 100, WindowSpec("hubert", 2, align="following"))
    np.testing.assert_array_equal(pairs, [[0, 1], [2, 3], [4, 5], [6, 7]])
    with pytest.raises(ValueError, match="unknown audio features"):
        WindowSpec("deepspeech", 16)
    with pytest.raises(ValueError, match="not computed from samples"):
        frontend.features(speech_like(0.1), "hubert")


def test_feature_file_windows_of_the_sync_stage_are_unchanged():
    """load_video_clip's windows over a per-frame feature file: edge rows repeat."""
    per_frame = np.random.default_rng(5).normal(size=(12, 2, 3)).astype(np.float32)
    num, window = 10, 5
    index = np.arange(num)[:, None] - window // 2 + np.arange(window)[None, :]
    old = per_frame[np.clip(index, 0, num - 1)].reshape(num, -1, 3)
    got = frontend.frame_context(per_frame[:num], np.arange(num), window, pad="edge")
    np.testing.assert_array_equal(got.reshape(num, -1, 3), old)
    zeros = frontend.frame_context(per_frame, np.arange(3), 4)
    np.testing.assert_array_equal(zeros[0, :2], 0.0)
    np.testing.assert_array_equal(zeros[2, 0], per_frame[0])
