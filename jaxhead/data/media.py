"""Video files with sound: H.264 + AAC in an mp4, written with PyAV.

:func:`check_output` is what a command checks about its ``--out`` before any work (a render takes
minutes): the suffix, a folder in the way, an existing file (replaced only with ``--overwrite``),
a folder it cannot write.
"""

from __future__ import annotations

import fractions
import os
import pathlib
import tempfile

import av
import numpy as np

from jaxhead.files import publish

VIDEO_SUFFIXES = (".mp4",)


def check_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    suffixes: tuple[str, ...] = VIDEO_SUFFIXES,
    flag: str = "--out",
) -> pathlib.Path:
    """Checks an output file name before the work that makes it; returns it as a path.

    Raises:
      ValueError: the suffix is not one of ``suffixes`` (nothing would convert the format).
      FileExistsError: the file exists and ``overwrite`` is False, or ``path`` is a folder.
      PermissionError: the folder it goes into cannot be created or written.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(
            f"{flag} {path}: writes {'/'.join(suffixes)} files only (H.264 + AAC); give the file "
            f"a {suffixes[0]} name"
        )
    if path.is_dir():
        raise FileExistsError(f"{flag} {path} is a folder; give a file name, e.g. {path}/out.mp4")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{flag} {path} exists; pass --overwrite to replace it, or choose another name"
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{flag} {path}: cannot write into {parent}; choose a folder you can write"
        )
    return path


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in ``[0, 1]`` as uint8, rounded (what a written video holds)."""
    return (np.clip(np.asarray(images), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    *,
    crf: int = 18,
    overwrite: bool = True,
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
      overwrite: replace an existing file (False: :func:`check_output` refuses it).

    Returns:
      the path written. The file appears only once complete (written beside it, then renamed).
    """
    path = check_output(path, overwrite=overwrite, flag="video")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be [T, H, W, 3] with T > 0, got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = to_uint8(frames)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 (yuv420p) needs even sizes, got {width}x{height}")
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
        if path.exists() and not overwrite:  # appeared while encoding
            raise FileExistsError(f"{path} appeared while it was written; it is kept")
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
