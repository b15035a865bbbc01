"""AV-offset scoring, the SyncNet protocol (Chung & Zisserman 2016, paper 000 ref. [44]).

For a clip with per-frame audio embeddings ``a_t`` and lip embeddings ``v_t``, the mean distance
``D(s) = mean_t d(v_t, a_{t+s})`` is computed for every shift ``s`` in ``[-K, K]`` (``K = 15``
frames). SyncNet reports

* the **AV offset** ``-argmin_s D(s)`` (its ``vshift - argmin``): positive when the audio leads
  the video, i.e. the sound of lip frame ``t`` sits at audio frame ``t - offset``;
* the **confidence** ``median_s D(s) - min_s D(s)``: how clearly the best shift stands out.

Where we differ from SyncNet's code, and why: SyncNet zero-pads the audio embeddings at both ends
so every shift averages over all ``T`` frames (the padding biases ``D`` at large shifts); we average
each shift over the ``T - |s|`` frame pairs that exist. ``d`` is the cosine distance ``1 - cos``
by default (the encoders are trained on cosine similarity, paper 000 eq. 9), or the Euclidean
distance of L2-normalised embeddings (SyncNet's ``pairwise_distance``, scale-free).

All functions are pure (arrays in, arrays out) and run in NumPy (float64) on the host: scoring
is evaluation-time bookkeeping over a few hundred embeddings per clip, and clip lengths vary, which
would recompile a jitted version per clip.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "offset_distances",
    "sync_offset",
    "score_clip",
    "shift_audio",
    "offset_accuracy",
    "summarize",
]

DISTANCES = ("cosine", "euclidean")


def offset_distances(
    audio: np.ndarray, lips: np.ndarray, max_offset: int = 15, distance: str = "cosine"
) -> np.ndarray:
    """Mean audio-lip distance at every shift: ``D(s)`` for ``s = -K ... K``.

    Args:
      audio: ``[T, D]`` audio embeddings, one per video frame.
      lips: ``[T, D]`` lip embeddings of the same frames.
      max_offset: ``K`` (frames); needs ``T > K``.
      distance: ``"cosine"`` (``1 - cos``) or ``"euclidean"`` (of L2-normalised vectors).

    Returns:
      ``[2K + 1]`` float64; entry ``k`` is ``D(k - K) = mean_t d(lips[t], audio[t + k - K])`` over
      the frames where both exist.
    """
    audio, lips = np.asarray(audio, np.float64), np.asarray(lips, np.float64)
    if audio.ndim != 2 or audio.shape != lips.shape:
        raise ValueError(
            f"audio and lip embeddings must both be [T, D]; got {audio.shape} and {lips.shape}"
        )
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; use one of {DISTANCES}")
    num = audio.shape[0]
    if num <= max_offset:
        raise ValueError(f"a clip of {num} frames is too short for offsets of +-{max_offset}")
    shifts = np.arange(-max_offset, max_offset + 1)
    frames = np.arange(num)
    partner = frames[None, :] + shifts[:, None]  # [S, T]
    valid = (partner >= 0) & (partner < num)
    shifted = audio[np.clip(partner, 0, num - 1)]  # [S, T, D]
    # Zero vectors (all-ReLU-off embeddings) have similarity 0 with everything.
    unit_lips = lips / np.maximum(np.linalg.norm(lips, axis=-1, keepdims=True), 1e-12)
    unit_audio = shifted / np.maximum(np.linalg.norm(shifted, axis=-1, keepdims=True), 1e-12)
    similarity = np.clip(np.sum(unit_lips[None] * unit_audio, axis=-1), -1.0, 1.0)  # [S, T]
    if distance == "cosine":
        d = 1.0 - similarity
    else:
        d = np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0))
    return np.sum(d * valid, axis=1) / np.sum(valid, axis=1)


def sync_offset(distances: np.ndarray) -> tuple[int, float, float]:
    """``(offset, confidence, min_distance)`` from ``D`` of :func:`offset_distances`.

    ``distances`` is ``[2K + 1]``; ``offset = K - argmin`` (SyncNet's sign: positive when the audio
    leads), ``confidence = median(D) - min(D)``.
    """
    distances = np.asarray(distances)
    if distances.ndim != 1 or distances.shape[0] % 2 != 1:
        raise ValueError(f"distances must be [2K + 1], got shape {distances.shape}")
    max_offset = distances.shape[0] // 2
    best = int(np.argmin(distances))
    minimum = float(distances[best])
    return max_offset - best, float(np.median(distances)) - minimum, minimum


def score_clip(
    audio: np.ndarray, lips: np.ndarray, max_offset: int = 15, distance: str = "cosine"
) -> dict:
    """SyncNet scores of one clip: ``{"offset", "confidence", "min_distance", "distances"}``."""
    distances = offset_distances(audio, lips, max_offset, distance)
    offset, confidence, minimum = sync_offset(distances)
    return {
        "offset": int(offset),
        "confidence": float(confidence),
        "min_distance": float(minimum),
        "distances": np.asarray(distances),
    }


def shift_audio(audio: np.ndarray, lips: np.ndarray, lead: int) -> tuple[np.ndarray, np.ndarray]:
    """An artificially desynchronised clip whose audio leads the video by ``lead`` frames.

    The new audio track is ``audio'[t] = audio[t + lead]`` (negative ``lead``: the audio lags);
    both sequences are cut to the ``T - |lead|`` frames where ``audio'`` exists, so the SyncNet
    offset of the result is ``lead`` plus the offset of the original clip.

    Args:
      audio: ``[T, ...]`` per-frame audio embeddings (or windows).
      lips: ``[T, ...]`` per-frame lip embeddings (or windows).
      lead: frames, ``|lead| < T``.

    Returns:
      ``(audio' [T - |lead|, ...], lips [T - |lead|, ...])``.
    """
    num = len(audio)
    if len(lips) != num or abs(lead) >= num:
        raise ValueError(f"need equal lengths and |lead| < T; got {num}, {len(lips)}, {lead}")
    if lead >= 0:
        return audio[lead:], lips[: num - lead]
    return audio[: num + lead], lips[-lead:]


def offset_accuracy(predicted, true, tolerance: int = 1) -> float:
    """Fraction of clips whose predicted offset is within ``tolerance`` frames of the true one."""
    predicted, true = np.asarray(predicted), np.asarray(true)
    if predicted.shape != true.shape or predicted.size == 0:
        raise ValueError(f"need equal non-empty shapes, got {predicted.shape} and {true.shape}")
    return float(np.mean(np.abs(predicted - true) <= tolerance))


def summarize(results: list[dict], tolerance: int = 1) -> dict:
    """Averages of per-clip results that carry ``offset``, ``confidence`` and ``true_offset``.

    Returns ``{"num_clips", "accuracy" (within tolerance), "exact_accuracy", "mean_abs_error",
    "mean_confidence", "mean_min_distance"}``.
    """
    if not results:
        raise ValueError("no results to summarise")
    predicted = np.array([r["offset"] for r in results])
    true = np.array([r["true_offset"] for r in results])
    return {
        "num_clips": len(results),
        "accuracy": offset_accuracy(predicted, true, tolerance),
        "exact_accuracy": offset_accuracy(predicted, true, 0),
        "mean_abs_error": float(np.mean(np.abs(predicted - true))),
        "mean_confidence": float(np.mean([r["confidence"] for r in results])),
        "mean_min_distance": float(np.mean([r["min_distance"] for r in results])),
    }
