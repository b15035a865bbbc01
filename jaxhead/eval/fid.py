"""Fréchet Inception Distance (Heusel et al. 2017, paper 000 ref. [42]): the distance part.

FID compares the Gaussians fitted to the features of real and generated frames::

    FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^{1/2}

:func:`frechet_distance` computes it without ``scipy.linalg.sqrtm`` (whose iterative Schur method
can return complex or inaccurate results for near-singular covariances — pytorch-fid adds an
``eps`` to the diagonal then): with ``S = Σ₁^{1/2}`` from a symmetric eigendecomposition,
``Σ₁Σ₂`` is similar to the symmetric PSD matrix ``S Σ₂ S``, so

    tr (Σ₁ Σ₂)^{1/2} = Σᵢ √λᵢ(S Σ₂ S)

with the (round-off) negative eigenvalues clipped to 0. Everything runs in float64 NumPy: the
2048x2048 covariances of pool3 features lose digits in float32.

**Status of the feature extractor.** The standard FID features are InceptionV3's 2048-d pool3
activations with the pytorch-fid weights (``pt_inception-2015-12-05-6726825d.pth``). That network
is **not ported** to Flax yet: :func:`compute_fid` takes any ``features_fn`` (frames ->
``[N, D]`` features) and, without one, returns ``{"fid": None, "reason": "InceptionV3 ... not
available"}`` — never a number from some other network passed off as FID. A ``features_fn``
other than the pytorch-fid InceptionV3 gives a Fréchet distance that is *not comparable* with
published FIDs; :func:`compute_fid` records the ``features`` name it was given.

FID is biased for small sample sizes (it grows as N shrinks); compare values only at the same
number of frames, which :func:`compute_fid` reports, and with at least 2048 frames per side for
the 2048-d features to give a full-rank covariance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "INCEPTION_NOT_AVAILABLE",
    "feature_statistics",
    "sqrtm_psd",
    "trace_sqrt_product",
    "frechet_distance",
    "extract_features",
    "compute_fid",
]

INCEPTION_NOT_AVAILABLE = (
    "InceptionV3 weights/port not available (the pytorch-fid InceptionV3 is not ported to "
    "jaxhead yet; pass a features_fn to compute a Fréchet distance on other features)"
)

# frames [N, H, W, 3] in [0, 1] -> features [N, D]
FeaturesFn = Callable[[np.ndarray], np.ndarray]


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """``[N, D]`` features -> mean ``[D]`` and covariance ``[D, D]`` (``N − 1`` normalised).

    The unbiased covariance is what pytorch-fid (``np.cov(rowvar=False)``) and the TF original
    use.
    """
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("features hold non-finite values")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(
        features.shape[1], features.shape[1]
    )


def sqrtm_psd(matrix) -> np.ndarray:
    """Symmetric square root of a symmetric PSD ``[D, D]`` matrix (eigenvalues clipped at 0)."""
    matrix = np.asarray(matrix, np.float64)
    matrix = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """``tr (Σ₁ Σ₂)^{1/2}`` of two PSD ``[D, D]`` matrices, via ``eig(Σ₁^{½} Σ₂ Σ₁^{½})``."""
    root = sqrtm_psd(sigma1)
    inner = root @ np.asarray(sigma2, np.float64) @ root
    values = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    return float(np.sum(np.sqrt(np.clip(values, 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (module docstring).

    Args:
      mu1, mu2: ``[D]`` means.
      sigma1, sigma2: ``[D, D]`` symmetric PSD covariances.

    Returns:
      the distance, ``>= 0`` up to round-off (clipped at 0).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[-1] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"need mu [D] and sigma [D, D] for both: got {mu1.shape}, {sigma1.shape}, "
            f"{mu2.shape}, {sigma2.shape}"
        )
    mean_term = float(np.sum(np.square(mu1 - mu2)))
    cov_term = float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(mean_term + cov_term, 0.0)


def extract_features(features_fn: FeaturesFn, frames, batch_size: int = 32) -> np.ndarray:
    """``[N, H, W, 3]`` frames -> ``[N, D]`` float64 features, ``batch_size`` frames at a time."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be [N, H, W, 3] with N >= 1, got {frames.shape}")
    out = [
        np.asarray(features_fn(frames[start : start + batch_size]), np.float64)
        for start in range(0, len(frames), batch_size)
    ]
    features = np.concatenate(out)
    if features.ndim != 2 or features.shape[0] != len(frames):
        raise ValueError(f"features_fn must return [N, D] features, got {features.shape}")
    return features


def compute_fid(
    generated,
    real,
    features_fn: FeaturesFn | None = None,
    features: str = "",
    batch_size: int = 32,
) -> dict:
    """Fréchet distance of two frame sets' features, or ``{"fid": None, "reason"}``.

    Args:
      generated: ``[N, H, W, 3]`` rendered frames in ``[0, 1]``.
      real: ``[M, H', W', 3]`` ground-truth frames in ``[0, 1]``.
      features_fn: ``[B, H, W, 3] -> [B, D]``; ``None`` (no InceptionV3) gives the
        not-computed record.
      features: the name of what ``features_fn`` computes, stored with the result.

    Returns:
      ``{"fid", "features", "generated_frames", "real_frames", "dim"}``.
    """
    if features_fn is None:
        return {"fid": None, "reason": INCEPTION_NOT_AVAILABLE}
    generated_features = extract_features(features_fn, generated, batch_size)
    real_features = extract_features(features_fn, real, batch_size)
    if generated_features.shape[1] != real_features.shape[1]:
        raise ValueError("features_fn returned features of different sizes for the two sets")
    value = frechet_distance(
        *feature_statistics(generated_features), *feature_statistics(real_features)
    )
    return {
        "fid": value,
        "features": features or getattr(features_fn, "__name__", "features_fn"),
        "generated_frames": int(len(generated_features)),
        "real_frames": int(len(real_features)),
        "dim": int(generated_features.shape[1]),
    }
