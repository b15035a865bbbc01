"""Audio I/O: decoding, down-mixing and resampling (NumPy, host side)."""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

SAMPLE_RATE = 16_000  # every jaxhead audio front-end works at 16 kHz (HuBERT, MFCC, log-mel)


def resample(audio: np.ndarray, orig_rate: int, new_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (Kaiser-windowed FIR, as scipy/sox/torchaudio do).

    Args:
      audio: ``[num_samples]`` or ``[num_samples, channels]`` float waveform.
      orig_rate: sampling rate of ``audio`` in Hz.
      new_rate: target rate in Hz.

    Returns:
      float32 array with ``ceil(num_samples * new_rate / orig_rate)`` samples along axis 0.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate == new_rate:
        return audio
    g = math.gcd(int(orig_rate), int(new_rate))
    out = scipy.signal.resample_poly(audio, new_rate // g, orig_rate // g, axis=0)
    return out.astype(np.float32)
