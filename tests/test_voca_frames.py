"""VOCASET-format data rendered into NeRF frames: splits, cameras, cache, pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from jaxhead.data import raster, voca_frames
from jaxhead.data.errors import DatasetError
from jaxhead.data.pipeline import make_pipeline


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    c = voca_frames.voca_frames_config()
    c.cache_dir = str(tmp_path_factory.mktemp("cache"))
    c.synthetic.update({"identities": 2, "sequences": 2, "seconds": 1.0})
    c.max_frames = 6
    c.resolution, c.lr_resolution, c.supersample = 64, 16, 1
    return c


@pytest.fixture(scope="module")
def train(config):
    return voca_frames.load_frames(config, "train", progress=False)


def test_train_split_holds_first_sentences_of_every_subject(train):
    assert len(train) == 2 * 1 * 6  # 2 subjects x 1 training sentence x 6 frames
    assert sorted(set(train.arrays["identity"].tolist())) == [0, 1]
    assert train.num_identities == 2
    # frames chain within a sentence and stop at its end
    assert [train.next_index(i) for i in range(6)] == [1, 2, 3, 4, 5, None]


def test_val_split_is_disjoint_and_frontal(config, train):
    val = voca_frames.load_frames(config, "val", progress=False)
    assert len(val) == 12
    assert not set(val.arrays["sequence"].tolist()) & set(train.arrays["sequence"].tolist())
    np.testing.assert_array_equal(val.arrays["yaw_deg"], 0.0)
    assert np.abs(train.arrays["yaw_deg"]).max() <= config.train_yaw_jitter_deg
    views = voca_frames.load_frames(config, "val_views", progress=False)
    np.testing.assert_allclose(np.abs(views.arrays["yaw_deg"]), config.heldout_view_yaw_deg)


def test_frames_match_spec_and_landmarks_project_with_head_camera(train):
    ex = train[3]
    assert ex["image"].shape == (64, 64, 3) and ex["image"].dtype == np.float32
    assert ex["image_lr"].shape == (16, 16, 3)
    assert 0.1 < ex["mask"].mean() < 0.9
    # the low-resolution mask is the box-filtered high-resolution one
    np.testing.assert_allclose(
        ex["mask_lr"][..., 0], ex["mask"][..., 0].reshape(16, 4, 16, 4).mean((1, 3)), atol=0.01
    )
    # Landmarks fall on the head: the mask is set under every landmark.
    cols = np.clip(ex["landmarks"][:, 0].astype(int), 0, 63)
    rows = np.clip(ex["landmarks"][:, 1].astype(int), 0, 63)
    assert ex["mask"][rows, cols, 0].mean() > 0.9
    # c2w is a rigid transform (head pose as camera motion)
    rot = ex["c2w"][:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-5)
    assert ex["audio"].shape == (16, 80) and np.isfinite(ex["audio"]).all()


def test_head_camera_reproduces_the_render(config, train):
    """Rendering the unposed head from the stored head camera gives the cached image's mask."""
    root = voca_frames.dataset_root(config, progress=False)
    from jaxhead.data.voca import load_voca

    voca = load_voca(root)
    row = voca.rows_at_fps(voca.subjects[0], voca.sentences(voca.subjects[0])[0], 25.0)[2]
    out = raster.render_mesh(
        np.asarray(voca.verts[row]), voca.faces, train.arrays["intrinsics"][2],
        train.arrays["c2w"][2], 64, 64, vertex_colors=voca.factors["vertex_albedo"][0],
    )  # fmt: skip
    cached = train.arrays["mask"][2, ..., 0] > 127
    iou = np.logical_and(out.mask > 0.5, cached).sum() / np.logical_or(out.mask > 0.5, cached).sum()
    assert iou > 0.97


def test_cache_is_reused(config, train, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("rendered again despite a cache")

    monkeypatch.setattr(voca_frames, "render_split", boom)
    again = voca_frames.load_frames(config, "train", progress=False)
    np.testing.assert_array_equal(again.arrays["image"], train.arrays["image"])


def test_pipeline_pairs_consecutive_frames(train):
    pipe = make_pipeline(train, batch_size=4, seed=0, num_threads=0)
    batch = next(iter(pipe))
    assert batch["image"].shape == (4, 2, 64, 64, 3)
    np.testing.assert_array_equal(batch["frame"][:, 1], batch["frame"][:, 0] + 1)
    np.testing.assert_array_equal(batch["sequence"][:, 1], batch["sequence"][:, 0])


def test_bad_root_and_split_errors(config):
    bad = config.copy_and_resolve_references()
    bad.root = "/nonexistent/voca"
    with pytest.raises(DatasetError, match="does not exist"):
        voca_frames.load_frames(bad, "train", progress=False)
    too_many = config.copy_and_resolve_references()
    too_many.val_sentences = 2
    with pytest.raises(DatasetError, match="too few to hold out"):
        voca_frames.load_frames(too_many, "train", progress=False)
