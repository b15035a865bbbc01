"""Fréchet distance: analytic cases, a scipy.linalg.sqrtm reference, the features_fn interface."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg

from jaxhead.eval import fid


def reference_fid(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's formula with scipy's general matrix square root."""
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _gaussian(rng, d, n=None):
    a = rng.normal(size=(d, n or 2 * d))
    return rng.normal(size=d), a @ a.T / (n or 2 * d)


def test_identical_statistics_give_zero_and_shifted_means_the_squared_distance():
    rng = np.random.default_rng(0)
    mu, sigma = _gaussian(rng, 6)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    shift = rng.normal(size=6)
    got = fid.frechet_distance(mu, sigma, mu + shift, sigma)
    assert got == pytest.approx(float(shift @ shift), rel=1e-9, abs=1e-9)


@settings(max_examples=20)
@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=5), st.floats(0.0, 5.0))
def test_diagonal_covariances(variances, other):
    # Commuting (diagonal) covariances: FID = Σ (√a − √b)², the 2-Wasserstein distance².
    a = np.array(variances)
    b = np.full_like(a, other)
    d = len(a)
    got = fid.frechet_distance(np.zeros(d), np.diag(a), np.zeros(d), np.diag(b))
    assert got == pytest.approx(float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)), abs=1e-9)


def test_matches_scipy_sqrtm_reference_and_is_symmetric():
    rng = np.random.default_rng(1)
    for d in (1, 3, 16):
        mu1, s1 = _gaussian(rng, d)
        mu2, s2 = _gaussian(rng, d)
        got = fid.frechet_distance(mu1, s1, mu2, s2)
        assert got == pytest.approx(reference_fid(mu1, s1, mu2, s2), rel=1e-8)
        assert got == pytest.approx(fid.frechet_distance(mu2, s2, mu1, s1), rel=1e-8)
    root = fid.sqrtm_psd(s1)
    np.testing.assert_allclose(root @ root, s1, atol=1e-10)


def test_rank_deficient_covariances_stay_finite():
    # Fewer samples than dimensions (the small-clip case): singular covariances.
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 12)), rng.normal(size=(5, 12)) + 0.5
    stats_x, stats_y = fid.feature_statistics(x), fid.feature_statistics(y)
    got = fid.frechet_distance(*stats_x, *stats_y)
    assert np.isfinite(got) and got > 0
    assert fid.frechet_distance(*stats_x, *stats_x) == pytest.approx(0.0, abs=1e-7)
    mu, sigma = stats_x
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False))


def test_compute_fid_with_and_without_features_fn():
    rng = np.random.default_rng(3)
    real = rng.uniform(0, 1, (9, 8, 8, 3))
    generated = np.clip(real + 0.1, 0, 1)
    result = fid.compute_fid(generated, real)
    assert result["fid"] is None and "InceptionV3" in result["reason"]

    def mean_colour(frames):
        return frames.mean(axis=(1, 2))

    result = fid.compute_fid(generated, real, mean_colour, batch_size=4)
    g, r = mean_colour(generated), mean_colour(real)
    expected = reference_fid(g.mean(0), np.cov(g, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    assert result["fid"] == pytest.approx(expected, rel=1e-6)
    assert result["features"] == "mean_colour" and result["dim"] == 3
    assert result["generated_frames"] == result["real_frames"] == 9
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        fid.compute_fid(generated, real, lambda f: f.mean(axis=(1, 2, 3)))
    with pytest.raises(ValueError, match="need mu"):
        fid.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(3))
