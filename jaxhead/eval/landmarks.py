"""Landmark distance (LMD, Chen et al. 2018 — paper 000 ref. [43]). Pure NumPy functions.

LMD is the mean Euclidean distance between the mouth landmarks of the rendered frames and those
of the ground-truth frames, both found by the same tracker (here MediaPipe's face mesh, see
``scripts/preprocess.py``)::

    LMD = 1/(T·L) Σ_t Σ_l ‖p̂_{t,l} − p_{t,l}‖₂

**The LMD of the evaluation tables** (``"lmd"`` of :func:`mouth_lmd`, :func:`peer_lmd`) is the one
of RAD-NeRF's / ER-NeRF's ``LMDMeter``, which the talking-head NeRF papers report: per frame, the
mouth points (68-point 48-67) of each side are first centred on their own mean, then the mean
point distance is taken in pixels of the evaluated frames; the result is the mean over frames.
Centring removes where the mouth is and keeps its shape (and opening). Beside it, ours:

A pixel value depends on the frame size, and papers rarely say theirs, so :func:`mouth_lmd` reports
the uncentred distance (Chen et al.'s) two ways:

* ``lmd_px``: in pixels of the frames the landmarks were measured on (``image_size`` is stored
  beside it), and ``lmd_px_at`` rescaled to a stated reference height (default 512 px, the
  AD-NeRF / ER-NeRF crop; a distance scales linearly with the frame size);
* ``lmd_iod``: each frame's mean distance divided by that frame's *ground-truth* inter-ocular
  distance (outer eye corners, the 300-W convention), averaged over frames — free of the frame
  size and of how large the face appears. Multiply by 100 for "% of the eye distance".

Optionally (``align="centroid"``) each frame's mouth is translated so both mouths share their
centroid before comparing: the distance then measures lip *shape* only, not where the mouth is
(which, with a replayed head pose, mostly reflects the pose). The default compares positions as
they are, as Chen et al. do.

Index sets (``[L]`` indices into a frame's landmarks):

* 68-point (iBUG 300-W / dlib / face-alignment): mouth = points 48-67 (:data:`MOUTH_68`, 12 outer
  + 8 inner lip points); outer eye corners 36 and 45 (:data:`EYE_CORNERS_68`).
* MediaPipe face mesh (468 points, 478 with ``refine_landmarks``): :data:`MOUTH_MEDIAPIPE` are the
  20 points corresponding to the 68-point mouth (shared with the sync stage,
  :data:`jaxhead.face.MEDIAPIPE_MOUTH`), so LMDs from both trackers compare the same lip
  points; :data:`LIPS_MEDIAPIPE` are all 40 points of MediaPipe's lip contours (``FACEMESH_LIPS``:
  20 outer, 20 inner) for a denser measure; outer eye corners 33 and 263
  (:data:`EYE_CORNERS_MEDIAPIPE`). MediaPipe returns coordinates normalised to ``[0, 1]``:
  convert with :func:`to_pixels` first.
"""

from __future__ import annotations

import numpy as np

from jaxhead.face import MEDIAPIPE_MOUTH

__all__ = [
    "MOUTH_68",
    "EYE_CORNERS_68",
    "MOUTH_MEDIAPIPE",
    "LIPS_MEDIAPIPE",
    "EYE_CORNERS_MEDIAPIPE",
    "LAYOUTS",
    "to_pixels",
    "point_distances",
    "interocular_distance",
    "lmd",
    "peer_lmd",
    "mouth_lmd",
]

MOUTH_68 = tuple(range(48, 68))
EYE_CORNERS_68 = (36, 45)
MOUTH_MEDIAPIPE = tuple(MEDIAPIPE_MOUTH)
# MediaPipe FACEMESH_LIPS: outer contour from the image-left corner along the lower lip, back
# along the upper lip; then the inner contour the same way.
LIPS_MEDIAPIPE = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)  # fmt: skip
EYE_CORNERS_MEDIAPIPE = (33, 263)
# layout name -> (points per frame, mouth indices, outer eye corners)
LAYOUTS = {
    "68": (68, MOUTH_68, EYE_CORNERS_68),
    "mediapipe": (478, MOUTH_MEDIAPIPE, EYE_CORNERS_MEDIAPIPE),
    "mediapipe_lips": (478, LIPS_MEDIAPIPE, EYE_CORNERS_MEDIAPIPE),
}
DEFAULT_REFERENCE_HEIGHT = 512


def _points(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 3 or x.shape[-1] != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be [T, L, 2] landmarks with T >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds non-finite landmarks (frames where no face was found?)")
    return x


def to_pixels(normalised, image_size: tuple[int, int]) -> np.ndarray:
    """``[..., 2]`` MediaPipe ``(x, y)`` in ``[0, 1]`` -> pixels of an ``(H, W)`` frame."""
    height, width = image_size
    return np.asarray(normalised, np.float64)[..., :2] * np.array([width, height], np.float64)


def point_distances(pred, target, align: str = "none") -> np.ndarray:
    """``[T, L, 2]`` x2 -> ``[T, L]`` Euclidean distance of each landmark.

    ``align="centroid"`` first subtracts each frame's centroid from both point sets.
    """
    pred, target = _points(pred, "pred"), _points(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} landmarks differ in shape")
    if align == "centroid":
        pred = pred - pred.mean(axis=1, keepdims=True)
        target = target - target.mean(axis=1, keepdims=True)
    elif align != "none":
        raise ValueError(f"align must be 'none' or 'centroid', got {align!r}")
    return np.linalg.norm(pred - target, axis=-1)


def interocular_distance(landmarks, eye_corners: tuple[int, int]) -> np.ndarray:
    """``[T, N, 2]`` full landmark sets -> ``[T]`` distance between the two outer eye corners."""
    landmarks = _points(landmarks, "landmarks")
    left, right = eye_corners
    return np.linalg.norm(landmarks[:, left] - landmarks[:, right], axis=-1)


def lmd(pred, target, align: str = "none") -> float:
    """Mean landmark distance of ``[T, L, 2]`` point sets, in their units (module docstring)."""
    return float(np.mean(point_distances(pred, target, align)))


def peer_lmd(pred_mouth, target_mouth) -> float:
    """RAD-NeRF / ER-NeRF's LMD of ``[T, L, 2]`` mouth points: each frame's points centred on their
    mean, mean point distance per frame, mean over frames (in the points' units)."""
    return lmd(pred_mouth, target_mouth, align="centroid")


def mouth_lmd(
    pred,
    target,
    image_size: tuple[int, int],
    layout: str = "mediapipe",
    reference_height: int = DEFAULT_REFERENCE_HEIGHT,
    align: str = "none",
) -> dict:
    """Mouth LMD of full landmark sets in pixels, rescaled, and over the inter-ocular distance.

    Args:
      pred: ``[T, N, 2]`` landmarks of the rendered frames, ``(x, y)`` pixels.
      target: ``[T, N, 2]`` landmarks of the ground-truth frames.
      image_size: ``(H, W)`` of the frames the landmarks were measured on.
      layout: ``"68"``, ``"mediapipe"`` (20 mouth points) or ``"mediapipe_lips"`` (40), see
        :data:`LAYOUTS`; MediaPipe sets may have 468 or 478 points.
      reference_height: frame height ``lmd_px_at`` is rescaled to.
      align: ``"none"`` or ``"centroid"`` (module docstring).

    Returns:
      ``{"lmd", "lmd_at", "lmd_px", "lmd_px_at", "reference_height", "lmd_iod", "image_size",
      "frames", "points", "layout", "align"}``: ``lmd`` is the peers' (centred, pixels; the
      number to put beside RAD-NeRF / ER-NeRF tables), ``lmd_at`` it at ``reference_height``;
      the ``lmd_px*`` / ``lmd_iod`` values are ours with ``align`` (module docstring).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown landmark layout {layout!r}; use one of {sorted(LAYOUTS)}")
    count, mouth, eyes = LAYOUTS[layout]
    pred, target = _points(pred, "pred"), _points(target, "target")
    allowed = (468, 478) if layout.startswith("mediapipe") else (count,)
    for name, x in (("pred", pred), ("target", target)):
        if x.shape[1] not in allowed:
            raise ValueError(
                f"{name} has {x.shape[1]} points per frame; layout {layout!r} needs {allowed}"
            )
    if pred.shape[0] != target.shape[0]:
        raise ValueError(f"pred has {pred.shape[0]} frames, target {target.shape[0]}")
    mouth = list(mouth)
    per_frame = point_distances(pred[:, mouth], target[:, mouth], align).mean(axis=1)
    iod = interocular_distance(target, eyes)
    if np.any(iod <= 0):
        raise ValueError("a ground-truth frame has coincident eye corners (degenerate landmarks)")
    height = int(image_size[0])
    peers = peer_lmd(pred[:, mouth], target[:, mouth])
    return {
        "lmd": peers,
        "lmd_at": float(peers * reference_height / height),
        "lmd_px": float(per_frame.mean()),
        "lmd_px_at": float(per_frame.mean() * reference_height / height),
        "reference_height": int(reference_height),
        "lmd_iod": float(np.mean(per_frame / iod)),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "frames": int(pred.shape[0]),
        "points": len(mouth),
        "layout": layout,
        "align": align,
    }
