"""The disentangle stage in-process on the shared loop: both models' smoke runs, kill + resume
== straight run, eval.json / probe table / heatmap, and the loaders the NeRF stage calls."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest
from tracing import no_baked_arrays

from jaxhead.data import head_model, synthetic
from jaxhead.disentangle import data as data_lib
from jaxhead.disentangle import stage
from jaxhead.train import loop

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "disentangle.py"


def get_config(arg):
    spec = importlib.util.spec_from_file_location("disentangle_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def tiny_config(arg, cache_dir, steps=4):
    config = get_config(arg)
    with config.unlocked():
        config.data.cache_dir = str(cache_dir)
        config.data.extractor.update(num_groups=16, probe_images=24, image_size=16)
        config.train.update(steps=steps, checkpoint_every=2, log_every=2, progress=False)
        config.train.async_checkpoints = False
    return config


class StopAfter:
    """Wraps a task's data iterator and raises after ``n`` batches (a simulated kill)."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    def __next__(self):
        if self.n == 0:
            raise KeyboardInterrupt("simulated kill")
        self.n -= 1
        return next(self.inner)

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, state):
        self.inner.set_state(state)


def flat(state):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params))])


def test_config_variants():
    config = get_config(None)
    assert config.model.name == "extractor"
    assert dict(config.model.extractor.codes) == {"id": 32, "ex": 16, "al": 32, "ill": 16}
    assert get_config("model=landmark_ae,real").data.landmarks.source == "real478"
    with pytest.raises(ValueError, match="unknown config variant"):
        get_config("modle=extractor")
    with pytest.raises(AttributeError):
        config.model.nmae = "x"  # locked


def test_extractor_smoke_eval_and_loader(tmp_path):
    run = tmp_path / "run"
    stage.train(tiny_config("smoke", tmp_path), run)
    # Re-running the finished command resumes at the last step: nothing is trained or rewritten.
    eval_time = (run / "eval.json").stat().st_mtime_ns
    stage.train(tiny_config("smoke", tmp_path), run)
    assert (run / "eval.json").stat().st_mtime_ns == eval_time

    run = tmp_path / "run"
    results = json.loads((run / "eval.json").read_text())
    assert set(results["probe"]) == {"C_id", "C_ex", "C_al", "C_ill"}
    assert set(results["probe"]["C_id"]) == {
        "identity", "expression", "albedo", "illumination", "pose",
    }  # fmt: skip
    assert all(np.isfinite(v) for row in results["probe"].values() for v in row.values())
    assert list(results["own_per_dimension"]["C_id"]) == sorted(head_model.SHAPE_NAMES)
    assert set(results["probe_kernel"]) == set(results["probe"])
    accuracy = results["heldout_group_accuracy"]
    assert set(accuracy) == {"id", "ex", "al", "ill"} and all(
        0 <= v <= 1 for v in accuracy.values()
    )
    assert (run / "probe.md").read_text().count("| C_") == 4
    assert (run / "probe.png").stat().st_size > 0

    extractor = stage.load_extractor(run)
    assert extractor.step == 4 and extractor.image_size == 16
    images = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)
    codes = extractor(images)  # a multiple of the training size is box-filtered down
    assert {k: v.shape for k, v in codes.items()} == {
        "id": (3, 32), "ex": (3, 16), "al": (3, 32), "ill": (3, 16),
    }  # fmt: skip
    np.testing.assert_allclose(np.linalg.norm(codes["ex"], axis=-1), 4.0, rtol=1e-4)
    with pytest.raises(ValueError, match="multiple of 16"):
        extractor(images[:, :24, :24])
    with pytest.raises(FileNotFoundError, match="model=landmark_ae"):
        stage.load_landmark_ae(run)
    with pytest.raises(FileNotFoundError, match="train_disentangle.py"):
        stage.load_extractor(tmp_path / "nothing")


def test_landmark_ae_smoke_resume_eval_and_loader(tmp_path):
    root = synthetic.generate(tmp_path / "voca", 2, 2, 1.0, 0, mesh_rows=18, mesh_cols=24)

    def config():
        config = tiny_config("smoke,model=landmark_ae", tmp_path)
        with config.unlocked():
            config.data.landmarks.root = str(root)
        return config

    def train_only(config, mesh):
        task = stage.build_task(config, mesh)
        task.evaluate = None
        task.train_step = no_baked_arrays(task.train_step)
        return task

    straight = loop.train(config(), tmp_path / "straight", train_only)
    run = tmp_path / "ae"

    def killed(config, mesh):
        task = stage.build_task(config, mesh, workdir=run)
        task.data = StopAfter(task.data, 3)
        return task

    with pytest.raises(KeyboardInterrupt):
        loop.train(config(), run, killed)
    resumed = stage.train(config(), run)  # resumes from the step-2 checkpoint
    np.testing.assert_array_equal(flat(resumed), flat(straight))
    results = json.loads((run / "eval.json").read_text())
    assert set(results["probe"]) == {"f_m", "f_e"}
    assert set(results["probe"]["f_m"]) == {"mouth", "blink", "identity"}
    assert results["heldout_rec_l1"] > 0 and results["heldout_swap_l1"] > 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_rec", "loss_swap"} <= set(metrics[-1])

    encoder = stage.load_landmark_ae(run)
    points = np.asarray(np.load(root / "data_verts.npy", mmap_mode="r")[:5])
    indices = np.load(root / "factors.npz")["landmark_indices"]
    f_m, f_e = encoder(points[:, indices])
    assert f_m.shape == (5, 16) and f_e.shape == (5, 4)
    with pytest.raises(ValueError, match="68"):
        encoder(np.zeros((2, 478, 3)))
    # The encoder applies the training normalisation: moving the faces changes nothing.
    moved = 3.0 * points[:, indices] + np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(encoder(moved)[0], f_m, rtol=1e-4, atol=1e-5)
    assert data_lib.LAYOUTS[encoder.layout] is data_lib.IBUG68
    with pytest.raises(ValueError, match="not 'extractor'"):
        stage.load_extractor(run)
