"""Pair generator (each variation changes exactly its factor, checked on the renders) and
landmark parts (normalisation, layouts, the real MediaPipe-478 sequence)."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from jaxhead.disentangle import data

FACTOR_KEYS = {"id": "shape", "ex": "expression", "al": "albedo", "ill": "sh"}
SCENE_KEYS = ("shape", "albedo", "sh", "expression", "rotation", "translation")


@pytest.fixture(scope="module")
def renderer():
    return data.SceneRenderer(32, supersample=1, mesh_rows=18, mesh_cols=24)


@pytest.fixture(scope="module")
def variations(renderer):
    rng = np.random.default_rng(0)
    anchor = data.sample_scene(rng)
    scenes = {f: data.vary(anchor, f, rng) for f in data.CODE_FACTORS}
    renders = {f: renderer.render(s) for f, s in scenes.items()}
    return anchor, scenes, renderer.render(anchor), renders


def test_vary_changes_exactly_the_named_factor(variations):
    anchor, scenes, _, _ = variations
    for factor, scene in scenes.items():
        changed = [k for k in SCENE_KEYS if not np.array_equal(scene[k], anchor[k])]
        assert changed == [FACTOR_KEYS[factor]], factor
    with pytest.raises(ValueError, match="unknown factor"):
        data.vary(anchor, "pose", np.random.default_rng(0))


def test_relighting_keeps_mask_and_geometry_but_changes_the_image(variations):
    _, _, base, renders = variations
    relit = renders["ill"]
    np.testing.assert_array_equal(relit.mask, base.mask)
    np.testing.assert_array_equal(relit.depth, base.depth)
    np.testing.assert_array_equal(relit.landmarks, base.landmarks)
    inside = base.mask > 0.5
    assert np.abs(relit.rgb - base.rgb)[inside].mean() > 0.01
    assert np.array_equal(relit.rgb[~inside], base.rgb[~inside])  # white background stays


def test_albedo_swap_keeps_mask_and_geometry_and_only_recolours(variations):
    _, _, base, renders = variations
    recoloured = renders["al"]
    np.testing.assert_array_equal(recoloured.mask, base.mask)
    np.testing.assert_array_equal(recoloured.depth, base.depth)
    np.testing.assert_array_equal(recoloured.face_index, base.face_index)
    assert np.abs(recoloured.rgb - base.rgb)[base.mask > 0.5].mean() > 0.01


def test_identity_and_expression_changes_move_the_geometry(variations, renderer):
    anchor, scenes, base, renders = variations
    assert np.abs(renders["id"].depth - base.depth).max() > 1e-3
    # The expression moves the lips and lids, never the brows (the landmark normalisation's
    # reference points).
    moved = np.linalg.norm(renders["ex"].landmarks - base.landmarks, axis=-1)
    assert moved[48:68].max() > 0.1 and moved[36:48].max() > 0.1 and moved[17:27].max() < 5e-3
    np.testing.assert_array_equal(
        renderer.vertices(scenes["ill"]), renderer.vertices(anchor)
    )  # lighting leaves the vertices alone


def test_render_groups_layout_and_factors(renderer):
    groups = data.render_groups(renderer, 2, seed=3, pose_jitter=1.0)
    assert groups["images"].shape == (2, 9, 32, 32, 3) and groups["images"].dtype == np.uint8
    names = {"id": "identity", "ex": "expression", "al": "albedo", "ill": "illumination"}
    for g in range(2):
        for k, factor in enumerate(data.CODE_FACTORS):
            for s, slot in enumerate(data.GROUP_SLOTS[1:], start=1):
                same = np.array_equal(
                    groups[f"factor_{names[factor]}"][g, 0], groups[f"factor_{names[factor]}"][g, s]
                )
                assert same == data.SHARES[k][s], (factor, slot)
                assert not np.array_equal(groups["factor_pose"][g, 0], groups["factor_pose"][g, s])
            kept = [n for n in names.values() if np.array_equal(
                groups[f"factor_{n}"][g, 0], groups[f"factor_{n}"][g, 5 + k])]  # fmt: skip
            assert kept == [names[factor]]  # "keep f" shares f and nothing else
    again = data.render_groups(renderer, 2, seed=3, pose_jitter=1.0)
    np.testing.assert_array_equal(again["images"], groups["images"])


def test_group_and_pair_batches_resume():
    images = np.arange(10)[:, None] * np.ones((10, 3), np.uint8)
    it = data.GroupBatches(images, 4, seed=1)
    first = [next(it)["images"] for _ in range(3)]
    state = it.get_state()
    expected = next(it)["images"]
    fresh = data.GroupBatches(images, 4, seed=1)
    fresh.set_state(state)
    np.testing.assert_array_equal(next(fresh)["images"], expected)
    assert all(len(np.unique(b[:, 0])) == 4 for b in first)  # groups without replacement
    pairs = data.PairBatches(np.eye(6), np.eye(6)[:, :2], 3, seed=0)
    next(pairs)
    state = pairs.get_state()
    expected = next(pairs)
    pairs.set_state(state)
    assert all(np.array_equal(v, expected[k]) for k, v in next(pairs).items())


def test_normalize_faces_removes_position_roll_and_scale():
    rng = np.random.default_rng(4)
    points = rng.normal(size=(1, 68, 3))
    angle, scale, shift = 0.3, 2.5, np.array([10.0, -4.0, 1.0])
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    moved = scale * points @ rot.T + shift
    a = data.normalize_faces(points, (36, 45))
    b = data.normalize_faces(moved, (36, 45))
    np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(a[0, 36] + a[0, 45], 0.0, atol=1e-12)  # midpoint at the origin
    np.testing.assert_allclose(a[0, 45, 1] - a[0, 36, 1], 0.0, atol=1e-12)  # no roll
    np.testing.assert_allclose(np.linalg.norm(a[0, 45] - a[0, 36]), 1.0)  # unit distance
    mouth, eyes = data.landmark_parts(moved, data.IBUG68)
    assert mouth.shape == (1, 60) and eyes.shape == (1, 36)
    with pytest.raises(ValueError, match="expected 478"):
        data.landmark_parts(moved, data.MEDIAPIPE478)


def test_real_mediapipe_sequence(shared_data):
    path = shared_data / "real" / "sequences" / "echomimic_landmarks478.npy"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    config = data.landmark_data_config()
    config.update(source="real478", path=str(path))
    out = data.load_landmark_data(config)
    train, test = out["train"], out["test"]
    assert out["layout"] == "mediapipe478" and out["mouth_size"] == 40 * 3
    assert train["mouth"].shape[1] == 120 and train["eyes"].shape[1] == 32 * 3
    assert len(train["mouth"]) + len(test["mouth"]) == 240 and len(test["mouth"]) == 48
    np.testing.assert_allclose(train["mouth"].mean(0), 0.0, atol=1e-4)
    # The measured openings are positive fractions of the eye-corner distance.
    for name in ("mouth", "blink"):
        values = train["factors"][name]
        assert values.shape == (192, 1) and np.all(values >= 0) and np.all(values < 1)


def test_landmark_config_errors(tmp_path):
    config = data.landmark_data_config()
    config.update(source="real478", path=str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match="missing.npy"):
        data.load_landmark_data(config)
    np.save(tmp_path / "bad.npy", np.zeros((10, 68, 2), np.float32))
    config.path = str(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="478"):
        data.load_landmark_data(config)
    config = ml_collections.ConfigDict(dict(data.landmark_data_config()))
    config.source = "video"
    with pytest.raises(ValueError, match="unknown config.data.landmarks.source"):
        data.load_landmark_data(config)
