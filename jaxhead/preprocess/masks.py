"""Head / neck / torso / background masks, the parsing images and the static background.

Per frame (`parse_frame`), from the Face Mesh points and MediaPipe's selfie-segmentation person
probability:

* **head** = the convex hull of the 478 Face Mesh points, plus the person pixels above the jaw
  line (the iBUG jaw contour 0-16; beyond its ends, halfway down from the end to the chin's
  level) within 30 % of the face's width to either side of it: hair and skull, which the face
  mesh does not cover.
* **neck** = the remaining person pixels under the jaw down to 0.6 face heights below the chin
  and within 0.35 face widths of the chin horizontally.
* **torso** = every other person pixel; **background** = the rest.

`parsing_image` paints them in the peers' colours as their PNG files hold them
(`jaxhead.data.video.PARSING_COLORS`, in the file's RGB: head blue, neck green, torso red,
background white: the peers paint head [255, 0, 0] and write the array with ``cv2.imwrite``, which
stores it as BGR); `write_parsing` writes such a file.

`background_image` is the static background ``bc.jpg``: the per-pixel median over up to
``max_frames`` frames of the pixels that are background with a margin (the person mask dilated by
``margin`` pixels); pixels never seen uncovered are filled by OpenCV's Telea inpainting.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from jaxhead.preprocess.landmarks import MEDIAPIPE_TO_IBUG68

BACKGROUND, HEAD, NECK, TORSO = 0, 1, 2, 3
# RGB as stored in the PNG (jaxhead.data.video.PARSING_COLORS).
LABEL_COLORS = {
    BACKGROUND: (255, 255, 255),
    HEAD: (0, 0, 255),
    NECK: (0, 255, 0),
    TORSO: (255, 0, 0),
}
# What preprocess.json records for parsing files in these colours (jaxhead.data.video reads it).
PARSING_CONVENTION = "peers"
JAW = MEDIAPIPE_TO_IBUG68[:17]


def parse_frame(
    person: np.ndarray, landmarks: np.ndarray | None, threshold: float = 0.5
) -> np.ndarray:
    """``[H, W]`` uint8 labels (BACKGROUND / HEAD / NECK / TORSO) of one frame.

    Args:
      person: ``[H, W]`` person probability in [0, 1] (selfie segmentation).
      landmarks: ``[478, >=2]`` Face Mesh points in pixels, or None / NaN when no face was found
        (then every person pixel is torso).
    """
    person = np.asarray(person, np.float32) >= threshold
    height, width = person.shape
    labels = np.where(person, TORSO, BACKGROUND).astype(np.uint8)
    if landmarks is None or not np.isfinite(landmarks[:, :2]).all():
        return labels
    points = np.asarray(landmarks[:, :2], np.float32)
    hull = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(points.round().astype(np.int32)), 1)
    hull = hull.astype(bool)
    jaw = points[JAW]
    order = np.argsort(jaw[:, 0])
    xs = np.arange(width, dtype=np.float32)
    chin = points[JAW[8]]
    jaw_y = np.interp(xs, jaw[order, 0], jaw[order, 1])
    # Beyond the jaw's ends (hair falling beside the face) the line drops halfway from the end's
    # height to the chin's (lower would take in raised shoulders).
    left, right = jaw[order[0]], jaw[order[-1]]
    jaw_y[xs < left[0]] = 0.5 * (left[1] + chin[1])
    jaw_y[xs > right[0]] = 0.5 * (right[1] + chin[1])
    face_w = float(points[:, 0].max() - points[:, 0].min())
    face_h = float(points[:, 1].max() - points[:, 1].min())
    yy = np.arange(height, dtype=np.float32)[:, None]
    band = (xs >= jaw[:, 0].min() - 0.3 * face_w) & (xs <= jaw[:, 0].max() + 0.3 * face_w)
    above = (yy < jaw_y[None, :]) & band[None, :]
    head = hull | (person & above)
    near_chin = (np.abs(xs - chin[0]) < 0.35 * face_w)[None, :]
    neck_zone = ~above & (yy < chin[1] + 0.6 * face_h) & near_chin
    labels[person & neck_zone] = NECK
    labels[head] = HEAD
    return labels


def parsing_image(labels: np.ndarray) -> np.ndarray:
    """``[H, W]`` labels -> ``[H, W, 3]`` RGB uint8 in the peers' parsing colours."""
    palette = np.zeros((256, 3), np.uint8)
    for label, color in LABEL_COLORS.items():
        palette[label] = color
    return palette[labels]


def write_parsing(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Writes ``parsing/<i>.png`` of ``[H, W]`` labels exactly as the peers' files are."""
    if not cv2.imwrite(os.fspath(path), cv2.cvtColor(parsing_image(labels), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def background_image(
    frames: list[np.ndarray], foreground: list[np.ndarray], margin: int = 15
) -> tuple[np.ndarray, float]:
    """Static background from frames and their foreground masks.

    Args:
      frames: ``[H, W, 3]`` uint8 images.
      foreground: ``[H, W]`` bool masks (person / head) of the same frames.
      margin: pixels the foreground is dilated by before a pixel counts as background.

    Returns:
      ``([H, W, 3] uint8 background, share of pixels that had to be inpainted)``.
    """
    if not frames:
        raise ValueError("no frames to build the background from")
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    stack = np.empty((len(frames), *frames[0].shape), np.float32)
    for i, (frame, fg) in enumerate(zip(frames, foreground, strict=True)):
        covered = cv2.dilate(fg.astype(np.uint8), kernel).astype(bool)
        stack[i] = np.where(covered[..., None], np.nan, frame.astype(np.float32))
    # Median over the frames that see the pixel: NaNs sort last, so the median of the n seen
    # values sits at sorted index (n - 1) // 2 (lower median); much faster than np.nanmedian.
    count = np.isfinite(stack).sum(0)
    seen = count[..., 0] > 0
    stack.sort(axis=0)
    middle = np.maximum(count - 1, 0)[None] // 2
    median = np.take_along_axis(stack, middle, axis=0)[0]
    median = np.where(seen[..., None], median, 0.0)
    background = np.clip(np.round(median), 0, 255).astype(np.uint8)
    unseen = (~seen).astype(np.uint8)
    if unseen.any() and seen.any():
        background = cv2.inpaint(background, unseen, 5, cv2.INPAINT_TELEA)
    return background, float(unseen.mean())


def overlay(image: np.ndarray, labels: np.ndarray, points: np.ndarray | None) -> np.ndarray:
    """A debug picture: the parsing colours blended over the frame and the 68 points drawn."""
    out = (0.6 * image + 0.4 * parsing_image(labels)).astype(np.uint8)
    if points is not None and np.isfinite(points).all():
        for x, y in points[:, :2]:
            cv2.circle(out, (int(round(x)), int(round(y))), 2, (255, 255, 0), -1)
    return out
