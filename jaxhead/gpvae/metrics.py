"""Evaluation of generated head pose and blinks (paper 001 tables 2 and 4); pure NumPy.

Definitions (also in docs/gpvae.md):

* **D-Rot / D-Pos** (MakeItTalk's head-pose distances as paper 001 table 4 reports them, in
  percent): the relative mean absolute error of generated vs ground-truth rotation (the three
  axis-angle components, radians) and translation (three components), pooled over all evaluated
  frames of all held-out sequences::

      D = 100 · Σ_seq Σ_t Σ_i |ĥ_ti − h_ti|  /  Σ_seq Σ_t Σ_i |h_ti − mean_t(h_i)|

  The denominator is the ground truth's mean absolute deviation around its own per-sequence mean,
  so the metric does not depend on where the camera origin is (a translation offset would make a
  plain ``|h|`` denominator arbitrary) and predicting each sequence's constant mean pose scores
  about 100 %.
* **Absolute pose differences** (``d_rot_deg``, ``d_pos_abs``; :func:`pose_distances`): the mean
  over frames of the geodesic angle between the generated and the true head rotation, in degrees,
  and of the Euclidean distance between the translations (the data's units). MakeItTalk's paper
  (Zhou et al. 2020, sec. 5) describes D-Rot / D-Pos as the average difference of head rotation
  and position between prediction and reference; its released code has no evaluation script and
  paper 001 gives them in percent without the normalisation, so the percentages above are our
  reading and these absolute numbers sit beside them.
* **Blinks per second**: blink onsets found in a blink signal (eyelid closure, 0 open - 1 shut) by
  a Schmitt trigger: an onset when the signal rises above ``high`` after having fallen below
  ``low`` since the previous onset, and at least ``min_gap_s`` after it; count / duration.
* **Blink rhythm** (:func:`blink_statistics`): the inter-blink intervals (time between
  consecutive onsets of one sequence; mean, median and coefficient of variation std / mean, over
  the intervals of all sequences pooled) and the mean closure duration (from an onset to the
  first frame below ``low``, the frame the trigger re-arms at; cut at the sequence's end).
  Spontaneous human blinks come at irregular intervals of a few seconds (a CV well above 0) and
  close for a few tenths of a second; a model that blinks on a fixed beat has a CV near 0.
* **Velocity ratio** (:func:`velocity_ratio`): the standard deviation of the per-frame rotation
  change ``r_{t+1} − r_t`` (axis-angle components; about the angular velocity at these small
  angles) of generated sequences over that of the truth, pooled over sequences and components.
  1 when the generated head moves as briskly as the real one, 0 when it is frozen: reported beside
  D-Rot so that a model cannot score well by predicting a still head.
* **Diversity**: mean over frames and channels of the standard deviation across ``K`` samples
  generated for the same audio and BOP (in the model's normalised units).
* **Motion ratio**: temporal standard deviation of generated sequences over that of the ground
  truth (per channel, averaged); near 0 flags the frame-freezing the paper reports for LSTMs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation


def relative_mae(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    centers: Sequence[np.ndarray] | None = None,
) -> float:
    """Pooled relative MAE in percent (D-Rot / D-Pos above).

    Args:
      predictions, targets: sequences of ``[N_i, C]`` arrays (same shapes pairwise).
      centers: optional ``[C]`` per pair, the value the target's deviation is measured from
        (default: the target's own mean). The windowed metric passes the mean of the whole
        held-out sequence a window comes from, so that the scale does not shrink with the window.

    Returns:
      ``100 · Σ|pred − target| / Σ|target − center|``; ``nan`` when the targets are constant.
    """
    num, den = 0.0, 0.0
    if centers is None:
        centers = [None] * len(targets)
    for pred, target, center in zip(predictions, targets, centers, strict=True):
        pred = np.asarray(pred, np.float64)
        target = np.asarray(target, np.float64)
        if pred.shape != target.shape:
            raise ValueError(f"relative_mae: shapes differ, {pred.shape} vs {target.shape}")
        center = target.mean(0) if center is None else np.asarray(center, np.float64)
        num += np.abs(pred - target).sum()
        den += np.abs(target - center).sum()
    return float(100.0 * num / den) if den > 0 else float("nan")


def pose_distances(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    centers: Sequence[np.ndarray] | None = None,
) -> dict[str, float]:
    """``{"d_rot", "d_pos", "d_rot_deg", "d_pos_abs"}`` from ``[N_i, 6]`` poses (axis-angle
    rotation first, then translation): the relative MAEs in percent and the absolute mean
    differences (module docstring)."""
    c_rot = None if centers is None else [np.asarray(c)[:3] for c in centers]
    c_pos = None if centers is None else [np.asarray(c)[3:6] for c in centers]
    pred = np.concatenate([np.asarray(p, np.float64).reshape(-1, 6) for p in predictions])
    true = np.concatenate([np.asarray(t, np.float64).reshape(-1, 6) for t in targets])
    return {
        "d_rot": relative_mae([p[:, :3] for p in predictions], [t[:, :3] for t in targets], c_rot),
        "d_pos": relative_mae(
            [p[:, 3:6] for p in predictions], [t[:, 3:6] for t in targets], c_pos
        ),
        "d_rot_deg": float(np.mean(rotation_angle_deg(pred[:, :3], true[:, :3]))),
        "d_pos_abs": float(np.mean(np.linalg.norm(pred[:, 3:6] - true[:, 3:6], axis=-1))),
    }


def rotation_angle_deg(rotvec_a: np.ndarray, rotvec_b: np.ndarray) -> np.ndarray:
    """``[N]`` geodesic angle in degrees between the rotations of axis-angle vectors ``[N, 3]``:
    the angle of ``R_a R_bᵀ``."""
    relative = Rotation.from_rotvec(rotvec_a) * Rotation.from_rotvec(rotvec_b).inv()
    return np.degrees(np.linalg.norm(relative.as_rotvec(), axis=-1))


def detect_blinks(
    signal: np.ndarray, fps: float, high: float = 0.5, low: float = 0.25, min_gap_s: float = 0.2
) -> np.ndarray:
    """Frame indices of blink onsets in a closure signal ``[N]`` (Schmitt trigger, see above)."""
    if not low < high:
        raise ValueError(f"detect_blinks: need low < high, got low={low}, high={high}")
    min_gap = min_gap_s * fps
    onsets: list[int] = []
    armed = True  # the eye has been open (below `low`) since the last onset
    for t, value in enumerate(np.asarray(signal, np.float64)):
        if armed and value > high:
            # A re-closure sooner than min_gap after an onset belongs to the same blink.
            if not onsets or t - onsets[-1] >= min_gap:
                onsets.append(t)
            armed = False
        elif value < low:
            armed = True
    return np.asarray(onsets, np.int64)


def blinks_per_second(signal: np.ndarray, fps: float, **thresholds) -> float:
    """Number of detected blinks divided by the signal's duration ``N / fps``."""
    signal = np.asarray(signal)
    if len(signal) == 0:
        return 0.0
    return float(len(detect_blinks(signal, fps, **thresholds)) / (len(signal) / fps))


def closure_durations(
    signal: np.ndarray, fps: float, high: float = 0.5, low: float = 0.25, min_gap_s: float = 0.2
) -> np.ndarray:
    """Seconds from each blink onset ``[B]`` to the first later frame below ``low`` (or the end)."""
    signal = np.asarray(signal, np.float64)
    onsets = detect_blinks(signal, fps, high=high, low=low, min_gap_s=min_gap_s)
    durations = []
    for onset in onsets:
        reopen = np.flatnonzero(signal[onset:] < low)
        durations.append(reopen[0] if reopen.size else len(signal) - onset)
    return np.asarray(durations, np.float64) / fps


def blink_statistics(signals: Sequence[np.ndarray], fps: float, **thresholds) -> dict[str, float]:
    """Inter-blink intervals and closure durations of blink signals ``[N_i]`` (see above).

    Returns:
      ``num_blinks``, ``num_intervals``; ``interval_mean_s``, ``interval_median_s`` (nan without
      an interval), ``interval_cv`` (population std / mean; nan with fewer than 2 intervals),
      ``closure_mean_s`` (nan without a blink).
    """
    intervals, closures, count = [], [], 0
    for signal in signals:
        onsets = detect_blinks(signal, fps, **thresholds)
        count += len(onsets)
        intervals.append(np.diff(onsets) / fps)
        closures.append(closure_durations(signal, fps, **thresholds))
    intervals = np.concatenate(intervals) if intervals else np.zeros(0)
    closures = np.concatenate(closures) if closures else np.zeros(0)
    nan = float("nan")
    return {
        "num_blinks": count,
        "num_intervals": len(intervals),
        "interval_mean_s": float(intervals.mean()) if len(intervals) else nan,
        "interval_median_s": float(np.median(intervals)) if len(intervals) else nan,
        "interval_cv": float(intervals.std() / intervals.mean()) if len(intervals) > 1 else nan,
        "closure_mean_s": float(closures.mean()) if len(closures) else nan,
    }


def velocity_ratio(generated: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """``std(Δ generated) / std(Δ target)`` of per-frame changes of ``[N_i, C]`` sequences.

    ``Δx_t = x_{t+1} − x_t``; each sequence's mean change (a steady drift) is removed per channel,
    the squared deviations are pooled over sequences, frames and channels. Pass the rotation
    (``pose[:, :3]``) for the velocity ratio above. ``nan`` when the targets never change.
    """
    num, den = 0.0, 0.0
    for gen, target in zip(generated, targets, strict=True):
        gen = np.asarray(gen, np.float64)
        target = np.asarray(target, np.float64)
        if gen.shape != target.shape:
            raise ValueError(f"velocity_ratio: shapes differ, {gen.shape} vs {target.shape}")
        if len(target) < 2:
            continue
        d_gen, d_target = np.diff(gen, axis=0), np.diff(target, axis=0)
        num += ((d_gen - d_gen.mean(0)) ** 2).sum()
        den += ((d_target - d_target.mean(0)) ** 2).sum()
    return float(np.sqrt(num / den)) if den > 0 else float("nan")


def sample_diversity(samples: np.ndarray) -> float:
    """Mean over ``[N, C]`` of the std across ``K`` samples ``[K, N, C]``."""
    samples = np.asarray(samples, np.float64)
    return float(samples.std(0).mean()) if samples.shape[0] > 1 else 0.0


def motion_ratio(generated: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Mean over sequences and channels of ``std_t(generated) / std_t(target)``."""
    ratios = []
    for gen, target in zip(generated, targets, strict=True):
        std_t = np.asarray(target, np.float64).std(0)
        keep = std_t > 1e-12
        ratios.append(np.asarray(gen, np.float64).std(0)[keep] / std_t[keep])
    flat = np.concatenate(ratios) if ratios else np.zeros(0)
    return float(flat.mean()) if flat.size else float("nan")
