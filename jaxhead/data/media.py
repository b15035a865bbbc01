"""Video files with sound: H.264 + AAC in an mp4, written with PyAV."""

from __future__ import annotations

import fractions
import os
import pathlib
import tempfile

import av
import numpy as np

from jaxhead.files import publish


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    *,
    crf: int = 18,
) -> pathlib.Path:
    """Writes ``frames`` as an H.264 mp4 with ``audio`` muxed in as AAC (atomically).

    Args:
      path: output ``.mp4``.
      frames: ``[T, H, W, 3]`` uint8 RGB, or float in ``[0, 1]``. H and W must be even (yuv420p).
      fps: frame rate.
      audio: optional ``[N]`` mono float waveform in ``[-1, 1]`` at ``sample_rate``; trimmed or
        zero-padded to the video's duration.
      sample_rate: audio rate in Hz.
      crf: H.264 constant rate factor (lower is better quality).

    Returns:
      the path written. The file appears only once complete (written beside it, then renamed).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be [T, H, W, 3] with T > 0, got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 (yuv420p) needs even sizes, got {width}x{height}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(fd)
    rate = fractions.Fraction(fps).limit_denominator(1001)
    try:
        with av.open(tmp, mode="w") as container:
            video = container.add_stream("libx264", rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.options = {"crf": str(crf), "preset": "medium"}
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=int(sample_rate))
                sound.layout = "mono"
            for frame in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            if sound is not None:
                samples = int(round(len(frames) / float(rate) * sample_rate))
                wave = np.zeros(samples, np.float32)
                clip = np.asarray(audio, np.float32).reshape(-1)[:samples]
                wave[: len(clip)] = np.clip(clip, -1.0, 1.0)
                step = 1024
                for start in range(0, samples, step):
                    chunk = wave[None, start : start + step]
                    frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                    frame.sample_rate = int(sample_rate)
                    frame.pts = start
                    for packet in sound.encode(frame):
                        container.mux(packet)
                for packet in sound.encode():
                    container.mux(packet)
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
