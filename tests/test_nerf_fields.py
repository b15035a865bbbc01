"""Every field choice (config.model.encoding) through the stage: train, resume, evaluate, render."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_nerf_stage import smoke_config

from jaxhead.nerf import render_video, stage
from jaxhead.nerf.config import GRID_TRUNK, voca_config
from jaxhead.nerf.render import pose_features


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fields_cache")


def test_field_variants_resolve_to_a_grid_and_its_small_trunk():
    config = voca_config("smoke,field=triplane")
    assert config.model.encoding == "triplane"
    assert {k: config.model[k] for k in GRID_TRUNK} == GRID_TRUNK
    assert voca_config(None).model.encoding == "frequency"
    with pytest.raises(ValueError, match="unknown field"):
        voca_config("field=voxels")


@pytest.mark.parametrize(
    "encoding,attention,grids,pose",
    [
        ("hash", (), (), False),
        ("triplane", (), (), False),
        ("hash", ("lip", "blink"), (), False),
        ("triplane", (), ("lip",), True),
    ],
)
def test_a_grid_field_trains_resumes_and_renders(cache, tmp_path, encoding, attention, grids, pose):
    config = smoke_config(cache, steps=2, checkpoint_every=1)
    with config.unlocked():
        config.model.update(encoding=encoding, grid_levels=4, grid_log2_table=10, **GRID_TRUNK)
        config.model.region_attention = attention
        config.model.grid_conditions = grids
        config.model.pose_condition = pose
        if grids:
            config.model.lip_dim = 3  # a grid per channel: few channels keep the test short
            config.loss.grid_tv = 0.1  # every grid of the field in the smoothness term
    stage.train(config, tmp_path)
    with config.unlocked():
        config.train.steps = 3
    stage.train(config, tmp_path)  # resumes
    results = json.loads((tmp_path / "eval.json").read_text())
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    tv = [r["loss_grid_tv"] for r in logged if "loss_grid_tv" in r]
    assert (len(tv) > 0) == bool(grids) and all(np.isfinite(v) and v > 0 for v in tv)
    assert results["step"] == 3 and 0.0 < results["val"]["psnr"] < 60.0
    trained = render_video.load_trained(tmp_path)
    assert trained.setup.model_config.encoding == encoding
    assert trained.setup.model_config.region_attention == attention
    if attention:  # the gates learned (they start at exactly 1)
        gates = trained.params["nerf"]["field"]["attention_out"]["bias"]
        assert np.abs(np.asarray(gates)).max() > 0
    if grids:  # a grid per F_lip channel, learned (they start at exactly 0)
        lip_grids = np.asarray(trained.params["nerf"]["field"]["modulated_tables"])
        lip_dim = dict(trained.setup.model_config.condition_dims)["lip"]
        assert lip_grids.shape[0] == lip_dim and np.abs(lip_grids).max() > 0
    if pose:  # the head pose enters as a condition, standardised over the training cameras
        model_config = trained.setup.model_config
        assert dict(model_config.condition_dims)["pose"] == 12
        features = np.asarray(pose_features(np.asarray(trained.run.tracks["c2w"])))
        np.testing.assert_allclose(model_config.pose_mean, features.mean(0), atol=1e-5)
        assert min(model_config.pose_std) >= 1e-3
    tables = trained.params["nerf"]["field"]["tables"]
    assert np.asarray(tables).shape[-3:] == (4, 1024, 2)
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(4000) / 16000).astype(np.float32)
    assert np.isfinite(render_video.drive(trained, tone, identity=0)).all()


def test_grid_tables_learn_at_their_own_rate():
    """The first Adam update moves every parameter by about its group's learning rate."""
    import jax
    import jax.numpy as jnp

    from jaxhead.nerf.step import make_nerf_optimizer, param_groups

    config = voca_config("field=hash")
    with config.unlocked():
        config.optim.update(schedule="constant", warmup_steps=0, grad_clip_norm=0.0)
    params = {
        "nerf": {
            "field": {
                "tables": jnp.zeros((4, 2)),
                "modulated_tables": jnp.zeros((1, 4, 2)),
                "layers": {"0": jnp.zeros(3)},
            }
        },
        "codes": {"tables": {"ex": jnp.zeros((5, 2))}},  # latent codes learn at the net's rate
    }
    assert param_groups(params) == {
        "nerf": {"field": {"tables": "grid", "modulated_tables": "grid", "layers": {"0": "net"}}},
        "codes": {"tables": {"ex": "net"}},
    }
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.3), params)
    tx = make_nerf_optimizer(config)
    updates, _ = tx.update(grads, tx.init(params), params)
    lr = config.optim.learning_rate
    np.testing.assert_allclose(updates["nerf"]["field"]["layers"]["0"], -lr, rtol=1e-4)
    np.testing.assert_allclose(updates["codes"]["tables"]["ex"], -lr, rtol=1e-4)
    np.testing.assert_allclose(
        updates["nerf"]["field"]["tables"], -lr * config.optim.grid_lr_scale, rtol=1e-4
    )
    # The frequency field (no tables) and runs made before the key existed: one group.
    with config.unlocked():
        config.optim.grid_lr_scale = 1.0
    single = make_nerf_optimizer(config)
    one, _ = single.update(grads, single.init(params), params)
    np.testing.assert_allclose(one["nerf"]["field"]["tables"], -lr, rtol=1e-4)


def test_only_the_fields_grid_tables_get_the_grid_rate():
    """On the real modules of a hash field: the field's tables are the grid group; the latent
    code tables (also named ``tables``) and every network weight learn at the network's rate."""
    import jax

    from jaxhead.nerf.step import (
        NeRFSetup,
        build_models,
        model_config_from,
        param_dict,
        param_groups,
    )

    config = voca_config("field=hash")
    model_config = model_config_from(config, audio_dim=80)
    setup = NeRFSetup(model_config, {"id": (2, 32), "ex": (6, 16)}, num_train_frames=6, seed=0)
    labels = param_groups(param_dict(*build_models(setup, 0)))
    grid = [
        jax.tree_util.keystr(path)
        for path, label in jax.tree_util.tree_leaves_with_path(labels)
        if label == "grid"
    ]
    assert grid == ["['nerf']['field']['tables']"]
    assert labels["codes"]["tables"] == {"ex": "net", "id": "net"}


def test_grid_smoothness_of_a_linear_grid_is_its_slope_over_a_cell():
    """A dense level holding ``a·v`` at its vertices encodes ``a·u`` (trilinear interpolation
    is exact on linear functions), so ``E(x) - E(x + δ) = -a·δ_u`` with ``δ_u`` uniform in
    ``[-1/N, 1/N]^3``: the term's expectation is ``|a|² / (3 N²)``. Constant tables: 0; the
    frequency encoding: 0; the term differentiates into the tables."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxhead.nerf.field import GridSize, HeadField

    n = 32
    size = GridSize(levels=1, features=1, log2_table=16, min_resolution=n, max_resolution=n)
    field = HeadField(0, encoding="hash", grid=size, feature_dim=4, rngs=nnx.Rngs(0))
    a = np.array([1.0, -2.0, 0.5])
    vertices = np.stack(np.meshgrid(*[np.arange(n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rows = vertices @ np.array([1, n + 1, (n + 1) ** 2])  # direct indexing (x fastest)
    table = np.zeros((2**16, 1), np.float32)
    table[rows, 0] = vertices @ a / n
    field.tables[...] = jnp.asarray(table[None])
    expected = float(a @ a) / (3 * n**2)
    value = float(field.grid_smoothness(jax.random.key(0), num_points=16384))
    # Monte Carlo (~1 %) and the points moved outside the cube, whose encoding is clamped.
    assert abs(value - expected) < 0.05 * expected, (value, expected)
    field.tables[...] = jnp.full_like(field.tables[...], 0.7)
    assert float(field.grid_smoothness(jax.random.key(1))) == pytest.approx(0.0, abs=1e-10)
    plain = HeadField(0, encoding="frequency", feature_dim=4, rngs=nnx.Rngs(0))
    assert float(plain.grid_smoothness(jax.random.key(0))) == 0.0
    field.tables[...] = jnp.asarray(table[None])
    grads = nnx.grad(lambda f: f.grid_smoothness(jax.random.key(2)))(field)
    assert np.abs(np.asarray(grads.tables[...])).max() > 0
