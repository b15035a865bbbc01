"""Losses of the disentangle stage (pure): factor-wise InfoNCE and the landmark swap loss.

* :func:`factor_info_nce` pre-trains one head of the latent-code extractor (paper 000 sec. 3.3,
  "Disentangled Loss"): within a group of images whose factors are known, the images that show the
  anchor's value of the head's factor are positives ("different people, same expression" for the
  expression head), the others negatives ("same person, different expression"), and every image
  of the other groups is a further negative (:mod:`jaxhead.disentangle.data` builds the groups).
* :func:`swap_reconstruction_loss` is paper 001 eq. 2: the landmark autoencoder reconstructs
  faces A and B from their own embeddings and the two swapped combinations, with L1.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxhead.sync.losses import info_nce


def other_group_indices(num_groups: int, group_size: int) -> np.ndarray:
    """``[G, (G-1) * S]`` flat indices (into ``[G * S]``) of every image outside each group."""
    flat = np.arange(num_groups * group_size).reshape(num_groups, group_size)
    return np.stack([np.delete(flat, g, axis=0).ravel() for g in range(num_groups)])


def factor_info_nce(codes: jax.Array, shares, temperature: float) -> jax.Array:
    """InfoNCE of one extractor head over groups with known factor sharing.

    Args:
      codes: ``[G, S, D]`` this head's codes of ``G >= 2`` groups of ``S`` images; slot 0 is the
        anchor.
      shares: ``[S]`` static booleans: slot ``s`` shows the anchor's value of the head's factor
        (``shares[0]`` is the anchor itself). At least one other slot must share.
      temperature: τ of the cosine-similarity logits.

    Returns:
      scalar: the mean over the positive slots (``s >= 1`` with ``shares[s]``) of
      :func:`jaxhead.sync.losses.info_nce` with negatives ``[non-sharing slots of the group] +
      [every slot of the other groups]``.
    """
    num_groups, group_size, dim = codes.shape
    shares = np.asarray(shares, bool)
    if shares.shape != (group_size,):
        raise ValueError(f"shares has shape {shares.shape}, expected ({group_size},)")
    positives = np.flatnonzero(shares[1:]) + 1
    if num_groups < 2 or not len(positives):
        raise ValueError(
            f"need >= 2 groups and >= 1 positive slot, got codes {codes.shape}, shares {shares}"
        )
    anchor = codes[:, 0]
    others = codes.reshape(num_groups * group_size, dim)[
        other_group_indices(num_groups, group_size)
    ]  # [G, (G-1) S, D]
    negatives = jnp.concatenate([codes[:, np.flatnonzero(~shares)], others], axis=1)
    losses = [info_nce(anchor, codes[:, s], negatives, temperature) for s in positives]
    return sum(losses) / len(losses)


def _cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return jnp.sum(a * b, axis=-1)


def factor_accuracy(codes: jax.Array, shares) -> jax.Array:
    """Fraction of (anchor, positive) pairs more similar than every negative of their group.

    Args:
      codes: ``[G, S, D]`` and ``shares`` ``[S]`` as in :func:`factor_info_nce`.

    Returns:
      scalar in ``[0, 1]``; 1 when every image sharing the factor with the anchor is closer to it
      (cosine) than all images of the group that do not.
    """
    shares = np.asarray(shares, bool)
    similarity = _cosine(codes[:, :1], codes)  # [G, S]
    hardest = jnp.max(similarity[:, np.flatnonzero(~shares)], axis=1, keepdims=True)  # [G, 1]
    positives = np.flatnonzero(shares[1:]) + 1
    return jnp.mean((similarity[:, positives] > hardest).astype(jnp.float32))


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error over every element (the ``‖·‖₁`` of paper 001 eq. 2, per element)."""
    return jnp.mean(jnp.abs(pred - target))


def swap_reconstruction_loss(
    decode_fn: Callable[[jax.Array, jax.Array], jax.Array],
    codes_a: tuple[jax.Array, jax.Array],
    codes_b: tuple[jax.Array, jax.Array],
    parts_a: tuple[jax.Array, jax.Array],
    parts_b: tuple[jax.Array, jax.Array],
) -> dict[str, jax.Array]:
    """Self and swapped reconstruction of two faces (paper 001 fig. 3, eq. 2).

    ``l^{mA eA}`` is the landmark vector made of face A's mouth part and face A's eye part;
    ``l^{mA eB}`` takes A's mouth and B's eyes. With ``(f_mX, f_eX) = E_L(l^{mX eX})``::

        rec  = ‖D_L(f_mA, f_eA) − l^{mA eA}‖₁ + ‖D_L(f_mB, f_eB) − l^{mB eB}‖₁
        swap = ‖D_L(f_mA, f_eB) − l^{mA eB}‖₁ + ‖D_L(f_mB, f_eA) − l^{mB eA}‖₁   (eq. 2)

    Args:
      decode_fn: ``(f_m [B, Dm], f_e [B, De]) -> [B, M + E]`` (mouth part first).
      codes_a, codes_b: ``(f_m [B, Dm], f_e [B, De])`` of faces A and B.
      parts_a, parts_b: ``(mouth [B, M], eyes [B, E])`` landmark parts of A and B.

    Returns:
      ``{"rec", "swap"}`` scalars (each the sum of two per-element mean L1 errors).
    """
    (m_a, e_a), (m_b, e_b) = codes_a, codes_b
    (mouth_a, eyes_a), (mouth_b, eyes_b) = parts_a, parts_b

    def target(mouth, eyes):
        return jnp.concatenate([mouth, eyes], axis=-1)

    rec = l1(decode_fn(m_a, e_a), target(mouth_a, eyes_a)) + l1(
        decode_fn(m_b, e_b), target(mouth_b, eyes_b)
    )
    swap = l1(decode_fn(m_a, e_b), target(mouth_a, eyes_b)) + l1(
        decode_fn(m_b, e_a), target(mouth_b, eyes_a)
    )
    return {"rec": rec, "swap": swap}
