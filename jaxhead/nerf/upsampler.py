"""The 2D neural renderer: a low-resolution feature map ``[h, w, F]`` -> an RGB image.

Paper 000 (sec. 3.2) follows HeadNeRF and StyleNeRF: "several Conv2D and leaky ReLU layers,
through which the resolution of the image gradually increases". The paper gives no widths, so
the block is the one of the public HeadNeRF/StyleNeRF renderers:

    stem:   1x1 conv F -> widths[0]                          (mixes channels at low resolution)
    block:  2x upsample -> 3x3 conv -> LeakyReLU(0.2) -> 3x3 conv -> LeakyReLU(0.2)
    output: 3x3 conv -> 3 RGB logits, added to the bilinearly upsampled first 3 feature channels
            (the low-resolution RGB), then a sigmoid.

The RGB skip (StyleGAN2's "skip" generator, which StyleNeRF uses) and a zero-initialised output
convolution make the untrained renderer exactly the bilinear upsampling of the low-resolution RGB,
so the volume-rendered RGB and the image agree from the first step and the convolutions learn
only the high-frequency residual.

Upsampling modes: ``nearest`` (repeat, then the 3x3 conv smooths: no checkerboard artefacts),
``bilinear`` (``jax.image.resize``, half-pixel centres), ``pixel_shuffle`` (a 3x3 conv to 4x the
channels, then depth-to-space, as in ESPCN).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

UPSAMPLE_MODES = ("nearest", "bilinear", "pixel_shuffle")
LEAKY_SLOPE = 0.2


def upsample2x(x: jax.Array, mode: str) -> jax.Array:
    """``[N, h, w, C] -> [N, 2h, 2w, C]`` by ``nearest`` or ``bilinear`` interpolation."""
    n, h, w, c = x.shape
    if mode == "nearest":
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if mode == "bilinear":
        return jax.image.resize(x, (n, 2 * h, 2 * w, c), method="bilinear")
    raise ValueError(f"unknown upsample mode {mode!r}; use one of {UPSAMPLE_MODES}")


def depth_to_space(x: jax.Array, factor: int) -> jax.Array:
    """Pixel shuffle ``[N, h, w, C·f²] -> [N, f·h, f·w, C]`` (channel order ``(dy, dx, C)``)."""
    n, h, w, channels = x.shape
    if channels % (factor * factor):
        raise ValueError(f"channels {channels} are not divisible by factor² = {factor * factor}")
    c = channels // (factor * factor)
    x = x.reshape(n, h, w, factor, factor, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * factor, w * factor, c)


class UpsampleBlock(nnx.Module):
    """2x upsampling then two 3x3 conv + LeakyReLU layers, ``[N, h, w, C_in] -> [N, 2h, 2w, C]``."""

    def __init__(self, in_channels: int, out_channels: int, mode: str, *, rngs: nnx.Rngs):
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample mode {mode!r}; use one of {UPSAMPLE_MODES}")
        self.mode = mode
        conv_in = in_channels
        if mode == "pixel_shuffle":
            self.expand = nnx.Conv(in_channels, 4 * in_channels, (3, 3), padding="SAME", rngs=rngs)
        else:
            self.expand = None
        self.conv1 = nnx.Conv(conv_in, out_channels, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(out_channels, out_channels, (3, 3), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.expand is not None:
            x = depth_to_space(self.expand(x), 2)
        else:
            x = upsample2x(x, self.mode)
        x = jax.nn.leaky_relu(self.conv1(x), LEAKY_SLOPE)
        return jax.nn.leaky_relu(self.conv2(x), LEAKY_SLOPE)


class Upsampler(nnx.Module):
    """Neural renderer ``[..., h, w, F] -> [..., s·h, s·w, 3]`` in [0, 1] (module docstring).

    Args:
      in_features: channels ``F`` of the feature map; channels 0..2 are RGB logits.
      scale: upsampling factor, a power of two (1, 2, 4, 8: 32² -> 128² is 4, 64² -> 512² is 8).
      widths: channels of each 2x block, ``log2(scale)`` entries (the stem outputs
        ``widths[0]``); with ``scale = 1``, one entry, the stem width.
      mode: ``nearest``, ``bilinear`` or ``pixel_shuffle``.
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        in_features: int,
        scale: int = 4,
        widths: tuple[int, ...] = (64, 32),
        mode: str = "nearest",
        *,
        rngs: nnx.Rngs,
    ):
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two >= 1, got {scale}")
        if in_features < 3:
            raise ValueError(f"in_features must be >= 3 (RGB channels first), got {in_features}")
        num_blocks = int(math.log2(scale))
        widths = tuple(int(w) for w in widths)
        if len(widths) != max(num_blocks, 1):
            raise ValueError(
                f"widths {widths} must have log2(scale) = {num_blocks} entries "
                "(one entry, the stem width, when scale is 1)"
            )
        self.in_features = in_features
        self.scale = scale
        self.stem = nnx.Conv(in_features, widths[0], (1, 1), rngs=rngs)
        blocks = []
        previous = widths[0]
        for width in widths[:num_blocks]:
            blocks.append(UpsampleBlock(previous, width, mode, rngs=rngs))
            previous = width
        self.blocks = nnx.List(blocks)
        self.to_rgb = nnx.Conv(
            previous,
            3,
            (3, 3),
            padding="SAME",
            kernel_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )

    def __call__(self, features: jax.Array) -> jax.Array:
        features = jnp.asarray(features)
        if features.ndim < 3 or features.shape[-1] != self.in_features:
            raise ValueError(
                f"feature map must be [..., h, w, {self.in_features}], got {features.shape}"
            )
        batch = features.shape[:-3]
        h, w = features.shape[-3:-1]
        x = features.reshape((-1, h, w, self.in_features))
        rgb_lowres = x[..., :3]
        x = jax.nn.leaky_relu(self.stem(x), LEAKY_SLOPE)
        for block in self.blocks:
            x = block(x)
        out_h, out_w = h * self.scale, w * self.scale
        skip = jax.image.resize(rgb_lowres, (x.shape[0], out_h, out_w, 3), method="bilinear")
        image = jax.nn.sigmoid(skip + self.to_rgb(x))
        return image.reshape((*batch, out_h, out_w, 3))
