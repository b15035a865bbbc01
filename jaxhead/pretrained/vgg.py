"""VGG16 feature extractor in Flax NNX, with loaders for the published ImageNet weights.

The perceptual loss of paper 000 (eq. 4, after Johnson et al.) compares VGG16 activations.
:class:`VGG16Features` is torchvision's ``vgg16().features``: thirteen 3x3 convolutions (padding
1) with ReLU and five 2x2 max-pools, in five blocks of 2, 2, 3, 3, 3 convolutions of 64, 128,
256, 512, 512 channels. Inputs are RGB in ``[0, 1]``, ``[N, H, W, 3]``; the ImageNet
normalisation torchvision's weights expect is applied inside.

Weights come from the torchvision state dict (``torch.save(vgg16(weights=...).state_dict())``,
e.g. ``vgg16-397923af.pth``): keys ``features.{i}.weight`` ``[out, in, 3, 3]`` and
``features.{i}.bias`` ``[out]`` for the conv indices ``i`` in :data:`TORCH_CONV_INDICES`
(``classifier.*`` is ignored). Supported files: ``.pth``/``.pt`` (torch's zip format, read
without torch by :func:`jaxhead.pretrained.weights.read_torch_state_dict`), ``.safetensors`` and
``.npz`` with the same keys. Nothing is downloaded: the path comes from the config.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.pretrained import weights
from jaxhead.pretrained.weights import state_dict_problems

# torchvision vgg16().features: index of each Conv2d in the nn.Sequential, block by block.
TORCH_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
VGG16_CHANNELS = (64, 128, 256, 512, 512)
# ImageNet statistics of the torchvision weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple[str, ...]:
    """Conv names in order: ``conv1_1, conv1_2, conv2_1, ...`` (ReLU outputs: ``relu1_1``...)."""
    names = []
    for block, count in enumerate(CONVS_PER_BLOCK, start=1):
        names.extend(f"conv{block}_{i}" for i in range(1, count + 1))
    return tuple(names)


CONV_NAMES = _layer_names()
RELU_NAMES = tuple(name.replace("conv", "relu") for name in CONV_NAMES)
# Johnson et al.'s and most perceptual losses' choice.
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

HOW_TO_GET = (
    "save torchvision's ImageNet VGG16 on a machine with network access, e.g.\n"
    '  python -c "import torch, torchvision; torch.save(torchvision.models.vgg16('
    "weights='IMAGENET1K_V1').state_dict(), 'vgg16.pth')\"\n"
    "and point the config at the file (.pth, .safetensors or .npz with the same keys)"
)


class VGGWeightsError(ValueError):
    """A VGG16 weights file that is missing, unreadable or not in the torchvision layout."""


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """``[N, H, W, C] -> [N, H//2, W//2, C]``: torch ``MaxPool2d(2, 2)`` (odd edges dropped)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


class VGG16Features(nnx.Module):
    """torchvision ``vgg16().features`` in NNX (module docstring).

    Args:
      channels: per-block widths; VGG16's ``(64, 128, 256, 512, 512)`` unless a test wants a
        smaller network of the same layout.
      rngs: initialisation (the weights are normally loaded).
    """

    def __init__(self, channels: tuple[int, ...] = VGG16_CHANNELS, *, rngs: nnx.Rngs):
        if len(channels) != len(CONVS_PER_BLOCK):
            raise ValueError(f"channels must have 5 entries (one per block), got {channels}")
        self.channels = tuple(int(c) for c in channels)
        convs = []
        previous = 3
        for width, count in zip(self.channels, CONVS_PER_BLOCK, strict=True):
            for _ in range(count):
                convs.append(nnx.Conv(previous, width, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs))
                previous = width
        self.convs = nnx.List(convs)

    def __call__(
        self, images: jax.Array, layers: Iterable[str] = DEFAULT_LAYERS
    ) -> dict[str, jax.Array]:
        """Activations ``{name: [N, h, w, C]}`` of ``images [N, H, W, 3]`` in ``[0, 1]``.

        Names are ``relu{block}_{i}`` (after the ReLU) or ``conv{block}_{i}`` (before it); the
        network stops after the deepest requested layer.
        """
        layers = tuple(layers)
        known = set(CONV_NAMES) | set(RELU_NAMES)
        unknown = sorted(set(layers) - known)
        if unknown:
            raise ValueError(f"unknown VGG16 layers {unknown}; use e.g. {DEFAULT_LAYERS}")
        images = jnp.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3], got {images.shape}")
        deepest = max(
            (CONV_NAMES.index(name.replace("relu", "conv")) for name in layers), default=-1
        )
        mean = jnp.asarray(IMAGENET_MEAN, images.dtype).reshape(1, 1, 1, 3)
        std = jnp.asarray(IMAGENET_STD, images.dtype).reshape(1, 1, 1, 3)
        x = (images - mean) / std
        outputs = {}
        index = 0
        for count in CONVS_PER_BLOCK:
            if index > deepest:
                break
            if index > 0:
                x = max_pool_2x2(x)
            for _ in range(count):
                x = self.convs[index](x)
                outputs[CONV_NAMES[index]] = x
                x = jax.nn.relu(x)
                outputs[RELU_NAMES[index]] = x
                index += 1
                if index > deepest:
                    break
        return {name: outputs[name] for name in layers}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def read_weights_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Raw arrays of a VGG16 weights file (:func:`jaxhead.pretrained.weights.read_weights_file`),
    with the how-to-get hint in the error."""
    try:
        return weights.read_weights_file(path)
    except weights.CheckpointError as err:
        raise VGGWeightsError(f"{err}; {HOW_TO_GET}") from err


def _feature_arrays(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``features.*`` entries with an optional ``module.`` (DataParallel) prefix removed."""
    out = {}
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        if name.startswith("features."):
            out[name] = np.asarray(value)
    return out


def infer_channels(state_dict: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    """Per-block widths of a torchvision-layout state dict (from each block's first conv)."""
    features = _feature_arrays(state_dict)
    channels = []
    conv = 0
    for count in CONVS_PER_BLOCK:
        key = f"features.{TORCH_CONV_INDICES[conv]}.weight"
        if key not in features:
            raise VGGWeightsError(f"missing '{key}': not a torchvision vgg16 state dict")
        channels.append(int(features[key].shape[0]))
        conv += count
    return tuple(channels)


def assign_vgg16_weights(model: VGG16Features, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copies a torchvision-layout state dict into ``model``, checking every key and shape.

    Raises:
      VGGWeightsError: listing missing keys, keys of another layout (e.g. ``vgg16_bn``'s batch
        norms) and mis-shaped arrays.
    """
    features = _feature_arrays(state_dict)
    expected = {}
    for conv, index in zip(model.convs, TORCH_CONV_INDICES, strict=True):
        kernel_h, kernel_w, fan_in, fan_out = conv.kernel.shape
        expected[f"features.{index}.weight"] = (fan_out, fan_in, kernel_h, kernel_w)
        expected[f"features.{index}.bias"] = (fan_out,)
    problems = state_dict_problems(features, expected, " (a vgg16_bn or other layout?)")
    if problems:
        raise VGGWeightsError(
            "not torchvision vgg16().features weights for this network: " + "; ".join(problems)
        )
    for conv, index in zip(model.convs, TORCH_CONV_INDICES, strict=True):
        weight = features[f"features.{index}.weight"].astype(np.float32)
        # torch [out, in, kh, kw] -> flax [kh, kw, in, out]; both are cross-correlations.
        conv.kernel.set_value(jnp.asarray(weight.transpose(2, 3, 1, 0)))
        conv.bias.set_value(jnp.asarray(features[f"features.{index}.bias"].astype(np.float32)))


def vgg16_from_state_dict(state_dict: Mapping[str, np.ndarray]) -> VGG16Features:
    """A :class:`VGG16Features` holding the weights of a torchvision-layout state dict."""
    channels = infer_channels(state_dict)
    # Abstract construction: no random initialisation of weights that are overwritten anyway.
    model = nnx.eval_shape(lambda: VGG16Features(channels, rngs=nnx.Rngs(0)))
    assign_vgg16_weights(model, state_dict)
    return model


def load_vgg16(path: str | os.PathLike) -> VGG16Features:
    """Loads VGG16 features from a ``.pth``, ``.safetensors`` or ``.npz`` file (module docs)."""
    state_dict = read_weights_file(path)
    try:
        return vgg16_from_state_dict(state_dict)
    except VGGWeightsError as err:
        raise VGGWeightsError(f"{path}: {err}") from err
