"""MediaPipe Face Mesh on rendered or true frames, for the landmark metrics (LMD, blinks, sync).

:func:`face_mesh` runs :mod:`jaxhead.preprocess.mediapipe_worker` (in-process when MediaPipe
imports here, else under ``mediapipe_python`` / ``$JAXHEAD_MEDIAPIPE_PYTHON``: MediaPipe 0.10.14
needs its own interpreter); :func:`fill_gaps` interpolates over frames without a face.
"""

from __future__ import annotations

import math
import os
import pathlib
import tempfile

import cv2
import numpy as np

from jaxhead.preprocess import pipeline as preprocess_pipeline

NO_FACE_MESH = "no face-mesh environment configured"
FACE_MESH_MIN_SIDE = 256  # frames are upscaled to at least this side before Face Mesh


class FaceMeshUnavailable(RuntimeError):
    """No MediaPipe Face Mesh could be run; the message says why."""


def face_mesh(frames: np.ndarray, mediapipe_python: str | None = None) -> np.ndarray:
    """``[T, 478, 3]`` MediaPipe Face Mesh points of ``[T, H, W, 3]`` frames in [0, 1], in pixels
    of those frames (NaN where no face was found).

    Runs :mod:`jaxhead.preprocess.mediapipe_worker` in-process when MediaPipe imports here, else
    under ``mediapipe_python`` / ``$JAXHEAD_MEDIAPIPE_PYTHON``. Small frames are upscaled (bicubic)
    to ``FACE_MESH_MIN_SIDE`` first and the points scaled back. Raises `FaceMeshUnavailable`.
    """
    frames = np.asarray(frames, np.float32)
    height, width = frames.shape[1:3]
    factor = max(1, math.ceil(FACE_MESH_MIN_SIDE / min(height, width)))
    with tempfile.TemporaryDirectory(prefix="jaxhead-facemesh-") as tmp:
        folder = pathlib.Path(tmp) / "frames"
        folder.mkdir()
        for i, frame in enumerate(frames):
            rgb = np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)
            if factor > 1:
                rgb = cv2.resize(
                    rgb, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC
                )
            cv2.imwrite(
                os.fspath(folder / f"{i}.jpg"),
                cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 98],
            )
        out = pathlib.Path(tmp) / "mesh.npz"
        try:
            preprocess_pipeline.run_mediapipe(
                folder, out, pathlib.Path(tmp) / "segmentation", mediapipe_python
            )
        except Exception as error:  # noqa: BLE001 - any failure: the metric is not computed
            raise FaceMeshUnavailable(f"{NO_FACE_MESH} ({str(error).splitlines()[0]})") from error
        with np.load(out) as data:
            points = np.asarray(data["landmarks"], np.float32)
            found = np.asarray(data["found"], bool)
    points = points / factor
    points[~found] = np.nan
    return points


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames whose values are NaN (frames without a face)."""
    values = np.array(values, np.float64)
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.all():
        raise ValueError("no frame has a face")
    if bad.any():
        t = np.arange(len(values))
        flat = values.reshape(len(values), -1)
        for c in range(flat.shape[1]):
            flat[bad, c] = np.interp(t[bad], t[~bad], flat[~bad, c])
        values = flat.reshape(values.shape)
    return values
