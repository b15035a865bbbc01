"""Small videos and a stand-in for the MediaPipe worker, for the preprocessing tests.

`write_clip` writes an mp4 with PyAV whose frame ``i`` is a flat grey level `frame_value(i)`
(so a test sees which source frame became which output frame) plus an optional sine sound track.
`fake_mediapipe` replaces `jaxhead.preprocess.pipeline.run_mediapipe` in tests that have no
MediaPipe: it "detects" a synthetic rigid face (a procedural 68-point layout placed on the Face
Mesh indices of `MEDIAPIPE_TO_IBUG68`, plus 410 more points on an ellipsoid) turning by known
angles and blinking on known frames, projected with a known focal, and a person mask.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import pathlib

import av
import cv2
import numpy as np

from jaxhead.preprocess import landmarks as lm


def frame_value(i: int) -> int:
    return 30 + (i * 9) % 190


def write_clip(
    path: pathlib.Path,
    num_frames: int,
    fps: int = 25,
    size: int = 96,
    audio: bool = True,
    noise: bool = False,
    seed: int = 0,
) -> pathlib.Path:
    """An H.264 mp4 (+ AAC sine at 16 kHz when ``audio``); frame i is flat `frame_value(i)`."""
    rng = np.random.default_rng(seed)
    with av.open(os.fspath(path), "w") as container:
        video = container.add_stream("libx264", rate=fractions.Fraction(fps))
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for i in range(num_frames):
            if noise:
                image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            else:
                image = np.full((size, size, 3), frame_value(i), np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            samples = int(round(num_frames / fps * 16000))
            wave = (0.3 * np.sin(2 * np.pi * 220 * np.arange(samples) / 16000)).astype(np.float32)
            for start in range(0, samples, 1024):
                frame = av.AudioFrame.from_ndarray(
                    wave[None, start : start + 1024], format="flt", layout="mono"
                )
                frame.sample_rate, frame.pts = 16000, start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def face_template(seed: int = 0) -> np.ndarray:
    """``[478, 3]`` face points (unit-ish size, image-like axes: y down, z away from camera)."""
    rng = np.random.default_rng(seed)
    ibug = np.zeros((68, 2))
    angle = np.linspace(np.pi, 0, 17)  # jaw: right temple (image left) -> chin -> left temple
    ibug[:17] = np.stack([0.8 * np.cos(angle), 0.1 + 0.8 * np.sin(angle)], -1)
    ibug[17:22] = np.stack([np.linspace(-0.6, -0.15, 5), np.full(5, -0.45)], -1)
    ibug[22:27] = np.stack([np.linspace(0.15, 0.6, 5), np.full(5, -0.45)], -1)
    ibug[27:31] = np.stack([np.zeros(4), np.linspace(-0.3, 0.15, 4)], -1)
    ibug[31:36] = np.stack([np.linspace(-0.15, 0.15, 5), np.full(5, 0.22)], -1)
    for first, cx in ((36, -0.35), (42, 0.35)):  # eye: corner, upper x2, corner, lower x2
        ibug[first : first + 6] = [
            [cx - 0.12, -0.2], [cx - 0.04, -0.25], [cx + 0.04, -0.25],
            [cx + 0.12, -0.2], [cx + 0.04, -0.15], [cx - 0.04, -0.15],
        ]  # fmt: skip
    mouth = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    ibug[48:60] = np.stack([0.3 * np.cos(mouth), 0.5 - 0.1 * np.sin(mouth)], -1)
    inner = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    ibug[60:68] = np.stack([0.2 * np.cos(inner), 0.5 - 0.04 * np.sin(inner)], -1)
    points = np.zeros((478, 3))
    others = np.setdiff1d(np.arange(478), lm.MEDIAPIPE_TO_IBUG68)
    theta = rng.uniform(0, 2 * np.pi, len(others))
    radius = np.sqrt(rng.uniform(0, 1, len(others)))
    points[others, 0] = 0.75 * radius * np.cos(theta)
    points[others, 1] = 0.05 + 0.85 * radius * np.sin(theta)
    points[lm.MEDIAPIPE_TO_IBUG68, :2] = ibug
    points[10, :2] = [0.0, -0.8]  # forehead
    inside = 1 - (points[:, 0] / 0.9) ** 2 - ((points[:, 1] - 0.05) / 1.0) ** 2
    points[:, 2] = -0.6 * np.sqrt(np.clip(inside, 0.0, None))  # the face bulges to the camera
    return points


@dataclasses.dataclass
class FakeFace:
    """What `fake_mediapipe` reports: per-frame head rotations and blink frames."""

    head_scale: float = 0.3  # pixels per face unit at the head's depth / image width
    distance: float = 6.0  # head distance in face units (focal = head_scale * W * distance)
    missing: tuple[int, ...] = ()  # frames where "no face is found"
    blink_frames: tuple[int, ...] = (10, 11, 12)
    yaw_deg: float = 12.0
    pitch_deg: float = 6.0

    def focal(self, width: int) -> float:
        return self.head_scale * width * self.distance

    def rotations(self, num: int) -> np.ndarray:
        t = np.arange(num) / 25.0
        yaw = np.radians(self.yaw_deg) * np.sin(2 * np.pi * 0.5 * t)
        pitch = np.radians(self.pitch_deg) * np.sin(2 * np.pi * 0.3 * t + 1.0)
        rots = []
        for y, p in zip(yaw, pitch, strict=True):
            ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
            rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
            rots.append(ry @ rx)
        return np.array(rots)

    def landmarks(self, num: int, width: int, height: int) -> np.ndarray:
        """``[num, 478, 3]`` pixel landmarks (NaN on missing frames), MediaPipe's layout."""
        template = face_template()
        focal = self.focal(width)
        out = np.full((num, 478, 3), np.nan, np.float32)
        for i, rot in enumerate(self.rotations(num)):
            if i in self.missing:
                continue
            face = template.copy()
            if i in self.blink_frames:  # upper lids down onto the lower lids
                for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
                    face[lm.MEDIAPIPE_TO_IBUG68[upper]] = face[lm.MEDIAPIPE_TO_IBUG68[lower]]
            cam = face @ rot.T + np.array([0.0, 0.0, self.distance])
            x = focal * cam[:, 0] / cam[:, 2] + width / 2
            y = focal * cam[:, 1] / cam[:, 2] + height / 2
            z = (cam[:, 2] - self.distance) * self.head_scale * width
            out[i] = np.stack([x, y, z], -1)
        return out


def fake_mediapipe(face: FakeFace):
    """A stand-in for `pipeline.run_mediapipe` (same signature) reporting ``face``."""

    def run(frames, out, segmentation, python_option=None, bar=None):
        paths = sorted(pathlib.Path(frames).glob("*.jpg"), key=lambda p: int(p.stem))
        height, width = cv2.imread(os.fspath(paths[0])).shape[:2]
        marks = face.landmarks(len(paths), width, height)
        segmentation = pathlib.Path(segmentation)
        segmentation.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[:height, :width]
        head = ((xx - width / 2) / (0.35 * width)) ** 2 + (
            (yy - 0.45 * height) / (0.4 * height)
        ) ** 2
        person = (head <= 1) | ((yy > 0.8 * height) & (np.abs(xx - width / 2) < 0.45 * width))
        for i in range(len(paths)):
            cv2.imwrite(os.fspath(segmentation / f"{i}.png"), (person * 255).astype(np.uint8))
            if bar is not None:
                bar.update()
        np.savez(out, landmarks=marks, found=np.isfinite(marks).all(axis=(1, 2)))

    return run


__all__ = ["FakeFace", "face_template", "fake_mediapipe", "frame_value", "write_clip"]
