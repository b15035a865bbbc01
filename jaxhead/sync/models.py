"""Audio and lip encoders of the sync stage (paper 000 §3.4 fig. 3, paper 001 §3.3).

Both encoders read a short window around a video frame (about 0.2 s, as SyncNet: 5 video frames
of mouth landmarks, and the 20 MFCC steps at 100 Hz that span the same 0.2 s) and emit an
embedding of ``embed_dim`` non-negative numbers: the last layer is a ReLU, as in Wav2Lip's sync
expert, so that the cosine similarity of two embeddings lies in ``[0, 1]`` and can be read as a
probability by the BCE loss of paper 001 eq. 3.

The papers leave the architecture open ("a CNN audio encoder E_a", "a lip expression encoder").
We use the same temporal CNN for both: 1D convolutions over the window's time axis with the
feature channels (MFCC coefficients, or flattened mouth landmark coordinates) as input channels,
LayerNorm + ReLU after each, the time axis halved from the second layer on, then the flattened
map through two dense layers. Flattening (rather than pooling) keeps the position of events
inside the window, which is what pins the AV offset to a frame.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["WindowEncoder", "SyncModel"]


class WindowEncoder(nnx.Module):
    """Temporal CNN ``[..., window, in_features] -> [..., embed_dim]`` with non-negative output.

    Args:
      in_features: channels per time step (13 MFCCs, 80 log-mels, 40 = 20 mouth points x 2).
      window: time steps per window (20 MFCC steps, 5 video frames).
      channels: output channels of the conv layers; layer ``i >= 1`` has stride 2 in time.
      hidden: width of the dense layer after the convolutions.
      embed_dim: size of the embedding.
    """

    def __init__(
        self,
        in_features: int,
        window: int,
        channels: tuple[int, ...] = (64, 128, 256),
        hidden: int = 256,
        embed_dim: int = 128,
        *,
        rngs: nnx.Rngs,
    ):
        if in_features < 1 or window < 1 or not channels:
            raise ValueError(
                f"WindowEncoder needs in_features >= 1, window >= 1 and at least one conv layer; "
                f"got {in_features}, {window}, {channels}"
            )
        self.in_features, self.window = in_features, window
        convs, norms = [], []
        length, previous = window, in_features
        for i, width in enumerate(channels):
            stride = 1 if i == 0 else 2
            convs.append(nnx.Conv(previous, width, kernel_size=(3,), strides=(stride,), rngs=rngs))
            norms.append(nnx.LayerNorm(width, rngs=rngs))
            length, previous = math.ceil(length / stride), width  # 'SAME' padding
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.hidden = nnx.Linear(length * previous, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, embed_dim, rngs=rngs)

    def __call__(self, x: jax.Array, pre_activation: bool = False) -> jax.Array:
        """``x``: ``[..., window, in_features]`` -> ``[..., embed_dim]`` (all entries >= 0).

        ``pre_activation``: the output layer's values before the final ReLU (dense, signed): what
        other stages read as a feature (most embedding entries are exactly zero after the ReLU).
        """
        if x.shape[-2:] != (self.window, self.in_features):
            raise ValueError(
                f"encoder input must be [..., {self.window}, {self.in_features}] "
                f"(window x features), got shape {x.shape}"
            )
        batch = x.shape[:-2]
        h = x.reshape((-1, self.window, self.in_features))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = jax.nn.relu(norm(conv(h)))
        h = jax.nn.relu(self.hidden(h.reshape((h.shape[0], -1))))
        # Final ReLU: non-negative embeddings (Wav2Lip's sync expert), so cosine >= 0 (eq. 3).
        h = self.out(h) if pre_activation else jax.nn.relu(self.out(h))
        return h.reshape(batch + h.shape[-1:])


class SyncModel(nnx.Module):
    """The pair of encoders: ``audio`` (E_audio / E_a) and ``lip`` (lip expression encoder).

    Args:
      audio_shape: ``(window, features)`` of an audio window (e.g. 20 MFCC steps x 13).
      lip_shape: ``(window, features)`` of a lip window (e.g. 5 frames x 40 coordinates).
      channels, hidden, embed_dim: see :class:`WindowEncoder` (shared by both encoders).
    """

    def __init__(
        self,
        audio_shape: tuple[int, int],
        lip_shape: tuple[int, int],
        channels: tuple[int, ...] = (64, 128, 256),
        hidden: int = 256,
        embed_dim: int = 128,
        *,
        rngs: nnx.Rngs,
    ):
        self.audio = WindowEncoder(
            audio_shape[1], audio_shape[0], tuple(channels), hidden, embed_dim, rngs=rngs
        )
        self.lip = WindowEncoder(
            lip_shape[1], lip_shape[0], tuple(channels), hidden, embed_dim, rngs=rngs
        )

    def __call__(self, audio: jax.Array, lips: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(F_al [..., D], F_lip [..., D])`` of audio windows and lip windows."""
        return self.audio(jnp.asarray(audio)), self.lip(jnp.asarray(lips))
