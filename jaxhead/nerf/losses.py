"""Training losses of the head NeRF (paper 000 sec. 3.3, eqs. 3-7)."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxhead.eval.image import ssim
from jaxhead.nerf.perceptual import perceptual_loss

# The four latent codes of paper 000: identity, expression, albedo, illumination.
CODE_KEYS = ("id", "ex", "al", "ill")


def masked_photometric(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked squared error (paper 000 eq. 5, the photometric half of L_rec).

    ``Σ mask·(pred − target)² / max(Σ mask, 1)``, where the denominator sums the mask after
    broadcasting it over the channels, i.e. it counts masked scalar entries. The ``max(·, 1)``
    keeps an empty mask at loss 0 instead of 0/0.

    Args:
      pred: ``[..., C]`` rendered image (or rays).
      target: ``[..., C]`` ground truth.
      mask: ``[...]``, ``[..., 1]`` or ``[..., C]`` face mask m(·), binary or soft in [0, 1].

    Returns:
      scalar loss.
    """
    pred = jnp.asarray(pred)
    target = jnp.asarray(target)
    mask = jnp.asarray(mask, dtype=pred.dtype)
    if mask.ndim == pred.ndim - 1:
        mask = mask[..., None]
    mask = jnp.broadcast_to(mask, pred.shape)
    squared_error = jnp.square(pred - target)
    return jnp.sum(mask * squared_error) / jnp.maximum(jnp.sum(mask), 1.0)


def velocity_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Animation velocity loss (paper 000 eq. 7, after VOCA).

    Mean over frames ``j = 1..T-1`` and all elements of ``((Iʲ − Iʲ⁻¹) − (Iʲ_GT − Iʲ⁻¹_GT))²``:
    the rendered sequence must change between consecutive frames as the ground truth does.

    Args:
      pred: ``[T, ...]`` consecutive rendered frames, ``T >= 2``.
      target: ``[T, ...]`` ground-truth frames.

    Returns:
      scalar loss.
    """
    pred = jnp.asarray(pred)
    target = jnp.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
    if pred.ndim < 1 or pred.shape[0] < 2:
        raise ValueError(f"velocity_loss needs at least 2 frames on axis 0, got shape {pred.shape}")
    pred_velocity = pred[1:] - pred[:-1]
    target_velocity = target[1:] - target[:-1]
    return jnp.mean(jnp.square(pred_velocity - target_velocity))


def disentangle_loss(
    codes: Mapping[str, jax.Array],
    ref_codes: Mapping[str, jax.Array],
    weights: Mapping[str, float],
) -> jax.Array:
    """Disentangling loss (paper 000 eq. 6): ``Σₖ λₖ · mean_batch ‖Cₖ − C̄ₖ‖²``.

    ``Cₖ`` are the learnable per-frame codes, ``C̄ₖ`` the reference codes from the contrastively
    pre-trained latent extractor, ``k`` in ``id`` (identity), ``ex`` (expression), ``al``
    (albedo), ``ill`` (illumination). The squared L2 norm is over the code dimension (last axis)
    and the mean over every leading (batch) axis.

    Args:
      codes: ``{k: [..., D_k]}`` for the keys being constrained (any subset of ``CODE_KEYS``).
      ref_codes: ``{k: [..., D_k]}`` with at least the keys of ``codes``.
      weights: ``{k: λ_k}`` with at least the keys of ``codes``.

    Returns:
      scalar loss.
    """
    unknown = sorted(set(codes) - set(CODE_KEYS))
    if unknown:
        raise ValueError(f"unknown code keys {unknown}; expected a subset of {CODE_KEYS}")
    missing = sorted((set(codes) - set(ref_codes)) | (set(codes) - set(weights)))
    if missing:
        raise ValueError(f"codes {missing} lack a reference code or a weight")
    total = jnp.zeros((), jnp.float32)
    for name in CODE_KEYS:
        if name not in codes:
            continue
        difference = jnp.asarray(codes[name]) - jnp.asarray(ref_codes[name])
        total = total + weights[name] * jnp.mean(jnp.sum(jnp.square(difference), axis=-1))
    return total


def reconstruction_losses(
    out: Mapping[str, jax.Array], frames: Mapping[str, jax.Array], features_fn=None
):
    """Per-term losses of one batch of frames ``[N, ...]`` (paper 000 eqs. 3-5).

    ``features_fn`` (VGG16 activations) selects the perceptual loss of eq. 4; ``None`` the
    structural fallback ``1 - SSIM`` (see :mod:`jaxhead.nerf.perceptual`).
    """
    image, mask = frames["image"], frames["mask"]
    # Over a real background (full frames) the masked term scores the person as drawn, before
    # compositing: otherwise a transparent field (the background showing through) is a minimum
    # the renderer cannot leave, as its output is multiplied by the vanishing alpha.
    pho = masked_photometric(out.get("foreground", out["image"]), image, mask)
    whole = jnp.mean(jnp.square(out["image"] - image))
    lowres = jnp.mean(jnp.square(out["rgb_lowres"] - frames["image_lr"]))
    if features_fn is None:
        per = 1.0 - jnp.mean(jax.vmap(ssim)(out["image"], image))
    else:
        per = perceptual_loss(features_fn, out["image"], image)
    mask_term = jnp.mean(jnp.square(out["accumulation"] - frames["mask_lr"][..., 0]))
    return {"pho": pho, "whole": whole, "lowres": lowres, "per": per, "mask": mask_term}
