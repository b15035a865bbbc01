"""Decoding: the video's frames resampled to a fixed frame rate, and its audio at 16 kHz mono.

Frames are decoded with PyAV and resampled in time by nearest timestamp (FFmpeg's ``fps``
filter rule): output frame ``i`` (time ``start + i / fps``, exact fractions) is the source frame
whose timestamp is closest, ties to the earlier one; so a 25 fps source maps 1:1, a 30 fps or
variable-rate source drops/repeats frames, and no frame is ever interpolated. The audio is
trimmed (or zero-padded) so that sample 0 is at the first video frame and it lasts exactly
``num_frames / fps`` seconds.

Bad input stops with a `PreprocessError` naming the file, what is wrong and what to do: not a
video, no video stream, no audio stream, a truncated or corrupt stream.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import pathlib
from collections.abc import Callable

import av
import numpy as np

from jaxhead.audio.io import SAMPLE_RATE, AudioLoadError, load_audio
from jaxhead.preprocess.errors import PreprocessError

REENCODE = (
    "re-export it as a complete mp4 (e.g. `ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`) or "
    "download it again"
)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What `probe` found: stream sizes and rates, and the declared duration."""

    path: str
    width: int
    height: int
    source_fps: float
    duration: float  # seconds, as the container declares it
    audio_rate: int
    audio_channels: int


def _looks_like_mp4(path: pathlib.Path) -> bool:
    with path.open("rb") as file:
        head = file.read(12)
    return head[4:8] == b"ftyp"


def _open(path: pathlib.Path) -> av.container.InputContainer:
    if not path.is_file():
        raise PreprocessError(path, "file not found.", "check the path of the video.")
    try:
        return av.open(os.fspath(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        if path.stat().st_size and _looks_like_mp4(path):
            raise PreprocessError(
                path,
                f"starts like an MP4 but FFmpeg cannot open it ({error}); the file is probably "
                "truncated (its index, the 'moov' box, is missing).",
                REENCODE + ".",
            ) from error
        raise PreprocessError(
            path,
            f"is not a video file FFmpeg can read ({error}).",
            "give a video with a face and a sound track (mp4, mkv, mov, webm, ...).",
        ) from error


def probe(path: str | os.PathLike) -> VideoInfo:
    """Checks that ``path`` opens and has a video and an audio stream; reads their parameters."""
    path = pathlib.Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise PreprocessError(
                path,
                "has no video stream.",
                "give the video file itself, not an audio-only export.",
            )
        if not container.streams.audio:
            raise PreprocessError(
                path,
                "has no audio stream; the talking-head dataset needs the speech.",
                "give the recording with its sound track, or mux one in: "
                "`ffmpeg -i video.mp4 -i speech.wav -c:v copy -c:a aac -shortest out.mp4`.",
            )
        video, audio = container.streams.video[0], container.streams.audio[0]
        rate = video.average_rate or video.guessed_rate or 0
        duration = 0.0
        if container.duration:
            duration = container.duration / av.time_base
        elif video.duration and video.time_base:
            duration = float(video.duration * video.time_base)
        return VideoInfo(
            os.fspath(path),
            int(video.codec_context.width),
            int(video.codec_context.height),
            float(rate),
            float(duration),
            int(audio.codec_context.sample_rate or audio.rate or 0),
            int(audio.codec_context.channels or 0),
        )


def _stream_start(stream) -> fractions.Fraction:
    if stream.start_time is None or stream.time_base is None:
        return fractions.Fraction(0)
    return stream.start_time * stream.time_base


def decode_frames(
    path: str | os.PathLike,
    fps: int = 25,
    max_frames: int | None = None,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[int, fractions.Fraction]:
    """Decodes the first video stream at ``fps``; calls ``on_frame(i, rgb uint8 [H, W, 3])``.

    Frames stream through (only the previous source frame is held). Returns the number of output
    frames and the first frame's timestamp (seconds). Raises `PreprocessError` when the stream
    cannot be decoded to its end or stops well before its declared duration (a truncated file).
    """
    path = pathlib.Path(path)
    step = fractions.Fraction(1, fps)
    count = 0
    start = prev = prev_ts = None
    last_duration = None
    declared = 0.0

    def emit_until(limit: fractions.Fraction, inclusive: bool) -> bool:
        nonlocal count
        while max_frames is None or count < max_frames:
            t = start + count * step
            if t < limit or (inclusive and t == limit):
                if on_frame is not None:
                    on_frame(count, prev)
                count += 1
            else:
                return True
        return False

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if container.duration:
            declared = container.duration / av.time_base
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                ts = frame.pts * frame.time_base
                if prev_ts is not None and ts <= prev_ts:
                    continue  # duplicate / out-of-order timestamp: keep the first
                image = frame.to_ndarray(format="rgb24")
                if prev is None:
                    start = ts
                else:
                    last_duration = ts - prev_ts
                    if not emit_until((prev_ts + ts) / 2, inclusive=True):
                        break
                prev, prev_ts = image, ts
        except av.error.FFmpegError as error:
            raise PreprocessError(
                path,
                f"the video stream cannot be decoded past frame {count} ({error}); the file is "
                "truncated or corrupt.",
                REENCODE + ".",
            ) from error
    if prev is None:
        raise PreprocessError(path, "the video stream holds no frame.", REENCODE + ".")
    if max_frames is None or count < max_frames:
        frame_time = last_duration or step
        emit_until(prev_ts + frame_time, inclusive=False)
        decoded = float(prev_ts + frame_time - start)
        if declared and decoded < 0.9 * declared - 0.5:
            raise PreprocessError(
                path,
                f"the video stream ends after {decoded:.2f} s but the file declares "
                f"{declared:.2f} s; the file is truncated.",
                REENCODE + ".",
            )
    return count, start


def extract_audio(
    path: str | os.PathLike, num_frames: int, fps: int, video_start: fractions.Fraction
) -> np.ndarray:
    """16 kHz mono audio aligned to the first video frame, ``num_frames / fps`` seconds long."""
    path = pathlib.Path(path)
    try:
        audio, _ = load_audio(path, SAMPLE_RATE)
    except AudioLoadError as error:
        raise PreprocessError(
            path, f"the audio track cannot be used: {error}.", REENCODE + "."
        ) from error
    with _open(path) as container:
        audio_start = _stream_start(container.streams.audio[0])
    offset = int(round(float(video_start - audio_start) * SAMPLE_RATE))
    if offset > 0:
        audio = audio[offset:]
    elif offset < 0:
        audio = np.concatenate([np.zeros(-offset, np.float32), audio])
    samples = int(round(num_frames * SAMPLE_RATE / fps))
    if len(audio) < 0.9 * samples - SAMPLE_RATE // 2:
        raise PreprocessError(
            path,
            f"the audio track lasts {len(audio) / SAMPLE_RATE:.2f} s but the video "
            f"{num_frames / fps:.2f} s; the file is truncated or the audio is cut.",
            REENCODE + ".",
        )
    out = np.zeros(samples, np.float32)
    out[: min(samples, len(audio))] = audio[:samples]
    return out
