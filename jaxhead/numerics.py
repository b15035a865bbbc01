"""Numerics helpers shared by the pure core (NeRF rendering, sync losses, GP-VAE).

Everything here is framework-free and safe at extreme scales: values *and* gradients stay finite
for zero vectors and for inputs whose squares overflow float32. The helpers live in one place so
that every loss makes the same choice about epsilons (as multinerf's ``math.py`` does).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Matches torch.nn.functional.cosine_similarity, so similarities agree with PyTorch references.
COSINE_EPS = 1e-8


def safe_norm(x: jax.Array, axis: int = -1, keepdims: bool = False, eps: float = 0.0) -> jax.Array:
    """Euclidean norm ``max(‖x‖, eps)`` with a finite gradient everywhere, including ``x = 0``.

    ``sqrt`` has an infinite derivative at 0, so a zero vector takes a separate branch whose
    value and gradient are exactly 0 (instead of NaN). The sum of squares is computed on ``x``
    divided by ``stop_gradient(max|x|)`` so that entries ~1e30 do not overflow, nor entries
    ~1e-30 underflow, in float32; the norm is positively homogeneous, so the rescaling changes
    neither the value nor the gradient.

    Args:
      x: ``[..., D, ...]`` array.
      axis: axis to reduce.
      keepdims: keep the reduced axis with size 1.
      eps: lower bound on the returned norm (0 keeps the exact norm, except at ``x = 0``).

    Returns:
      ``x.shape`` without ``axis`` (or with it of size 1 when ``keepdims``).
    """
    x = jnp.asarray(x)
    scale = _rescaling_constant(x, axis)
    scaled = x / scale
    squared = jnp.sum(scaled * scaled, axis=axis, keepdims=True)
    # Double `where`: the untaken sqrt branch never sees 0, so its gradient cannot be NaN.
    nonzero = squared > 0
    norm = jnp.where(nonzero, scale * jnp.sqrt(jnp.where(nonzero, squared, 1.0)), 0.0)
    norm = jnp.maximum(norm, eps)
    return norm if keepdims else jnp.squeeze(norm, axis=axis)


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = COSINE_EPS) -> jax.Array:
    """Cosine similarity ``a·b / (‖a‖·‖b‖)`` over the last axis, safe for zero vectors.

    Both inputs are first divided by ``stop_gradient`` of their largest absolute entry. Cosine
    similarity is invariant to positive rescaling, so this changes neither the value nor the
    gradient, but keeps ``a·b`` and ``‖a‖²`` inside float32 range for inputs as large as 1e30 and
    as small as 1e-30, and makes the result exactly scale invariant. After that rescaling every
    non-zero vector has norm >= 1, so ``eps`` (the lower bound on each norm, as in PyTorch's
    ``cosine_similarity``) only matters for the zero vector: it has similarity 0 with everything
    and a finite (zero) gradient.

    Args:
      a: ``[..., D]``.
      b: ``[..., D]`` (broadcastable against ``a`` with equal rank).

    Returns:
      ``[...]`` similarities in [-1, 1].
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    a = a / _rescaling_constant(a, -1)
    b = b / _rescaling_constant(b, -1)
    dot = jnp.sum(a * b, axis=-1)
    denom = safe_norm(a, eps=eps) * safe_norm(b, eps=eps)
    return jnp.clip(dot / denom, -1.0, 1.0)


def _rescaling_constant(x: jax.Array, axis: int) -> jax.Array:
    """``stop_gradient(max|x|)`` along ``axis`` (kept), or 1 where that is 0 or subnormal.

    Dividing by it brings the largest entry to 1. Zero and subnormal vectors are left unscaled:
    dividing by a subnormal would overflow, and so would the gradient of dividing by ``tiny``.
    """
    tiny = jnp.finfo(jnp.result_type(x, jnp.float32)).tiny
    largest = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    return jax.lax.stop_gradient(jnp.where(largest >= tiny, largest, 1.0))
