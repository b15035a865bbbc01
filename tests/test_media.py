"""mp4 writing with muxed audio."""

import av
import numpy as np
import pytest

from jaxhead.audio.io import load_audio
from jaxhead.data.media import write_video


def test_video_with_sound_round_trips(tmp_path):
    t = np.arange(25)
    frames = np.zeros((25, 32, 48, 3), np.uint8)
    frames[..., 0] = (t * 10)[:, None, None]  # red ramps up over time
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    path = write_video(tmp_path / "out.mp4", frames, 25, tone, 16000)
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 25 and decoded[0].shape == (32, 48, 3)
    reds = [d[..., 0].mean() for d in decoded]
    assert abs(reds[10] - 100) < 6 and abs(reds[20] - 200) < 6
    audio, rate = load_audio(path)
    assert rate == 16000 and abs(len(audio) - 16000) < 2048
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5
    assert not list(tmp_path.glob(".out.*"))  # no temporary file left


def test_bad_frames_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="even sizes"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 31, 32, 3), np.uint8), 25)
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 32, 32)), 25)
    assert not (tmp_path / "x.mp4").exists()


def test_outputs_are_checked_before_the_work(tmp_path):
    from jaxhead.data.media import check_output

    frames = np.zeros((2, 16, 16, 3), np.uint8)
    existing = write_video(tmp_path / "have.mp4", frames, 25)
    before = existing.read_bytes()
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        check_output(existing)
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        write_video(existing, frames + 9, 25, overwrite=False)
    assert existing.read_bytes() == before  # never replaced without --overwrite
    assert check_output(existing, overwrite=True) == existing
    with pytest.raises(ValueError, match="x.gif: writes .mp4 files only"):
        check_output(tmp_path / "x.gif")
    with pytest.raises(ValueError, match=".mp4 files only"):
        write_video(tmp_path / "x.gif", frames, 25)
    assert not (tmp_path / "x.gif").exists()
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(FileExistsError, match="is a folder"):
        check_output(tmp_path / "dir.mp4")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cannot write into"):
        check_output(blocker / "sub" / "out.mp4")
    assert check_output(tmp_path / "new" / "deeper" / "out.mp4").name == "out.mp4"
