"""Head poses as cameras (AD-NeRF's convention: the head pose moves the camera in the head frame).

A pose ``[6]`` is an axis-angle rotation and a translation of the head in front of the frontal
world camera at distance ``distance`` (the median camera distance of the training frames,
:func:`frontal_distance`). :func:`posed_cameras` turns poses into the head-frame cameras the NeRF
renders with; :func:`head_poses` inverts it.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d

from jaxhead.data import head_model, raster


def frontal_distance(c2w: np.ndarray) -> float:
    """Median camera distance ``[T, 4, 4]`` cameras -> the frontal world camera's radius."""
    return float(np.median(np.linalg.norm(np.asarray(c2w)[:, :3, 3], axis=-1)))


def posed_cameras(pose: np.ndarray, distance: float) -> np.ndarray:
    """``[T, 4, 4]`` cameras in the head frame of head poses ``[T, 6]`` (axis-angle, translation)
    seen by the frontal world camera at ``distance``."""
    count = len(pose)
    world = raster.orbit_cameras(np.zeros(count), 0.0, distance)
    return np.stack(
        [head_model.camera_in_head_frame(c, p[:3], p[3:]) for c, p in zip(world, pose, strict=True)]
    ).astype(np.float32)


def head_poses(c2w: np.ndarray, distance: float) -> np.ndarray:
    """Inverse of :func:`posed_cameras`: ``[T, 4, 4]`` head-frame cameras -> ``[T, 6]`` poses."""
    count = len(c2w)
    world = raster.orbit_cameras(np.zeros(count), 0.0, distance)
    out = np.zeros((count, 6), np.float32)
    for t in range(count):
        pose = world[t] @ np.linalg.inv(np.asarray(c2w[t], np.float64))
        out[t, :3] = cv2.Rodrigues(pose[:3, :3])[0][:, 0]
        out[t, 3:] = pose[:3, 3]
    return out


def ping_pong(rows: np.ndarray, count: int) -> np.ndarray:
    """``count`` entries of ``rows`` played forwards then backwards, repeated (AD-NeRF replays
    its pose track so)."""
    cycle = np.concatenate([rows, rows[::-1]]) if len(rows) > 1 else rows
    return cycle[np.arange(count) % len(cycle)]


def recentered(pose: np.ndarray, rest: np.ndarray, window: int) -> np.ndarray:
    """``pose [T, 6]`` with its motion slower than ``window`` frames replaced by ``rest [6]``.

    ``rest + pose − MA(pose)``, ``MA`` the centred moving average over ``window`` frames (the
    edge frames repeated): a generated head that wanders off (an autoregressive generator with
    no absolute anchor, docs/gpvae.md) is brought back around the person's rest pose, where the
    NeRF was trained, while its motion faster than the window is kept. Per component (axis-angle
    rotation, translation: fine at a head's small angles). ``window <= 1``: ``pose`` unchanged.
    """
    pose = np.asarray(pose, np.float64)
    if window <= 1:
        return pose.astype(np.float32)
    slow = uniform_filter1d(pose, size=int(window), axis=0, mode="nearest")
    return (np.asarray(rest, np.float64) + pose - slow).astype(np.float32)
