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
import numpy as np
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


# Row (and column) taps of the four output phases of "nearest 2x, then a 3x3 conv": output row
# 2i + a reads input rows (i - 1, i) for a = 0 and (i, i + 1) for a = 1, with the 3x3 kernel's
# rows summed into those two taps; the padding that keeps the 'SAME' borders for each phase.
_PHASE_TAPS = (
    np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], np.float32),
    np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32),
)
_PHASE_PAD = ((1, 0), (0, 1))


def nearest_upsample_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``conv3x3_same(upsample2x(x, "nearest"))`` without the upsampled intermediate.

    ``x`` ``[N, h, w, C_in]``, ``kernel`` ``[3, 3, C_in, C_out]`` (HWIO), ``bias`` ``[C_out]``
    -> ``[N, 2h, 2w, C_out]``. Each of the four output phases ``(a, b)`` (``y[2i+a, 2j+b]``)
    sees the repeated pixels of two input rows and two input columns, so it is a 2x2
    convolution of ``x`` with the 3x3 kernel's taps summed (``_PHASE_TAPS``): 16 taps per output
    pixel group instead of 36 at four times the pixels, the same sums (the sub-pixel form of a
    resize-convolution)."""
    n, h, w, _ = x.shape
    phases = []
    for a in range(2):
        row = []
        for b in range(2):
            k = jnp.einsum("ry,yxio,cx->rcio", _PHASE_TAPS[a], kernel, _PHASE_TAPS[b])
            y = jax.lax.conv_general_dilated(
                x, k, (1, 1), (_PHASE_PAD[a], _PHASE_PAD[b]),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )  # fmt: skip
            row.append(y)
        phases.append(jnp.stack(row, axis=3))  # [N, h, w, 2(b), C]
    y = jnp.stack(phases, axis=2)  # [N, h, 2(a), w, 2(b), C]
    y = y.reshape(n, 2 * h, 2 * w, kernel.shape[-1])
    return y if bias is None else y + bias.reshape(1, 1, 1, -1)


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
            x = self.conv1(depth_to_space(self.expand(x), 2))
        elif self.mode == "nearest":  # the same sums as conv1(upsample2x(x)), 2.25x fewer
            x = nearest_upsample_conv(x, self.conv1.kernel[...], self.conv1.bias[...])
        else:
            x = self.conv1(upsample2x(x, self.mode))
        x = jax.nn.leaky_relu(x, LEAKY_SLOPE)
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
