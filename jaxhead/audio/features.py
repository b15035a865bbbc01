"""Per-video-frame audio features: MFCC / log-mel windows or HuBERT pairs, and their files.

``extract`` turns 16 kHz mono audio into one feature block per video frame:

* ``"mfcc"`` / ``"logmel"``: ``[num_frames, 16, D]`` windows of 16 feature steps centred on each
  frame (100 Hz MFCCs, 80 Hz Wav2Lip-style log-mels; :mod:`jaxhead.audio.frontend`);
* ``"hubert"``: ``[num_frames, 2, D]`` HuBERT ``last_hidden_state`` (50 Hz, two steps per 25 fps
  frame), the ``aud_hu.npy`` layout of ER-NeRF / SyncTalk, so their files load unchanged.

Long audio goes through HuBERT in chunks (20 s, as the peers do) but, unlike the peers'
non-overlapping chunks, each chunk also sees ``context_seconds`` of audio on both sides and only
its centre is kept; the output has exactly ``T = (num_samples - 80) // 320`` steps for the
standard conv stack, the length of a single unchunked pass.

CLI::

    python -m jaxhead.audio.features IN --out FILE --kind {mfcc,logmel,hubert} \\
        [--checkpoint DIR] [--fps 25]
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import tempfile
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.audio import checkpoints, frontend
from jaxhead.audio.hubert import HubertModel
from jaxhead.audio.io import SAMPLE_RATE, load_audio
from jaxhead.files import publish
from jaxhead.train import cli

KINDS = ("mfcc", "logmel", "hubert")
WINDOW = 16  # feature steps per video frame for MFCC / log-mel (Wav2Lip's mel_step_size)
# ER-NeRF / SyncTalk's aud_hu.npy: the two 50 Hz steps that follow each 25 fps frame's start.
HUBERT_PAIRS = frontend.WindowSpec("hubert", 2, align="following")


def hubert_num_steps(num_samples: int) -> int:
    """HuBERT output length for the standard conv stack: ``(num_samples - 80) // 320``."""
    return max((num_samples - 80) // 320, 0)


def _conv_geometry(model: HubertModel) -> tuple[int, int]:
    """(total stride, receptive field) in samples of the model's conv stack."""
    stride, field = 1, 1
    for kernel, step in zip(model.config.conv_kernel, model.config.conv_stride, strict=True):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def _encoder_fn(model: HubertModel, layer: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """jit-compiled ``[num_samples] -> [steps, hidden]`` for one (unbatched) waveform."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def encode(state, audio):
        last, hidden = nnx.merge(graphdef, state)(audio[None, :])
        return (last if layer is None else hidden[layer])[0]

    return lambda audio: np.asarray(encode(state, jnp.asarray(audio, jnp.float32)))


def hubert_steps(
    model: HubertModel,
    audio: np.ndarray,
    *,
    normalize: bool = True,
    layer: int | None = None,
    chunk_seconds: float = 20.0,
    context_seconds: float = 1.0,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """HuBERT features of arbitrarily long audio, computed in overlapping chunks.

    Args:
      model: a loaded ``HubertModel``.
      audio: ``[num_samples]`` mono float audio at 16 kHz.
      normalize: zero-mean / unit-variance over the whole clip first (``do_normalize`` of the
        checkpoint's feature extractor, see ``checkpoints.input_normalization``).
      layer: ``None`` for ``last_hidden_state``, else an index into the hidden states.
      chunk_seconds: audio whose features each chunk keeps.
      context_seconds: extra audio each chunk sees on both sides (dropped from its output), so
        that steps near a seam still see context; with ``0`` this is the peers' scheme.

    Returns:
      ``[T, hidden_size]`` float32 with ``T = model.config.num_output_steps(num_samples)``.
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio [num_samples], got shape {audio.shape}")
    stride, field = _conv_geometry(model)
    total = model.config.num_output_steps(audio.shape[0])
    if total < 1:
        raise ValueError(
            f"audio of {audio.shape[0]} samples is shorter than HuBERT's receptive field "
            f"({field} samples = {1000 * field / sample_rate:.0f} ms)"
        )
    if normalize:
        # Wav2Vec2FeatureExtractor's normalisation, over the whole clip so that chunks agree.
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    encode = _encoder_fn(model, layer)
    steps_per_second = sample_rate / stride
    core = max(1, int(round(chunk_seconds * steps_per_second)))
    context = max(0, int(round(context_seconds * steps_per_second)))
    span = core + 2 * context  # output steps per chunk; every chunk has this size -> one compile
    if total <= span:
        return encode(audio)
    pieces = []
    for start in range(0, total, core):
        end = min(start + core, total)
        # Window of `span` steps around [start, end), shifted inside [0, total) at the edges.
        first = min(max(start - context, 0), total - span)
        samples = audio[first * stride : (first + span - 1) * stride + field]
        out = encode(samples)
        pieces.append(out[start - first : end - first])
    return np.concatenate(pieces, axis=0)


def frame_pairs(steps: np.ndarray, fps: float = 25.0, num_frames: int | None = None) -> np.ndarray:
    """50 Hz steps ``[T, D]`` -> per-video-frame pairs ``[num_frames, 2, D]``.

    Frame ``i`` gets steps ``k, k + 1`` with ``k = floor(i * 50 / fps)`` (clipped to the last
    step); at 25 fps this is ER-NeRF's reshape of the steps into pairs, padding an odd ``T`` with
    the last step. ``num_frames`` defaults to ``ceil(T * fps / 50)``.
    """
    steps = np.asarray(steps)
    if steps.ndim != 2 or steps.shape[0] < 1:
        raise ValueError(f"expected 50 Hz features [T, D] with T >= 1, got shape {steps.shape}")
    if num_frames is None:
        num_frames = math.ceil(steps.shape[0] * fps / HUBERT_PAIRS.rate)
    return frontend.frame_windows_of(steps, num_frames, fps, HUBERT_PAIRS).astype(steps.dtype)


def extract(
    audio: np.ndarray,
    kind: str,
    checkpoint: str | os.PathLike | None = None,
    fps: float = 25.0,
    num_frames: int | None = None,
    model: HubertModel | None = None,
) -> np.ndarray:
    """Per-video-frame features of 16 kHz mono audio.

    Args:
      audio: ``[num_samples]`` float audio at 16 kHz (``io.load_audio`` gives this).
      kind: ``"mfcc"``, ``"logmel"`` or ``"hubert"``.
      checkpoint: Hugging Face HuBERT folder (``kind="hubert"`` only, unless ``model`` is given).
      fps: video frame rate.
      num_frames: number of video frames; defaults to ``round(seconds * fps)`` for MFCC /
        log-mel and ER-NeRF's ``ceil(T * fps / 50)`` for HuBERT.
      model: an already loaded HuBERT (skips loading ``checkpoint``; raw-audio input then
        follows the fairseq rule of ``checkpoints.input_normalization``).

    Returns:
      ``[num_frames, 16, D]`` for MFCC (D=13) / log-mel (D=80), ``[num_frames, 2, D]`` for HuBERT.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose one of {KINDS}")
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or audio.shape[0] == 0:
        raise ValueError(f"expected non-empty mono audio [num_samples], got shape {audio.shape}")
    if kind == "hubert":
        if model is None:
            if checkpoint is None:
                raise checkpoints.CheckpointError(
                    f"HuBERT features need --checkpoint DIR; {checkpoints.HOW_TO_GET}"
                )
            model = checkpoints.load_hubert(checkpoint)
            normalize = checkpoints.input_normalization(checkpoint)
        else:
            normalize = model.config.feat_extract_norm == "layer"
        steps = hubert_steps(model, audio, normalize=normalize)
        return frame_pairs(steps, fps, num_frames)
    if num_frames is None:
        num_frames = max(1, round(audio.shape[0] * fps / SAMPLE_RATE))
    return frontend.frame_windows(audio, num_frames, fps, frontend.WindowSpec(kind, WINDOW))


def save_features(path: str | os.PathLike, features: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename (no half-written feature files)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.asarray(features, np.float32))
        publish(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def load_hubert_features(
    path: str | os.PathLike, layout: str = "frames", fps: float = 25.0
) -> np.ndarray:
    """Reads HuBERT features written as ``[N, 2, D]`` (aud_hu.npy) or ``[T, D]`` (50 Hz steps).

    Args:
      layout: ``"frames"`` returns ``[N, 2, D]`` (pairs built with ``frame_pairs`` at ``fps``
        from a ``[T, D]`` file); ``"steps"`` returns ``[T, D]`` (``[2N, D]`` from a pair file).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"feature file {path} does not exist; write it with "
            f"`python -m jaxhead.audio.features AUDIO --out {path} --kind hubert --checkpoint DIR`"
        )
    features = np.load(path)
    if layout not in ("frames", "steps"):
        raise ValueError(f"layout must be 'frames' or 'steps', got {layout!r}")
    if features.ndim == 3 and features.shape[1] == 2:
        return features if layout == "frames" else features.reshape(-1, features.shape[2])
    if features.ndim == 2:
        return frame_pairs(features, fps) if layout == "frames" else features
    raise ValueError(
        f"{path}: HuBERT features must be [N, 2, D] (aud_hu.npy layout) or [T, D] (50 Hz), "
        f"got shape {features.shape}; re-extract with `python -m jaxhead.audio.features`"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxhead.audio.features",
        description="Write per-video-frame audio features (.npy) of an audio or video file.",
    )
    parser.add_argument("input", help="audio file or video with an audio track")
    parser.add_argument("--out", required=True, help="output .npy file")
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--checkpoint", help="Hugging Face HuBERT folder (for --kind hubert)")
    parser.add_argument("--fps", type=float, default=25.0, help="video frame rate")
    args = parser.parse_args(argv)
    if args.kind == "hubert" and args.checkpoint is None:
        raise checkpoints.CheckpointError(
            f"--kind hubert needs --checkpoint DIR; {checkpoints.HOW_TO_GET}"
        )
    audio, _ = load_audio(args.input)  # bad input: one line through cli.run_plain
    features = extract(audio, args.kind, args.checkpoint, fps=args.fps)
    save_features(args.out, features)
    print(f"wrote {args.out}: {features.shape[0]} frames x {features.shape[1:]} ({args.kind})")
    return 0


if __name__ == "__main__":
    cli.run_plain(main)
