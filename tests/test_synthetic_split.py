"""One synthetic root and one split policy: what the NeRF holds out, no stage trains on."""

from __future__ import annotations

import ml_collections
import pytest

from jaxhead.data import synthetic, voca_frames
from jaxhead.data.voca import load_voca
from jaxhead.disentangle import data as disentangle_data
from jaxhead.gpvae import data as gpvae_data
from jaxhead.sync import data as sync_data

SMALL = {"identities": 3, "sequences": 3, "seconds": 1.0, "seed": 5}


def test_split_policy():
    sentences = {"b": ["s2", "s1", "s3"], "a": ["s1", "s2", "s3"], "c": ["s1", "s2", "s3"]}
    parts = synthetic.split(sentences, heldout_sentences=1, heldout_subjects=1)
    assert parts["train"] == [("a", "s1"), ("a", "s2"), ("b", "s1"), ("b", "s2")]
    assert parts["heldout_sentences"] == [("a", "s3"), ("b", "s3")]
    assert parts["heldout_subjects"] == [("c", "s1"), ("c", "s2"), ("c", "s3")]
    with pytest.raises(ValueError, match="too few to hold out 3"):
        synthetic.split(sentences, heldout_sentences=3)


def test_every_stage_reads_one_root_and_holds_out_what_the_nerf_holds_out(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXHEAD_CACHE", str(tmp_path))
    # The NeRF's frames.
    nerf = voca_frames.voca_frames_config()
    nerf.synthetic.update(SMALL)
    root = voca_frames.dataset_root(nerf, progress=False)
    voca = load_voca(root)
    nerf_held = {
        (subject, q) for subject, _, held in voca_frames._selected(voca, nerf) for q in held
    }
    assert nerf_held and len(nerf_held) == SMALL["identities"]
    # The sync stage: the same folder, and the NeRF's held-out sentences are held out.
    sync = sync_data.sync_data_config()
    sync.synthetic.update(SMALL)
    sync.update(heldout_subjects=1, heldout_sentences=1)
    assert sync_data.synthetic_root(sync, progress=False) == root
    clips = sync_data.load_synthetic_clips(sync, progress=False)
    sync_train = {tuple(clip.name.split("/")) for clip in clips["train"]}
    assert sync_train and not sync_train & nerf_held
    # The GP-VAE: the same sentences (its coarse-mesh copy of the same data) and the same split.
    gp = ml_collections.ConfigDict(
        {"source": "synthetic", "root": "", "synthetic": dict(SMALL), "fps": 25.0, "held_out": 1}
    )
    gp_train, gp_held = gpvae_data.load_sequences(gp)
    assert {tuple(s.name.split("/")) for s in gp_held} == nerf_held
    assert not {tuple(s.name.split("/")) for s in gp_train} & nerf_held
    # The landmark autoencoder: trains on exactly the NeRF's training sentences' frames.
    landmarks = disentangle_data.landmark_data_config()
    landmarks.update(source="synthetic", root="", val_sentences=1)
    landmarks.synthetic.update(SMALL)
    parts = disentangle_data._synthetic_landmarks(landmarks)
    train_frames = sum(
        len(voca.frames(s, q)[1]) for s, q in voca.sequences if (s, q) not in nerf_held
    )
    assert len(parts["train"][0]) == train_frames


def test_max_sentences_caps_training_not_the_heldout_sentences(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXHEAD_CACHE", str(tmp_path))
    nerf = voca_frames.voca_frames_config()
    nerf.synthetic.update(SMALL)
    voca = load_voca(voca_frames.dataset_root(nerf, progress=False))
    full = voca_frames._selected(voca, nerf)
    nerf.max_sentences = 1
    capped = voca_frames._selected(voca, nerf)
    for (_, train_all, held_all), (_, train, held) in zip(full, capped, strict=True):
        assert held == held_all == ["sentence03"] and train == train_all[:1]
