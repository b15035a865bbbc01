"""Evaluation metrics: PSNR / SSIM against NumPy references, LMD analytic cases, the report."""

import json
import math

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import signal

from jaxhead.eval import image, landmarks, report

# --------------------------------------------------------------------------------------------
# PSNR / SSIM
# --------------------------------------------------------------------------------------------


def reference_ssim(a: np.ndarray, b: np.ndarray, max_val: float = 1.0) -> float:
    """Wang et al. 2004 on one [H, W, C] image, float64, a 2D window and scipy's correlate2d."""
    x = np.arange(11) - 5.0
    g = np.exp(-0.5 * (x / 1.5) ** 2)
    window = np.outer(g, g) / np.sum(np.outer(g, g))
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    maps = []
    for c in range(a.shape[-1]):
        p, q = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        f = lambda z: signal.correlate2d(z, window, mode="valid")
        mu_p, mu_q = f(p), f(q)
        s_pp = f(p * p) - mu_p**2
        s_qq = f(q * q) - mu_q**2
        s_pq = f(p * q) - mu_p * mu_q
        num = (2 * mu_p * mu_q + c1) * (2 * s_pq + c2)
        den = (mu_p**2 + mu_q**2 + c1) * (s_pp + s_qq + c2)
        maps.append(num / den)
    return float(np.mean(maps))


def reference_psnr(a: np.ndarray, b: np.ndarray, max_val: float = 1.0) -> float:
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(max_val**2 / err)


def _clip(seed: int, shape=(3, 16, 20, 3)):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0, 1, shape).astype(np.float32)
    noise = rng.normal(0, 0.1, shape).astype(np.float32)
    pred = np.clip(target + noise, 0, 1).astype(np.float32)
    return pred, target


def test_psnr_and_ssim_match_numpy_references():
    pred, target = _clip(0)
    got_psnr = np.asarray(image.psnr(pred, target))
    got_ssim = np.asarray(image.ssim(pred, target))
    for t in range(len(pred)):
        np.testing.assert_allclose(got_psnr[t], reference_psnr(pred[t], target[t]), rtol=1e-5)
        np.testing.assert_allclose(got_ssim[t], reference_ssim(pred[t], target[t]), atol=2e-5)
    # 8-bit range: the same frames scaled by 255 score the same.
    np.testing.assert_allclose(image.psnr(pred * 255, target * 255, 255.0), got_psnr, rtol=1e-5)
    np.testing.assert_allclose(image.ssim(pred * 255, target * 255, 255.0), got_ssim, atol=1e-5)


def test_ssim_gradient_matches_finite_differences_of_the_reference():
    """SSIM is the perceptual term of the NeRF's training loss: its gradient (through the banded
    filter matrices) against central differences of the float64 scipy reference."""
    pred, target = _clip(1, shape=(1, 14, 17, 3))
    grad = np.asarray(jax.grad(lambda p: image.ssim(p, target)[0])(pred))
    rng = np.random.default_rng(0)
    eps = 1e-4
    for _ in range(6):
        i, j, c = rng.integers(14), rng.integers(17), rng.integers(3)
        up, down = pred[0].astype(np.float64), pred[0].astype(np.float64)
        up[i, j, c] += eps
        down[i, j, c] -= eps
        numeric = (reference_ssim(up, target[0]) - reference_ssim(down, target[0])) / (2 * eps)
        np.testing.assert_allclose(grad[0, i, j, c], numeric, rtol=2e-3, atol=2e-5)


@given(st.floats(1e-3, 0.5))
def test_psnr_of_constant_offset(offset):
    target = np.full((1, 4, 4, 3), 0.25, np.float32)
    pred = target + np.float32(offset)
    # MSE = offset² -> PSNR = -20 log10(offset).
    np.testing.assert_allclose(image.psnr(pred, target)[0], -20 * math.log10(offset), rtol=1e-4)


def test_image_metrics_averages_frames_and_counts_identical():
    pred, target = _clip(1, (4, 12, 12, 3))
    pred[2] = target[2]
    result = image.image_metrics(pred, target)
    per_frame = [reference_psnr(pred[t], target[t]) for t in (0, 1, 3)]
    assert result["frames"] == 4 and result["identical_frames"] == 1
    np.testing.assert_allclose(result["psnr"], np.mean(per_frame), rtol=1e-5)
    ssims = [reference_ssim(pred[t], target[t]) for t in range(4)]
    np.testing.assert_allclose(result["ssim"], np.mean(ssims), atol=2e-5)
    assert image.image_metrics(target, target)["psnr"] == math.inf
    assert image.image_metrics(target, target)["ssim"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="must both be"):
        image.image_metrics(pred, target[:, :10])


# --------------------------------------------------------------------------------------------
# LMD
# --------------------------------------------------------------------------------------------


def _face(layout: str, frames: int = 3, seed: int = 0) -> np.ndarray:
    """Random landmark sets with the outer eye corners 100 px apart, horizontally."""
    count, _, eyes = landmarks.LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 256, (frames, count, 2))
    points[:, eyes[0]] = (78.0, 100.0)
    points[:, eyes[1]] = (178.0, 100.0)
    return points


@pytest.mark.parametrize("layout", sorted(landmarks.LAYOUTS))
def test_mouth_lmd_of_a_translated_mouth(layout):
    target = _face(layout)
    _, mouth, _ = landmarks.LAYOUTS[layout]
    pred = target.copy()
    pred[:, list(mouth)] += (3.0, 4.0)  # every mouth point 5 px away
    result = landmarks.mouth_lmd(pred, target, image_size=(256, 320), layout=layout)
    assert result["lmd_px"] == pytest.approx(5.0)
    assert result["lmd_px_at"] == pytest.approx(10.0)  # 256 -> 512 px frames
    assert result["lmd_iod"] == pytest.approx(0.05)  # 5 px over a 100 px eye distance
    assert result["points"] == len(mouth) and result["frames"] == 3
    # The shape is unchanged: centroid alignment removes the whole error.
    aligned = landmarks.mouth_lmd(pred, target, (256, 320), layout, align="centroid")
    assert aligned["lmd_px"] == pytest.approx(0.0, abs=1e-9)
    # Points outside the mouth do not count.
    other = pred.copy()
    outside = np.setdiff1d(np.arange(other.shape[1]), mouth)
    other[:, outside] += 50.0
    other[:, list(landmarks.LAYOUTS[layout][2])] -= 50.0  # (eyes are outside too; keep IOD)
    assert landmarks.mouth_lmd(other, target, (256, 320), layout)["lmd_px"] == pytest.approx(5.0)


def test_lmd_reference_loop_and_iod_per_frame():
    rng = np.random.default_rng(3)
    target = _face("68", frames=4)
    target[:, 45, 0] = 78.0 + np.array([50.0, 100.0, 200.0, 100.0])  # eye distances differ
    pred = target + rng.normal(0, 2, target.shape)
    result = landmarks.mouth_lmd(pred, target, (256, 256), "68")
    per_frame = [
        np.mean([math.dist(pred[t, i], target[t, i]) for i in range(48, 68)]) for t in range(4)
    ]
    iod = [50.0, 100.0, 200.0, 100.0]
    assert result["lmd_px"] == pytest.approx(np.mean(per_frame))
    assert result["lmd_iod"] == pytest.approx(np.mean(np.array(per_frame) / iod))
    assert landmarks.lmd(pred[:, 48:68], target[:, 48:68]) == pytest.approx(np.mean(per_frame))


def test_lmd_index_sets_and_input_checks():
    assert landmarks.MOUTH_68 == tuple(range(48, 68))
    assert len(landmarks.MOUTH_MEDIAPIPE) == 20 and len(set(landmarks.LIPS_MEDIAPIPE)) == 40
    assert set(landmarks.MOUTH_MEDIAPIPE) <= set(landmarks.LIPS_MEDIAPIPE)
    np.testing.assert_allclose(landmarks.to_pixels([[0.5, 0.25, 0.1]], (200, 100)), [[50, 50]])
    target = _face("mediapipe")
    assert landmarks.mouth_lmd(target[:, :468], target[:, :468], (256, 256))["lmd_px"] == 0.0
    with pytest.raises(ValueError, match="needs"):
        landmarks.mouth_lmd(target[:, :68], target[:, :68], (256, 256), "mediapipe")
    with pytest.raises(ValueError, match="unknown landmark layout"):
        landmarks.mouth_lmd(target, target, (256, 256), "dlib")
    bad = target.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        landmarks.mouth_lmd(bad, target, (256, 256))
    with pytest.raises(ValueError, match="frames"):
        landmarks.mouth_lmd(target[:2], target, (256, 256))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def test_write_report_merges_and_marks_not_computed(tmp_path):
    (tmp_path / "eval.json").write_text(
        json.dumps({"step": 10, "val": {"psnr": 20.0, "lpips": 0.3}})
    )
    results = {
        "val": {
            "ssim": np.float32(0.5),
            "lpips": {"lpips": None, "reason": "weights not configured"},
        },
        "fid": report.not_computed("fid", "InceptionV3 weights not configured"),
        "sync": None,
    }
    merged = report.write_report(results, tmp_path)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk == merged
    assert merged["step"] == 10 and merged["val"]["psnr"] == 20.0
    assert merged["val"]["ssim"] == pytest.approx(0.5)
    assert merged["val"]["lpips"] == {"lpips": None, "reason": "weights not configured"}
    table = (tmp_path / "eval.md").read_text()
    assert "| val.psnr | 20.0000 |" in table
    assert "| val.lpips | not computed: weights not configured |" in table
    assert "| fid | not computed: InceptionV3 weights not configured |" in table
    assert "| sync | not computed |" in table
    # A later computed value replaces the not-computed record whole.
    merged = report.write_report({"val": {"lpips": {"lpips": 0.2, "net": "alex"}}}, tmp_path)
    assert merged["val"]["lpips"] == {"lpips": 0.2, "net": "alex"}
    assert "| val.lpips.lpips | 0.2000 |" in (tmp_path / "eval.md").read_text()
    assert not list(tmp_path.glob(".*tmp"))


def test_image_metrics_in_chunks_equal_one_call():
    from jaxhead.eval import image as image_lib

    rng = np.random.default_rng(0)
    truth = rng.random((37, 16, 16, 3), np.float32)  # 3 chunks of 16, the last partial
    pred = np.clip(truth + 0.05 * rng.standard_normal(truth.shape), 0, 1).astype(np.float32)
    scores = image_lib.image_metrics(pred, truth)
    assert scores["frames"] == 37
    assert scores["psnr"] == pytest.approx(float(np.mean(image_lib.psnr(pred, truth))), abs=1e-4)
    assert scores["ssim"] == pytest.approx(float(np.mean(image_lib.ssim(pred, truth))), abs=1e-5)
