"""Tests for jaxhead.audio.io: decoding through PyAV, down-mix, resampling and clear errors."""

import fractions

import av
import numpy as np
import pytest

from jaxhead.audio import io as audio_io


def _tone(freq_hz: float, seconds: float, rate: int, channels: int) -> np.ndarray:
    """[channels, samples] float32 sine; every channel carries the same tone."""
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq_hz * t)
    return np.repeat(mono[None, :], channels, axis=0).astype(np.float32)


def _write_audio(path, codec, tone, rate, with_video=False):
    """Encodes ``tone`` ([channels, samples]) with PyAV; optionally adds a short video stream."""
    layout = "stereo" if tone.shape[0] == 2 else "mono"
    with av.open(str(path), "w") as container:
        if with_video:
            video = container.add_stream("mpeg4", rate=25)
            video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        stream = container.add_stream(codec, rate=rate, layout=layout)
        fmt = stream.codec_context.format.name  # the codec's preferred sample format
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, tone.shape[1], frame_size):
            block = tone[:, start : start + frame_size]
            if fmt in ("s16", "s16p"):
                block = np.round(block * 32767).astype(np.int16)
            elif fmt in ("s32", "s32p"):
                block = np.round(block * (2**31 - 1)).astype(np.int32)
            if not fmt.endswith("p"):  # packed: one row, channels interleaved
                block = block.T.reshape(1, -1)
            block = np.ascontiguousarray(block)
            frame = av.AudioFrame.from_ndarray(block, format=fmt, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = fractions.Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if with_video:
            for i in range(5):
                img = np.full((32, 32, 3), 40 * i, np.uint8)
                container.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            container.mux(video.encode(None))


def _dominant_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.shape[0])))
    return float(np.argmax(spectrum) * rate / audio.shape[0])


@pytest.mark.parametrize(
    ("suffix", "codec", "rate", "channels", "with_video", "length_slack"),
    [
        ("wav", "pcm_s16le", 44_100, 2, False, 0),
        ("flac", "flac", 22_050, 1, False, 0),
        ("mp3", "libmp3lame", 44_100, 2, False, 0.08),  # mp3 adds encoder delay / padding
        ("mp4", "aac", 48_000, 2, True, 0.08),  # aac priming samples
    ],
)
def test_load_audio_keeps_rate_length_and_frequency(
    tmp_path, suffix, codec, rate, channels, with_video, length_slack
):
    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg build has no {codec} encoder")
    seconds, freq = 1.0, 440.0
    path = tmp_path / f"tone.{suffix}"
    _write_audio(path, codec, _tone(freq, seconds, rate, channels), rate, with_video)

    audio, out_rate = audio_io.load_audio(path)

    assert out_rate == 16_000
    assert audio.dtype == np.float32 and audio.ndim == 1
    expected = seconds * 16_000
    assert abs(audio.shape[0] - expected) <= length_slack * expected + 1
    assert abs(_dominant_frequency(audio, out_rate) - freq) < 2.0
    # Down-mix of identical channels keeps the amplitude (0.5), resampling does not change it.
    middle = audio[2000:-2000]
    lossy = length_slack > 0  # mp3 / aac change the amplitude by a few percent
    assert np.max(np.abs(middle)) == pytest.approx(0.5, abs=0.05 if lossy else 0.01)


def test_load_audio_native_rate_and_save_wav_round_trip(tmp_path):
    tone = _tone(1000.0, 0.5, 8000, 1)[0]
    path = tmp_path / "sub" / "tone.wav"
    audio_io.save_wav(path, tone, 8000)
    audio, rate = audio_io.load_audio(path, target_rate=None)
    assert rate == 8000
    np.testing.assert_allclose(audio, tone, atol=1.0 / 32767)
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed, not left behind


def test_resample_matches_sinc_interpolation_of_a_tone():
    rate, new_rate, freq = 44_100, 16_000, 300.0
    t = np.arange(rate) / rate
    out = audio_io.resample(np.sin(2 * np.pi * freq * t), rate, new_rate)
    assert out.shape == (16_000,)
    t_new = np.arange(16_000) / new_rate
    # Away from the ends (filter edge effects) the polyphase output is the same tone.
    np.testing.assert_allclose(out[500:-500], np.sin(2 * np.pi * freq * t_new)[500:-500], atol=1e-3)


def test_missing_file_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        audio_io.load_audio(tmp_path / "nope.wav")


def test_corrupt_file_error(tmp_path):
    path = tmp_path / "corrupt.mp3"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(audio_io.AudioLoadError, match="corrupt.mp3"):
        audio_io.load_audio(path)


def test_truncated_wav_error(tmp_path):
    path = tmp_path / "trunc.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    with pytest.raises(audio_io.AudioLoadError, match="trunc.wav"):
        audio_io.load_audio(path)


def test_video_without_audio_error(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    with pytest.raises(audio_io.AudioLoadError, match="no audio stream"):
        audio_io.load_audio(path)


def test_empty_wav_error(tmp_path):
    path = tmp_path / "empty.wav"
    audio_io.save_wav(path, np.zeros(0, np.float32))
    with pytest.raises(audio_io.AudioLoadError, match="empty"):
        audio_io.load_audio(path)


def test_real_video_and_speech(shared_data):
    video = shared_data / "real" / "video" / "May_5s.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    audio, rate = audio_io.load_audio(video)
    assert rate == 16_000
    assert 4.9 * rate < audio.shape[0] < 5.2 * rate
    assert np.all(np.isfinite(audio)) and 0.05 < np.max(np.abs(audio)) <= 1.0
    wavs = sorted((shared_data / "real" / "audio").glob("*.wav"))[:3]
    if not wavs:
        pytest.skip("no real speech wavs")
    for wav in wavs:
        speech, rate = audio_io.load_audio(wav)
        assert rate == 16_000 and speech.ndim == 1 and speech.shape[0] > rate
        assert np.all(np.isfinite(speech)) and np.std(speech) > 1e-3
