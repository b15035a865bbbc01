"""LPIPS: the head against NumPy, the whole metric against a torch implementation, the loaders."""

import numpy as np
import pytest

from jaxhead.eval import lpips
from jaxhead.pretrained import vgg

SMALL_ALEX = (8, 12, 16, 12, 10)
SMALL_VGG = (4, 6, 8, 8, 6)


def numpy_head(f0s, f1s, weights):
    """The lpips v0.1 head on NHWC features, float64, written out term by term."""
    total = 0.0
    for f0, f1, w in zip(f0s, f1s, weights, strict=True):
        f0, f1 = f0.astype(np.float64), f1.astype(np.float64)
        n0 = f0 / (np.sqrt((f0**2).sum(-1, keepdims=True)) + 1e-10)
        n1 = f1 / (np.sqrt((f1**2).sum(-1, keepdims=True)) + 1e-10)
        weighted = np.einsum("nhwc,c->nhw", (n0 - n1) ** 2, w.astype(np.float64))
        total = total + weighted.mean(axis=(1, 2))
    return total


def test_head_matches_numpy():
    rng = np.random.default_rng(0)
    shapes = [(2, 6, 5, 3), (2, 3, 3, 4), (2, 1, 1, 2)]
    f0 = [rng.normal(size=s).astype(np.float32) for s in shapes]
    f1 = [rng.normal(size=s).astype(np.float32) for s in shapes]
    w = [rng.uniform(0, 1, s[-1]).astype(np.float32) for s in shapes]
    got = np.asarray(lpips.lpips_distance(f0, f1, w))
    np.testing.assert_allclose(got, numpy_head(f0, f1, w), rtol=1e-5)
    np.testing.assert_allclose(lpips.lpips_distance(f0, f0, w), 0.0, atol=1e-7)
    # Unit normalisation: the distance ignores each position's feature magnitude.
    scaled = [f * np.float32(7.0) for f in f0]
    np.testing.assert_allclose(lpips.lpips_distance(scaled, f1, w), got, rtol=1e-5)


def test_scaling_layer_is_imagenet_normalisation():
    # Why the VGG trunk can reuse VGG16Features, which normalises with ImageNet statistics.
    np.testing.assert_allclose((1 + np.array(lpips.LPIPS_SHIFT)) / 2, vgg.IMAGENET_MEAN, atol=1e-9)
    np.testing.assert_allclose(np.array(lpips.LPIPS_SCALE) / 2, vgg.IMAGENET_STD, atol=1e-9)


# --------------------------------------------------------------------------------------------
# torch reference: the lpips package's forward pass written out with torch.nn layers
# --------------------------------------------------------------------------------------------


def _torch_trunk(torch, net, channels):
    nn = torch.nn
    if net == "alex":
        c = channels
        layers = [
            nn.Conv2d(3, c[0], 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        ]  # fmt: skip
        taps = (1, 4, 7, 9, 11)  # the ReLU after conv 0, 3, 6, 8, 10
    else:
        layers, previous = [], 3
        for block, count in enumerate(vgg.CONVS_PER_BLOCK):
            if block:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(count):
                layers += [nn.Conv2d(previous, channels[block], 3, padding=1), nn.ReLU()]
                previous = channels[block]
        taps = (3, 8, 15, 22, 29)  # relu1_2 .. relu5_3
    return nn.Sequential(*layers), taps


def _torch_lpips(torch, features, taps, lins, pred, target):
    """lpips.LPIPS.forward (v0.1, spatial=False) on NHWC [0, 1] numpy images."""
    shift = torch.tensor(lpips.LPIPS_SHIFT).reshape(1, 3, 1, 1)
    scale = torch.tensor(lpips.LPIPS_SCALE).reshape(1, 3, 1, 1)

    def trunk(images):
        x = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
        x = (x - shift) / scale
        out = []
        for i, layer in enumerate(features):
            x = layer(x)
            if i in taps:
                out.append(x)
        return out

    with torch.no_grad():
        total = 0
        for f0, f1, lin in zip(trunk(pred), trunk(target), lins, strict=True):
            n0 = f0 / (torch.sqrt(torch.sum(f0**2, dim=1, keepdim=True)) + 1e-10)
            n1 = f1 / (torch.sqrt(torch.sum(f1**2, dim=1, keepdim=True)) + 1e-10)
            total = total + lin((n0 - n1) ** 2).mean([2, 3], keepdim=True)
    return total.reshape(-1).numpy()


@pytest.mark.torch
@pytest.mark.parametrize(
    ("net", "channels", "size"), [("alex", SMALL_ALEX, 64), ("vgg", SMALL_VGG, 32)]
)
def test_matches_torch_lpips_on_random_weights(tmp_path, net, channels, size):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    features, taps = _torch_trunk(torch, net, channels)
    tapped = channels
    lins = torch.nn.ModuleList()
    for c in tapped:
        # lpips.NetLinLayer: Sequential(Dropout(), Conv2d(C, 1, 1, bias=False)) -> model.1.weight
        lin = torch.nn.Module()
        lin.model = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Conv2d(c, 1, 1, bias=False))
        torch.nn.init.uniform_(lin.model[1].weight, 0.0, 1.0)
        lins.append(lin)
    lins.eval()
    holder = torch.nn.Module()
    holder.features = features
    torch.save(holder.state_dict(), tmp_path / "trunk.pth")
    torch.save({f"lin{k}.{n}": v for k, m in enumerate(lins) for n, v in m.state_dict().items()},
               tmp_path / "lin.pth")  # fmt: skip

    rng = np.random.default_rng(1)
    target = rng.uniform(0, 1, (3, size, size + 8, 3)).astype(np.float32)
    pred = np.clip(target + rng.normal(0, 0.2, target.shape), 0, 1).astype(np.float32)
    expected = _torch_lpips(torch, features, taps, [m.model[1] for m in lins], pred, target)

    model = lpips.load_lpips(net, tmp_path / "trunk.pth", tmp_path / "lin.pth")
    np.testing.assert_allclose(np.asarray(model(pred, target)), expected, rtol=2e-4, atol=1e-6)
    # Batched scoring with a padded last batch gives the same per-frame values.
    np.testing.assert_allclose(lpips.lpips_scores(model, pred, target, 2), expected, rtol=2e-4)
    result = lpips.compute_lpips(pred, target, net, tmp_path / "trunk.pth", tmp_path / "lin.pth")
    assert result["lpips"] == pytest.approx(float(np.mean(expected)), rel=2e-4)
    assert result["net"] == net and result["frames"] == 3

    # A whole lpips.LPIPS state dict: trunk under net.slice{j}.{i}, lins beside it, in .npz.
    slice_ends = [t + 1 for t in taps]  # lpips: slice j holds features[ends[j-2]:ends[j-1]]
    whole = {}
    for name, value in features.state_dict().items():
        index = int(name.split(".")[0])
        j = int(np.searchsorted(slice_ends, index, side="right")) + 1
        whole[f"net.slice{j}.{name}"] = value.numpy()
    whole.update({f"lin{k}.model.1.weight": m.model[1].weight.detach().numpy()
                  for k, m in enumerate(lins)})  # fmt: skip
    whole["scaling_layer.shift"] = np.array(lpips.LPIPS_SHIFT, np.float32).reshape(1, 3, 1, 1)
    np.savez(tmp_path / "whole.npz", **whole)
    model = lpips.load_lpips(net, tmp_path / "whole.npz")
    np.testing.assert_allclose(np.asarray(model(pred, target)), expected, rtol=2e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Missing and wrong weights
# --------------------------------------------------------------------------------------------


def _alex_state_dict(channels=SMALL_ALEX, seed=0):
    rng = np.random.default_rng(seed)
    sd, previous = {}, 3
    for index, width, kernel in zip(
        lpips.ALEXNET_CONV_INDICES, channels, (11, 5, 3, 3, 3), strict=True
    ):
        sd[f"features.{index}.weight"] = rng.normal(0, 0.1, (width, previous, kernel, kernel))
        sd[f"features.{index}.bias"] = rng.normal(0, 0.1, (width,))
        previous = width
    sd["classifier.1.weight"] = np.zeros((4, 4))  # ignored, as in torchvision's full state dict
    lins = {f"lin{k}.model.1.weight": np.ones((1, c, 1, 1)) for k, c in enumerate(channels)}
    return sd, lins


def test_missing_weights_give_not_computed_and_bad_weights_clear_errors(tmp_path):
    images = np.zeros((1, 64, 64, 3), np.float32)
    result = lpips.compute_lpips(images, images, "alex", None, None)
    assert result["lpips"] is None and "weights not configured" in result["reason"]

    trunk, lins = _alex_state_dict()
    model = lpips.lpips_from_state_dicts("alex", trunk, lins)
    assert float(model(images, images)[0]) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(lpips.LPIPSWeightsError, match="lin0..lin4"):
        lpips.lpips_from_state_dicts("alex", trunk, {})
    wrong = dict(lins, **{"lin2.model.1.weight": np.ones((1, 5, 1, 1))})
    with pytest.raises(lpips.LPIPSWeightsError, match="lin2 has 5 channels"):
        lpips.lpips_from_state_dicts("alex", trunk, wrong)
    bad = dict(trunk, **{"features.3.bias": np.zeros(3)})
    with pytest.raises(lpips.LPIPSWeightsError, match="mis-shaped features.3.bias"):
        lpips.lpips_from_state_dicts("alex", bad, lins)
    with pytest.raises(lpips.LPIPSWeightsError, match="not a torchvision alexnet"):
        lpips.lpips_from_state_dicts(
            "alex", {"features.0.weight": trunk["features.0.weight"]}, lins
        )
    with pytest.raises(lpips.LPIPSWeightsError, match="does not exist"):
        lpips.load_lpips("alex", tmp_path / "absent.pth", tmp_path / "lin.pth")
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        lpips.lpips_from_state_dicts("squeeze", trunk, lins)
