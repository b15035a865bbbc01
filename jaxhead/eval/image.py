"""Full-reference image metrics: PSNR and SSIM over batches of frames. Pure JAX.

Both compare a rendered frame with its ground truth, ``[..., H, W, C]`` in ``[0, max_val]``
(``max_val = 1`` for float images, 255 for ``uint8`` frames converted to float), and return one
number per frame; :func:`image_metrics` averages them over a clip.

* **PSNR** ``= 10 log10(max_val² / MSE)`` per frame (MSE over pixels and channels), then the mean
  over frames — AD-NeRF, ER-NeRF and paper 000's table average per-frame PSNR rather than taking the
  PSNR of the clip's pooled MSE (the two differ: the pooled one is dominated by the worst frames).
  A frame identical to its ground truth has MSE 0 and PSNR ``+inf``; :func:`image_metrics` says how
  many such frames there were and averages the others.
* **SSIM** is :func:`jaxhead.nerf.perceptual.ssim` (Wang et al. 2004: 11x11 Gaussian window,
  σ = 1.5, K1 = 0.01, K2 = 0.03, valid positions only, map averaged over positions and channels —
  the convention of the reference MATLAB code, ``tf.image.ssim`` and ``skimage`` with
  ``gaussian_weights=True``). Colour frames are scored on RGB channels averaged, not on luma.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhead.nerf.perceptual import ssim

__all__ = ["mse", "psnr", "ssim", "image_metrics"]


def _check(pred: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    if pred.shape != target.shape or pred.ndim < 3:
        raise ValueError(
            f"pred {pred.shape} and target {target.shape} must both be [..., H, W, C] frames"
        )
    return pred, target


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """``[..., H, W, C]`` x2 -> ``[...]`` mean squared error per frame."""
    pred, target = _check(pred, target)
    return jnp.mean(jnp.square(pred - target), axis=(-3, -2, -1))


def psnr(pred: jax.Array, target: jax.Array, max_val: float = 1.0) -> jax.Array:
    """``[..., H, W, C]`` x2 -> ``[...]`` PSNR in dB per frame (``+inf`` for identical frames)."""
    error = mse(pred, target)
    return 10.0 * jnp.log10(jnp.float32(max_val) ** 2 / error)


def image_metrics(pred, target, max_val: float = 1.0) -> dict:
    """Clip averages ``{"psnr", "ssim", "frames", "identical_frames"}`` as Python numbers.

    Args:
      pred: ``[T, H, W, C]`` rendered frames in ``[0, max_val]`` (``H, W >= 11`` for SSIM).
      target: ``[T, H, W, C]`` ground truth.
      max_val: dynamic range.

    ``psnr`` is the mean over the frames that differ from their ground truth (identical frames
    have infinite PSNR and are counted in ``identical_frames``); it is ``inf`` when all are
    identical.
    """
    pred, target = _check(pred, target)
    if pred.ndim != 4:
        raise ValueError(f"image_metrics takes [T, H, W, C] clips, got {pred.shape}")
    per_frame_psnr = np.asarray(jax.jit(psnr, static_argnums=2)(pred, target, max_val))
    per_frame_ssim = np.asarray(
        jax.jit(ssim, static_argnames="max_val")(pred, target, max_val=max_val)
    )
    finite = np.isfinite(per_frame_psnr)
    mean_psnr = float(np.mean(per_frame_psnr[finite])) if finite.any() else float("inf")
    return {
        "psnr": mean_psnr,
        "ssim": float(np.mean(per_frame_ssim)),
        "frames": int(pred.shape[0]),
        "identical_frames": int(np.sum(~finite)),
    }
