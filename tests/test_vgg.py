"""VGG16 features, the torchvision-layout loader, the perceptual loss and the SSIM fallback."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import ndimage

from jaxhead.eval import image
from jaxhead.nerf import perceptual
from jaxhead.pretrained import vgg

SMALL = (4, 6, 8, 8, 8)  # per-block widths of a small network in VGG16's layout


def random_state_dict(channels=SMALL, seed=0, classifier=True) -> dict[str, np.ndarray]:
    """A torchvision-layout ``vgg16().state_dict()`` with random weights and ``channels``."""
    rng = np.random.default_rng(seed)
    state = {}
    previous = 3
    conv = 0
    for width, count in zip(channels, vgg.CONVS_PER_BLOCK, strict=True):
        for _ in range(count):
            index = vgg.TORCH_CONV_INDICES[conv]
            scale = np.sqrt(2.0 / (9 * previous))
            state[f"features.{index}.weight"] = (
                rng.normal(size=(width, previous, 3, 3)) * scale
            ).astype(np.float32)
            state[f"features.{index}.bias"] = rng.normal(size=(width,)).astype(np.float32) * 0.1
            previous = width
            conv += 1
    if classifier:  # present in a full state dict, ignored by the loader
        state["classifier.0.weight"] = np.zeros((2, 3), np.float32)
    return state


def numpy_vgg_features(state, images) -> dict[str, np.ndarray]:
    """Independent NumPy VGG16 (NCHW, torch conventions): every ReLU output, by name."""
    mean = np.asarray(vgg.IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = np.asarray(vgg.IMAGENET_STD).reshape(1, 3, 1, 1)
    x = (np.transpose(images, (0, 3, 1, 2)).astype(np.float64) - mean) / std
    out = {}
    conv = 0
    for block, count in enumerate(vgg.CONVS_PER_BLOCK, start=1):
        if block > 1:  # MaxPool2d(2, 2), floor
            n, c, h, w = x.shape
            x = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
            x = x.max(axis=(3, 5))
        for i in range(1, count + 1):
            index = vgg.TORCH_CONV_INDICES[conv]
            weight = state[f"features.{index}.weight"].astype(np.float64)
            bias = state[f"features.{index}.bias"].astype(np.float64)
            padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
            h, w = x.shape[2:]
            patches = np.stack(
                [padded[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)],
                axis=-1,
            )  # [N, C_in, H, W, 9]
            x = np.einsum("nchwk,ock->nohw", patches, weight.reshape(*weight.shape[:2], 9))
            x = np.maximum(x + bias.reshape(1, -1, 1, 1), 0.0)
            out[f"relu{block}_{i}"] = np.transpose(x, (0, 2, 3, 1))
            conv += 1
    return out


def test_layer_names_follow_torchvision_indices():
    assert vgg.CONV_NAMES[0] == "conv1_1" and vgg.CONV_NAMES[-1] == "conv5_3"
    assert len(vgg.CONV_NAMES) == len(vgg.TORCH_CONV_INDICES) == 13
    # relu4_3 is torchvision features[22]: conv index 21 + 1.
    assert vgg.TORCH_CONV_INDICES[vgg.RELU_NAMES.index("relu4_3")] + 1 == 22


def test_features_match_numpy_reference():
    state = random_state_dict()
    model = vgg.vgg16_from_state_dict(state)
    assert model.channels == SMALL
    images = np.random.default_rng(1).uniform(size=(2, 32, 24, 3)).astype(np.float32)
    names = ("relu1_1", "relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    graphdef, params = nnx.split(model)
    got = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x, names))(params, jnp.asarray(images))
    # jit == eager
    eager = model(jnp.asarray(images), ("relu2_2",))["relu2_2"]
    np.testing.assert_allclose(np.asarray(got["relu2_2"]), np.asarray(eager), rtol=1e-5, atol=1e-6)
    want = numpy_vgg_features(state, images)
    for name in names:
        np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-4, atol=1e-4)
    assert got["relu5_3"].shape == (2, 2, 1, SMALL[-1])


def test_loader_reads_every_format(tmp_path):
    from safetensors.numpy import save_file

    state = random_state_dict(seed=3)
    np.savez(tmp_path / "w.npz", **state)
    save_file(state, str(tmp_path / "w.safetensors"))
    images = jnp.asarray(np.random.default_rng(2).uniform(size=(1, 16, 16, 3)), jnp.float32)
    reference = vgg.vgg16_from_state_dict(state)(images, ("relu3_3",))["relu3_3"]
    for name in ("w.npz", "w.safetensors"):
        model = vgg.load_vgg16(tmp_path / name)
        # Every key landed in its conv, transposed to [kh, kw, in, out].
        for conv, index in zip(model.convs, vgg.TORCH_CONV_INDICES, strict=True):
            weight = state[f"features.{index}.weight"]
            np.testing.assert_array_equal(
                np.asarray(conv.kernel[...]), weight.transpose(2, 3, 1, 0)
            )
            np.testing.assert_array_equal(
                np.asarray(conv.bias[...]), state[f"features.{index}.bias"]
            )
        np.testing.assert_array_equal(np.asarray(model(images, ("relu3_3",))["relu3_3"]), reference)


def test_loader_rejects_bad_state_dicts(tmp_path):
    model = nnx.eval_shape(lambda: vgg.VGG16Features(SMALL, rngs=nnx.Rngs(0)))
    state = random_state_dict()
    missing = dict(state)
    del missing["features.26.bias"]
    with pytest.raises(vgg.VGGWeightsError, match=r"missing keys \['features.26.bias'\]"):
        vgg.assign_vgg16_weights(model, missing)
    wrong = dict(state)
    wrong["features.7.weight"] = np.zeros((6, 6, 1, 1), np.float32)
    with pytest.raises(vgg.VGGWeightsError, match=r"mis-shaped features.7.weight \(6, 6, 1, 1\)"):
        vgg.assign_vgg16_weights(model, wrong)
    batchnorm = dict(state)
    batchnorm["features.1.running_mean"] = np.zeros((4,), np.float32)
    with pytest.raises(vgg.VGGWeightsError, match="unexpected keys.*vgg16_bn"):
        vgg.assign_vgg16_weights(model, batchnorm)
    with pytest.raises(vgg.VGGWeightsError, match="missing 'features.0.weight'"):
        vgg.vgg16_from_state_dict({"classifier.0.weight": np.zeros(1)})
    with pytest.raises(vgg.VGGWeightsError, match="does not exist.*torchvision"):
        vgg.load_vgg16(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(vgg.VGGWeightsError, match="not a zip-format torch file"):
        vgg.load_vgg16(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        model(jnp.zeros((1, 8, 8, 3)), ("relu9_9",))


def test_torch_pth_and_sequential_equivalence(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    layers = []
    previous = 3
    for width, count in zip(SMALL, vgg.CONVS_PER_BLOCK, strict=True):
        for _ in range(count):
            layers += [nn.Conv2d(previous, width, 3, padding=1), nn.ReLU()]
            previous = width
        layers.append(nn.MaxPool2d(2, 2))
    torch.manual_seed(0)
    features = nn.Sequential(*layers)  # torchvision's vgg16().features layout, 31 modules
    assert [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)] == list(
        vgg.TORCH_CONV_INDICES
    )
    holder = nn.Module()
    holder.features = features
    torch.save(holder.state_dict(), tmp_path / "vgg.pth")  # keys: features.{i}.weight/bias
    model = vgg.load_vgg16(tmp_path / "vgg.pth")

    images = np.random.default_rng(5).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    mean = torch.tensor(vgg.IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(vgg.IMAGENET_STD).reshape(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2) - mean) / std
    wanted = {}
    relu_count = 0
    with torch.no_grad():
        for module in features:
            x = module(x)
            if isinstance(module, nn.ReLU):
                wanted[vgg.RELU_NAMES[relu_count]] = x.permute(0, 2, 3, 1).numpy().copy()
                relu_count += 1
    got = model(jnp.asarray(images), vgg.RELU_NAMES)
    for name in vgg.RELU_NAMES:
        np.testing.assert_allclose(np.asarray(got[name]), wanted[name], rtol=1e-4, atol=1e-4)


# --- SSIM -------------------------------------------------------------------------------------


def scipy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM with scipy's Gaussian filter, cropped to the valid region."""
    sigma, radius = 1.5, 5
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for channel in range(a.shape[-1]):
        x = a[..., channel].astype(np.float64)
        y = b[..., channel].astype(np.float64)

        def blur(z):
            filtered = ndimage.gaussian_filter(z, sigma, truncate=radius / sigma, mode="reflect")
            return filtered[radius:-radius, radius:-radius]

        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(ssim_map.mean())
    return float(np.mean(values))


def test_ssim_matches_scipy_reference():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(2, 24, 20, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1).astype(np.float32)
    got = np.asarray(image.ssim(a, b))
    want = [scipy_ssim(a[i], b[i]) for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_ssim_identity_symmetry_and_jit():
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(16, 16, 3)), jnp.float32)
    y = jnp.flip(x, axis=0)
    np.testing.assert_allclose(float(image.ssim(x, x)), 1.0, atol=1e-6)
    np.testing.assert_allclose(float(image.ssim(x, y)), float(image.ssim(y, x)), atol=1e-6)
    assert float(image.ssim(x, y)) < 0.5
    np.testing.assert_allclose(float(jax.jit(image.ssim)(x, y)), float(image.ssim(x, y)), atol=1e-6)
    assert float(perceptual.ssim_loss(x[None], x[None])) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="smaller than the 11"):
        image.ssim(jnp.zeros((8, 8, 3)), jnp.zeros((8, 8, 3)))


# --- perceptual loss --------------------------------------------------------------------------


def test_perceptual_loss_value_and_gradient():
    model = vgg.vgg16_from_state_dict(random_state_dict(seed=7))
    graphdef, params = nnx.split(model)

    def features_fn(p, images):
        return nnx.merge(graphdef, p)(images, vgg.DEFAULT_LAYERS)

    rng = np.random.default_rng(3)
    pred = jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)
    target = jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)
    fn = jax.jit(lambda images: features_fn(params, images))
    loss = jax.jit(
        lambda p, t: perceptual.perceptual_loss(fn, p, t, weights=(1.0, 0.5, 0.25, 2.0))
    )(pred, target)
    fp, ft = fn(pred), fn(target)
    want = sum(
        w * float(jnp.mean((fp[n] - ft[n]) ** 2))
        for n, w in zip(vgg.DEFAULT_LAYERS, (1.0, 0.5, 0.25, 2.0), strict=True)
    )
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    grad_pred, grad_target = jax.jit(
        jax.grad(lambda p, t: perceptual.perceptual_loss(fn, p, t), argnums=(0, 1))
    )(pred, target)
    assert np.all(np.isfinite(grad_pred)) and float(jnp.abs(grad_pred).sum()) > 0
    assert float(jnp.abs(grad_target).sum()) == 0.0  # target features are constants


def test_perceptual_loss_choice():
    kind, message = perceptual.perceptual_loss_choice(None)
    assert kind == "ssim" and "fallback" in message
    kind, message = perceptual.perceptual_loss_choice("weights/vgg16.pth")
    assert kind == "vgg16" and "weights/vgg16.pth" in message
