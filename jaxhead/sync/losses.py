"""Audio-lip synchronisation losses (paper 000 eqs. 8-9, paper 001 eq. 3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxhead.numerics import cosine_similarity

# paper 001 eq. 3 takes log d and log(1 - d): the similarity is kept this far inside (0, 1).
BCE_CLIP = 1e-7


def info_nce(
    anchor: jax.Array, positive: jax.Array, negatives: jax.Array, temperature: float = 0.5
) -> jax.Array:
    """InfoNCE over cosine similarities (paper 000 eqs. 8-9; τ = 0.5, N = 10 in the paper).

    ``mean_b −log(exp(d⁺/τ) / (exp(d⁺/τ) + Σₙ exp(dₙ⁻/τ)))`` with ``d`` the cosine similarity,
    computed as ``logsumexp(logits) − d⁺/τ`` so that small temperatures cannot overflow. Cosine
    similarity makes the loss invariant to rescaling any input vector.

    Args:
      anchor: ``[B, D]`` e.g. audio embeddings.
      positive: ``[B, D]`` matching lip embeddings.
      negatives: ``[B, N, D]`` non-matching lip embeddings.
      temperature: τ > 0.

    Returns:
      scalar loss; equals ``log(N + 1)`` when all similarities are equal.
    """
    anchor = jnp.asarray(anchor)
    positive_similarity = cosine_similarity(anchor, positive)  # [B]
    negative_similarity = cosine_similarity(anchor[:, None, :], negatives)  # [B, N]
    logits = (
        jnp.concatenate([positive_similarity[:, None], negative_similarity], axis=-1) / temperature
    )
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - logits[:, 0])


def bce_cosine(audio: jax.Array, lip: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy on cosine similarity (paper 001 eq. 3, Wav2Lip's sync expert loss).

    ``d = clip(cos(audio, lip), 1e-7, 1 − 1e-7)`` is read as the probability that the pair is in
    sync, and the loss is ``mean −(y log d + (1 − y) log(1 − d))``. The encoders should emit
    non-negative embeddings (ReLU outputs, as Wav2Lip's sync expert does) so that ``d >= 0``;
    negative similarities are clipped to 1e-7 and carry no gradient.

    Args:
      audio: ``[B, D]`` audio embeddings.
      lip: ``[B, D]`` lip (mouth landmark) embeddings.
      labels: ``[B]`` 1 for synchronised pairs, 0 otherwise (soft labels in [0, 1] also work).

    Returns:
      scalar loss.
    """
    similarity = jnp.clip(cosine_similarity(audio, lip), BCE_CLIP, 1.0 - BCE_CLIP)
    labels = jnp.asarray(labels, similarity.dtype)
    log_likelihood = labels * jnp.log(similarity) + (1.0 - labels) * jnp.log1p(-similarity)
    return -jnp.mean(log_likelihood)
