"""MediaPipe per-frame work: Face Mesh landmarks (478 points, refined irises) and selfie
segmentation.

This module is the only part of jaxhead that imports MediaPipe, and it imports nothing else of
jaxhead (only the standard library, NumPy, OpenCV and MediaPipe), so that it can run under a
separate interpreter: ``mediapipe==0.10.14`` (the last release that ships its models in the
wheel) needs protobuf < 5, while grain needs protobuf >= 5.28, so the two never share one
environment. See docs/preprocess.md for the commands that make that environment.

Run it as::

    PYTHON -m jaxhead.preprocess.mediapipe_worker --frames DIR --out FILE [--segmentation DIR]

``DIR`` holds the frames as ``<i>.jpg`` (``i`` = 0, 1, ...). ``FILE`` (``.npz``) receives
``landmarks`` ``[N, 478, 3]`` float32 in pixels (x, y; z in the x pixel scale, larger is farther
from the camera, as MediaPipe's normalised z times the width), NaN for a frame without a face,
and ``found`` ``[N]`` bool. With ``--segmentation`` the selfie-segmentation person probability
of frame ``i`` is written as ``<i>.png`` (uint8, 0..255). Progress goes to stdout as lines
``progress <done> <total>``. The output file appears only when every frame is done.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

import cv2
import numpy as np

NUM_LANDMARKS = 478


def available() -> bool:
    """Whether MediaPipe's legacy ``solutions`` API imports in this interpreter."""
    try:
        import mediapipe as mp

        return hasattr(mp, "solutions") and hasattr(mp.solutions, "face_mesh")
    except Exception:  # noqa: BLE001 - any import problem means "not usable here"
        return False


def frame_paths(frames: pathlib.Path) -> list[pathlib.Path]:
    """``<i>.jpg`` files of a folder sorted by ``i``; raises when the ids are not 0..N-1."""
    paths = {int(p.stem): p for p in frames.glob("*.jpg") if p.stem.isdigit()}
    if not paths:
        raise FileNotFoundError(f"{frames}: no <i>.jpg frames to process")
    if sorted(paths) != list(range(len(paths))):
        raise FileNotFoundError(f"{frames}: frame ids are not 0..{len(paths) - 1}")
    return [paths[i] for i in range(len(paths))]


def process(
    frames: str | os.PathLike,
    out: str | os.PathLike,
    segmentation: str | os.PathLike | None = None,
    progress=None,
    min_detection_confidence: float = 0.5,
) -> dict[str, np.ndarray]:
    """Runs Face Mesh (and selfie segmentation) over ``frames/<i>.jpg``; writes ``out`` (npz).

    Face Mesh runs in video mode (tracking between frames, re-detecting when the track is lost),
    one face, ``refine_landmarks=True`` (478 points with the irises).

    Args:
      progress: optional callable ``(done, total)``.

    Returns:
      ``{"landmarks": [N, 478, 3] float32 pixels, "found": [N] bool}``.
    """
    import mediapipe as mp

    paths = frame_paths(pathlib.Path(frames))
    seg_dir = None if segmentation is None else pathlib.Path(segmentation)
    if seg_dir is not None:
        seg_dir.mkdir(parents=True, exist_ok=True)
    landmarks = np.full((len(paths), NUM_LANDMARKS, 3), np.nan, np.float32)
    found = np.zeros(len(paths), bool)
    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False,
        max_num_faces=1,
        refine_landmarks=True,
        min_detection_confidence=min_detection_confidence,
        min_tracking_confidence=0.5,
    )
    selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
    with mesh, selfie:
        for i, path in enumerate(paths):
            bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{path}: not a decodable image")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            height, width = rgb.shape[:2]
            result = mesh.process(rgb)
            if result.multi_face_landmarks:
                points = result.multi_face_landmarks[0].landmark
                xyz = np.array([(p.x, p.y, p.z) for p in points], np.float32)
                landmarks[i] = xyz * np.array([width, height, width], np.float32)
                found[i] = True
            if seg_dir is not None:
                prob = selfie.process(rgb).segmentation_mask
                png = np.clip(np.round(prob * 255.0), 0, 255).astype(np.uint8)
                cv2.imwrite(os.fspath(seg_dir / f"{i}.png"), png)
            if progress is not None:
                progress(i + 1, len(paths))
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, landmarks=landmarks, found=found)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 -> the user's usual mode (jaxhead.files)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"landmarks": landmarks, "found": found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxhead.preprocess.mediapipe_worker",
        description="MediaPipe Face Mesh (478 points) + selfie segmentation of <i>.jpg frames.",
    )
    parser.add_argument("--frames", required=True, help="folder of <i>.jpg frames")
    parser.add_argument("--out", required=True, help="output .npz (landmarks, found)")
    parser.add_argument("--segmentation", help="folder for <i>.png person masks")
    args = parser.parse_args(argv)
    if not available():
        print(
            f"error: mediapipe's solutions API does not import under {sys.executable}; "
            'install it there with `pip install "mediapipe==0.10.14"`',
            file=sys.stderr,
        )
        return 2
    step = 0

    def report(done: int, total: int) -> None:
        nonlocal step
        if done == total or done - step >= max(1, total // 100):
            step = done
            print(f"progress {done} {total}", flush=True)

    try:
        process(args.frames, args.out, args.segmentation, report)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
