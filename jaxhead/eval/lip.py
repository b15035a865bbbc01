"""Lip-region scores of rendered frames against the truth (pure NumPy; paper 000 table 2).

* :func:`mouth_box`: the box around the true lip landmarks (68-point layout), where
  ``mouth_psnr`` / ``mouth_l1`` are measured;
* :func:`motion_box` + :func:`mouth_darkness`: how open a mouth looks, in a box fixed to the head
  (not to the lips, which move with the jaw), for ``mouth_motion_r``: does the rendered mouth open
  and close with the true one;
* :func:`lip_region_frame` scores one frame, :func:`lip_region_summary` held-out sequences;
* :func:`opening_agreement`: how far a rendered mouth-opening trace follows the true one, and
  whether its amplitude is what its correlation warrants.

Definitions and measurements: docs/video.md, docs/nerf_ablation.md.
"""

from __future__ import annotations

import numpy as np

from jaxhead.eval.image import psnr_from_mse
from jaxhead.face import EYE_CORNERS_68, MOUTH_68, NOSE_TIP_68


def _mean_psnr(frames) -> float:
    """Mean over frames of the PSNR of each frame's lip-box MSE (``frame[0]``)."""
    return float(np.mean(np.asarray(psnr_from_mse(np.asarray([f[0] for f in frames], np.float32)))))


def mouth_box(landmarks: np.ndarray, height: int, width: int, margin: float = 0.3) -> np.ndarray:
    """``[H, W]`` bool: the box around the 68-point layout's lip points, widened on every side
    by ``margin`` x the mouth width (the "lip region" of paper 000 table 2's lip error)."""
    lips = np.asarray(landmarks, np.float64)[list(MOUTH_68)]
    lo, hi = lips.min(0), lips.max(0)
    pad = margin * (hi[0] - lo[0])
    return _box_mask(lo - pad, hi + pad, height, width)


def _box_mask(lo, hi, height: int, width: int) -> np.ndarray:
    """``[H, W]`` bool, True inside the pixel box from ``lo`` to ``hi`` (x, y), clipped."""
    x0, y0 = np.floor(np.maximum(lo, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(hi, [width, height])).astype(int)
    box = np.zeros((height, width), bool)
    box[y0:y1, x0:x1] = True
    return box


def motion_box(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W]`` bool: a box over the mouth and chin fixed to the head, not to the lips.

    Anchored at the nose tip and sized by the outer-eye-corner distance ``d`` (x within
    ±0.45 d of the nose tip, y from 0.1 d to 0.8 d below it), so it moves with the head only:
    a box around the true lip points would grow as the true jaw opens and make a static render's
    brightness in it follow the truth.
    """
    points = np.asarray(landmarks, np.float64)
    nose = points[NOSE_TIP_68]
    d = float(np.linalg.norm(points[EYE_CORNERS_68[1]] - points[EYE_CORNERS_68[0]]))
    return _box_mask(nose + [-0.45 * d, 0.1 * d], nose + [0.45 * d, 0.8 * d], height, width)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denom) if denom > 1e-12 else 0.0


def mouth_darkness(image: np.ndarray, box: np.ndarray, fraction: float = 0.7) -> float:
    """How open the mouth in ``box`` looks: the mean shortfall of the pixels' luminance below
    ``fraction`` x the box's median luminance (the skin), relative to that level; 0 when nothing
    is darker. The open mouth's interior is far darker than the skin around it, and the measure
    is relative to the skin's own brightness, so head pose and lighting (which scale the whole
    box) barely move it: on the synthetic held-out sentences the truth's follows the true jaw
    opening at r = 0.95 per sentence (the box's plain mean brightness: 0.81, and a static render's
    mean brightness follows the truth's at 0.3 through head pose alone)."""
    luma = np.asarray(image, np.float64)[box] @ np.array([0.299, 0.587, 0.114])
    level = fraction * float(np.median(luma)) if luma.size else 0.0
    if level <= 1e-6:
        return 0.0
    return float(np.mean(np.maximum(level - luma, 0.0)) / level)


def lip_region_frame(
    pred, truth, landmarks, opening: float | None = None
) -> tuple[float, float, float, float, float]:
    """One frame ``[H, W, 3]``: ``(mse, l1)`` in its :func:`mouth_box` (the true lip landmarks
    ``[68, 2]``), the rendered and the true :func:`mouth_darkness` in its head-fixed
    :func:`motion_box`, and the frame's true mouth opening (``opening``: the synthetic data's
    jaw parameter; NaN when unknown, as for real videos)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    box = mouth_box(landmarks, *truth.shape[:2])
    diff = (pred - truth)[box]
    still = motion_box(landmarks, *truth.shape[:2])
    return (
        float(np.mean(np.square(diff))),
        float(np.mean(np.abs(diff))),
        mouth_darkness(pred, still),
        mouth_darkness(truth, still),
        float("nan") if opening is None else float(opening),
    )


OPEN_JAW = 0.5  # jaw parameter of the synthetic generator from which a frame counts as open


def lip_region_summary(sequences) -> dict[str, float]:
    """The lip-region scores of held-out sequences, each a list of :func:`lip_region_frame`
    tuples: ``mouth_psnr`` / ``mouth_l1`` (mean over frames) and ``mouth_motion_r``, the Pearson
    correlation over a sequence's frames of the rendered :func:`mouth_darkness` with the true
    mouth opening (the jaw parameter where the frames carry it, ``mouth_motion_reference =
    "jaw_open"``; else the true frames' darkness, ``"truth"``), averaged over sequences of > 2
    frames: 1 when the rendered mouth opens and closes with the true one, ~0 when it does not
    move with it. ``mouth_motion_r_truth``: the same for the true frames against the jaw
    parameter (the measure's ceiling; synthetic data only). ``mouth_psnr_open``: the lip PSNR
    over the frames whose true jaw opening is at least :data:`OPEN_JAW` (``open_frames`` of
    them): a mouth that never opens is right on the many near-closed frames and wrong only on
    these."""
    frames = [f for seq in sequences for f in seq]
    if not frames:
        return {}
    seqs = [np.asarray(seq, np.float64) for seq in sequences if len(seq) > 2]
    jaw = bool(seqs) and all(np.isfinite(seq[:, 4]).all() for seq in seqs)
    reference = 4 if jaw else 3
    motion = [_correlation(seq[:, 2], seq[:, reference]) for seq in seqs]
    out = {
        "mouth_psnr": _mean_psnr(frames),
        "mouth_l1": float(np.mean([f[1] for f in frames])),
        "mouth_motion_r": float(np.mean(motion)) if motion else float("nan"),
        "mouth_motion_reference": "jaw_open" if jaw else "truth",
    }
    if jaw:
        out["mouth_motion_r_truth"] = float(
            np.mean([_correlation(seq[:, 3], seq[:, 4]) for seq in seqs])
        )
        opened = [f for f in frames if f[4] >= OPEN_JAW]
        if opened:
            out["mouth_psnr_open"] = _mean_psnr(opened)
            out["open_frames"] = len(opened)
    return out


def opening_agreement(pred, truth) -> dict[str, float | int]:
    """How a rendered mouth-opening trace ``[T]`` follows the true one ``[T]`` (e.g. Face Mesh's
    inner-lip gap over the eye distance, :func:`jaxhead.face.mouth_opening`); frames where
    either is not finite are left out.

    ``r``: their Pearson correlation; ``std_ratio``: the rendered trace's standard deviation
    over the truth's (how wide the render opens and closes); ``slope``: the least-squares slope
    of the truth on the render. A render that predicts the opening as well as its inputs allow
    (the truth's mean given the render) has ``slope`` 1 and so ``std_ratio`` = ``r``: with
    ``r`` < 1 it opens less wide than the truth, and opening it wider without raising ``r``
    would make it worse. ``slope`` < 1 means the render moves more than its correlation
    warrants, > 1 less. NaN (and ``frames``) when fewer than 3 frames or a constant trace.
    """
    pred = np.asarray(pred, np.float64).ravel()
    truth = np.asarray(truth, np.float64).ravel()
    if pred.shape != truth.shape:
        raise ValueError(f"opening traces differ in length: {pred.shape} vs {truth.shape}")
    ok = np.isfinite(pred) & np.isfinite(truth)
    pred, truth = pred[ok], truth[ok]
    out = {"r": float("nan"), "std_ratio": float("nan"), "slope": float("nan")}
    if pred.size >= 3 and np.ptp(pred) > 0 and np.ptp(truth) > 0:
        r = _correlation(pred, truth)
        ratio = float(pred.std() / truth.std())
        out.update(r=r, std_ratio=ratio, slope=r / ratio)
    out["frames"] = int(pred.size)
    return out
