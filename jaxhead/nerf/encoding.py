"""Input encodings for coordinate networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def positional_encoding(x: jax.Array, num_freqs: int, include_input: bool = True) -> jax.Array:
    """NeRF's frequency encoding γ(x) (Mildenhall et al. 2020, eq. 4), with frequencies 2^k.

    Feature order is NeRF's: ``[x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ...,
    sin(2^(L-1) x), cos(2^(L-1) x)]``, each block ``D`` wide, where ``L = num_freqs``. Like the
    reference NeRF code (and unlike the paper's formula) there is no factor π: inputs are
    expected to be scaled to a range of a few units already.

    Args:
      x: ``[..., D]`` coordinates.
      num_freqs: number of frequency bands ``L`` (static Python int, may be 0).
      include_input: prepend ``x`` itself.

    Returns:
      ``[..., D * (include_input + 2 * num_freqs)]``.
    """
    x = jnp.asarray(x)
    if num_freqs < 0:
        raise ValueError(f"num_freqs must be >= 0, got {num_freqs}")
    scales = 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)
    scales = scales.reshape((1,) * (x.ndim - 1) + (num_freqs, 1))
    scaled = x[..., None, :] * scales  # [..., L, D]
    # [..., L, 2, D] flattened gives the per-frequency (sin, cos) interleaving.
    features = jnp.stack([jnp.sin(scaled), jnp.cos(scaled)], axis=-2)
    features = features.reshape(*x.shape[:-1], 2 * num_freqs * x.shape[-1])
    if include_input:
        features = jnp.concatenate([x, features], axis=-1)
    return features
