"""syncnet_python's SyncNetModel in Flax against a torch version with the same random weights."""

import numpy as np
import pytest

from jaxhead.eval import syncnet

AUDIO = (4, 6, 8, 6, 6, 8)
LIPS = (4, 6, 6, 6, 6, 8)
EMBEDDING = 12


def _torch_syncnet(torch):
    """syncnet_python's SyncNetModel layout (Sequential indices matter for the keys)."""
    nn = torch.nn
    a, v = AUDIO, LIPS

    def bn2(c):
        return nn.BatchNorm2d(c)

    def bn3(c):
        return nn.BatchNorm3d(c)

    model = nn.Module()
    model.netcnnaud = nn.Sequential(
        nn.Conv2d(1, a[0], (3, 3), (1, 1), (1, 1)), bn2(a[0]), nn.ReLU(), nn.MaxPool2d(1, 1),
        nn.Conv2d(a[0], a[1], (3, 3), (1, 1), (1, 1)), bn2(a[1]), nn.ReLU(),
        nn.MaxPool2d((3, 3), (1, 2)),
        nn.Conv2d(a[1], a[2], 3, padding=1), bn2(a[2]), nn.ReLU(),
        nn.Conv2d(a[2], a[3], 3, padding=1), bn2(a[3]), nn.ReLU(),
        nn.Conv2d(a[3], a[4], 3, padding=1), bn2(a[4]), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(a[4], a[5], (5, 4)), bn2(a[5]), nn.ReLU(),
    )  # fmt: skip
    model.netcnnlip = nn.Sequential(
        nn.Conv3d(3, v[0], (5, 7, 7), (1, 2, 2)), bn3(v[0]), nn.ReLU(),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        nn.Conv3d(v[0], v[1], (1, 5, 5), (1, 2, 2), (0, 1, 1)), bn3(v[1]), nn.ReLU(),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        nn.Conv3d(v[1], v[2], (1, 3, 3), padding=(0, 1, 1)), bn3(v[2]), nn.ReLU(),
        nn.Conv3d(v[2], v[3], (1, 3, 3), padding=(0, 1, 1)), bn3(v[3]), nn.ReLU(),
        nn.Conv3d(v[3], v[4], (1, 3, 3), padding=(0, 1, 1)), bn3(v[4]), nn.ReLU(),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        nn.Conv3d(v[4], v[5], (1, 6, 6)), bn3(v[5]), nn.ReLU(),
    )  # fmt: skip
    for name, width in (("netfcaud", a[5]), ("netfclip", v[5])):
        head = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, EMBEDDING)
        )
        setattr(model, name, head)
    # Non-trivial batch-norm statistics, so inference-mode normalisation is exercised.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.torch
def test_matches_torch_syncnet_on_random_weights(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = _torch_syncnet(torch)
    torch.save(reference.state_dict(), tmp_path / "syncnet.pth")
    model = syncnet.load_syncnet(tmp_path / "syncnet.pth")

    rng = np.random.default_rng(0)
    mfcc = rng.normal(0, 5, (2, 13, 20)).astype(np.float32)
    frames = rng.uniform(0, 255, (2, 5, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        audio = reference.netfcaud(
            reference.netcnnaud(torch.from_numpy(mfcc)[:, None]).reshape(2, -1)
        ).numpy()
        video = torch.from_numpy(frames).permute(0, 4, 1, 2, 3)  # [B, C, T, H, W]
        lips = reference.netfclip(reference.netcnnlip(video).reshape(2, -1)).numpy()
    np.testing.assert_allclose(model.embed_audio(mfcc), audio, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.embed_lips(frames), lips, rtol=1e-4, atol=1e-3)

    # The same weights from .npz with the wrapper's "__S__." prefix.
    state = {f"__S__.{k}": v.numpy() for k, v in reference.state_dict().items()}
    np.savez(tmp_path / "syncnet.npz", **state)
    again = syncnet.load_syncnet(tmp_path / "syncnet.npz")
    np.testing.assert_allclose(again.embed_audio(mfcc), audio, rtol=1e-4, atol=1e-4)

    # The metric entry point: jitted embeddings + syncnet_python's offset / confidence. The torch
    # model saw `frames` as syncnet_python feeds them (BGR), so they are BGR here.
    result = syncnet.compute_syncnet(
        mfcc, frames, tmp_path / "syncnet.pth", vshift=1, channel_order="bgr"
    )
    expected = syncnet.syncnet_offset_confidence(lips, audio, vshift=1)
    assert result["syncnet_offset"] == expected["offset"] and result["steps"] == 2
    assert result["syncnet_confidence"] == pytest.approx(expected["confidence"], abs=1e-3)


def test_loader_rejects_other_layouts(tmp_path):
    with pytest.raises(syncnet.SyncNetWeightsError, match="not a syncnet_python"):
        syncnet.syncnet_from_state_dict({"features.0.weight": np.zeros((1, 1, 3, 3))})
    with pytest.raises(syncnet.SyncNetWeightsError, match="legacy torch pickle"):
        syncnet.load_syncnet(tmp_path / "syncnet_v2.model")
    (tmp_path / "old.pth").write_bytes(b"\x80\x02legacy")
    with pytest.raises(syncnet.SyncNetWeightsError, match="re-save"):
        syncnet.load_syncnet(tmp_path / "old.pth")


def reference_calc_pdist(lips, audio, vshift):
    """syncnet_python's loop: pad the audio, compare each lip step with its window."""
    padded = np.concatenate(
        [np.zeros((vshift, audio.shape[1])), audio, np.zeros((vshift, audio.shape[1]))]
    )
    dists = []
    for i in range(len(lips)):
        window = padded[i : i + 2 * vshift + 1]
        dists.append([np.linalg.norm(lips[i] - w + 1e-6) for w in window])
    return np.mean(np.array(dists), axis=0)


def test_offset_confidence_reference_loop_and_known_shift():
    rng = np.random.default_rng(0)
    audio = rng.normal(size=(40, 6))
    lips = np.roll(audio, 3, axis=0)  # lip step t shows audio step t - 3: the audio leads
    result = syncnet.syncnet_offset_confidence(lips, audio, vshift=5)
    np.testing.assert_allclose(result["distances"], reference_calc_pdist(lips, audio, 5))
    assert result["offset"] == 3 and result["confidence"] > 0
    assert syncnet.syncnet_offset_confidence(audio, audio, 5)["offset"] == 0


def test_compute_syncnet_without_weights_is_not_computed():
    result = syncnet.compute_syncnet(np.zeros((2, 13, 20)), np.zeros((2, 5, 224, 224, 3)))
    assert result["syncnet_confidence"] is None and "not configured" in result["reason"]


def test_compute_syncnet_feeds_the_network_bgr_as_syncnet_python_does(tmp_path, monkeypatch):
    """syncnet_python reads frames with cv2.imread (BGR) and feeds them as they are."""
    import cv2
    from flax import nnx

    model = syncnet.SyncNet(AUDIO, LIPS, EMBEDDING, rngs=nnx.Rngs(0))
    monkeypatch.setattr(syncnet, "load_syncnet", lambda path: model)
    rng = np.random.default_rng(0)
    rgb = np.zeros((2, 5, 224, 224, 3), np.uint8)
    rgb[..., 0] = 230  # strongly red frames: the channel order changes the embedding a lot
    rgb[..., 1:] = rng.integers(0, 40, (2, 5, 224, 224, 2))
    # The peer's input: each frame written as a picture and read back with cv2.imread.
    peer = np.empty_like(rgb)
    for b in range(2):
        for t in range(5):
            path = str(tmp_path / f"{b}_{t}.png")
            cv2.imwrite(path, cv2.cvtColor(rgb[b, t], cv2.COLOR_RGB2BGR))
            peer[b, t] = cv2.imread(path)
    mfcc = rng.normal(0, 5, (2, 13, 20)).astype(np.float32)
    expected = syncnet.syncnet_offset_confidence(
        np.asarray(model.embed_lips(peer.astype(np.float32))),
        np.asarray(model.embed_audio(mfcc)),
        vshift=1,
    )
    ours = syncnet.compute_syncnet(mfcc, rgb, "w", vshift=1)  # jaxhead's frames are RGB
    assert ours["syncnet_min_dist"] == pytest.approx(expected["min_dist"], rel=1e-5)
    wrong = syncnet.compute_syncnet(mfcc, rgb, "w", vshift=1, channel_order="bgr")
    assert wrong["syncnet_min_dist"] != pytest.approx(expected["min_dist"], rel=1e-3)
    with pytest.raises(ValueError, match="channel_order"):
        syncnet.compute_syncnet(mfcc, rgb, "w", channel_order="yuv")
