"""The syncnet_python model (Chung & Zisserman 2016, paper 000 ref. [44]) in Flax NNX.

The SyncNet confidence reported by paper 000 (and Wav2Lip, GeneFace, ER-NeRF) is computed with
the published ``syncnet_v2.model`` of the ``syncnet_python`` repository. This module is its
network, ``SyncNetModel`` with batch norms in inference mode, and a loader for that state dict:

* audio (``netcnnaud`` + ``netfcaud``): ``[B, 13, 20]`` MFCC windows (13 coefficients x 20 steps
  of 10 ms = 0.2 s, i.e. 5 video frames at 25 fps) as a 1-channel image; 2D convs 3x3 (64, 192,
  384, 256, 256) with max-pools 1x1, 3x3/(1, 2) and 3x3/2, a 5x4 conv to 512, then
  Linear 512 -> 512, BatchNorm1d, ReLU, Linear 512 -> 1024;
* video (``netcnnlip`` + ``netfclip``): ``[B, 5, 224, 224, 3]`` — five consecutive **BGR** face
  crops (syncnet_python's v2 model takes colour crops, not the paper's grey mouth stack) with
  pixel values in ``[0, 255]``: syncnet_python feeds the frames ``cv2.imread`` returns, i.e. in
  OpenCV's BGR order, and the published weights were trained on that input (``SyncNetInstance
  .evaluate``). :meth:`SyncNet.embed_lips` is the bare network (BGR in); :func:`compute_syncnet`
  takes jaxhead's RGB frames and reverses the channels itself (``channel_order``); 3D convs
  5x7x7/(1, 2, 2) (96), 1x5x5/(1, 2, 2) pad (0, 1, 1) (256), three 1x3x3 pad (0, 1, 1) (256),
  1x6x6 (512), with 1x3x3/(1, 2, 2) max-pools (the second padded by 1), then the same fully
  connected head.

Every conv is followed by a batch norm (eps 1e-5, running statistics) and a ReLU.

State dict keys (``torch.save(model.__S__.state_dict())``): ``netcnnaud.{i}.*``,
``netfcaud.{i}.*``, ``netcnnlip.{i}.*``, ``netfclip.{i}.*`` with torch's Sequential indices
(convs/linears: ``weight``, ``bias``; batch norms: ``weight``, ``bias``, ``running_mean``,
``running_var``, ``num_batches_tracked``). The published file is an old (pre-1.6) torch pickle,
which the torch-free reader does not parse: re-save it once with torch as a zip ``.pth`` (or as
``.npz``/``.safetensors``, same keys) — see :data:`HOW_TO_GET`.

What this module does not do: syncnet_python's front-end (S3FD face detection and 224x224 crops,
``python_speech_features`` MFCCs). The offset/confidence protocol over the embeddings is
:mod:`jaxhead.sync.scoring` (``distance="euclidean"``; note syncnet_python takes Euclidean
distances of *un-normalised* embeddings, so its confidences are on another scale);
:func:`syncnet_offset_confidence` is syncnet_python's own ``calc_pdist`` + offset/confidence on
these embeddings, which is what "Sync score" tables report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.pretrained.vgg import read_weights_file
from jaxhead.pretrained.weights import state_dict_problems

__all__ = [
    "AUDIO_CHANNELS",
    "LIP_CHANNELS",
    "SyncNetWeightsError",
    "SyncNet",
    "syncnet_from_state_dict",
    "load_syncnet",
    "syncnet_offset_confidence",
    "compute_syncnet",
]

AUDIO_CHANNELS = (64, 192, 384, 256, 256, 512)
LIP_CHANNELS = (96, 256, 256, 256, 256, 512)
EMBEDDING = 1024
BN_EPS = 1e-5
# torch Sequential index of each conv (its batch norm is index + 1).
AUDIO_CONV_INDICES = (0, 4, 8, 11, 14, 18)
LIP_CONV_INDICES = (0, 4, 8, 11, 14, 18)
FC_INDICES = (0, 3)  # Linear, (BatchNorm1d at 1), ReLU, Linear

HOW_TO_GET = (
    "syncnet_v2.model from the syncnet_python repository is a legacy torch pickle; re-save it once "
    "on a machine with torch:\n"
    "  python -c \"import torch; torch.save(torch.load('syncnet_v2.model', map_location='cpu'), "
    "'syncnet_v2.pth')\"\n"
    "and point the config at syncnet_v2.pth (or an .npz/.safetensors with the same keys)"
)


class SyncNetWeightsError(ValueError):
    """SyncNet weights that are missing, unreadable or not in the syncnet_python layout."""


def _max_pool(x, window, strides, padding=None):
    """torch MaxPool on channels-last ``x`` (window, strides, padding over the spatial axes)."""
    pads = [(0, 0)] + [(p, p) for p in (padding or (0,) * len(window))] + [(0, 0)]
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *strides, 1), pads)


class _ConvBN(nnx.Module):
    def __init__(self, fan_in, fan_out, kernel, strides, padding, *, rngs):
        self.conv = nnx.Conv(
            fan_in, fan_out, kernel, strides=strides, padding=[(p, p) for p in padding], rngs=rngs
        )
        self.bn = nnx.BatchNorm(fan_out, use_running_average=True, epsilon=BN_EPS, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


class _Head(nnx.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear (``netfcaud`` / ``netfclip``)."""

    def __init__(self, width, out, *, rngs):
        self.fc1 = nnx.Linear(width, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, use_running_average=True, epsilon=BN_EPS, rngs=rngs)
        self.fc2 = nnx.Linear(width, out, rngs=rngs)

    def __call__(self, x):
        return self.fc2(jax.nn.relu(self.bn(self.fc1(x))))


class SyncNet(nnx.Module):
    """syncnet_python's ``SyncNetModel`` (module docstring); widths shrinkable for tests."""

    def __init__(
        self,
        audio_channels: Sequence[int] = AUDIO_CHANNELS,
        lip_channels: Sequence[int] = LIP_CHANNELS,
        embedding: int = EMBEDDING,
        *,
        rngs: nnx.Rngs,
    ):
        a, v = tuple(audio_channels), tuple(lip_channels)
        if len(a) != 6 or len(v) != 6:
            raise ValueError("audio_channels and lip_channels need 6 widths each")
        self.audio_convs = nnx.List(
            [
                _ConvBN(1, a[0], (3, 3), (1, 1), (1, 1), rngs=rngs),
                _ConvBN(a[0], a[1], (3, 3), (1, 1), (1, 1), rngs=rngs),
                _ConvBN(a[1], a[2], (3, 3), (1, 1), (1, 1), rngs=rngs),
                _ConvBN(a[2], a[3], (3, 3), (1, 1), (1, 1), rngs=rngs),
                _ConvBN(a[3], a[4], (3, 3), (1, 1), (1, 1), rngs=rngs),
                _ConvBN(a[4], a[5], (5, 4), (1, 1), (0, 0), rngs=rngs),
            ]
        )
        self.lip_convs = nnx.List(
            [
                _ConvBN(3, v[0], (5, 7, 7), (1, 2, 2), (0, 0, 0), rngs=rngs),
                _ConvBN(v[0], v[1], (1, 5, 5), (1, 2, 2), (0, 1, 1), rngs=rngs),
                _ConvBN(v[1], v[2], (1, 3, 3), (1, 1, 1), (0, 1, 1), rngs=rngs),
                _ConvBN(v[2], v[3], (1, 3, 3), (1, 1, 1), (0, 1, 1), rngs=rngs),
                _ConvBN(v[3], v[4], (1, 3, 3), (1, 1, 1), (0, 1, 1), rngs=rngs),
                _ConvBN(v[4], v[5], (1, 6, 6), (1, 1, 1), (0, 0, 0), rngs=rngs),
            ]
        )
        self.audio_head = _Head(a[5], embedding, rngs=rngs)
        self.lip_head = _Head(v[5], embedding, rngs=rngs)

    def embed_audio(self, mfcc: jax.Array) -> jax.Array:
        """``[B, 13, 20]`` MFCC windows -> ``[B, 1024]`` (``forward_aud``)."""
        x = jnp.asarray(mfcc, jnp.float32)
        if x.ndim != 3 or x.shape[1:] != (13, 20):
            raise ValueError(
                f"mfcc must be [B, 13, 20] (coefficients x 10 ms steps), got {x.shape}"
            )
        x = x[..., None]
        for index, layer in enumerate(self.audio_convs):
            x = layer(x)
            if index == 1:
                x = _max_pool(x, (3, 3), (1, 2))
            elif index == 4:
                x = _max_pool(x, (3, 3), (2, 2))
        # torch flattens [B, C, 1, 1]; with a 13x20 input the map is 1x1, so the order agrees.
        return self.audio_head(x.reshape(x.shape[0], -1))

    def embed_lips(self, frames: jax.Array) -> jax.Array:
        """``[B, 5, 224, 224, 3]`` **BGR** crops in ``[0, 255]`` -> ``[B, 1024]`` (``forward_lip``).

        BGR as syncnet_python feeds ``cv2.imread`` frames; RGB frames go through
        :func:`compute_syncnet` (or reverse the last axis first).
        """
        x = jnp.asarray(frames, jnp.float32)
        if x.ndim != 5 or x.shape[1] != 5 or x.shape[-1] != 3:
            raise ValueError(f"frames must be [B, 5, H, W, 3] (5 BGR crops), got {x.shape}")
        for index, layer in enumerate(self.lip_convs):
            x = layer(x)
            if index == 0:
                x = _max_pool(x, (1, 3, 3), (1, 2, 2))
            elif index == 1:
                x = _max_pool(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
            elif index == 4:
                x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        if x.shape[1:4] != (1, 1, 1):
            raise ValueError(
                f"frames {frames.shape[2:4]} leave a {x.shape[1:4]} map; SyncNet takes 224x224"
            )
        return self.lip_head(x.reshape(x.shape[0], -1))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _expected_keys(model: SyncNet) -> dict[str, tuple]:
    """torch key -> (module, attribute, torch shape)."""
    out = {}

    def conv_bn(prefix, index, block):
        kernel = block.conv.kernel.shape  # [*k, in, out]
        torch_kernel = (kernel[-1], kernel[-2], *kernel[:-2])
        out[f"{prefix}.{index}.weight"] = (block.conv, "kernel", torch_kernel)
        out[f"{prefix}.{index}.bias"] = (block.conv, "bias", (kernel[-1],))
        bn(prefix, index + 1, block.bn, kernel[-1])

    def bn(prefix, index, module, width):
        for name, attr in (
            ("weight", "scale"),
            ("bias", "bias"),
            ("running_mean", "mean"),
            ("running_var", "var"),
        ):
            out[f"{prefix}.{index}.{name}"] = (module, attr, (width,))

    def head(prefix, module):
        for index, linear in zip(FC_INDICES, (module.fc1, module.fc2), strict=True):
            fan_in, fan_out = linear.kernel.shape
            out[f"{prefix}.{index}.weight"] = (linear, "kernel", (fan_out, fan_in))
            out[f"{prefix}.{index}.bias"] = (linear, "bias", (fan_out,))
        bn(prefix, 1, module.bn, module.fc1.kernel.shape[1])

    for index, block in zip(AUDIO_CONV_INDICES, model.audio_convs, strict=True):
        conv_bn("netcnnaud", index, block)
    for index, block in zip(LIP_CONV_INDICES, model.lip_convs, strict=True):
        conv_bn("netcnnlip", index, block)
    head("netfcaud", model.audio_head)
    head("netfclip", model.lip_head)
    return out


def _to_flax(value: np.ndarray) -> np.ndarray:
    value = value.astype(np.float32)
    if value.ndim == 2:  # Linear [out, in] -> [in, out]
        return value.T
    if value.ndim >= 4:  # Conv [out, in, *k] -> [*k, in, out]
        return np.moveaxis(value, (0, 1), (-1, -2))
    return value


def syncnet_from_state_dict(state_dict: Mapping[str, np.ndarray]) -> SyncNet:
    """A :class:`SyncNet` holding a syncnet_python state dict (widths read from its shapes)."""
    state = {k.removeprefix("module.").removeprefix("__S__."): v for k, v in state_dict.items()}
    state = {k: np.asarray(v) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    try:
        audio = [int(state[f"netcnnaud.{i}.weight"].shape[0]) for i in AUDIO_CONV_INDICES]
        lips = [int(state[f"netcnnlip.{i}.weight"].shape[0]) for i in LIP_CONV_INDICES]
        embedding = int(state["netfcaud.3.weight"].shape[0])
    except KeyError as err:
        raise SyncNetWeightsError(
            f"missing {err}: not a syncnet_python SyncNetModel state dict"
        ) from err
    model = nnx.eval_shape(lambda: SyncNet(audio, lips, embedding, rngs=nnx.Rngs(0)))
    expected = _expected_keys(model)
    problems = state_dict_problems(state, {k: shape for k, (_, _, shape) in expected.items()})
    if problems:
        raise SyncNetWeightsError("not syncnet_python SyncNetModel weights: " + "; ".join(problems))
    for key, (module, attr, _) in expected.items():
        getattr(module, attr).set_value(jnp.asarray(_to_flax(state[key])))
    return model


def load_syncnet(path: str | os.PathLike) -> SyncNet:
    """Loads a re-saved ``syncnet_v2`` state dict (``.pth``, ``.npz``, ``.safetensors``)."""
    try:
        state_dict = read_weights_file(path)
    except ValueError as err:
        message = str(err).replace("VGG16 weights", "SyncNet weights")
        raise SyncNetWeightsError(f"{message}\n{HOW_TO_GET}") from err
    try:
        return syncnet_from_state_dict(state_dict)
    except SyncNetWeightsError as err:
        raise SyncNetWeightsError(f"{path}: {err}") from err


# --------------------------------------------------------------------------------------------
# syncnet_python's offset / confidence and the metric entry point
# --------------------------------------------------------------------------------------------


def syncnet_offset_confidence(lips, audio, vshift: int = 15) -> dict:
    """syncnet_python's ``evaluate``: AV offset, confidence and minimum distance. Pure NumPy.

    For each video step ``t`` and shift ``s`` in ``[-vshift, vshift]``: the Euclidean distance
    (torch ``pairwise_distance``, eps 1e-6) between ``lips[t]`` and ``audio[t + s]``, with the
    audio embeddings zero-padded by ``vshift`` at both ends as syncnet_python does; ``D(s)`` is the
    mean over ``t``; offset ``= -argmin_s D(s)`` (syncnet_python's ``vshift - minidx``),
    confidence ``= median_s D(s) − min_s D(s)``.

    Args:
      lips: ``[T, D]`` lip embeddings (:meth:`SyncNet.embed_lips`).
      audio: ``[T, D]`` audio embeddings (:meth:`SyncNet.embed_audio`), same steps.

    Returns:
      ``{"offset", "confidence", "min_dist", "distances" [2 vshift + 1]}``.
    """
    lips = np.asarray(lips, np.float64)
    audio = np.asarray(audio, np.float64)
    if lips.ndim != 2 or lips.shape != audio.shape or len(lips) == 0:
        raise ValueError(f"lips {lips.shape} and audio {audio.shape} must both be [T, D]")
    padded = np.pad(audio, ((vshift, vshift), (0, 0)))
    window = 2 * vshift + 1
    steps = len(lips)
    # [T, window]: distance of lip step t to padded audio rows t .. t + 2 vshift.
    rows = padded[np.arange(steps)[:, None] + np.arange(window)[None, :]]
    dists = np.linalg.norm(lips[:, None, :] - rows + 1e-6, axis=-1)
    mean = dists.mean(axis=0)
    best = int(np.argmin(mean))
    return {
        "offset": int(vshift - best),
        "confidence": float(np.median(mean) - mean[best]),
        "min_dist": float(mean[best]),
        "distances": mean,
    }


def compute_syncnet(
    mfcc_windows,
    frame_stacks,
    weights: str | os.PathLike | None = None,
    vshift: int = 15,
    batch_size: int = 16,
    channel_order: str = "rgb",
) -> dict:
    """SyncNet offset/confidence of a clip, or ``{"syncnet_confidence": None, "reason"}``.

    Args:
      mfcc_windows: ``[T, 13, 20]`` MFCC window of each video step (module docstring).
      frame_stacks: ``[T, 5, 224, 224, 3]`` the five face crops of each step, ``[0, 255]``.
      weights: the re-saved ``syncnet_v2`` state dict; empty gives the not-computed record.
      channel_order: ``"rgb"`` (jaxhead's frames: renders, decoded videos) or ``"bgr"`` (frames
        read with ``cv2.imread``). The network sees BGR either way, as syncnet_python feeds it.
    """
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if not weights:
        return {
            "syncnet_confidence": None,
            "reason": f"SyncNet weights not configured ({HOW_TO_GET})",
        }
    model = load_syncnet(weights)
    graphdef, params = nnx.split(model)

    @jax.jit
    def embed(params, mfcc, frames):
        net = nnx.merge(graphdef, params)
        return net.embed_lips(frames), net.embed_audio(mfcc)

    mfcc_windows = np.asarray(mfcc_windows, np.float32)
    frame_stacks = np.asarray(frame_stacks, np.float32)
    if channel_order == "rgb":
        frame_stacks = frame_stacks[..., ::-1]  # the published weights were trained on BGR
    if len(mfcc_windows) != len(frame_stacks):
        raise ValueError(f"{len(mfcc_windows)} audio windows for {len(frame_stacks)} video steps")
    lips, audio = [], []
    for start in range(0, len(frame_stacks), batch_size):
        v, a = embed(
            params,
            mfcc_windows[start : start + batch_size],
            frame_stacks[start : start + batch_size],
        )
        lips.append(np.asarray(v))
        audio.append(np.asarray(a))
    result = syncnet_offset_confidence(np.concatenate(lips), np.concatenate(audio), vshift)
    return {
        "syncnet_confidence": result["confidence"],
        "syncnet_offset": result["offset"],
        "syncnet_min_dist": result["min_dist"],
        "steps": int(len(frame_stacks)),
    }
