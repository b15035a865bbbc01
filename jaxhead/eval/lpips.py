"""LPIPS (Zhang et al. 2018, "The unreasonable effectiveness of deep features") in Flax NNX.

The ``lpips`` package's v0.1 metric, for the AlexNet (its default) and VGG16 trunks::

    x      = (2·image − 1 − shift) / scale                     scaling layer, image in [0, 1]
    f_k    = k-th ReLU output of the trunk                     k = 1..5, [N, h_k, w_k, C_k]
    f̂_k    = f_k / (‖f_k‖₂ over channels + 1e-10)              unit-normalised per position
    d      = Σ_k mean_{h,w} Σ_c w_{k,c} (f̂_k(pred) − f̂_k(target))²_c

with ``shift = (−.030, −.088, −.188)``, ``scale = (.458, .448, .450)`` and ``w_k`` the learned,
non-negative "lin" layers (1x1 convolutions without bias, one output channel). The scaling layer
on ``2·image − 1`` is exactly torchvision's ImageNet normalisation of ``image`` (mean ``(1 +
shift)/2 = (.485, .456, .406)``, std ``scale/2 = (.229, .224, .225)``), which is why the VGG16
trunk here is :class:`jaxhead.pretrained.vgg.VGG16Features` unchanged (it normalises inside).

Trunks (torchvision layouts, ``features.{i}.weight`` ``[out, in, kh, kw]`` and ``.bias``):

* AlexNet, ``alexnet().features`` conv indices 0, 3, 6, 8, 10: 11x11/4 pad 2 (64), max-pool 3/2,
  5x5 pad 2 (192), max-pool 3/2, three 3x3 pad 1 (384, 256, 256); LPIPS taps the five ReLUs.
* VGG16, ``vgg16().features``: LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.

The lin layers come from the ``lpips`` package's weight files (``lpips/weights/v0.1/alex.pth``,
``vgg.pth``): keys ``lin{k}.model.1.weight`` ``[1, C_k, 1, 1]`` (``model.0`` when saved without
dropout). A whole ``lpips.LPIPS`` state dict (trunk as ``net.slice{j}.{i}.*``, lins, and the
scaling layer's buffers) is read too. Files: ``.pth``/``.pt`` (read without torch), ``.npz`` or
``.safetensors``, as for :mod:`jaxhead.pretrained.vgg`. Nothing is downloaded.

Without weights :func:`compute_lpips` returns ``{"lpips": None, "reason": ...}``, never a number.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.pretrained import vgg
from jaxhead.pretrained.weights import state_dict_problems

__all__ = [
    "LPIPS_SHIFT",
    "LPIPS_SCALE",
    "ALEXNET_CONV_INDICES",
    "ALEXNET_CHANNELS",
    "VGG_LAYERS",
    "LPIPSWeightsError",
    "AlexNetFeatures",
    "LPIPS",
    "scaling_layer",
    "normalize_channels",
    "lpips_distance",
    "lpips_from_state_dicts",
    "load_lpips",
    "lpips_scores",
    "compute_lpips",
]

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
ALEXNET_CONV_INDICES = (0, 3, 6, 8, 10)
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
# (kernel, stride, padding) of each AlexNet conv; a 3x3/2 max-pool precedes convs 2 and 3.
_ALEXNET_GEOMETRY = ((11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1))
VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
NETS = ("alex", "vgg")
EPS = 1e-10  # lpips.normalize_tensor

HOW_TO_GET = (
    "on a machine with network access: `pip install lpips` ships the lin layers as "
    "lpips/weights/v0.1/{alex,vgg}.pth; save the trunk with\n"
    '  python -c "import torch, torchvision; torch.save(torchvision.models.alexnet('
    "weights='IMAGENET1K_V1').state_dict(), 'alexnet.pth')\"\n"
    "(or vgg16(weights='IMAGENET1K_V1') for net='vgg') and give both paths in the config"
)


class LPIPSWeightsError(ValueError):
    """LPIPS weights that are missing, unreadable or not in the published layout."""


# --------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------


def scaling_layer(images: jax.Array) -> jax.Array:
    """``[..., 3]`` RGB in ``[0, 1]`` -> the trunk's input ``(2x − 1 − shift) / scale``."""
    channel_shape = (1,) * (images.ndim - 1) + (3,)
    shift = jnp.asarray(LPIPS_SHIFT, images.dtype).reshape(channel_shape)
    scale = jnp.asarray(LPIPS_SCALE, images.dtype).reshape(channel_shape)
    return (2.0 * images - 1.0 - shift) / scale


def normalize_channels(features: jax.Array, eps: float = EPS) -> jax.Array:
    """``[..., C]`` divided by its L2 norm over ``C`` (+ ``eps``), lpips' ``normalize_tensor``."""
    norm = jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True))
    return features / (norm + eps)


def lpips_distance(
    features_pred: Sequence[jax.Array],
    features_target: Sequence[jax.Array],
    lin_weights: Sequence[jax.Array],
) -> jax.Array:
    """The LPIPS head: ``Σ_k mean_{h,w} Σ_c w_{k,c} (f̂_k − ĝ_k)²`` (module docstring).

    Args:
      features_pred: per layer ``[N, h_k, w_k, C_k]`` trunk activations of the predictions.
      features_target: the same for the targets.
      lin_weights: per layer ``[C_k]`` lin weights.

    Returns:
      ``[N]`` distances.
    """
    if not len(features_pred) == len(features_target) == len(lin_weights):
        raise ValueError("need one lin weight vector per feature layer")
    total = 0.0
    for f0, f1, w in zip(features_pred, features_target, lin_weights, strict=True):
        diff = jnp.square(normalize_channels(f0) - normalize_channels(f1))
        total = total + jnp.mean(diff @ w, axis=(-2, -1))
    return total


def _max_pool_3x3_2(x: jax.Array) -> jax.Array:
    """torch ``MaxPool2d(kernel_size=3, stride=2)`` on ``[N, H, W, C]`` (no padding, floor)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


class AlexNetFeatures(nnx.Module):
    """torchvision ``alexnet().features`` returning its five ReLU outputs (module docstring).

    Takes already scaled inputs (:func:`scaling_layer`). ``channels`` may be smaller than
    AlexNet's for tests; the layout is unchanged.
    """

    def __init__(self, channels: Sequence[int] = ALEXNET_CHANNELS, *, rngs: nnx.Rngs):
        if len(channels) != 5:
            raise ValueError(f"AlexNet has 5 convolutions, got channels {tuple(channels)}")
        self.channels = tuple(int(c) for c in channels)
        convs = []
        previous = 3
        for width, (kernel, stride, pad) in zip(self.channels, _ALEXNET_GEOMETRY, strict=True):
            convs.append(
                nnx.Conv(
                    previous,
                    width,
                    (kernel, kernel),
                    strides=(stride, stride),
                    padding=((pad, pad), (pad, pad)),
                    rngs=rngs,
                )
            )
            previous = width
        self.convs = nnx.List(convs)

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        """``[N, H, W, 3]`` scaled images -> five ``[N, h, w, C_k]`` ReLU outputs."""
        outputs = []
        for index, conv in enumerate(self.convs):
            if index in (1, 2):
                x = _max_pool_3x3_2(x)
            x = jax.nn.relu(conv(x))
            outputs.append(x)
        return outputs


class LPIPS(nnx.Module):
    """Trunk + lin layers; ``model(pred, target) -> [N]`` LPIPS of images in ``[0, 1]``.

    Args:
      net: ``"alex"`` or ``"vgg"``.
      channels: trunk widths (5 entries: AlexNet's convs, or VGG16's blocks), default the real
        network's.
      rngs: initialisation (the weights are normally loaded).
    """

    def __init__(self, net: str = "alex", channels: Sequence[int] | None = None, *, rngs):
        if net not in NETS:
            raise ValueError(f"unknown LPIPS net {net!r}; use one of {NETS}")
        self.net = net
        if net == "alex":
            self.trunk = AlexNetFeatures(channels or ALEXNET_CHANNELS, rngs=rngs)
            tapped = self.trunk.channels
        else:
            self.trunk = vgg.VGG16Features(tuple(channels or vgg.VGG16_CHANNELS), rngs=rngs)
            tapped = self.trunk.channels
        # Learned weights are non-negative; initialise to 1/C (each layer an average).
        self.lins = nnx.List([nnx.Param(jnp.full((c,), 1.0 / c, jnp.float32)) for c in tapped])

    def features(self, images: jax.Array) -> list[jax.Array]:
        """``[N, H, W, 3]`` in ``[0, 1]`` -> the five tapped ``[N, h, w, C]`` activations."""
        images = jnp.asarray(images, jnp.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3], got {images.shape}")
        if self.net == "alex":
            return self.trunk(scaling_layer(images))
        # VGG16Features applies the ImageNet normalisation == the scaling layer (module docs).
        out = self.trunk(images, VGG_LAYERS)
        return [out[name] for name in VGG_LAYERS]

    def __call__(self, pred: jax.Array, target: jax.Array) -> jax.Array:
        pred = jnp.asarray(pred, jnp.float32)
        target = jnp.asarray(target, jnp.float32)
        if pred.shape != target.shape:
            raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
        features = self.features(jnp.concatenate([pred, target], axis=0))
        n = pred.shape[0]
        weights = [w[...] for w in self.lins]
        return lpips_distance([f[:n] for f in features], [f[n:] for f in features], weights)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_SLICE_KEY = re.compile(r"^net\.slice\d+\.(\d+)\.(weight|bias)$")
_LIN_KEY = re.compile(r"^lin(\d+)\.model\.[01]\.weight$")


def _split_state_dict(state_dict: Mapping[str, np.ndarray]):
    """``(trunk {features.i.*}, lins {k: [C]})`` from torchvision / lpips keys."""
    trunk, lins = {}, {}
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        if match := _SLICE_KEY.match(name):  # whole lpips.LPIPS state dict
            trunk[f"features.{match.group(1)}.{match.group(2)}"] = np.asarray(value)
        elif name.startswith("features."):
            trunk[name] = np.asarray(value)
        elif match := _LIN_KEY.match(name):
            value = np.asarray(value)
            if value.ndim != 4 or value.shape[0] != 1 or value.shape[2:] != (1, 1):
                raise LPIPSWeightsError(f"'{key}' is {value.shape}, expected [1, C, 1, 1]")
            lins[int(match.group(1))] = value.reshape(-1)
    return trunk, lins


def _alexnet_channels(trunk: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    missing = [f"features.{i}.weight" for i in ALEXNET_CONV_INDICES]
    missing = [k for k in missing if k not in trunk]
    if missing:
        raise LPIPSWeightsError(f"missing {missing}: not a torchvision alexnet state dict")
    return tuple(int(trunk[f"features.{i}.weight"].shape[0]) for i in ALEXNET_CONV_INDICES)


def _assign_alexnet(model: AlexNetFeatures, trunk: Mapping[str, np.ndarray]) -> None:
    expected = {}
    for conv, index in zip(model.convs, ALEXNET_CONV_INDICES, strict=True):
        kh, kw, fan_in, fan_out = conv.kernel.shape
        expected[f"features.{index}.weight"] = (fan_out, fan_in, kh, kw)
        expected[f"features.{index}.bias"] = (fan_out,)
    problems = state_dict_problems(trunk, expected)
    if problems:
        raise LPIPSWeightsError(
            "not torchvision alexnet().features weights: " + "; ".join(problems)
        )
    for conv, index in zip(model.convs, ALEXNET_CONV_INDICES, strict=True):
        weight = trunk[f"features.{index}.weight"].astype(np.float32)
        conv.kernel.set_value(jnp.asarray(weight.transpose(2, 3, 1, 0)))  # OIHW -> HWIO
        conv.bias.set_value(jnp.asarray(trunk[f"features.{index}.bias"].astype(np.float32)))


def lpips_from_state_dicts(
    net: str,
    trunk_state_dict: Mapping[str, np.ndarray],
    lin_state_dict: Mapping[str, np.ndarray] | None = None,
) -> LPIPS:
    """An :class:`LPIPS` holding a trunk state dict and the lin layers (module docstring).

    ``lin_state_dict`` may be omitted when ``trunk_state_dict`` is a whole ``lpips.LPIPS`` state
    dict that holds the lins too.
    """
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; use one of {NETS}")
    trunk, lins = _split_state_dict(trunk_state_dict)
    if lin_state_dict is not None:
        lins.update(_split_state_dict(lin_state_dict)[1])
    if not trunk:
        raise LPIPSWeightsError(
            f"no trunk weights ('features.*' or 'net.slice*'): not a torchvision {net} state dict"
        )
    if net == "alex":
        channels = _alexnet_channels(trunk)
    else:
        try:
            channels = vgg.infer_channels(trunk)
        except vgg.VGGWeightsError as err:
            raise LPIPSWeightsError(str(err)) from err
    model = nnx.eval_shape(lambda: LPIPS(net, channels, rngs=nnx.Rngs(0)))
    if net == "alex":
        _assign_alexnet(model.trunk, trunk)
        tapped = channels
    else:
        try:
            vgg.assign_vgg16_weights(model.trunk, trunk)
        except vgg.VGGWeightsError as err:
            raise LPIPSWeightsError(str(err)) from err
        tapped = channels
    if sorted(lins) != list(range(5)):
        raise LPIPSWeightsError(
            f"lin layers lin0..lin4 ('lin{{k}}.model.1.weight') expected, found {sorted(lins)}"
        )
    for k, width in enumerate(tapped):
        if lins[k].shape != (width,):
            raise LPIPSWeightsError(
                f"lin{k} has {lins[k].shape[0]} channels but the {net} trunk's layer {k} has "
                f"{width}: lin weights of another net?"
            )
        model.lins[k].set_value(jnp.asarray(lins[k].astype(np.float32)))
    return model


def load_lpips(
    net: str, trunk_path: str | os.PathLike, lin_path: str | os.PathLike | None = None
) -> LPIPS:
    """Loads LPIPS from a trunk weights file and the lpips lin-layer file (module docstring)."""
    paths = [trunk_path] + ([lin_path] if lin_path else [])
    dicts = []
    for path in paths:
        try:
            dicts.append(vgg.read_weights_file(path))
        except vgg.VGGWeightsError as err:
            raise LPIPSWeightsError(str(err).replace("VGG16 weights", "LPIPS weights")) from err
    try:
        return lpips_from_state_dicts(net, dicts[0], dicts[1] if len(dicts) > 1 else None)
    except LPIPSWeightsError as err:
        raise LPIPSWeightsError(f"{', '.join(map(str, paths))}: {err}") from err


def lpips_scores(model: LPIPS, pred, target, batch_size: int = 8) -> np.ndarray:
    """``[T]`` LPIPS of ``[T, H, W, 3]`` frames in ``[0, 1]``, ``batch_size`` frames at a time.

    The parameters are an argument of the jitted function (not baked-in constants); the last
    batch is padded so one program serves the whole clip.
    """
    pred = np.asarray(pred, np.float32)
    target = np.asarray(target, np.float32)
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must both be [T, H, W, 3]")
    graphdef, params = nnx.split(model)

    @jax.jit
    def score(params, a, b):
        return nnx.merge(graphdef, params)(a, b)

    out = []
    for start in range(0, len(pred), batch_size):
        a, b = pred[start : start + batch_size], target[start : start + batch_size]
        pad = batch_size - len(a)
        if pad:
            a = np.concatenate([a, np.repeat(a[-1:], pad, 0)])
            b = np.concatenate([b, np.repeat(b[-1:], pad, 0)])
        out.append(np.asarray(score(params, a, b))[: batch_size - pad])
    return np.concatenate(out)


def compute_lpips(
    pred,
    target,
    net: str = "alex",
    trunk_weights: str | os.PathLike | None = None,
    lin_weights: str | os.PathLike | None = None,
    batch_size: int = 8,
) -> dict:
    """Clip LPIPS ``{"lpips", "net", "frames"}``, or ``{"lpips": None, "reason"}`` without weights.

    Args:
      pred, target: ``[T, H, W, 3]`` frames in ``[0, 1]``.
      net: ``"alex"`` (the lpips default) or ``"vgg"``.
      trunk_weights: torchvision ``alexnet``/``vgg16`` state dict file, or a whole
        ``lpips.LPIPS`` state dict (then ``lin_weights`` may be empty).
      lin_weights: the lpips package's ``weights/v0.1/{net}.pth``.
    """
    if not trunk_weights:
        return {"lpips": None, "reason": f"LPIPS weights not configured ({HOW_TO_GET})"}
    model = load_lpips(net, trunk_weights, lin_weights or None)
    scores = lpips_scores(model, pred, target, batch_size)
    return {"lpips": float(np.mean(scores)), "net": net, "frames": int(len(scores))}
