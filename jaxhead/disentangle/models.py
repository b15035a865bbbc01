"""Modules of the disentangle stage (Flax NNX): parameters and forward passes only.

* :class:`CodeExtractor` — the latent-code extractor of paper 000 sec. 3.3: an image encoder with
  one head per latent code (``id``, ``ex``, ``al``, ``ill``), HeadNeRF's split of the latent
  space. The paper takes "the same structure as HeadNeRF" without details; we use a small strided
  CNN trunk (no pooling before the flatten, so the trunk keeps where things are) and a two-layer
  MLP per head, the usual contrastive-learning layout (SimCLR-style projection per head).
* :class:`LandmarkAutoencoder` — DFA-NeRF's fully connected autoencoder (paper 001 fig. 3):
  ``E_L`` maps the landmark vector to a mouth embedding ``f_m`` and an eye-blink embedding
  ``f_e``; ``D_L`` maps ``(f_m, f_e)`` back to the landmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class CodeExtractor(nnx.Module):
    """``images [B, H, W, 3] in [0, 1] -> {name: [B, D_name]}`` raw (unnormalised) codes.

    Args:
      code_sizes: ``((name, dim), ...)`` in head order, e.g. ``(("id", 32), ("ex", 16), ...)``.
      image_size: ``H == W`` of the input.
      channels: output channels of the stride-2 3x3 convolutions.
      hidden: width of the shared dense layer and of each head's hidden layer.
    """

    def __init__(
        self,
        code_sizes: Sequence[tuple[str, int]],
        image_size: int,
        channels: Sequence[int] = (32, 64, 96, 128),
        hidden: int = 256,
        *,
        rngs: nnx.Rngs,
    ):
        if image_size % (2 ** len(channels)):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2^{len(channels)} (one halving per "
                "convolution)"
            )
        self.names = tuple(name for name, _ in code_sizes)
        self.image_size = int(image_size)
        widths = (3, *channels)
        self.convs = nnx.List(
            [
                nnx.Conv(widths[i], widths[i + 1], (3, 3), strides=(2, 2), rngs=rngs)
                for i in range(len(channels))
            ]
        )
        side = image_size // 2 ** len(channels)
        self.trunk = nnx.Linear(side * side * channels[-1], hidden, rngs=rngs)
        self.norm = nnx.LayerNorm(hidden, rngs=rngs)
        self.heads = nnx.Dict(
            {
                name: nnx.List(
                    [nnx.Linear(hidden, hidden, rngs=rngs), nnx.Linear(hidden, dim, rngs=rngs)]
                )
                for name, dim in code_sizes
            }
        )

    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        if images.shape[-3:] != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"CodeExtractor expects [..., {self.image_size}, {self.image_size}, 3] images, "
                f"got {images.shape}"
            )
        x = images - 0.5
        for conv in self.convs:
            x = nnx.gelu(conv(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        x = self.norm(nnx.gelu(self.trunk(x)))
        out = {}
        for name in self.names:
            first, last = self.heads[name]
            out[name] = last(nnx.gelu(first(x)))
        return out


def unit_rms(code: jax.Array) -> jax.Array:
    """``[..., D]`` codes scaled to unit RMS per entry: ``sqrt(D) * c / ‖c‖``.

    The contrastive loss only sees directions (cosine similarity), so the reference codes handed
    to the NeRF stage are the directions, at the scale of a standard-normal code.
    """
    norm = jnp.linalg.norm(code, axis=-1, keepdims=True)
    return code * (jnp.sqrt(code.shape[-1]) / jnp.maximum(norm, 1e-12))


class LandmarkAutoencoder(nnx.Module):
    """DFA-NeRF's landmark autoencoder (paper 001 fig. 3).

    Args:
      input_dim: length of the flat landmark vector (mouth part, then eye part).
      mouth_dim, eye_dim: sizes of ``f_m`` and ``f_e``.
      hidden: widths of the hidden layers of ``E_L`` (``D_L`` mirrors them).
    """

    def __init__(
        self,
        input_dim: int,
        mouth_dim: int = 16,
        eye_dim: int = 4,
        hidden: Sequence[int] = (256, 128),
        *,
        rngs: nnx.Rngs,
    ):
        dims = (input_dim, *hidden)
        self.encoder = nnx.List(
            [nnx.Linear(dims[i], dims[i + 1], rngs=rngs) for i in range(len(hidden))]
        )
        self.to_mouth = nnx.Linear(dims[-1], mouth_dim, rngs=rngs)
        self.to_eyes = nnx.Linear(dims[-1], eye_dim, rngs=rngs)
        back = (mouth_dim + eye_dim, *reversed(hidden))
        self.decoder = nnx.List(
            [nnx.Linear(back[i], back[i + 1], rngs=rngs) for i in range(len(hidden))]
        )
        self.out = nnx.Linear(back[-1], input_dim, rngs=rngs)

    def encode(self, landmarks: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``E_L``: ``[B, input_dim] -> (f_m [B, mouth_dim], f_e [B, eye_dim])``."""
        x = landmarks
        for layer in self.encoder:
            x = nnx.gelu(layer(x))
        return self.to_mouth(x), self.to_eyes(x)

    def decode(self, f_m: jax.Array, f_e: jax.Array) -> jax.Array:
        """``D_L``: ``(f_m, f_e) -> [B, input_dim]``."""
        x = jnp.concatenate([f_m, f_e], axis=-1)
        for layer in self.decoder:
            x = nnx.gelu(layer(x))
        return self.out(x)

    def __call__(self, landmarks: jax.Array) -> jax.Array:
        return self.decode(*self.encode(landmarks))
