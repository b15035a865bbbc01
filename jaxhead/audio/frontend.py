"""The one audio front-end: 16 kHz samples (or a feature file) -> per-video-frame windows.

Every stage that conditions on audio cuts it the same way, described by a :class:`WindowSpec`:

* ``kind``: the features (:data:`RATES` gives each kind's steps per second, defined here once):
  ``"logmel"`` (Wav2Lip's 80-mel log spectrogram, 80 Hz), ``"mfcc"`` (13 MFCCs, 100 Hz), or a
  precomputed kind such as ``"hubert"`` (50 Hz) whose steps are given, not computed;
* ``steps``: feature steps per frame;
* ``normalize``: ``"none"``, or ``"clip"``: each coefficient standardised over the clip
  (cepstral mean and variance normalisation, ε = 1e-5; removes speaker and channel gain);
* ``align``: ``"centered"``: frame ``i`` (at ``i / fps`` s) takes the steps centred on step
  ``round(i · rate / fps)`` (:func:`jaxhead.audio.spectral.window_indices`; Wav2Lip, AD-NeRF),
  ``"following"``: the steps ``k, k + 1, …`` from ``k = floor(i · rate / fps)`` (ER-NeRF's
  pairs of 50 Hz HuBERT steps at 25 fps); steps past either end repeat the edge step;
* ``flatten``: ``[T, steps · F]`` instead of ``[T, steps, F]``.

Users: the NeRF frame caches and renders (``logmel``, 16 steps, centred), the sync stage
(``mfcc`` / ``logmel``, clip-normalised, its lip window's span), the GP-VAE (``mfcc``, 4 steps,
clip-normalised, flattened), ``python -m jaxhead.audio.features`` (feature files) — and
:func:`context_window` for per-frame feature files (AD-NeRF's ``aud.npy`` smoothing window).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxhead.audio import spectral
from jaxhead.audio.io import SAMPLE_RATE

RATES = {
    "mfcc": SAMPLE_RATE / spectral.MFCC_DEFAULTS["hop_length"],  # 100 Hz
    "logmel": SAMPLE_RATE / spectral.LOGMEL_DEFAULTS["hop_length"],  # 80 Hz
    "hubert": 50.0,  # the standard HuBERT / wav2vec 2.0 conv stack (stride 320)
}
COMPUTED = ("mfcc", "logmel")  # kinds computed here from samples
NORMALIZE = ("none", "clip")
ALIGN = ("centered", "following")
_FEATURE_FNS = {"mfcc": jax.jit(spectral.mfcc), "logmel": jax.jit(spectral.log_mel)}


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """How audio becomes per-frame windows (module docstring)."""

    kind: str
    steps: int
    normalize: str = "none"
    align: str = "centered"
    flatten: bool = False

    def __post_init__(self):
        if self.kind not in RATES:
            raise ValueError(f"unknown audio features {self.kind!r}; use one of {list(RATES)}")
        if self.steps < 1:
            raise ValueError(f"a window needs at least one step, got {self.steps}")
        if self.normalize not in NORMALIZE or self.align not in ALIGN:
            raise ValueError(
                f"normalize {self.normalize!r} / align {self.align!r}: use {NORMALIZE} / {ALIGN}"
            )

    @property
    def rate(self) -> float:
        return RATES[self.kind]


def steps_for(kind: str, frames: float, fps: float) -> int:
    """Feature steps of ``kind`` that span ``frames`` video frames at ``fps`` (at least 1)."""
    return max(int(round(frames * RATES[kind] / fps)), 1)


def features(samples: np.ndarray, kind: str) -> np.ndarray:
    """``[N, F]`` float32 features of a mono 16 kHz waveform (``kind`` in :data:`COMPUTED`)."""
    if kind not in COMPUTED:
        raise ValueError(
            f"{kind!r} features are not computed from samples here; use one of {COMPUTED} "
            "(or window precomputed features with frame_windows_of)"
        )
    samples = np.asarray(samples, np.float32)
    if samples.ndim != 1 or len(samples) == 0:
        raise ValueError(f"audio must be non-empty mono [num_samples], got shape {samples.shape}")
    return np.asarray(_FEATURE_FNS[kind](jnp.asarray(samples)))


def window_index(num_frames: int, fps: float, num_steps: int, spec: WindowSpec) -> np.ndarray:
    """``[num_frames, steps]`` step indices of each frame's window (clipped to the steps)."""
    if spec.align == "centered":
        return spectral.window_indices(num_frames, fps, spec.rate, num_steps, spec.steps)
    first = np.floor(np.arange(num_frames) * spec.rate / fps + 1e-9).astype(np.int64)
    index = first[:, None] + np.arange(spec.steps)[None, :]
    return np.clip(index, 0, num_steps - 1)


def frame_windows_of(
    feats: np.ndarray, num_frames: int, fps: float, spec: WindowSpec
) -> np.ndarray:
    """Per-frame windows ``[num_frames, steps, F]`` (or flattened) of features ``[N, F]`` at
    ``spec.rate``, normalised as ``spec`` says."""
    feats = np.asarray(feats)
    if feats.ndim != 2 or len(feats) == 0:
        raise ValueError(f"features must be [num_steps, dim] with steps, got shape {feats.shape}")
    if spec.normalize == "clip":
        wide = feats.astype(np.float64)
        feats = ((wide - wide.mean(0)) / (wide.std(0) + 1e-5)).astype(np.float32)
    windows = feats[window_index(num_frames, fps, len(feats), spec)]
    if spec.flatten:
        windows = windows.reshape(num_frames, -1)
    return windows.astype(np.float32, copy=False)


def frame_windows(samples: np.ndarray, num_frames: int, fps: float, spec: WindowSpec) -> np.ndarray:
    """Per-frame windows of a mono 16 kHz waveform (:func:`features` then
    :func:`frame_windows_of`)."""
    return frame_windows_of(features(samples, spec.kind), num_frames, fps, spec)


def window_validity(num_frames: int, fps: float, num_steps: int, spec: WindowSpec) -> np.ndarray:
    """``[num_frames]`` bool: the frame's window lies inside the features (no edge repeats)."""
    t = np.arange(num_frames, dtype=np.float64) * spec.rate / fps
    if spec.align == "centered":
        first = np.floor(t + 0.5).astype(np.int64) - spec.steps // 2
    else:
        first = np.floor(t + 1e-9).astype(np.int64)
    return (first >= 0) & (first + spec.steps <= num_steps)


def frame_context(
    features: np.ndarray, centers: np.ndarray, window: int, pad: str = "zeros"
) -> np.ndarray:
    """``[T, window, steps, channels]``: for each row ``centers[t]`` of per-frame features
    ``[N, steps, channels]``, the rows ``center - window // 2 … center + (window - 1) // 2``;
    rows outside ``[0, N)`` are zeros (``pad="zeros"``: AD-NeRF / RAD-NeRF pad their ``aud.npy``
    windows so) or repeat the edge row (``pad="edge"``)."""
    if pad not in ("zeros", "edge"):
        raise ValueError(f"pad {pad!r}: use 'zeros' or 'edge'")
    features = np.asarray(features)
    num = len(features)
    index = np.asarray(centers, np.int64)[:, None] - window // 2 + np.arange(window)[None, :]
    out = features[np.clip(index, 0, num - 1)]
    if pad == "zeros":
        out = np.where(((index >= 0) & (index < num))[..., None, None], out, 0)
    return out.astype(np.float32, copy=False)


def context_window(features: np.ndarray, center: int, window: int) -> np.ndarray:
    """One row's zero-padded :func:`frame_context`, flattened per row: ``[window, steps *
    channels]`` (feature index = step * channels + channel), as the video reader serves it."""
    return frame_context(features, np.asarray([center]), window)[0].reshape(window, -1)
