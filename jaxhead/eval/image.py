"""Full-reference image metrics: PSNR and SSIM over batches of frames. Pure JAX.

Both compare a rendered frame with its ground truth, ``[..., H, W, C]`` in ``[0, max_val]``
(``max_val = 1`` for float images, 255 for ``uint8`` frames converted to float), and return one
number per frame; :func:`image_metrics` averages them over a clip.

* **PSNR** ``= 10 log10(max_val² / MSE)`` per frame (MSE over pixels and channels), then the mean
  over frames — AD-NeRF, ER-NeRF and paper 000's table average per-frame PSNR rather than taking the
  PSNR of the clip's pooled MSE (the two differ: the pooled one is dominated by the worst frames).
  A frame identical to its ground truth has MSE 0 and PSNR ``+inf``; :func:`image_metrics` says how
  many such frames there were and averages the others.
* **SSIM** is :func:`ssim` (Wang et al. 2004: 11x11 Gaussian window,
  σ = 1.5, K1 = 0.01, K2 = 0.03, valid positions only, map averaged over positions and channels —
  the convention of the reference MATLAB code, ``tf.image.ssim`` and ``skimage`` with
  ``gaussian_weights=True``). Colour frames are scored on RGB channels averaged, not on luma.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["mse", "psnr", "psnr_from_mse", "ssim", "image_metrics"]

SSIM_FILTER_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


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


def gaussian_window(size: int = SSIM_FILTER_SIZE, sigma: float = SSIM_SIGMA) -> jax.Array:
    """``[size]`` normalised 1D Gaussian taps centred on the middle tap."""
    x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
    taps = jnp.exp(-0.5 * jnp.square(x / sigma))
    return taps / jnp.sum(taps)


def _valid_band(length: int, taps: jax.Array) -> jax.Array:
    """``[length - size + 1, length]``: row ``o`` holds ``taps`` at columns ``o … o + size - 1``,
    so that ``band @ x`` is the 'valid' correlation of ``x`` with ``taps`` along its first axis."""
    size = taps.shape[0]
    offset = np.arange(length)[None, :] - np.arange(length - size + 1)[:, None]
    inside = (offset >= 0) & (offset < size)
    return jnp.where(inside, taps[np.clip(offset, 0, size - 1)], 0.0)


def _filter_valid(x: jax.Array, taps: jax.Array) -> jax.Array:
    """Separable 'valid' filtering of ``[N, H, W, C]`` over H and W (no padding).

    Written as two products with banded matrices rather than depthwise convolutions: the same
    sums, and on CPU about 20x faster at 128² (forward and backward) and 4x at 512², which
    matters because SSIM is the perceptual term of every NeRF training step."""
    rows = _valid_band(x.shape[1], taps)
    cols = _valid_band(x.shape[2], taps)
    highest = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", rows, x, precision=highest)
    return jnp.einsum("pw,nowc->nopc", cols, x, precision=highest)


def ssim(
    a: jax.Array,
    b: jax.Array,
    max_val: float = 1.0,
    filter_size: int = SSIM_FILTER_SIZE,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> jax.Array:
    """Mean structural similarity per image (Wang et al. 2004, eq. 13, Gaussian window).

    Local statistics use the ``filter_size``² Gaussian window over valid positions only (no
    padding), as the reference MATLAB code and ``tf.image.ssim`` do; the SSIM map is averaged
    over positions and channels.

    Args:
      a: ``[..., H, W, C]`` images with ``H, W >= filter_size``.
      b: same shape as ``a``.
      max_val: dynamic range (1 for images in [0, 1]).

    Returns:
      ``[...]`` SSIM in [-1, 1]; ``ssim(x, x) = 1``.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"a {a.shape} and b {b.shape} must both be [..., H, W, C]")
    if min(a.shape[-3:-1]) < filter_size:
        raise ValueError(f"images {a.shape[-3:-1]} are smaller than the {filter_size}² window")
    batch = a.shape[:-3]
    a = a.reshape((-1, *a.shape[-3:]))
    b = b.reshape((-1, *b.shape[-3:]))
    taps = gaussian_window(filter_size, sigma)
    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    mu_a = _filter_valid(a, taps)
    mu_b = _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a * mu_a
    var_b = _filter_valid(b * b, taps) - mu_b * mu_b
    covariance = _filter_valid(a * b, taps) - mu_a * mu_b
    numerator = (2.0 * mu_a * mu_b + c1) * (2.0 * covariance + c2)
    denominator = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    ssim_map = numerator / denominator
    return jnp.mean(ssim_map, axis=(-3, -2, -1)).reshape(batch)


def psnr_from_mse(mse_value: jax.Array, max_val: float = 1.0) -> jax.Array:
    """PSNR in dB of a mean squared error (floored at 1e-10, so a perfect match stays finite)."""
    return 10.0 * jnp.log10(jnp.float32(max_val) ** 2 / jnp.maximum(mse_value, 1e-10))


METRIC_CHUNK = 16  # frames per PSNR / SSIM call of image_metrics


def image_metrics(pred, target, max_val: float = 1.0) -> dict:
    """Clip averages ``{"psnr", "ssim", "frames", "identical_frames"}`` as Python numbers.

    Args:
      pred: ``[T, H, W, C]`` rendered frames in ``[0, max_val]`` (``H, W >= 11`` for SSIM).
      target: ``[T, H, W, C]`` ground truth.
      max_val: dynamic range.

    ``psnr`` is the mean over the frames that differ from their ground truth (identical frames
    have infinite PSNR and are counted in ``identical_frames``); it is ``inf`` when all are
    identical. The frames are scored :data:`METRIC_CHUNK` at a time (250 frames at 512² in one
    SSIM call held ~14 GB of filter intermediates on the host).
    """
    if np.shape(pred) != np.shape(target):
        raise ValueError(
            f"pred {np.shape(pred)} and target {np.shape(target)} must both be [T, H, W, C] clips"
        )
    if np.ndim(pred) != 4:
        raise ValueError(f"image_metrics takes [T, H, W, C] clips, got {np.shape(pred)}")
    psnr_fn = jax.jit(psnr, static_argnums=2)
    ssim_fn = jax.jit(ssim, static_argnames="max_val")
    per_frame_psnr, per_frame_ssim = [], []
    for start in range(0, len(pred), METRIC_CHUNK):
        a, b = _check(pred[start : start + METRIC_CHUNK], target[start : start + METRIC_CHUNK])
        per_frame_psnr.append(np.asarray(psnr_fn(a, b, max_val)))
        per_frame_ssim.append(np.asarray(ssim_fn(a, b, max_val=max_val)))
    per_frame_psnr = np.concatenate(per_frame_psnr)
    per_frame_ssim = np.concatenate(per_frame_ssim)
    finite = np.isfinite(per_frame_psnr)
    mean_psnr = float(np.mean(per_frame_psnr[finite])) if finite.any() else float("inf")
    return {
        "psnr": mean_psnr,
        "ssim": float(np.mean(per_frame_ssim)),
        "frames": int(len(pred)),
        "identical_frames": int(np.sum(~finite)),
    }
