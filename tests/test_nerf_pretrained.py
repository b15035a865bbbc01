"""The NeRF stage with pre-trained stages: the sync stage's F_lip and the extractor's L_dis."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_nerf_stage import smoke_config

from jaxhead.disentangle import stage as dis_stage
from jaxhead.eval import lip as lip_metrics
from jaxhead.eval.image import psnr_from_mse
from jaxhead.experiments import lip_probe, swap
from jaxhead.nerf import conditions as cond
from jaxhead.nerf import losses as nerf_losses
from jaxhead.nerf import render_video, stage, step
from jaxhead.nerf.config import GRID_TRUNK
from jaxhead.sync import stage as sync_stage
from jaxhead.train import loop
from jaxhead.train.metrics import read_metrics

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def config_of(name: str, arg: str):
    spec = importlib.util.spec_from_file_location(f"{name}_config", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A smoke sync stage and a smoke extractor, trained once for this module."""
    root = tmp_path_factory.mktemp("pretrained")
    sync = config_of("sync", "smoke")
    extractor = config_of("disentangle", "smoke")
    for config in (sync, extractor):
        with config.unlocked():
            config.data.cache_dir = str(root / "cache")
            config.train.progress = False
            config.mesh.data = 1
    sync_stage.train(sync, root / "sync")
    dis_stage.train(extractor, root / "extractor")
    return {"sync": root / "sync", "extractor": root / "extractor", "cache": root / "cache"}


def with_pretrained(config, pretrained, sync=True, dis=True):
    with config.unlocked():
        config.sync.init_from = str(pretrained["sync"]) if sync else ""
        config.sync.train = False
        config.disentangle.init_from = str(pretrained["extractor"]) if dis else ""
    return config


def no_eval(config, mesh):
    return dataclasses.replace(stage.build_task(config, mesh), evaluate=None, write_samples=None)


def test_sync_f_lip_replaces_the_audio_network(pretrained, tmp_path):
    config = with_pretrained(smoke_config(pretrained["cache"]), pretrained, dis=False)
    assert config.sync.features == "standardized" and config.sync.projection  # the defaults
    with config.unlocked():  # the embedding itself, fed to the field as it is
        config.sync.features = "embedding"
        config.sync.projection = False
    prepared = stage.prepare(config)
    setup, frames = prepared.setup, prepared.frames
    encoder = prepared.lip.encoder
    assert setup.lip == "sync" and not setup.model_config.audio_net
    assert setup.model_config.lip_input_dim == 0
    assert dict(setup.model_config.condition_dims)["lip"] == encoder.embed_dim
    assert "lip" in step.frame_keys(setup)
    # Each frame's F_lip is the encoder's embedding of its sentence's audio at its frame.
    rows, samples, numbers = cond.frames_module(config.data).audio_tracks(config.data, frames)[0]
    windows = encoder.audio_windows(samples, int(numbers.max()) + 1)
    expected = np.asarray(encoder.embed_audio(jnp.asarray(windows)))[numbers]
    np.testing.assert_allclose(frames.lip[rows], expected, rtol=1e-5, atol=1e-6)
    # The other readings: the embedding before its final ReLU, and that standardised per frame.
    pre = np.asarray(encoder.audio_features(jnp.asarray(windows)))[numbers]
    np.testing.assert_allclose(np.maximum(pre, 0.0), expected, rtol=1e-5, atol=1e-6)
    assert (pre < 0).any()
    with config.unlocked():
        config.sync.features = "normalized"
    lip = cond.LipSource(config)
    normalized = lip.read(lip.outputs(samples, numbers))
    np.testing.assert_allclose(normalized.mean(-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(-1), 1.0, atol=1e-3)
    np.testing.assert_allclose(
        normalized, (pre - pre.mean(-1, keepdims=True)) / pre.std(-1, keepdims=True), atol=1e-4
    )
    with config.unlocked():
        config.sync.features = "relu"
    with pytest.raises(ValueError, match="config.sync.features='relu'"):
        cond.LipSource(config)
    with config.unlocked():
        config.sync.features = "embedding"
    assert np.ptp(pre, axis=0).max() > 1e-4  # varies with the audio
    # New audio drives the model through the same encoder.
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000).astype(np.float32)
    driven = cond.LipSource(config).audio_conditions(tone, 25)
    assert set(driven) == {"lip"} and driven["lip"].shape == (25, encoder.embed_dim)
    plain = cond.LipSource(smoke_config(pretrained["cache"])).audio_conditions(tone, 25)
    assert set(plain) == {"audio"} and plain["audio"].shape[0] == 25


def test_standardized_sync_features_through_the_learned_projection(pretrained, tmp_path):
    config = with_pretrained(smoke_config(pretrained["cache"], steps=2), pretrained, dis=False)
    with config.unlocked():
        config.sync.features = "standardized"
        config.sync.projection = True
    prepared = stage.prepare(config)
    setup, frames, lip = prepared.setup, prepared.frames, prepared.lip
    encoder = lip.encoder
    # Standardised per dimension over the training frames ...
    np.testing.assert_allclose(frames.lip.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(frames.lip.std(0), 1.0, atol=1e-3)
    # ... with constants that held-out frames and new audio share.
    mean, std = lip.statistics
    assert mean.shape == std.shape == (encoder.embed_dim,)
    val = cond.load_frames(config, "val", lip, progress=False)
    rows, samples, numbers = cond.frames_module(config.data).audio_tracks(config.data, val)[0]
    pre = np.asarray(encoder.audio_features(jnp.asarray(encoder.audio_windows(samples, 40))))
    np.testing.assert_allclose(val.lip[rows], (pre[numbers] - mean) / std, rtol=1e-4, atol=1e-4)
    assert np.abs(val.lip.mean(0)).max() > 1e-3  # held-out statistics are not re-estimated
    driven = lip.audio_conditions(samples, int(numbers.max()) + 1)["lip"]
    np.testing.assert_allclose(driven[numbers], val.lip[rows], rtol=1e-4, atol=1e-4)
    # The field sees config.model.lip_dim dims, from the 128-dim features by a learned map.
    assert setup.lip == "sync" and setup.model_config.lip_input_dim == encoder.embed_dim
    assert dict(setup.model_config.condition_dims)["lip"] == config.model.lip_dim
    stage.train(config, tmp_path)
    trained = render_video.load_trained(tmp_path)
    kernel = np.asarray(trained.params["nerf"]["lip_projection"]["kernel"])
    assert kernel.shape == (encoder.embed_dim, config.model.lip_dim)
    assert np.abs(kernel).max() > 0.0  # left its zero initialisation
    assert np.isfinite(json.loads((tmp_path / "eval.json").read_text())["val"]["mouth_psnr"])


def test_mouth_grids_train_from_the_projected_sync_features(pretrained, tmp_path):
    """config.model.mouth_grids=k: k channels projected from F_lip's sync features, each with a
    grid of its own beside the blink's; trained, both the projection and the grids move."""
    config = with_pretrained(smoke_config(pretrained["cache"], steps=2), pretrained, dis=False)
    with config.unlocked():
        config.sync.features = "standardized"
        config.sync.projection = True
        config.model.update(encoding="hash", grid_levels=4, grid_log2_table=10, **GRID_TRUNK)
        config.model.grid_conditions = ("blink",)
        config.model.mouth_grids = 2
    prepared = stage.prepare(config)
    model_config = prepared.setup.model_config
    assert dict(model_config.condition_dims)["mouth"] == 2
    assert model_config.grid_conditions == ("blink", "mouth") and model_config.mouth_grids == 2
    assert len(model_config.grid_channels) == 3
    stage.train(config, tmp_path)
    trained = render_video.load_trained(tmp_path)
    nerf = trained.params["nerf"]
    assert np.asarray(nerf["mouth_projection"]["kernel"]).shape == (prepared.lip.dim, 2)
    grids = np.asarray(nerf["field"]["modulated_tables"])
    assert grids.shape[0] == 3 and np.abs(grids[1:]).max() > 0  # the mouth grids learned
    assert np.isfinite(json.loads((tmp_path / "eval.json").read_text())["val"]["mouth_psnr"])
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(4000) / 16000).astype(np.float32)
    assert np.isfinite(render_video.drive(trained, tone, identity=0)).all()
    # Without the projection there is nothing to project: one clear error.
    with config.unlocked():
        config.sync.projection = False
    with pytest.raises(ValueError, match="mouth_grids=2 .* config.sync.projection=True"):
        stage.prepare(config)


def test_temporal_context_concatenates_neighbours_with_the_ends_repeated():
    values = np.arange(12, dtype=np.float32).reshape(6, 2)  # 6 frames, 2 dims
    got = cond.temporal_context(values, np.array([0, 3, 5]), 1)
    expected = np.array(
        [
            [0, 1, 0, 1, 2, 3],  # frame 0: its left neighbour is the track's first frame
            [4, 5, 6, 7, 8, 9],
            [8, 9, 10, 11, 10, 11],  # frame 5: its right neighbour is the last frame
        ],
        np.float32,
    )
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        cond.temporal_context(values, np.array([2, 4]), 0), values[[2, 4]]
    )


def test_sync_context_gives_each_frame_its_neighbours_f_lip(pretrained, tmp_path):
    """config.sync.context=k: F_lip of frames f-k..f+k of the frame's own track, standardised
    per dimension, projected by one learned map (a temporal filter) into the field."""
    config = with_pretrained(smoke_config(pretrained["cache"], steps=2), pretrained, dis=False)
    with config.unlocked():
        config.sync.context = 1
    prepared = stage.prepare(config)
    setup, frames, lip = prepared.setup, prepared.frames, prepared.lip
    encoder = lip.encoder
    assert lip.dim == 3 * encoder.embed_dim
    assert setup.model_config.lip_input_dim == 3 * encoder.embed_dim
    rows, samples, numbers = cond.frames_module(config.data).audio_tracks(config.data, frames)[0]
    pre = np.asarray(encoder.audio_features(jnp.asarray(encoder.audio_windows(samples, 40))))
    last = int(samples.shape[0] / 16000 * float(config.data.fps)) - 1
    neighbours = [pre[np.clip(numbers + s, 0, max(last, int(numbers.max())))] for s in (-1, 0, 1)]
    mean, std = lip.statistics
    np.testing.assert_allclose(
        frames.lip[rows], (np.concatenate(neighbours, 1) - mean) / std, rtol=1e-4, atol=1e-4
    )
    dim = encoder.embed_dim
    stage.train(config, tmp_path)
    trained = render_video.load_trained(tmp_path)
    kernel = np.asarray(trained.params["nerf"]["lip_projection"]["kernel"])
    assert kernel.shape == (3 * dim, config.model.lip_dim)
    # New audio reads the same neighbours.
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000).astype(np.float32)
    assert lip.audio_conditions(tone, 25)["lip"].shape == (25, 3 * dim)
    for bad in (-1, True):
        with config.unlocked():
            config.sync.context = bad
        with pytest.raises(ValueError, match="config.sync.context"):
            cond.LipSource(config)


def test_no_lip_condition_arm(pretrained, tmp_path):
    """config.model.lip_dim=0 without a sync stage: paper 000 table 2's "w/o sync module"."""
    config = smoke_config(pretrained["cache"], steps=2)
    with config.unlocked():
        config.model.lip_dim = 0
    setup = stage.prepare(config).setup
    assert setup.lip == "none" and not setup.model_config.audio_net
    assert "lip" not in dict(setup.model_config.condition_dims)
    stage.train(config, tmp_path)
    assert np.isfinite(json.loads((tmp_path / "eval.json").read_text())["val"]["mouth_psnr"])


def test_l_dis_pulls_codes_to_the_extractor_references(pretrained, tmp_path):
    config = with_pretrained(
        smoke_config(pretrained["cache"], steps=2, log_every=1), pretrained, sync=False
    )
    with config.unlocked():
        config.disentangle.init_codes = False
    prepared = stage.prepare(config)
    setup, frames = prepared.setup, prepared.frames
    assert setup.disentangle
    ref = cond.reference_codes(config, setup.code_sizes, frames)
    assert {k: v.shape for k, v in ref.items()} == {
        name: (rows, dim) for name, (rows, dim) in setup.code_sizes.items()
    }
    # Per-identity references are the unit-RMS means of the identity's frame codes.
    extractor = dis_stage.load_extractor(pretrained["extractor"])
    ids = np.array([int(frames[i]["identity"]) for i in range(len(frames))])
    codes = extractor(np.stack([frames[i]["image"] for i in range(len(frames))]))
    mean = codes["id"][ids == 1].mean(0)
    np.testing.assert_allclose(ref["id"][1], mean / np.sqrt(np.mean(mean**2)), rtol=1e-4)
    np.testing.assert_allclose(ref["ex"], codes["ex"], rtol=1e-4, atol=1e-6)

    # With zero-initialised codes, the first step's L_dis is eq. 6 of the references alone.
    state = loop.train(config, tmp_path / "zero", no_eval)
    first = read_metrics(tmp_path / "zero" / "metrics.jsonl")[0]
    assert first["step"] == 1
    # (a batch mean over frames: between the smallest and largest per-frame sums)
    per_key = {k: np.sum(v**2, -1) for k, v in ref.items()}
    low = sum(v.min() for v in per_key.values())
    high = sum(v.max() for v in per_key.values())
    assert low - 1e-4 <= first["loss_dis"] <= high + 1e-4
    assert np.isfinite(jax.tree.leaves(state.params)[0]).all()

    # init_codes: the tables start at the references, so L_dis starts at (almost) zero.
    with config.unlocked():
        config.disentangle.init_codes = True
    loop.train(config, tmp_path / "init", no_eval)
    assert read_metrics(tmp_path / "init" / "metrics.jsonl")[0]["loss_dis"] < 1e-3 * low


def test_disentangle_loss_matches_eq6_on_a_batch():
    codes = {"ex": jnp.ones((3, 4)), "id": jnp.zeros((3, 2))}
    ref = {"ex": jnp.zeros((3, 4)), "id": jnp.full((3, 2), 2.0)}
    value = nerf_losses.disentangle_loss(codes, ref, {"ex": 1.0, "id": 1.0})
    assert float(value) == pytest.approx(4.0 + 8.0)


def test_both_pretrained_stages_train_evaluate_and_render(pretrained, tmp_path):
    config = with_pretrained(smoke_config(pretrained["cache"], steps=2), pretrained)
    stage.train(config, tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert np.isfinite(records[-1]["loss_dis"])
    results = json.loads((tmp_path / "eval.json").read_text())
    for split in ("val", "val_views"):
        assert 0.0 < results[split]["mouth_psnr"] < 60.0
        assert results[split]["mouth_l1"] >= 0.0
        assert -1.0 <= results[split]["mouth_motion_r"] <= 1.0
    trained = render_video.load_trained(tmp_path)
    assert trained.setup.lip == "sync" and trained.setup.disentangle
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000).astype(np.float32)
    frames = render_video.drive(trained, tone, identity=0)
    assert frames.shape == (12, 64, 64, 3) and np.isfinite(frames).all()

    # The swap test's ground truth: identity B with B's own expression is B's training frame;
    # identity A with B's expression differs from it (the test can tell the two apart).
    scene = swap.SwapScene(trained)
    source = trained.train_frames
    row = int(np.argmax(source.arrays["identity"] == 1))
    own, landmarks = scene.render(1, row, scene.expression(row))
    np.testing.assert_allclose(own, source[row]["image"], atol=1.5 / 255)
    np.testing.assert_allclose(landmarks, source[row]["landmarks"], atol=1e-3)
    other, _ = scene.render(0, row, scene.expression(row))
    assert np.abs(other - own).mean() > 0.01
    result = swap.write_swap_report(tmp_path, frames=2)
    assert result["summary"]["pairs"] == 2 and len(result["pairs"]) == 2
    assert "swap" in json.loads((tmp_path / "eval.json").read_text())
    assert (tmp_path / "swap.md").is_file() and (tmp_path / "samples" / "swap.png").is_file()


def test_mismatched_code_sizes_and_missing_runs_are_clear_errors(pretrained, tmp_path):
    config = with_pretrained(smoke_config(pretrained["cache"]), pretrained, sync=False)
    with config.unlocked():
        config.model.codes.ex = 8
    with pytest.raises(ValueError, match=r"codes.ex is 8 .* set --config.model.codes.ex=16"):
        stage.build_task(config, None)
    missing = with_pretrained(smoke_config(pretrained["cache"]), pretrained, dis=False)
    with missing.unlocked():
        missing.sync.init_from = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train_sync.py"):
        stage.prepare(missing)


def test_mouth_motion_correlation():
    t = np.linspace(0, 4, 50)
    assert lip_metrics._correlation(np.sin(t), 3 * np.sin(t) + 1) == pytest.approx(1.0)
    assert lip_metrics._correlation(np.sin(t), -np.sin(t)) == pytest.approx(-1.0)
    assert lip_metrics._correlation(np.sin(t), np.ones_like(t)) == 0.0  # a mouth that never moves


def test_opening_agreement_tells_a_calibrated_damped_mouth_from_an_exaggerated_one():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=4000)  # what the inputs say about the opening
    truth = 0.04 + 0.01 * (signal + rng.normal(size=4000))  # plus what they cannot say
    calibrated = 0.04 + 0.01 * signal  # the truth's mean given the inputs
    out = lip_metrics.opening_agreement(calibrated, truth)
    assert out["r"] == pytest.approx(np.sqrt(0.5), abs=0.02) and out["frames"] == 4000
    assert out["slope"] == pytest.approx(1.0, abs=0.05)  # opens less wide, as it should
    assert out["std_ratio"] == pytest.approx(out["r"], abs=0.03)
    wide = lip_metrics.opening_agreement(0.04 + 0.02 * signal, truth)  # the same r, twice as wide
    assert wide["r"] == pytest.approx(out["r"]) and wide["slope"] == pytest.approx(0.5, abs=0.03)
    gaps = calibrated.copy()
    gaps[:10] = np.nan  # frames without a face are left out
    assert lip_metrics.opening_agreement(gaps, truth)["frames"] == 3990
    still = lip_metrics.opening_agreement(np.full(4000, 0.03), truth)  # a mouth that never moves
    assert np.isnan(still["r"]) and np.isnan(still["slope"])
    with pytest.raises(ValueError, match="differ in length"):
        lip_metrics.opening_agreement(calibrated[:-1], truth)


def test_mouth_box_covers_the_lips_with_a_margin():
    landmarks = np.zeros((68, 2))
    landmarks[48:68] = [[40, 50], [60, 50], [50, 45], [50, 58]] * 5
    box = lip_metrics.mouth_box(landmarks, 100, 100, margin=0.5)
    ys, xs = np.nonzero(box)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (30, 69, 35, 67)
    assert not lip_metrics.mouth_box(landmarks, 100, 100)[10, 10]


def test_motion_box_is_fixed_to_the_head_not_the_jaw():
    landmarks = np.zeros((68, 2))
    landmarks[33] = [50, 40]  # nose tip
    landmarks[36], landmarks[45] = [30, 20], [70, 20]  # outer eye corners: 40 px apart
    landmarks[48:68] = [[40, 50], [60, 50], [50, 45], [50, 58]] * 5
    box = lip_metrics.motion_box(landmarks, 100, 100)
    ys, xs = np.nonzero(box)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (32, 67, 44, 71)
    opened = landmarks.copy()
    opened[48:68, 1] += np.linspace(0, 15, 20)  # the jaw opens: the lip box grows ...
    assert not np.array_equal(
        lip_metrics.mouth_box(opened, 100, 100), lip_metrics.mouth_box(landmarks, 100, 100)
    )
    np.testing.assert_array_equal(lip_metrics.motion_box(opened, 100, 100), box)  # ... this one not
    moved = landmarks + [5, 3]  # the head moves: the box follows
    np.testing.assert_array_equal(
        lip_metrics.motion_box(moved, 100, 100), np.roll(box, (3, 5), (0, 1))
    )
    # A render that never moves its (closed) mouth scores r = 0 however the true jaw moves;
    # the brightness in the growing lip box would have followed the truth.
    still = np.full((100, 100, 3), 0.8, np.float32)
    still[49:51, 40:60] = 0.2
    frames, in_lip_box, truths, lms = [], [], [], []
    for t in range(6):
        truth = np.full((100, 100, 3), 0.8, np.float32)
        lm = landmarks.copy()
        lm[48:68, 1] += np.linspace(0, 3 * t, 20)
        truth[45 : 52 + 3 * t, 40:60] = 0.2  # the opening mouth, darker
        truths.append(truth)
        lms.append(lm)
        frames.append(lip_metrics.lip_region_frame(still, truth, lm, opening=t / 5))
        box = lip_metrics.mouth_box(lm, 100, 100)
        in_lip_box.append((still[box].mean(), truth[box].mean()))
    summary = lip_metrics.lip_region_summary([frames])
    assert summary["mouth_motion_r"] == 0.0 and summary["mouth_motion_reference"] == "jaw_open"
    assert summary["mouth_motion_r_truth"] > 0.95  # the truth's darkness follows its jaw
    opened = [f for f in frames if f[4] >= lip_metrics.OPEN_JAW]  # openings 0.6, 0.8, 1.0
    assert summary["open_frames"] == len(opened) == 3
    assert summary["mouth_psnr_open"] == pytest.approx(
        np.mean([float(psnr_from_mse(f[0])) for f in opened])
    )
    assert summary["mouth_psnr_open"] < summary["mouth_psnr"]  # the still mouth is wrong there
    assert abs(lip_metrics._correlation(*np.asarray(in_lip_box).T)) > 0.5
    # A render that opens with the truth scores ~1; without the jaw parameter (real videos) the
    # reference is the true frames' darkness.
    follows = [lip_metrics.lip_region_frame(t, t, lm) for t, lm in zip(truths, lms, strict=True)]
    summary = lip_metrics.lip_region_summary([follows])
    assert summary["mouth_motion_reference"] == "truth" and "mouth_motion_r_truth" not in summary
    assert summary["mouth_motion_r"] == pytest.approx(1.0)


def test_mouth_darkness_grows_with_the_opening_and_ignores_global_shading():
    box = np.zeros((40, 40), bool)
    box[10:30, 10:30] = True
    skin = np.full((40, 40, 3), [0.8, 0.6, 0.5], np.float32)
    assert lip_metrics.mouth_darkness(skin, box) == 0.0
    values = []
    for rows in (2, 5, 8):
        image = skin.copy()
        image[18 : 18 + rows, 14:26] = [0.25, 0.02, 0.02]  # the mouth's interior
        values.append(lip_metrics.mouth_darkness(image, box))
        # Lighting or pose that scales the whole box leaves it unchanged.
        assert lip_metrics.mouth_darkness(0.6 * image, box) == pytest.approx(values[-1])
    assert 0.0 < values[0] < values[1] < values[2] < 1.0


def test_lip_feature_probe(pretrained):
    config = smoke_config(pretrained["cache"])
    results = lip_probe.lip_feature_probe(config, str(pretrained["sync"]))
    assert list(results) == ["logmel_window", *lip_probe.SYNC_READINGS]
    encoder = sync_stage.load_sync_encoder(pretrained["sync"])
    assert results["embedding"]["dims"] == encoder.embed_dim
    assert results["logmel_window"]["dims"] == config.data.audio_window * 80
    for r in results.values():
        assert r["alpha"] in lip_probe.ALPHAS
        assert set(r["r2"]) == set(lip_probe.TARGETS)
        assert all(v <= 1.0 for v in r["r2"].values())
    table = lip_probe.probe_table(results)
    assert table.count("\n") == 1 + len(results)
    assert f"| standardized | {encoder.embed_dim} |" in table
    video = smoke_config(pretrained["cache"])
    with video.unlocked():
        video.data.kind = "video"
    with pytest.raises(ValueError, match="needs the true mouth parameters"):
        lip_probe.lip_feature_probe(video)


def test_probe_alpha_is_chosen_on_training_groups():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 40))
    groups = np.repeat(np.arange(6), 50)
    clean = x[:, :2] @ np.array([[1.0, 0.5], [-0.5, 1.0]])
    assert lip_probe.choose_alpha(x, clean, groups) == min(lip_probe.ALPHAS)
    # Targets unrelated to x: heavy shrinkage wins.
    noise = rng.normal(size=(300, 2))
    assert lip_probe.choose_alpha(x, noise, groups) == max(lip_probe.ALPHAS)
    assert lip_probe.choose_alpha(x, clean, np.zeros(300, int)) == 1e-2  # one group: no CV
