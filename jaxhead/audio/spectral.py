"""Spectral audio features in pure JAX: framing, STFT, mel filterbank, log-mel, MFCC.

All functions are framework-free (arrays in, arrays out) and jit-compiled with the integer /
string parameters static. Conventions, chosen to match librosa / torchaudio defaults so that
features agree with what the peer repositories feed their networks:

* frames are centred (``center=True``): the signal is reflect-padded by ``n_fft // 2`` on both
  sides, so frame ``t`` is centred on sample ``t * hop_length``;
* the window is a periodic Hann window of ``win_length`` samples, zero-padded to ``n_fft`` in the
  middle (as ``torch.stft``);
* the mel scale is **Slaney** by default (linear below 1 kHz, logarithmic above; the librosa
  default used by Wav2Lip's ``audio.melspectrogram``) with Slaney area normalisation of each
  triangle; ``mel_scale="htk"`` gives the HTK formula ``2595 log10(1 + f / 700)`` (torchaudio's
  default) and ``norm=None`` leaves the triangles with unit peak;
* MFCCs are the orthonormal DCT-II of the log-mel spectrogram (natural log), keeping the first
  ``num_mfcc`` coefficients.

``window_features`` cuts any feature sequence into per-video-frame windows (16 steps, as the
DeepSpeech windows of AD-NeRF and the mel windows of Wav2Lip).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Wav2Lip's mel settings at 16 kHz (hparams.py): 80 mels, 50 ms windows, 12.5 ms hop (80 Hz).
LOGMEL_DEFAULTS = dict(
    n_fft=800, hop_length=200, win_length=800, num_mels=80, fmin=55.0, fmax=7600.0
)
# Classic speech MFCCs: 25 ms windows, 10 ms hop (100 Hz), 40 mel bands, 13 coefficients.
MFCC_DEFAULTS = dict(
    n_fft=512, hop_length=160, win_length=400, num_mels=40, fmin=20.0, fmax=8000.0, num_mfcc=13
)


def hz_to_mel(freq: jax.Array, mel_scale: str = "slaney") -> jax.Array:
    """Hz -> mel. ``slaney``: linear (3 mels / 200 Hz) below 1 kHz, log above; ``htk``: 2595 log10

    Works on scalars or arrays of any shape (elementwise).
    """
    freq = jnp.asarray(freq, jnp.float32)
    if mel_scale == "htk":
        return 2595.0 * jnp.log10(1.0 + freq / 700.0)
    if mel_scale != "slaney":
        raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {mel_scale!r}")
    f_sp = 200.0 / 3.0
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    linear = freq / f_sp
    log = min_log_hz / f_sp + jnp.log(jnp.maximum(freq, min_log_hz) / min_log_hz) / logstep
    return jnp.where(freq >= min_log_hz, log, linear)


def mel_to_hz(mel: jax.Array, mel_scale: str = "slaney") -> jax.Array:
    """Inverse of ``hz_to_mel``."""
    mel = jnp.asarray(mel, jnp.float32)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if mel_scale != "slaney":
        raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {mel_scale!r}")
    f_sp = 200.0 / 3.0
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    log = min_log_hz * jnp.exp(logstep * (mel - min_log_mel))
    return jnp.where(mel >= min_log_mel, log, f_sp * mel)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    num_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
) -> jax.Array:
    """Triangular mel filters.

    The ``num_mels + 2`` edge frequencies are equally spaced on the mel scale between ``fmin`` and
    ``fmax``; filter ``m`` rises linearly (in Hz) from edge ``m`` to edge ``m+1`` and falls to edge
    ``m+2``. With ``norm="slaney"`` each triangle is scaled by ``2 / (f[m+2] - f[m])`` so that all
    bands have the same area.

    Returns:
      ``[n_fft // 2 + 1, num_mels]`` float32 matrix: ``mel = power_spectrum @ filterbank``.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin} fmax={fmax}")
    fft_freqs = jnp.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_edges = jnp.linspace(hz_to_mel(fmin, mel_scale), hz_to_mel(fmax, mel_scale), num_mels + 2)
    hz_edges = mel_to_hz(mel_edges, mel_scale)  # [num_mels + 2]
    lower, centre, upper = hz_edges[:-2], hz_edges[1:-1], hz_edges[2:]  # [num_mels] each
    rising = (fft_freqs[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - fft_freqs[:, None]) / (upper - centre)[None, :]
    weights = jnp.maximum(0.0, jnp.minimum(rising, falling))
    if norm == "slaney":
        weights = weights * (2.0 / (upper - lower))[None, :]
    elif norm is not None:
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    return weights.astype(jnp.float32)


def hann_window(win_length: int, n_fft: int) -> jax.Array:
    """Periodic Hann window of ``win_length`` samples centred in ``n_fft`` zeros: ``[n_fft]``."""
    if not 0 < win_length <= n_fft:
        raise ValueError(f"need 0 < win_length <= n_fft, got {win_length} and {n_fft}")
    n = jnp.arange(win_length, dtype=jnp.float32)
    window = 0.5 - 0.5 * jnp.cos(2.0 * jnp.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return jnp.pad(window, (left, n_fft - win_length - left))


def frame_signal(audio: jax.Array, frame_length: int, hop_length: int) -> jax.Array:
    """Centred framing: ``[num_samples] -> [1 + num_samples // hop_length, frame_length]``.

    The signal is reflect-padded by ``frame_length // 2`` on each side (librosa / torch
    ``center=True``), so frame ``t`` is centred on sample ``t * hop_length``.
    """
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio [num_samples], got shape {audio.shape}")
    pad = frame_length // 2
    if audio.shape[0] <= pad:
        raise ValueError(
            f"audio of {audio.shape[0]} samples is too short for frames of {frame_length}: "
            f"need more than {pad} samples"
        )
    padded = jnp.pad(audio, (pad, pad), mode="reflect")
    num_frames = 1 + (padded.shape[0] - frame_length) // hop_length
    starts = jnp.arange(num_frames) * hop_length
    index = starts[:, None] + jnp.arange(frame_length)[None, :]
    return padded[index]


def power_spectrogram(
    audio: jax.Array, n_fft: int, hop_length: int, win_length: int, power: float = 2.0
) -> jax.Array:
    """|STFT|^power of mono audio: ``[num_samples] -> [num_frames, n_fft // 2 + 1]``."""
    frames = frame_signal(jnp.asarray(audio, jnp.float32), n_fft, hop_length)
    window = hann_window(win_length, n_fft)
    spectrum = jnp.fft.rfft(frames * window[None, :], axis=-1)
    return jnp.abs(spectrum) ** power


@functools.partial(
    jax.jit,
    static_argnames=(
        "sample_rate", "n_fft", "hop_length", "win_length", "num_mels", "fmin", "fmax",
        "power", "mel_scale", "norm",
    ),
)  # fmt: skip
def mel_spectrogram(
    audio: jax.Array,
    sample_rate: int = 16_000,
    n_fft: int = 800,
    hop_length: int = 200,
    win_length: int = 800,
    num_mels: int = 80,
    fmin: float = 55.0,
    fmax: float | None = 7600.0,
    power: float = 2.0,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
) -> jax.Array:
    """Mel spectrogram: ``[num_samples] -> [1 + num_samples // hop_length, num_mels]``."""
    spectrum = power_spectrogram(audio, n_fft, hop_length, win_length, power)
    filters = mel_filterbank(sample_rate, n_fft, num_mels, fmin, fmax, mel_scale, norm)
    return jnp.matmul(spectrum, filters, precision=jax.lax.Precision.HIGHEST)


@functools.partial(
    jax.jit,
    static_argnames=(
        "sample_rate", "n_fft", "hop_length", "win_length", "num_mels", "fmin", "fmax",
        "power", "mel_scale", "norm", "floor",
    ),
)  # fmt: skip
def log_mel(
    audio: jax.Array,
    sample_rate: int = 16_000,
    n_fft: int = 800,
    hop_length: int = 200,
    win_length: int = 800,
    num_mels: int = 80,
    fmin: float = 55.0,
    fmax: float | None = 7600.0,
    power: float = 2.0,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
    floor: float = 1e-10,
) -> jax.Array:
    """Natural-log mel spectrogram, ``log(max(mel, floor))``.

    Defaults are Wav2Lip's (80 Hz frames of 50 ms, 80 Slaney mels over 55-7600 Hz) with a power
    spectrum; the floor keeps silence finite.

    Args:
      audio: ``[num_samples]`` mono float audio at ``sample_rate``.

    Returns:
      ``[1 + num_samples // hop_length, num_mels]`` float32.
    """
    mel = mel_spectrogram(
        audio, sample_rate, n_fft, hop_length, win_length, num_mels, fmin, fmax, power,
        mel_scale, norm,
    )  # fmt: skip
    return jnp.log(jnp.maximum(mel, floor))


def dct_ortho_matrix(size: int, num_coefficients: int) -> jax.Array:
    """Orthonormal DCT-II basis ``[size, num_coefficients]``: ``coeffs = x @ basis``.

    Same as ``scipy.fft.dct(x, type=2, norm="ortho")[..., :num_coefficients]``.
    """
    n = jnp.arange(size, dtype=jnp.float32)[:, None]
    k = jnp.arange(num_coefficients, dtype=jnp.float32)[None, :]
    basis = jnp.cos(jnp.pi * k * (2.0 * n + 1.0) / (2.0 * size)) * jnp.sqrt(2.0 / size)
    return basis.at[:, 0].multiply(1.0 / jnp.sqrt(2.0))


@functools.partial(
    jax.jit,
    static_argnames=(
        "sample_rate", "num_mfcc", "n_fft", "hop_length", "win_length", "num_mels", "fmin",
        "fmax", "mel_scale", "norm", "floor",
    ),
)  # fmt: skip
def mfcc(
    audio: jax.Array,
    sample_rate: int = 16_000,
    num_mfcc: int = 13,
    n_fft: int = 512,
    hop_length: int = 160,
    win_length: int = 400,
    num_mels: int = 40,
    fmin: float = 20.0,
    fmax: float | None = 8000.0,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
    floor: float = 1e-10,
) -> jax.Array:
    """Mel-frequency cepstral coefficients: orthonormal DCT-II of the natural-log power mel.

    Defaults are classic speech MFCCs (25 ms windows, 10 ms hop = 100 Hz, 40 mels, 13 coeffs).

    Args:
      audio: ``[num_samples]`` mono float audio at ``sample_rate``.

    Returns:
      ``[1 + num_samples // hop_length, num_mfcc]`` float32.
    """
    if num_mfcc > num_mels:
        raise ValueError(f"num_mfcc ({num_mfcc}) cannot exceed num_mels ({num_mels})")
    log_spec = log_mel(
        audio, sample_rate, n_fft, hop_length, win_length, num_mels, fmin, fmax, 2.0,
        mel_scale, norm, floor,
    )  # fmt: skip
    basis = dct_ortho_matrix(num_mels, num_mfcc)
    return jnp.matmul(log_spec, basis, precision=jax.lax.Precision.HIGHEST)


def window_indices(
    num_frames: int, fps: float, feature_rate: float, num_features: int, window: int = 16
) -> np.ndarray:
    """Feature indices of the per-video-frame windows: ``[num_frames, window]`` int32.

    Video frame ``i`` is at time ``i / fps``, i.e. at feature step ``c = round(i * feature_rate
    / fps)``; its window is steps ``c - window // 2 ... c + (window - window // 2) - 1``, clipped to
    ``[0, num_features - 1]`` (edge padding, as AD-NeRF pads its DeepSpeech windows).
    Computed on the host in float64 so that the centre is exact for integer rate ratios.
    """
    if num_features < 1:
        raise ValueError("cannot window an empty feature sequence")
    if fps <= 0 or feature_rate <= 0 or window < 1:
        raise ValueError(
            f"need fps > 0, feature_rate > 0, window >= 1; got {fps}, {feature_rate}, {window}"
        )
    centres = np.floor(np.arange(num_frames, dtype=np.float64) * feature_rate / fps + 0.5)
    offsets = np.arange(window) - window // 2
    index = centres.astype(np.int64)[:, None] + offsets[None, :]
    return np.clip(index, 0, num_features - 1).astype(np.int32)


def window_features(
    features: jax.Array, num_frames: int, fps: float, feature_rate: float, window: int = 16
) -> jax.Array:
    """Per-video-frame windows of a feature sequence, centred on each frame.

    Args:
      features: ``[num_steps, dim]`` features at ``feature_rate`` Hz (e.g. 80 Hz Wav2Lip mels,
        100 Hz MFCCs, 50 Hz HuBERT / DeepSpeech).
      num_frames: number of video frames (static).
      fps: video frame rate.
      feature_rate: feature steps per second.
      window: feature steps per frame (16 as in Wav2Lip's mel windows, about 0.2 s at 80 Hz).

    Returns:
      ``[num_frames, window, dim]``; steps before the start / after the end repeat the first /
      last feature.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [num_steps, dim], got shape {features.shape}")
    index = window_indices(num_frames, fps, feature_rate, features.shape[0], window)
    return jnp.take(features, jnp.asarray(index), axis=0)
