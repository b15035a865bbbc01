"""Head pose from Face Mesh landmarks, without any 3D face model (pure NumPy + cv2.solvePnP).

1. **The person's own 3D shape** (`canonical_shape`): a generalised Procrustes analysis of the
   per-frame 3D Face Mesh points (similarity alignment to the running mean, 5 rounds). Points that
   move relative to the skull (lips, jaw, lids) are then left out: the half of the points with the
   smallest residual scatter after alignment form the *rigid set*, and the analysis is repeated
   aligning on that set only. The mean is turned to the face's own frontal orientation (x from
   the right to the left outer eye corner, y from the chin (152) to the forehead (10)) and
   expressed in metres by setting the outer eye corners' distance (Face Mesh 33 / 263) to
   `EYE_CORNER_DISTANCE` = 0.09 m (an adult average; it only sets the world's scale), with the
   y axis up, z out of the face, and the origin 5 cm behind the centroid of the rigid set
   (inside the head, where a head NeRF wants its centre).
2. **Per-frame rigid pose** (`solve_poses`): ``cv2.solvePnP`` of the rigid set's 2D pixel
   positions against the shape with a pinhole camera ``(f, f, W/2, H/2)``, each frame started
   from the previous one.
3. **Focal length** (`estimate_focal`): Face Mesh's x, y are image positions and its z a depth
   in the same pixel scale, so under a pinhole of focal f a point at relative depth z lies at
   ``(x - cx) (1 + z / f)`` (`unproject`). For each candidate f the shape of step 1 is rebuilt
   from the points read that way and the poses of up to 60 frames spread over the video are
   solved against it; the focal with the lowest median reprojection error wins (log grid from
   0.5 W to 8 W, then golden-section refinement; AD-NeRF's face tracker also picks its focal by
   search). Faces are shallow, so the curve can be flat; the estimate and the curve are
   recorded, and ``--focal`` fixes it. Steps 1-2 then use the chosen focal.
4. **Smoothing** (`smooth_poses`): a zero-phase Gaussian filter over time (``sigma`` frames,
   default 1.5 = 60 ms at 25 fps, kernel truncated at 3 sigma) applied to the translations and
   to the rotations as sign-aligned quaternions (weighted mean, renormalised). Frames without a
   face get weight 0, so they neither pull their neighbours nor shift any frame.
5. **Cameras** (`camera_to_world`): the head is the world; each frame's camera is the inverse of
   the head's pose, in the OpenGL convention AD-NeRF / RAD-NeRF / ER-NeRF and
   `jaxhead.data.video` use (camera x right, y up, looking along -z).
"""

from __future__ import annotations

import cv2
import numpy as np

EYE_CORNER_DISTANCE = 0.09  # metres between the outer eye corners (sets the world scale)
HEAD_CENTRE_DEPTH = 0.05  # metres from the face's rigid-point centroid back to the origin
CV_TO_GL = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes (y down, z forward) <-> OpenGL
OUTER_EYES = (33, 263)  # Face Mesh outer eye corners (image left, image right)
CHIN_FOREHEAD = (152, 10)  # Face Mesh chin and forehead midline points


def umeyama(src: np.ndarray, dst: np.ndarray, scale: bool = True):
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991).

    Args:
      src, dst: ``[P, D]`` corresponding points.

    Returns:
      ``(s, R [D, D], t [D])`` with ``det R = +1``.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(len(sig))
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var = (a**2).sum() / len(src)
    s = float((sig * d).sum() / var) if scale else 1.0
    return s, rot, mu_d - s * rot @ mu_s


def _procrustes_mean(points: np.ndarray, subset: np.ndarray, rounds: int = 5):
    """Generalised Procrustes mean of ``points [N, P, 3]`` aligned on ``subset`` points."""
    mean = points[0]
    for _ in range(rounds):
        aligned = np.empty_like(points)
        for i, frame in enumerate(points):
            s, rot, t = umeyama(frame[subset], mean[subset])
            aligned[i] = s * frame @ rot.T + t
        mean = aligned.mean(0)
        mean = mean - mean[subset].mean(0)
        mean = mean / np.sqrt((mean[subset] ** 2).sum(1).mean())
    return mean, aligned


def unproject(points: np.ndarray, focal: float, width: int, height: int) -> np.ndarray:
    """Face Mesh pixel points ``[..., 3]`` (x, y, z) -> 3D points for a pinhole of ``focal``.

    Face Mesh gives image positions x, y and a depth z in the same pixel scale (relative to the
    head). Under a pinhole camera a point at relative depth z sits at ``(x - cx) (1 + z / f)``,
    ``(y - cy) (1 + z / f)`` in units of pixels at the head's depth; with ``f -> infinity`` this
    is the orthographic reading of the points.
    """
    points = np.asarray(points, np.float64)
    grow = 1.0 + points[..., 2:3] / focal
    centre = np.array([width / 2, height / 2])
    return np.concatenate([(points[..., :2] - centre) * grow, points[..., 2:3]], axis=-1)


def canonical_shape(
    points: np.ndarray,
    rigid_fraction: float = 0.5,
    max_frames: int = 400,
    rigid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The person's mean 3D landmark shape and its rigid point set.

    Args:
      points: ``[N, P, 3]`` Face Mesh points of the frames with a face (image-like axes: x right,
        y down, z away from the camera; any consistent unit).
      rigid_fraction: share of points kept as the rigid set.
      max_frames: frames used (evenly spread) to bound the cost.
      rigid: the rigid set to align on (skips choosing it).

    Returns:
      ``(shape [P, 3] in metres, world axes y up / z out of the face, rigid [K] indices)``.
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 3 or points.shape[-1] != 3 or len(points) == 0:
        raise ValueError(f"expected [N, P, 3] points with N >= 1, got {points.shape}")
    if len(points) > max_frames:
        points = points[np.linspace(0, len(points) - 1, max_frames).round().astype(int)]
    if rigid is None:
        everything = np.arange(points.shape[1])
        mean, aligned = _procrustes_mean(points, everything)
        scatter = np.sqrt(((aligned - mean) ** 2).sum(-1).mean(0))  # [P]
        keep = max(4, int(round(rigid_fraction * points.shape[1])))
        rigid = np.sort(np.argsort(scatter)[:keep])
    mean, _ = _procrustes_mean(points, rigid)
    if points.shape[1] > max(OUTER_EYES + CHIN_FOREHEAD):
        mean = mean @ _face_axes(mean)  # the face's own frontal orientation
    shape = mean @ CV_TO_GL.T  # image-like axes -> y up, z towards the camera
    if points.shape[1] > max(OUTER_EYES):
        eyes = np.linalg.norm(shape[OUTER_EYES[0]] - shape[OUTER_EYES[1]])
        shape = shape * (EYE_CORNER_DISTANCE / eyes)
    shape = shape - shape[rigid].mean(0) + np.array([0.0, 0.0, HEAD_CENTRE_DEPTH])
    return shape, rigid


def _face_axes(points: np.ndarray) -> np.ndarray:
    """``[3, 3]`` columns: the face's right (eye corner to eye corner), down (forehead to chin,
    orthogonalised) and into-the-head directions, in image-like axes."""
    right = points[OUTER_EYES[1]] - points[OUTER_EYES[0]]
    right /= np.linalg.norm(right)
    down = points[CHIN_FOREHEAD[0]] - points[CHIN_FOREHEAD[1]]
    down -= right * (down @ right)
    down /= np.linalg.norm(down)
    return np.stack([right, down, np.cross(right, down)], axis=1)


def intrinsics(focal: float, width: int, height: int) -> np.ndarray:
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)


def solve_poses(
    shape: np.ndarray, points2d: np.ndarray, focal: float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame head pose by PnP: ``x_cam = R x_world + t`` (OpenCV camera axes).

    Args:
      shape: ``[P, 3]`` world points (metres).
      points2d: ``[N, P, 2]`` pixels; a frame with any NaN is skipped.

    Returns:
      ``(R [N, 3, 3], t [N, 3], rmse [N])`` (NaN for skipped frames).
    """
    shape = np.ascontiguousarray(shape, np.float64)
    k = intrinsics(focal, width, height)
    num = len(points2d)
    rots = np.full((num, 3, 3), np.nan)
    trans = np.full((num, 3), np.nan)
    rmse = np.full(num, np.nan)
    rvec = tvec = None
    for i in range(num):
        image = np.ascontiguousarray(points2d[i], np.float64)
        if not np.isfinite(image).all():
            continue
        if rvec is None:
            ok, rvec, tvec = cv2.solvePnP(shape, image, k, None, flags=cv2.SOLVEPNP_SQPNP)
        else:
            ok, rvec, tvec = cv2.solvePnP(
                shape, image, k, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE
            )
        if not ok:
            rvec = tvec = None
            continue
        projected, _ = cv2.projectPoints(shape, rvec, tvec, k, None)
        rmse[i] = np.sqrt(((projected[:, 0] - image) ** 2).sum(-1).mean())
        rots[i] = cv2.Rodrigues(rvec)[0]
        trans[i] = tvec[:, 0]
    return rots, trans, rmse


def estimate_focal(
    points: np.ndarray,
    rigid: np.ndarray,
    width: int,
    height: int,
    max_frames: int = 60,
    bounds: tuple[float, float] = (0.5, 8.0),
) -> tuple[float, dict[float, float]]:
    """Focal (pixels) with the lowest median PnP reprojection error, and the searched curve.

    For each candidate focal the person's shape is rebuilt from the points read under that
    pinhole (`unproject`, `canonical_shape` on the ``rigid`` set) and every sampled frame's pose
    solved against it: too short a focal over-corrects perspective, too long a one leaves it in
    the shape, and both raise the reprojection error. The search is a log grid over
    ``bounds`` times the width, refined by golden-section search around the best grid point.

    Args:
      points: ``[N, P, 3]`` Face Mesh pixel points of frames with a face.
    """
    points = np.asarray(points, np.float64)
    if not len(points):
        raise ValueError("no frame with landmarks to estimate the focal length on")
    sample = points[np.linspace(0, len(points) - 1, min(max_frames, len(points))).astype(int)]
    curve: dict[float, float] = {}

    def error(focal: float) -> float:
        if focal not in curve:
            shape, _ = canonical_shape(unproject(sample, focal, width, height), rigid=rigid)
            rmse = solve_poses(shape[rigid], sample[:, rigid, :2], focal, width, height)[2]
            curve[focal] = float(np.nanmedian(rmse))
        return curve[focal]

    grid = width * np.geomspace(bounds[0], bounds[1], 13)
    best = int(np.argmin([error(f) for f in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    for _ in range(8):  # golden-section search in log focal between the best's neighbours
        a, b = np.log(lo), np.log(hi)
        c, d = b - 0.618 * (b - a), a + 0.618 * (b - a)
        if error(float(np.exp(c))) < error(float(np.exp(d))):
            hi = np.exp(d)
        else:
            lo = np.exp(c)
    focal = min(curve, key=curve.get)
    return float(focal), dict(sorted(curve.items()))


def rotation_to_quaternion(rots: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` -> ``[N, 4]`` (w, x, y, z) unit quaternions."""
    rots = np.asarray(rots, np.float64)
    out = np.empty((len(rots), 4))
    for i, r in enumerate(rots):
        tr = np.trace(r)
        if tr > 0:
            s = 2.0 * np.sqrt(tr + 1.0)
            q = [
                0.25 * s,
                (r[2, 1] - r[1, 2]) / s,
                (r[0, 2] - r[2, 0]) / s,
                (r[1, 0] - r[0, 1]) / s,
            ]
        else:
            j = int(np.argmax(np.diag(r)))
            k, l = (j + 1) % 3, (j + 2) % 3
            s = 2.0 * np.sqrt(1.0 + r[j, j] - r[k, k] - r[l, l])
            q = np.empty(4)
            q[0] = (r[l, k] - r[k, l]) / s
            q[1 + j] = 0.25 * s
            q[1 + k] = (r[k, j] + r[j, k]) / s
            q[1 + l] = (r[l, j] + r[j, l]) / s
        out[i] = q
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def quaternion_to_rotation(quat: np.ndarray) -> np.ndarray:
    """``[N, 4]`` (w, x, y, z) -> ``[N, 3, 3]``."""
    q = np.asarray(quat, np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def gaussian_smooth(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian filter of ``[N, D]`` over axis 0, weighting invalid rows 0.

    Normalised convolution: each output is the Gaussian-weighted mean of the valid rows within
    3 sigma; rows with no valid neighbour keep their input. ``sigma <= 0`` returns the input.
    """
    values = np.asarray(values, np.float64)
    if sigma <= 0:
        return values.copy()
    radius = max(1, int(np.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weight = np.asarray(valid, np.float64)
    filled = np.where(weight[:, None] > 0, values, 0.0)
    num = np.stack([np.convolve(filled[:, d], kernel, "same") for d in range(values.shape[1])], 1)
    den = np.convolve(weight, kernel, "same")[:, None]
    return np.where(den > 1e-12, num / np.maximum(den, 1e-12), values)


def smooth_poses(
    rots: np.ndarray, trans: np.ndarray, valid: np.ndarray, sigma: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian smoothing of rotations (sign-aligned quaternions) and translations over time."""
    valid = np.asarray(valid, bool)
    rots = np.where(valid[:, None, None], rots, np.eye(3))
    trans = np.where(valid[:, None], trans, 0.0)
    quat = rotation_to_quaternion(rots)
    for i in range(1, len(quat)):  # q and -q are the same rotation: keep neighbours on one side
        if np.dot(quat[i], quat[i - 1]) < 0:
            quat[i] = -quat[i]
    quat = gaussian_smooth(quat, valid, sigma)
    return quaternion_to_rotation(quat), gaussian_smooth(trans, valid, sigma)


def camera_to_world(rots: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Head poses ``x_cv = R x + t`` -> ``[N, 4, 4]`` OpenGL camera-to-world matrices."""
    num = len(rots)
    w2c = np.tile(np.eye(4), (num, 1, 1))
    w2c[:, :3, :3] = CV_TO_GL @ rots
    w2c[:, :3, 3] = trans @ CV_TO_GL.T
    c2w = np.tile(np.eye(4), (num, 1, 1))
    c2w[:, :3, :3] = np.transpose(w2c[:, :3, :3], (0, 2, 1))
    c2w[:, :3, 3] = -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])
    return c2w


def project_opengl(
    points: np.ndarray, c2w: np.ndarray, focal: float, width: int, height: int
) -> np.ndarray:
    """World points ``[P, 3]`` seen by OpenGL cameras ``[N, 4, 4]`` -> pixels ``[N, P, 2]``.

    The reading a NeRF makes of the cameras (camera x right, y up, looking along -z; pixel
    ``(cx + f x / -z, cy - f y / -z)``), so comparing it with the landmarks checks the whole
    chain from the pose solve to the transforms file.
    """
    w2c = np.linalg.inv(np.asarray(c2w, np.float64))
    cam = np.einsum("nij,pj->npi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    depth = -cam[..., 2]
    u = width / 2 + focal * cam[..., 0] / depth
    v = height / 2 - focal * cam[..., 1] / depth
    return np.stack([u, v], -1)


def rotation_angles(rots: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` -> ``[N, 3]`` (pitch, yaw, roll) in degrees (x, y, z Euler, world axes)."""
    r = np.asarray(rots, np.float64)
    pitch = np.degrees(np.arctan2(r[:, 2, 1], r[:, 2, 2]))
    yaw = np.degrees(np.arcsin(np.clip(-r[:, 2, 0], -1.0, 1.0)))
    roll = np.degrees(np.arctan2(r[:, 1, 0], r[:, 0, 0]))
    return np.stack([pitch, yaw, roll], -1)


def angular_steps(rots: np.ndarray) -> np.ndarray:
    """``[N - 1]`` rotation angle (degrees) between consecutive rotations."""
    rel = np.einsum("nji,njk->nik", rots[:-1], rots[1:])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos))
