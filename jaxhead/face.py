"""Face landmark layouts, their index sets and the eye-aspect ratio (pure NumPy).

One place for what several stages read from landmarks:

* the 68-point iBUG layout (face_alignment / dlib; AD-NeRF's ``ori_imgs/<i>.lms``): mouth
  :data:`MOUTH_68` (48-67: 12 outer + 8 inner lip points), eyes 36-47, outer eye corners
  :data:`EYE_CORNERS_68`, the nose point :data:`NOSE_TIP_68`;
* MediaPipe Face Mesh (468/478 points): :data:`MEDIAPIPE_TO_IBUG68`, the Face Mesh point closest
  to each iBUG point. The jaw, brows, lips and eyes are picked from Face Mesh's own contours
  (FACEMESH_FACE_OVAL, _LIPS, _LEFT/RIGHT_EYE, _LEFT/RIGHT_EYEBROW) so that left/right partners
  are Face Mesh's mirror pairs; the iBUG jaw (0-16) follows the face oval from the right ear
  (Face Mesh 234, image left) over the chin (8, Face Mesh 152) to the left ear (454). Face Mesh
  points are 3D surface points: on a turned head the far side of the jaw is not the visible
  silhouette a 2D iBUG detector would mark. :data:`MEDIAPIPE_MOUTH` are the 20 Face Mesh points
  of iBUG 48-67, :data:`MEDIAPIPE_LIPS` the 40 of FACEMESH_LIPS;
* :func:`eye_aspect_ratio`: Soukupová & Čech's EAR, ``(|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)``
  on the six iBUG points of each eye, measured on the 3D Face Mesh points (3D distances do not
  change with head rotation, so turning the head does not look like a blink), averaged over both
  eyes; :func:`blink_from_ear` normalises it to a blink signal in [0, 1];
* :func:`mouth_opening`: the inner-lip gap over the inter-ocular distance (Face Mesh).
"""

from __future__ import annotations

import numpy as np

MOUTH_68 = tuple(range(48, 68))
EYES_68 = tuple(range(36, 48))
EYE_CORNERS_68 = (36, 45)  # outer eye corners
NOSE_TIP_68 = 33  # a point the jaw does not move

# iBUG 68 index -> MediaPipe Face Mesh (468/478) index.
MEDIAPIPE_TO_IBUG68 = np.array([
    # jaw 0-16: right ear (image left) -> chin (8) -> left ear
    234, 93, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 323, 454,
    # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30 (top -> tip), nostrils 31-35 (image left -> right, 33 = subnasale)
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # outer lips 48-59: right corner, upper lip, 51 = top middle, left corner 54, lower lip
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # inner lips 60-67: right corner, upper x3, left corner, lower x3
    78, 81, 13, 311, 308, 402, 14, 178,
], np.int64)  # fmt: skip


MEDIAPIPE_MOUTH = tuple(int(i) for i in MEDIAPIPE_TO_IBUG68[48:68])
# MediaPipe FACEMESH_LIPS: outer contour from the image-left corner along the lower lip, back
# along the upper lip; then the inner contour the same way.
MEDIAPIPE_LIPS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)  # fmt: skip
MEDIAPIPE_EYE_CORNERS = (33, 263)  # outer eye corners
MEDIAPIPE_INNER_LIP = (13, 14)  # upper / lower inner-lip midpoints
RIGHT_EYE = MEDIAPIPE_TO_IBUG68[36:42]  # p1 ... p6 of EAR
LEFT_EYE = MEDIAPIPE_TO_IBUG68[42:48]


def to_ibug68(landmarks: np.ndarray) -> np.ndarray:
    """``[..., 478 | 468, C]`` Face Mesh points -> ``[..., 68, C]`` iBUG points."""
    landmarks = np.asarray(landmarks)
    if landmarks.shape[-2] < 468:
        raise ValueError(f"expected Face Mesh points [..., 468 or 478, C], got {landmarks.shape}")
    return landmarks[..., MEDIAPIPE_TO_IBUG68, :]


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """``[..., 478, C]`` points -> ``[...]`` mean EAR of both eyes (NaN where points are NaN)."""
    landmarks = np.asarray(landmarks, np.float64)

    def ear(eye):
        p = landmarks[..., eye, :]
        dist = lambda a, b: np.linalg.norm(p[..., a, :] - p[..., b, :], axis=-1)
        return (dist(1, 5) + dist(2, 4)) / np.maximum(2.0 * dist(0, 3), 1e-9)

    return 0.5 * (ear(RIGHT_EYE) + ear(LEFT_EYE))


def blink_from_ear(
    ear: np.ndarray, valid: np.ndarray | None = None, closed_ratio: float = 0.3
) -> tuple[np.ndarray, dict[str, float]]:
    """EAR ``[N]`` -> blink ``[N]`` in [0, 1] and the two reference EARs.

    ``open`` is the 90th percentile of the EAR over the valid frames (eyes are open most of the
    time), ``closed = closed_ratio * open``; ``blink = clip((open - ear) / (open - closed), 0, 1)``.
    Invalid (or NaN) frames get 0.
    """
    ear = np.asarray(ear, np.float64)
    valid = np.isfinite(ear) if valid is None else (np.asarray(valid, bool) & np.isfinite(ear))
    if not valid.any():
        raise ValueError("no valid frame to normalise the eye-aspect ratio on")
    if not 0.0 <= closed_ratio < 1.0:
        raise ValueError(f"closed_ratio must be in [0, 1), got {closed_ratio}")
    open_ear = float(np.percentile(ear[valid], 90))
    closed_ear = closed_ratio * open_ear
    blink = np.clip((open_ear - ear) / max(open_ear - closed_ear, 1e-9), 0.0, 1.0)
    blink = np.where(valid, blink, 0.0).astype(np.float32)
    return blink, {"open_ear": open_ear, "closed_ear": closed_ear}


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """``[T, 478, C]`` Face Mesh points -> ``[T]`` inner-lip gap over the inter-ocular distance."""
    points = np.asarray(points, np.float64)[..., :2]
    upper, lower = MEDIAPIPE_INNER_LIP
    gap = np.linalg.norm(points[:, upper] - points[:, lower], axis=-1)
    left, right = MEDIAPIPE_EYE_CORNERS
    iod = np.linalg.norm(points[:, left] - points[:, right], axis=-1)
    return gap / np.maximum(iod, 1e-9)
