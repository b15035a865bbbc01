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

    ``sqrt`` has an infinite derivative at 0, so the squared norm is clamped below by a tiny
    positive value before the square root: the gradient at ``x = 0`` is then exactly 0 instead of
    NaN. The sum of squares is computed on ``x`` divided by ``stop_gradient(max|x|)`` so that
    vectors with entries ~1e20 do not overflow to ``inf`` in float32; the norm is positively
    homogeneous, so the rescaling changes neither the value nor the gradient.

    Args:
      x: ``[..., D, ...]`` array.
      axis: axis to reduce.
      keepdims: keep the reduced axis with size 1.
      eps: lower bound on the returned norm (0 keeps the exact norm, except at ``x = 0``).

    Returns:
      ``x.shape`` without ``axis`` (or with it of size 1 when ``keepdims``).
    """
    x = jnp.asarray(x)
    tiny = jnp.finfo(jnp.result_type(x, jnp.float32)).tiny
    scale = jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(x), axis=axis, keepdims=True), tiny))
    scaled = x / scale
    squared = jnp.sum(scaled * scaled, axis=axis, keepdims=True)
    norm = scale * jnp.sqrt(jnp.maximum(squared, tiny))
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
    a = a / _stop_max_abs(a)
    b = b / _stop_max_abs(b)
    dot = jnp.sum(a * b, axis=-1)
    denom = safe_norm(a, eps=eps) * safe_norm(b, eps=eps)
    return jnp.clip(dot / denom, -1.0, 1.0)


def _stop_max_abs(x: jax.Array) -> jax.Array:
    """``stop_gradient(max(max|x|, tiny))`` over the last axis, keeping it: a rescaling constant."""
    tiny = jnp.finfo(jnp.result_type(x, jnp.float32)).tiny
    return jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(x), axis=-1, keepdims=True), tiny))
