"""Audio I/O: decoding, down-mixing and resampling (NumPy, host side).

Every jaxhead audio front-end (HuBERT, MFCC, log-mel) works on float32 mono audio at 16 kHz.
Decoding goes through PyAV (FFmpeg), so wav / flac / mp3 / ogg files and the audio track of a
video (mp4, mkv, ...) all load the same way; resampling is a polyphase Kaiser-windowed FIR
(``scipy.signal.resample_poly``) rather than FFmpeg's default swresample settings, so that the
result does not depend on the FFmpeg build.
"""

from __future__ import annotations

import math
import os
import pathlib
import tempfile
import wave

import av
import numpy as np
import scipy.signal

from jaxhead.files import publish

SAMPLE_RATE = 16_000  # every jaxhead audio front-end works at 16 kHz (HuBERT, MFCC, log-mel)


class AudioLoadError(ValueError):
    """A file that exists but holds no decodable audio (corrupt, no audio stream, empty)."""


def resample(audio: np.ndarray, orig_rate: int, new_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (Kaiser-windowed FIR, as scipy/sox/torchaudio do).

    Args:
      audio: ``[num_samples]`` or ``[num_samples, channels]`` float waveform.
      orig_rate: sampling rate of ``audio`` in Hz.
      new_rate: target rate in Hz.

    Returns:
      float32 array with ``ceil(num_samples * new_rate / orig_rate)`` samples along axis 0.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate == new_rate:
        return audio
    g = math.gcd(int(orig_rate), int(new_rate))
    out = scipy.signal.resample_poly(audio, new_rate // g, orig_rate // g, axis=0)
    return out.astype(np.float32)


def _decode_first_audio_stream(path: pathlib.Path) -> tuple[np.ndarray, int]:
    """Decodes the first audio stream of ``path``: float32 ``[channels, samples]`` and its rate."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise AudioLoadError(
            f"{path}: cannot be opened as an audio or video file ({err}); check that the file is "
            "complete and in a format FFmpeg reads (wav, flac, mp3, mp4, ...)"
        ) from err
    with container:
        streams = container.streams.audio
        if not streams:
            raise AudioLoadError(
                f"{path}: has no audio stream (video streams: {len(container.streams.video)}); "
                "give the file with the speech track, or extract it first, e.g. "
                "`ffmpeg -i video.mp4 -vn speech.wav`"
            )
        stream = streams[0]
        # Convert every frame to planar float32 at its own rate and layout: only the sample
        # format changes here; channel mixing and resampling are done below in NumPy.
        converter = av.AudioResampler(format="fltp")
        chunks = []
        rate = stream.codec_context.sample_rate or stream.rate
        try:
            for frame in container.decode(stream):
                rate = frame.sample_rate
                for converted in converter.resample(frame):
                    chunks.append(converted.to_ndarray())
            for converted in converter.resample(None):
                chunks.append(converted.to_ndarray())
        except av.error.FFmpegError as err:
            raise AudioLoadError(
                f"{path}: audio stream could not be decoded ({err}); the file is probably "
                "truncated or corrupt, re-export or re-download it"
            ) from err
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise AudioLoadError(f"{path}: the audio stream holds no samples (empty audio)")
    num_channels = max(c.shape[0] for c in chunks)
    if any(c.shape[0] != num_channels for c in chunks):
        # Channel layout changing mid-stream (rare, e.g. broadcast captures): mix each chunk alone.
        chunks = [np.repeat(c.mean(axis=0, keepdims=True), num_channels, axis=0) for c in chunks]
    return np.concatenate(chunks, axis=1).astype(np.float32), int(rate)


def load_audio(path: str | os.PathLike, target_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Loads the (first) audio track of an audio or video file as mono float32.

    Args:
      path: wav / flac / mp3 / ogg / m4a file, or a video (mp4, mkv, ...) with an audio track.
      target_rate: output rate in Hz; ``None`` keeps the file's own rate.

    Returns:
      ``(audio, rate)``: ``audio`` is float32 ``[num_samples]`` in [-1, 1] (channels averaged),
      ``rate`` the sampling rate of ``audio``.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      AudioLoadError: the file cannot be decoded, has no audio stream, or holds no samples.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist; check the path")
    channels, rate = _decode_first_audio_stream(path)
    audio = channels.mean(axis=0)  # down-mix: average the channels, as FFmpeg's "-ac 1" does
    if not np.all(np.isfinite(audio)):
        raise AudioLoadError(f"{path}: decoded audio contains NaN or Inf samples")
    if target_rate is not None and target_rate != rate:
        audio = resample(audio, rate, target_rate)
        rate = target_rate
    return audio.astype(np.float32), int(rate)


def save_wav(path: str | os.PathLike, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Writes 16-bit PCM wav; ``audio`` is float ``[num_samples]`` or ``[num_samples, channels]``.

    Samples are clipped to [-1, 1]. The file is written to a temporary name and renamed, so a
    crash never leaves a half-written wav behind.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2):
        raise ValueError(f"save_wav expects [samples] or [samples, channels], got {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"save_wav: audio for {path} contains NaN or Inf")
    frames = audio if audio.ndim == 2 else audio[:, None]
    pcm = np.round(np.clip(frames, -1.0, 1.0) * 32767.0).astype("<i2")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with wave.open(tmp_name, "wb") as out:
            out.setnchannels(frames.shape[1])
            out.setsampwidth(2)
            out.setframerate(int(rate))
            out.writeframes(pcm.tobytes())
        publish(tmp_name, path)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise
