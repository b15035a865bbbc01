"""jaxhead.audio.spectral against an independent NumPy/SciPy implementation (loops, float64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
import scipy.signal

from jaxhead.audio import spectral


def _ref_hz_to_mel(f: float, scale: str) -> float:
    if scale == "htk":
        return 2595.0 * math.log10(1.0 + f / 700.0)
    if f < 1000.0:
        return 3.0 * f / 200.0
    return 15.0 + math.log(f / 1000.0) * 27.0 / math.log(6.4)


def _ref_mel_to_hz(m: float, scale: str) -> float:
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if m < 15.0:
        return 200.0 * m / 3.0
    return 1000.0 * math.exp((m - 15.0) * math.log(6.4) / 27.0)


def _ref_filterbank(rate, n_fft, num_mels, fmin, fmax, scale, norm):
    lo, hi = _ref_hz_to_mel(fmin, scale), _ref_hz_to_mel(fmax, scale)
    edges = [
        _ref_mel_to_hz(lo + (hi - lo) * i / (num_mels + 1), scale) for i in range(num_mels + 2)
    ]
    bins = n_fft // 2 + 1
    out = np.zeros((bins, num_mels))
    for m in range(num_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for b in range(bins):
            f = b * rate / n_fft
            if left <= f <= centre:
                out[b, m] = (f - left) / (centre - left)
            elif centre < f <= right:
                out[b, m] = (right - f) / (right - centre)
        if norm == "slaney":
            out[:, m] *= 2.0 / (right - left)
    return out


def _ref_power_spectrogram(audio, n_fft, hop, win):
    padded = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = scipy.signal.get_window("hann", win, fftbins=True)
    frames = []
    for start in range(0, padded.shape[0] - n_fft + 1, hop):
        frames.append(np.abs(np.fft.rfft(padded[start : start + n_fft] * window)) ** 2)
    return np.stack(frames)


def _speech_like(seconds=0.5, rate=16_000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((180, 730, 1900, 3100)))
    return (0.2 * tones + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_scale_round_trip_and_analytic_points(scale):
    freqs = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    mels = spectral.hz_to_mel(freqs, scale)
    np.testing.assert_allclose(mels, [_ref_hz_to_mel(f, scale) for f in freqs], rtol=1e-5)
    np.testing.assert_allclose(spectral.mel_to_hz(mels, scale), freqs, rtol=1e-4, atol=1e-2)
    if scale == "slaney":
        assert float(spectral.hz_to_mel(1000.0, scale)) == pytest.approx(15.0)
    else:
        assert float(spectral.hz_to_mel(700.0, scale)) == pytest.approx(2595 * math.log10(2))


@pytest.mark.parametrize(
    ("scale", "norm", "n_fft", "num_mels", "fmin", "fmax"),
    [("slaney", "slaney", 800, 80, 55.0, 7600.0), ("htk", None, 512, 40, 0.0, 8000.0)],
)
def test_mel_filterbank_matches_reference(scale, norm, n_fft, num_mels, fmin, fmax):
    ours = spectral.mel_filterbank(16_000, n_fft, num_mels, fmin, fmax, scale, norm)
    ref = _ref_filterbank(16_000, n_fft, num_mels, fmin, fmax, scale, norm)
    assert ours.shape == (n_fft // 2 + 1, num_mels)
    np.testing.assert_allclose(ours, ref, atol=2e-4 * ref.max(), rtol=1e-3)


@pytest.mark.parametrize(("n_fft", "hop", "win"), [(800, 200, 800), (512, 160, 400)])
def test_power_spectrogram_matches_reference(n_fft, hop, win):
    audio = _speech_like()
    ours = spectral.power_spectrogram(jnp.asarray(audio), n_fft, hop, win)
    ref = _ref_power_spectrogram(audio, n_fft, hop, win)
    assert ours.shape == ref.shape == (1 + audio.shape[0] // hop, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, atol=1e-3 * ref.max(), rtol=1e-3)


def test_log_mel_and_mfcc_match_reference():
    audio = _speech_like()
    d = spectral.LOGMEL_DEFAULTS
    ref_mel = _ref_power_spectrogram(audio, d["n_fft"], d["hop_length"], d["win_length"])
    ref_mel = ref_mel @ _ref_filterbank(16_000, 800, 80, 55.0, 7600.0, "slaney", "slaney")
    ref_log = np.log(np.maximum(ref_mel, 1e-10))
    ours = spectral.log_mel(jnp.asarray(audio))
    assert ours.shape == (1 + audio.shape[0] // 200, 80)
    np.testing.assert_allclose(ours, ref_log, atol=2e-3)

    m = spectral.MFCC_DEFAULTS
    ref_power = _ref_power_spectrogram(audio, m["n_fft"], m["hop_length"], m["win_length"])
    ref_mel = ref_power @ _ref_filterbank(16_000, 512, 40, 20.0, 8000.0, "slaney", "slaney")
    ref_mfcc = scipy.fft.dct(np.log(np.maximum(ref_mel, 1e-10)), type=2, norm="ortho")[:, :13]
    ours = spectral.mfcc(jnp.asarray(audio))
    assert ours.shape == (1 + audio.shape[0] // 160, 13)
    np.testing.assert_allclose(ours, ref_mfcc, atol=5e-3 * np.abs(ref_mfcc).max())


def test_dct_matrix_is_orthonormal_and_matches_scipy():
    basis = np.asarray(spectral.dct_ortho_matrix(24, 24))
    np.testing.assert_allclose(basis.T @ basis, np.eye(24), atol=1e-5)
    x = np.random.default_rng(1).standard_normal((3, 24))
    np.testing.assert_allclose(x @ basis, scipy.fft.dct(x, type=2, norm="ortho"), atol=1e-5)


def test_tone_lands_in_its_mel_band():
    rate, freq = 16_000, 1500.0
    audio = np.sin(2 * np.pi * freq * np.arange(rate // 2) / rate).astype(np.float32)
    logmel = np.asarray(spectral.log_mel(jnp.asarray(audio)))
    edges = spectral.mel_to_hz(
        np.linspace(spectral.hz_to_mel(55.0), spectral.hz_to_mel(7600.0), 82)
    )
    peak_band = int(np.argmax(logmel[10]))
    assert float(edges[peak_band]) < freq < float(edges[peak_band + 2])


def test_jit_matches_eager():
    audio = jnp.asarray(_speech_like(0.3, seed=2))
    jitted = spectral.mfcc(audio), spectral.log_mel(audio)
    with jax.disable_jit():
        eager = spectral.mfcc(audio), spectral.log_mel(audio)
    for a, b in zip(jitted, eager, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_silence_is_finite():
    logmel = spectral.log_mel(jnp.zeros(4000))
    assert np.all(np.isfinite(logmel)) and float(logmel.max()) == pytest.approx(np.log(1e-10))


def test_window_features_shape_and_centring():
    num_steps, dim = 160, 3  # 2 s at 80 Hz
    features = jnp.asarray(np.arange(num_steps, dtype=np.float32)[:, None] * np.ones((1, dim)))
    windows = spectral.window_features(features, num_frames=50, fps=25, feature_rate=80, window=16)
    assert windows.shape == (50, 16, dim)
    w = np.asarray(windows[..., 0]).astype(int)
    # Frame 10 is at 0.4 s = feature step 32; its window is steps 24..39.
    np.testing.assert_array_equal(w[10], np.arange(24, 40))
    # Edge padding: frame 0 repeats step 0, the last frames repeat the last step.
    np.testing.assert_array_equal(w[0], np.r_[np.zeros(8), np.arange(8)])
    assert w[49, -1] == num_steps - 1
    # Consecutive frames advance by feature_rate / fps steps on average (3.2 here).
    centres = w[5:45, 8]
    assert np.mean(np.diff(centres)) == pytest.approx(3.2, abs=0.05)


def test_window_features_configurable_fps_and_errors():
    features = jnp.ones((100, 2))
    assert spectral.window_features(features, 60, fps=30, feature_rate=50).shape == (60, 16, 2)
    index = spectral.window_indices(3, fps=50, feature_rate=50, num_features=100, window=4)
    np.testing.assert_array_equal(index, [[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match="num_steps, dim"):
        spectral.window_features(jnp.ones(10), 3, 25, 50)
    with pytest.raises(ValueError, match="too short"):
        spectral.log_mel(jnp.ones(100))
