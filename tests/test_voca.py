"""Tests for the VOCASET reader (jaxhead.data.voca) on generated folders."""

import pickle

import numpy as np
import pytest

from jaxhead.data import raster, synthetic, voca
from jaxhead.data.errors import CorruptFileError, DatasetError, FeatureShapeError, MissingFileError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("voca") / "set"
    return synthetic.generate(
        out, identities=2, sequences=3, seconds=2.0, seed=1, mesh_rows=20, mesh_cols=28
    )


def test_loads_back_the_generated_folder(root):
    ds = voca.load_voca(root)
    assert isinstance(ds.verts, np.memmap) and not ds.verts.flags.writeable
    assert len(ds.subjects) == 2 and ds.sentences(ds.subjects[0]) == [
        "sentence01",
        "sentence02",
        "sentence03",
    ]
    assert len(ds.sequences) == 6
    subject = ds.subjects[1]
    frames, rows = ds.frames(subject, "sentence02")
    np.testing.assert_array_equal(frames, np.arange(120))
    seq = ds.vertices(subject, "sentence02")
    assert seq.shape == (120,) + ds.verts.shape[1:]
    np.testing.assert_array_equal(ds.vertices(subject, "sentence02", 17), seq[17])
    audio = ds.audio(subject, "sentence02")
    assert audio.dtype == np.float32 and abs(len(audio) - 2 * 16_000) <= 1
    assert 0.3 < np.abs(audio).max() <= 1.0
    fac = ds.factor_rows(rows)
    assert fac["jaw_open"].shape == (120,) and (fac["subject"] == 1).all()
    with pytest.raises(KeyError, match="sentence09"):
        ds.frames(subject, "sentence09")


def test_rows_at_25_fps_pick_the_nearest_capture(root):
    ds = voca.load_voca(root)
    subject = ds.subjects[0]
    _, rows = ds.frames(subject, "sentence01")
    at25 = ds.rows_at_fps(subject, "sentence01", 25.0)
    assert len(at25) == 50  # 2 s
    # Target frame k at k/25 s -> capture round(k * 60 / 25) (ties to the earlier frame).
    expected = np.floor(np.arange(50) * 60 / 25 + 0.5 - 1e-9).astype(int)
    np.testing.assert_array_equal(at25, rows[expected])
    np.testing.assert_array_equal(ds.rows_at_fps(subject, "sentence01", 60.0), rows)


def test_frame_sample_ranges_tile_the_audio():
    ranges = voca.frame_sample_ranges(50, 25.0, 16_000)
    assert ranges[0, 0] == 0 and ranges[-1, 1] == 32_000
    np.testing.assert_array_equal(ranges[1:, 0], ranges[:-1, 1])
    np.testing.assert_array_equal(ranges[:, 1] - ranges[:, 0], 640)
    odd = voca.frame_sample_ranges(7, 30.0, 22_050)
    assert set(np.diff(odd, axis=1).ravel()) <= {735}


def test_render_matches_head_pose_as_camera_motion(root):
    ds = voca.load_voca(root)
    intr = raster.intrinsics_from_fov(22.0, 64, 64)
    c2w = raster.look_at([0, 0, 0.6], [0, 0, 0])
    row = int(np.argmax(np.abs(ds.factors["head_rotation"]).sum(-1)))  # most-rotated frame
    out, c2w_head = ds.render(row, c2w, intr, 64, 64)
    assert 0.2 < out.mask.mean() < 0.7
    assert out.landmarks.shape == (68, 2)
    assert not np.allclose(c2w_head, c2w)
    # The unposed mesh seen from the head-frame camera has the same silhouette.
    faces = ds.faces
    same = raster.render_mesh(np.asarray(ds.verts[row]), faces, intr, c2w_head, 64, 64)
    iou = ((same.mask > 0) & (out.mask > 0)).sum() / ((same.mask > 0) | (out.mask > 0)).sum()
    assert iou > 0.99


def test_splits():
    names = [f"FaceTalk_17070{k}_0000{k}_TA" for k in range(4)]
    split = voca.split_by_subject(names, val=1, test=1)
    assert split == {"train": names[:2], "val": [names[2]], "test": [names[3]]}
    real = [s for v in voca.VOCA_SPLITS.values() for s in v]
    assert voca.split_by_subject(real)["test"] == list(voca.VOCA_SPLITS["test"])
    seqs = [(s, f"sentence{q:02d}") for s in names[:2] for q in (1, 2, 3)]
    by_sentence = voca.split_by_sentence(seqs, held_out=1)
    assert by_sentence["val"] == [(names[0], "sentence03"), (names[1], "sentence03")]
    assert len(by_sentence["train"]) == 4
    with pytest.raises(ValueError, match="held_out"):
        voca.split_by_sentence(seqs, held_out=3)


def _copy(root, dst):
    dst.mkdir()
    for f in root.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_broken_folders_give_one_clear_error(root, tmp_path):
    with pytest.raises(MissingFileError, match="nowhere"):
        voca.load_voca(tmp_path / "nowhere")
    missing = _copy(root, tmp_path / "missing")
    (missing / "raw_audio_fixed.pkl").unlink()
    with pytest.raises(MissingFileError, match="raw_audio_fixed.pkl.*synthetic"):
        voca.load_voca(missing)
    truncated = _copy(root, tmp_path / "truncated")
    data = (truncated / "data_verts.npy").read_bytes()
    (truncated / "data_verts.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="data_verts.npy"):
        voca.load_voca(truncated)
    garbled = _copy(root, tmp_path / "garbled")
    (garbled / "templates.pkl").write_bytes(b"not a pickle")
    with pytest.raises(CorruptFileError, match="templates.pkl"):
        voca.load_voca(garbled)
    short = _copy(root, tmp_path / "short")
    verts = np.load(short / "data_verts.npy")
    np.save(short / "data_verts.npy", verts[:100])
    with pytest.raises(DatasetError, match="subj_seq_to_idx.pkl.*row"):
        voca.load_voca(short)
    wrong = _copy(root, tmp_path / "wrong")
    with open(wrong / "templates.pkl", "rb") as f:
        templates = pickle.load(f)
    templates[next(iter(templates))] = np.zeros((10, 3))
    with open(wrong / "templates.pkl", "wb") as f:
        pickle.dump(templates, f)
    with pytest.raises(FeatureShapeError, match="templates.pkl"):
        voca.load_voca(wrong)


def test_real_topology_renders_through_the_reader(shared_data, tmp_path):
    """A VOCASET-format folder on FLAME topology (the template, jittered) renders textured."""
    obj = shared_data / "voca" / "texture_mesh.obj"
    if not obj.is_file():
        pytest.skip(f"{obj} is absent")
    from jaxhead.data import mesh_io

    mesh = mesh_io.read_obj(obj)
    rng = np.random.default_rng(0)
    frames = mesh.vertices[None] + rng.normal(0, 1e-4, (3, 5023, 3)).astype(np.float32)
    np.save(tmp_path / "data_verts.npy", frames)
    subj = "FaceTalk_170725_00137_TA"
    for name, obj_ in [
        ("templates.pkl", {subj: mesh.vertices}),
        (
            "raw_audio_fixed.pkl",
            {subj: {"sentence01": {"audio": np.zeros(1100, np.int16), "sample_rate": 22_000}}},
        ),
        ("subj_seq_to_idx.pkl", {subj: {"sentence01": {1: 0, 2: 1, 3: 2}}}),
    ]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj_, f, protocol=2)
    ds = voca.load_voca(tmp_path, template_mesh=obj)
    assert ds.factors is None and ds.faces.shape == (9976, 3)
    with pytest.raises(DatasetError, match="factors.npz"):
        ds.factor_rows(np.arange(3))
    centre = mesh.vertices.mean(0)
    for c2w in raster.orbit_cameras([-30.0, 30.0], [0.0, 0.0], 0.9, centre):
        out, c2w_head = ds.render(1, c2w, raster.intrinsics_from_fov(20.0, 96, 96), 96, 96)
        np.testing.assert_allclose(c2w_head, c2w)  # no pose factors: camera unchanged
        assert 0.25 < out.mask.mean() < 0.7 and out.rgb[out.mask > 0].std(0).mean() > 0.08
    assert len(ds.audio(subj, "sentence01")) == 800  # 50 ms at 16 kHz


def test_non_finite_values_are_refused_like_the_video_reader(root, tmp_path):
    from jaxhead.data.errors import NonFiniteError

    nan_verts = _copy(root, tmp_path / "nan_verts")
    verts = np.load(nan_verts / "data_verts.npy")
    verts[37, 5, 1] = np.nan
    verts[90, 0, 0] = np.inf
    np.save(nan_verts / "data_verts.npy", verts)
    with pytest.raises(NonFiniteError, match="data_verts.npy: holds 2 non-finite .* row 37"):
        voca.load_voca(nan_verts)
    nan_template = _copy(root, tmp_path / "nan_template")
    with open(nan_template / "templates.pkl", "rb") as f:
        templates = pickle.load(f)
    templates[next(iter(templates))][0, 0] = np.nan
    with open(nan_template / "templates.pkl", "wb") as f:
        pickle.dump(templates, f)
    with pytest.raises(NonFiniteError, match="templates.pkl"):
        voca.load_voca(nan_template)
    nan_audio = _copy(root, tmp_path / "nan_audio")
    with open(nan_audio / "raw_audio_fixed.pkl", "rb") as f:
        audio = pickle.load(f)
    subject = next(iter(audio))
    sentence = next(iter(audio[subject]))
    audio[subject][sentence]["audio"] = np.asarray(audio[subject][sentence]["audio"], np.float32)
    audio[subject][sentence]["audio"][10] = np.nan
    with open(nan_audio / "raw_audio_fixed.pkl", "wb") as f:
        pickle.dump(audio, f)
    with pytest.raises(NonFiniteError, match=f"raw_audio_fixed.pkl.*{subject}/{sentence}"):
        voca.load_voca(nan_audio)
