"""Head NeRF model: field, upsampler, audio network, feature-map rendering, full forward."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxhead.nerf import render as render_lib
from jaxhead.nerf.config import POSE_FEATURES, HeadNeRFConfig
from jaxhead.nerf.encoding import positional_encoding
from jaxhead.nerf.field import AudioNet, GridSize, HeadField
from jaxhead.nerf.model import HeadNeRF, LatentCodes
from jaxhead.nerf.render import (
    composite,
    render_feature_map,
    sample_along_rays,
    sample_pdf,
    volume_weights,
)
from jaxhead.nerf.upsampler import Upsampler, depth_to_space, nearest_upsample_conv, upsample2x

TINY = HeadNeRFConfig(
    condition_dims=(("id", 3), ("ex", 4), ("lip", 5)),
    width=16,
    depth=3,
    skip_layer=1,
    pos_freqs=3,
    feature_dim=8,
    render_size=(6, 6),
    num_coarse=8,
    num_fine=8,
    upsample=2,
    upsampler_widths=(8,),
)
CAMERA_DISTANCE = 0.6


def cameras(batch: int, size: int, upsample: int = 1, yaw_step: float = 0.1) -> dict:
    """Cameras on a circle of radius 0.6 around the origin looking at it, output intrinsics."""
    c2w = []
    for b in range(batch):
        yaw = yaw_step * b
        rotation = np.array(
            [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
        )
        pose = np.eye(4)
        pose[:3, :3] = rotation
        pose[:3, 3] = rotation @ np.array([0.0, 0.0, CAMERA_DISTANCE])
        c2w.append(pose)
    full = size * upsample
    focal = full / (2 * np.tan(np.deg2rad(22.0) / 2))
    intrinsics = np.tile([focal, focal, full / 2, full / 2], (batch, 1))
    return {
        "c2w": jnp.asarray(np.stack(c2w), jnp.float32),
        "intrinsics": jnp.asarray(intrinsics, jnp.float32),
    }


def conditions(config: HeadNeRFConfig, batch: int, seed: int = 0) -> dict:
    keys = jax.random.split(jax.random.key(seed), len(config.condition_dims))
    return {
        name: jax.random.normal(k, (batch, dim))
        for k, (name, dim) in zip(keys, config.condition_dims, strict=True)
    }


@functools.cache
def build(config: HeadNeRFConfig, seed: int = 0) -> HeadNeRF:
    # Initialised under jit: one compilation instead of one per eager op.
    return make(HeadNeRF, config, seed=seed)


def make(cls, *args, seed: int = 0, **kwargs):
    """A module initialised under jit (one compilation instead of one per eager op)."""
    return nnx.jit(lambda: cls(*args, **kwargs, rngs=nnx.Rngs(seed)))()


@nnx.jit
def apply(module, *args):
    return module(*args)


def render_jit(sample_fn, project_fn=None, **static):
    """``render_feature_map`` jitted for one field; a fresh function per call site."""
    return jax.jit(
        lambda c2w, intrinsics, background, key: render_feature_map(
            sample_fn, project_fn, c2w, intrinsics, background, key, **static
        )
    )


def jitted_forward(model: HeadNeRF):
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, cams, conds, key):
        return nnx.merge(graphdef, state)(cams, conds, key)

    return functools.partial(forward, state)


# --- field ------------------------------------------------------------------------------------


def numpy_field(field: HeadField, points, condition, view):
    """NeRF MLP over per-sample concatenations (the plain eq. 1 form), in float64 NumPy."""
    p = {k: np.asarray(v, np.float64) for k, v in nnx.to_flat_state(nnx.state(field))}

    def linear(name, x):
        return x @ p[(name, "kernel")] + p[(name, "bias")]

    s = points.shape[-2]
    encoded = np.asarray(positional_encoding(points, field.pos_freqs), np.float64)
    cond = np.repeat(np.asarray(condition, np.float64)[..., None, :], s, axis=-2)
    relu = lambda x: np.maximum(x, 0)
    if field.attended:  # region attention: the attended channels scaled per sample
        gates = 2.0 / (
            1.0 + np.exp(-linear("attention_out", relu(linear("attention_hidden", encoded))))
        )
        cond[..., list(field.attended)] *= gates
    inputs = np.concatenate([encoded, cond], axis=-1)
    h = inputs
    for k in range(field.depth):
        layer = ("layers", k)
        if k == field.skip_layer:
            h = np.concatenate([h, inputs], axis=-1)
        h = relu(h @ p[(*layer, "kernel")] + p[(*layer, "bias")])
    density = np.logaddexp(0, linear("density_out", h) - 1.0)
    if view is not None:
        view_enc = np.asarray(positional_encoding(view, field.view_freqs), np.float64)
        view_enc = np.repeat(view_enc[..., None, :], s, axis=-2)
        h = relu(linear("view_layer", np.concatenate([h, view_enc], axis=-1)))
    return density, linear("feature_out", h)


def test_field_matches_reference_and_deferred_projection():
    field = make(
        HeadField, 7, width=16, depth=4, skip_layer=2, pos_freqs=3, view_dim=3, view_width=8,
        feature_dim=5, seed=1,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    points = jnp.asarray(rng.uniform(-1, 1, size=(3, 4, 3)), jnp.float32)
    condition = jnp.asarray(rng.normal(size=(3, 7)), jnp.float32)
    view = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)
    t_vals = jnp.sort(jnp.asarray(rng.uniform(0, 2, size=(3, 4)), jnp.float32), axis=-1)

    @nnx.jit
    def run(field):
        density, features = field(points, condition, view)
        rendered, weights, accumulation, _ = composite(
            density[..., 0], features, t_vals, jnp.ones(3)
        )
        _, g = field.sample(points, field.embed(condition, view))
        deferred = field.project(jnp.sum(weights[..., None] * g, axis=-2), accumulation)
        return density, features, rendered, deferred

    density, features, rendered, deferred = run(field)
    assert density.shape == (3, 4, 1) and features.shape == (3, 4, 5)
    assert np.all(np.asarray(density) >= 0)
    # Split per-ray evaluation == the plain MLP over per-sample concatenations.
    want_density, want_features = numpy_field(field, points, condition, view)
    np.testing.assert_allclose(np.asarray(density), want_density, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(features), want_features, rtol=1e-4, atol=1e-5)
    # Deferred output projection == compositing the per-sample features (exact identity).
    np.testing.assert_allclose(np.asarray(deferred), np.asarray(rendered), rtol=1e-5, atol=1e-5)
    # jit == eager.
    eager_density, eager_features = field(points, condition, view)
    np.testing.assert_allclose(np.asarray(eager_density), np.asarray(density), atol=1e-6)
    np.testing.assert_allclose(np.asarray(eager_features), np.asarray(features), atol=1e-6)


def test_region_attention_gates_the_attended_channels_per_sample():
    kwargs = dict(width=16, depth=4, skip_layer=2, pos_freqs=3, feature_dim=5)
    field = make(HeadField, 7, attended=((2, 5), (6, 7)), **kwargs, seed=1)
    assert field.attended == (2, 3, 4, 6)
    rng = np.random.default_rng(0)
    points = jnp.asarray(rng.uniform(-1, 1, size=(3, 4, 3)), jnp.float32)
    condition = jnp.asarray(rng.normal(size=(3, 7)), jnp.float32)

    # At initialisation every gate is 1: the field without attention, with the same trunk.
    plain = make(HeadField, 7, **kwargs, seed=2)
    attention = nnx.Any(nnx.PathContains("attention_hidden"), nnx.PathContains("attention_out"))
    nnx.update(plain, nnx.state(field, nnx.Not(attention)))
    np.testing.assert_allclose(
        np.asarray(apply(field, points, condition)[1]),
        np.asarray(apply(plain, points, condition)[1]), rtol=1e-5, atol=1e-6,
    )  # fmt: skip

    # Trained gates differ per sample; the split evaluation equals the per-sample reference.
    out = field.attention_out
    out.kernel[...] = jnp.asarray(rng.normal(size=out.kernel[...].shape), jnp.float32)
    out.bias[...] = jnp.asarray(rng.normal(size=out.bias[...].shape), jnp.float32)
    gates = np.asarray(nnx.jit(lambda f, x: f.gates(f.encode(x)))(field, points))
    assert gates.shape == (3, 4, 4) and np.ptp(gates, axis=1).min() > 1e-3
    density, features = apply(field, points, condition)
    want_density, want_features = numpy_field(field, points, condition, None)
    np.testing.assert_allclose(np.asarray(density), want_density, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(features), want_features, rtol=1e-4, atol=1e-5)

    # Gates shut (bias -> -inf): the attended channels no longer reach the field, the rest do.
    out.bias[...] = jnp.full(out.bias[...].shape, -1e4)
    other = condition.at[:, 2:5].add(3.0).at[:, 6].add(-2.0)
    np.testing.assert_allclose(
        np.asarray(apply(field, points, other)[1]),
        np.asarray(apply(field, points, condition)[1]), atol=1e-6,
    )  # fmt: skip
    assert np.abs(np.asarray(apply(field, points, condition.at[:, 0].add(3.0))[1])).sum() > 0
    with pytest.raises(ValueError, match="disjoint and inside"):
        nnx.eval_shape(lambda: HeadField(4, attended=((2, 6),), rngs=nnx.Rngs(0)))


def test_region_attention_config_names_conditions():
    config = HeadNeRFConfig(region_attention=("lip", "ex"))
    dims = dict(config.condition_dims)
    start = sum(
        d for n, d in config.condition_dims[: [n for n, _ in config.condition_dims].index("lip")]
    )
    assert (start, start + dims["lip"]) in config.attended_ranges and len(
        config.attended_ranges
    ) == 2
    with pytest.raises(ValueError, match="not conditions of this field"):
        HeadNeRFConfig(region_attention=("mouth",))


@pytest.mark.parametrize(
    "spaces, encoding, channels",
    [(1, "hash", (5,)), (2, "hash", (5,)), (1, "triplane", (4, 5)), (2, "triplane", (5, 3))],
)
def test_condition_grids_add_their_channel_times_a_grid_to_the_head_encoding(
    spaces, encoding, channels
):
    # enc(x) = H(x) + sum_k c_k H_k(x): the grid encodings are linear in their tables, so the
    # field with condition grids equals the plain field whose head-space tables are
    # T + sum_k c_k T_k (two channels with different values: their grids must not be swapped).
    grid = GridSize(levels=4, features=2, log2_table=8, min_resolution=4, max_resolution=32)
    kwargs = dict(width=16, depth=3, skip_layer=1, feature_dim=5, encoding=encoding, grid=grid)
    kwargs["spaces"] = spaces
    field = make(HeadField, 6, modulated=channels, **kwargs, seed=1)
    plain = make(HeadField, 6, **kwargs, seed=1)
    rng = np.random.default_rng(0)
    points = jnp.asarray(rng.uniform(-1, 1, size=(3, 4, 3 * spaces)), jnp.float32)
    condition = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    # Zero-initialised and built without drawing random numbers: the plain field at first.
    rest = nnx.state(field, nnx.Not(nnx.PathContains("modulated_tables")))
    assert len(jax.tree.leaves(rest)) == len(jax.tree.leaves(nnx.state(plain)))
    for a, b in zip(jax.tree.leaves(nnx.state(plain)), jax.tree.leaves(rest), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.asarray(field.modulated_tables[...]).any()
    np.testing.assert_allclose(
        np.asarray(apply(field, points, condition)[1]),
        np.asarray(apply(plain, points, condition)[1]), atol=1e-6,
    )  # fmt: skip

    extra = jnp.asarray(rng.normal(size=field.modulated_tables[...].shape), jnp.float32)
    field.modulated_tables[...] = extra
    for values in ((0.0,) * len(channels), (0.7, -0.3)[: len(channels)]):
        cond = condition.at[:, list(channels)].set(jnp.asarray(values))
        tables = np.asarray(field.tables[...]).copy()
        added = sum(v * np.asarray(extra[k]) for k, v in enumerate(values))
        if spaces == 1:
            tables = tables + added
        else:
            tables[0] = tables[0] + added
        plain.tables[...] = jnp.asarray(tables)
        np.testing.assert_allclose(
            np.asarray(apply(field, points, cond)[1]),
            np.asarray(apply(plain, points, cond)[1]), rtol=1e-5, atol=1e-5,
        )  # fmt: skip
        # One condition for all the points (a ray's samples, a frame's rays): the summed
        # tables, built once.
        np.testing.assert_allclose(
            np.asarray(apply(field, points[1], cond[1])[1]),
            np.asarray(apply(plain, points[1], cond[1])[1]), rtol=1e-5, atol=1e-5,
        )  # fmt: skip

    # The grid's tables learn only from frames whose channel is not zero.
    graphdef, params = nnx.split(field)

    def loss(params, cond):
        return jnp.sum(nnx.merge(graphdef, params)(points, cond)[1] ** 2)

    def grid_grad(value):
        grads = jax.grad(loss)(params, condition.at[:, list(channels)].set(value))
        return nnx.to_pure_dict(grads)["modulated_tables"]

    zero, some = grid_grad(0.0), grid_grad(1.0)
    assert not np.asarray(zero).any() and np.abs(np.asarray(some)).sum() > 0

    # The same gradients when a ray's condition is given once for all its points.
    def ray_loss(params, ray, cond):
        return jnp.sum(nnx.merge(graphdef, params)(ray, cond)[1] ** 2)

    for row in range(points.shape[0]):
        cond = condition.at[:, list(channels)].set(0.5)[row]
        per_row = jax.grad(ray_loss)(params, points[row : row + 1], cond[None])
        one = jax.grad(ray_loss)(params, points[row], cond)
        for a, b in zip(jax.tree.leaves(per_row), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="need a grid encoding"):
        nnx.eval_shape(lambda: HeadField(4, modulated=(1,), rngs=nnx.Rngs(0)))


def test_condition_grids_config_names_conditions():
    config = HeadNeRFConfig(encoding="hash", grid_conditions=("lip",))
    names = [n for n, _ in config.condition_dims]
    start = sum(d for n, d in config.condition_dims[: names.index("lip")])
    assert config.grid_channels == tuple(range(start, start + dict(config.condition_dims)["lip"]))
    with pytest.raises(ValueError, match="not conditions of this field"):
        HeadNeRFConfig(encoding="hash", grid_conditions=("eyes",))
    with pytest.raises(ValueError, match="use encoding 'hash' or 'triplane'"):
        HeadNeRFConfig(grid_conditions=("lip",))


def test_field_rejects_bad_inputs():
    field = make(HeadField, 4, width=8, depth=2, skip_layer=None, feature_dim=3)
    with pytest.raises(ValueError, match=r"condition has shape \(2, 5\), expected \[..., 4\]"):
        apply(field, jnp.zeros((2, 3, 3)), jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match="view_dim=0 but a view input"):
        apply(field, jnp.zeros((2, 3, 3)), jnp.zeros((2, 4)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"points must be \[..., S, 3\]"):
        apply(field, jnp.zeros((2, 3, 2)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="skip_layer"):
        nnx.eval_shape(lambda: HeadField(4, depth=2, skip_layer=2, rngs=nnx.Rngs(0)))


# --- upsampler --------------------------------------------------------------------------------


def test_upsampler_rgb_skip_at_init():
    upsampler = make(Upsampler, 5, 2, (4,), "pixel_shuffle")
    features = jax.random.normal(jax.random.key(0), (2, 4, 3, 5))
    image = apply(upsampler, features)
    assert image.shape == (2, 8, 6, 3)
    # Zero-initialised output conv: the untrained renderer is the upsampled low-res RGB.
    skip = jax.image.resize(features[..., :3], (2, 8, 6, 3), "bilinear")
    np.testing.assert_allclose(np.asarray(image), np.asarray(jax.nn.sigmoid(skip)), atol=1e-6)
    x = np.arange(12.0).reshape(1, 2, 2, 3)
    nearest = np.asarray(upsample2x(jnp.asarray(x), "nearest"))
    np.testing.assert_array_equal(nearest, x.repeat(2, axis=1).repeat(2, axis=2))


def test_nearest_upsample_conv_is_the_conv_of_the_repeated_pixels():
    """The sub-pixel form of "nearest 2x, then a 3x3 'SAME' conv" (what the upsampler's blocks
    run) against the plain composition: values (borders included, a non-square map) and the
    gradients with respect to the input, kernel and bias."""
    x = jax.random.normal(jax.random.key(0), (2, 5, 7, 4))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 4, 6))
    bias = jax.random.normal(jax.random.key(2), (6,))

    def plain(x, kernel, bias):
        up = upsample2x(x, "nearest")
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(
            up, kernel, (1, 1), "SAME", dimension_numbers=dims
        ) + bias.reshape(1, 1, 1, -1)

    got = nearest_upsample_conv(x, kernel, bias)
    assert got.shape == (2, 10, 14, 6)
    np.testing.assert_allclose(np.asarray(got), np.asarray(plain(x, kernel, bias)), atol=1e-4)
    weights = jax.random.normal(jax.random.key(3), got.shape)
    grads = [
        jax.grad(lambda *a, f=f: jnp.sum(weights * f(*a)), argnums=(0, 1, 2))(x, kernel, bias)
        for f in (nearest_upsample_conv, plain)
    ]
    for ours, reference in zip(*grads, strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), rtol=1e-4, atol=1e-3)


def test_module_shapes():
    """Output shapes for every upsampling factor and the audio network (abstract: no compile)."""
    for scale, widths in [(1, (4,)), (2, (4,)), (4, (4, 4)), (8, (4, 4, 4))]:
        upsampler = nnx.eval_shape(lambda s=scale, w=widths: Upsampler(5, s, w, rngs=nnx.Rngs(0)))
        image = nnx.eval_shape(lambda m: m(jnp.zeros((2, 3, 4, 5))), upsampler)
        assert image.shape == (2, 3 * scale, 4 * scale, 3)
    net = nnx.eval_shape(lambda: AudioNet(12, 5, channels=(8, 8, 16, 16), rngs=nnx.Rngs(0)))
    assert nnx.eval_shape(lambda m: m(jnp.zeros((2, 3, 16, 12))), net).shape == (2, 3, 5)
    with pytest.raises(ValueError, match=r"audio window must be \[..., W, 12\]"):
        nnx.eval_shape(lambda m: m(jnp.zeros((16, 11))), net)


def test_depth_to_space_reference():
    x = np.arange(2 * 2 * 3 * 8, dtype=np.float32).reshape(2, 2, 3, 8)
    got = np.asarray(depth_to_space(jnp.asarray(x), 2))
    assert got.shape == (2, 4, 6, 2)
    for i in range(4):
        for j in range(6):
            block = (i % 2) * 2 + j % 2  # channel block of sub-pixel (dy, dx)
            want = x[:, i // 2, j // 2, 2 * block : 2 * block + 2]
            np.testing.assert_array_equal(got[:, i, j], want)


def test_upsampler_rejects_bad_config():
    with pytest.raises(ValueError, match="power of two"):
        nnx.eval_shape(lambda: Upsampler(5, 3, (4,), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="log2"):
        nnx.eval_shape(lambda: Upsampler(5, 4, (4,), rngs=nnx.Rngs(0)))


# --- rendering --------------------------------------------------------------------------------


def test_sphere_bounds_analytic():
    origins = jnp.asarray([[0.0, 0.0, 3.0], [0.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    directions = jnp.asarray([[0.0, 0.0, -2.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    near, far, hit = render_lib.sphere_bounds(origins, directions)
    np.testing.assert_allclose(np.asarray(near), [1.0, 3.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(far), [2.0, 3.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(hit), [True, False, True])


def _plane_field(plane_z: float, value: jax.Array):
    """Analytic field: huge density behind the plane z = plane_z (unit-sphere frame)."""

    def sample_fn(points, unit_dir):
        del unit_dir
        density = jnp.where(points[..., 2] < plane_z, 1e4, 0.0)
        values = jnp.broadcast_to(value, (*points.shape[:-1], value.shape[0]))
        return density, values

    return sample_fn


def _camera_frame(size: int):
    cams = cameras(1, size)
    return cams["c2w"][0], cams["intrinsics"][0]


@pytest.mark.parametrize("key", [None, jax.random.key(3)])
def test_huge_density_plane_gives_its_depth(key):
    radius, plane_world_z, size = 0.2, 0.05, 5
    value = jnp.asarray([2.0, -1.0, 0.5, 3.0])
    background = jnp.asarray([-4.0, 0.0, 1.0, 7.0])
    c2w, intrinsics = _camera_frame(size)
    num_coarse = 16
    render = render_jit(
        _plane_field(plane_world_z / radius, value), height=size, width=size,
        bound_radius=radius, num_coarse=num_coarse, num_fine=16,
    )  # fmt: skip
    out = render(c2w, intrinsics, background, key)
    # t is depth along the optical axis, so every pixel sees the plane at 0.6 - 0.05.
    spacing = 2 * radius / num_coarse
    np.testing.assert_allclose(np.asarray(out.depth), CAMERA_DISTANCE - plane_world_z, atol=spacing)
    np.testing.assert_allclose(np.asarray(out.accumulation), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(out.features), np.broadcast_to(value, (5, 5, 4)), atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(out.rgb), jax.nn.sigmoid(out.features[..., :3]))


def test_fine_samples_sharpen_the_depth():
    radius, plane_world_z = 0.2, 0.0371
    c2w, intrinsics = _camera_frame(6)
    field = _plane_field(plane_world_z / radius, jnp.ones(3))
    errors = []
    for num_fine in (0, 32):
        render = render_jit(
            field, height=6, width=6, bound_radius=radius, num_coarse=8, num_fine=num_fine
        )
        out = render(c2w, intrinsics, jnp.zeros(3), None)
        errors.append(float(jnp.mean(jnp.abs(out.depth - (CAMERA_DISTANCE - plane_world_z)))))
    # Coarse: the first sample past the plane, ~spacing/2 off on average. Fine samples fill the
    # bin around it (NeRF's midpoint bins), which on average cuts the error to ~spacing/8.
    assert errors[1] < 0.5 * errors[0]


def test_empty_space_and_missed_rays_show_the_background():
    background = jnp.arange(12.0).reshape(2, 2, 3)  # a per-pixel background
    c2w, intrinsics = _camera_frame(2)
    empty = lambda points, unit_dir: (
        jnp.zeros(points.shape[:-1]),
        jnp.ones((*points.shape[:-1], 3)),
    )
    out = render_jit(empty, height=2, width=2, bound_radius=0.2)(c2w, intrinsics, background, None)
    np.testing.assert_array_equal(np.asarray(out.features), np.asarray(background))
    np.testing.assert_array_equal(np.asarray(out.accumulation), 0.0)
    # A sphere far off-axis: no ray hits it, so even a dense field is invisible.
    dense = lambda points, unit_dir: (
        jnp.full(points.shape[:-1], 1e3),
        jnp.ones((*points.shape[:-1], 3)),
    )
    render = render_jit(dense, height=2, width=2, bound_center=(5.0, 0.0, 0.0), bound_radius=0.2)
    out = render(c2w, intrinsics, background, None)
    np.testing.assert_array_equal(np.asarray(out.features), np.asarray(background))


def test_render_ray_matches_sorted_gather_reference():
    rng = np.random.default_rng(4)
    weights_net = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)

    def sample_fn(points, unit_dir):
        del unit_dir
        density = 3.0 * jnp.exp(-4.0 * jnp.sum(points**2, axis=-1))
        return density, jnp.tanh(points @ weights_net)

    origin = jnp.asarray([0.1, -0.2, 2.5])
    direction = jnp.asarray([0.0, 0.05, -1.2])
    key = jax.random.key(9)
    got = jax.jit(functools.partial(render_lib.render_ray, sample_fn, num_coarse=8, num_fine=12))(
        origin, direction, key
    )

    # Reference: gather every sample into depth order, close the interval at `far` with an
    # empty sample, composite with the shared `composite`.
    @jax.jit
    def reference(origin, direction, key):
        near, far, _ = render_lib.sphere_bounds(origin, direction)
        coarse_key, fine_key = jax.random.split(key)
        t_c = sample_along_rays(coarse_key, near, far, 8, ())
        pts = lambda t: origin[None, :] + t[:, None] * direction[None, :]
        d_c, _ = sample_fn(pts(t_c), None)
        norm = jnp.linalg.norm(direction)
        _, _, w_c = volume_weights(jnp.append(d_c, 0.0), jnp.append(t_c, far), norm)
        t_f = sample_pdf(fine_key, 0.5 * (t_c[1:] + t_c[:-1]), w_c[1:-2], 12)
        t = jnp.sort(jnp.concatenate([t_c, t_f]))
        density, values = sample_fn(pts(t), None)
        rendered, _, accumulation, depth = composite(
            jnp.append(density, 0.0),
            jnp.concatenate([values, jnp.zeros((1, 4))]),
            jnp.append(t, far),
            norm,
        )
        return rendered, accumulation, depth

    rendered, accumulation, depth = reference(origin, direction, key)
    eager = render_lib.render_ray(sample_fn, origin, direction, key, num_coarse=8, num_fine=12)
    for a, b, c in zip(got, (rendered, accumulation, depth), eager, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-5, atol=1e-6)  # jit==eager
    assert 0.05 < float(accumulation) < 0.999  # a semi-transparent blob: a non-trivial case


def test_chunked_render_equals_unchunked():
    projection = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)), jnp.float32)

    def blob(points, unit_dir):
        density = 2.0 * jnp.exp(-3.0 * jnp.sum(points**2, axis=-1))
        values = jnp.sin(points * 3.0) + unit_dir[..., None, :]
        return density, values

    project = lambda composited, accumulation: composited @ projection
    c2w, intrinsics = _camera_frame(5)
    static = dict(height=5, width=5, bound_radius=0.2, num_coarse=6, num_fine=6)
    key = jax.random.key(0)
    whole = render_jit(blob, project, **static)(c2w, intrinsics, jnp.zeros(4), key)
    # 25 rays: 3 full chunks of 7 and a remainder.
    chunked = render_jit(blob, project, chunk_rays=7, **static)(c2w, intrinsics, jnp.zeros(4), key)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    assert 0.1 < float(jnp.mean(whole.accumulation)) < 0.999


# --- full model -------------------------------------------------------------------------------


def test_head_nerf_forward_shapes_determinism_and_vmap_equals_loop():
    model = build(TINY)
    forward = jitted_forward(model)
    cams = cameras(2, 6, upsample=2)
    conds = conditions(TINY, 2)
    out = forward(cams, conds, None)
    assert out["image"].shape == (2, 12, 12, 3)
    assert out["rgb_lowres"].shape == (2, 6, 6, 3)
    assert out["features"].shape == (2, 6, 6, 8)
    assert out["accumulation"].shape == out["depth"].shape == (2, 6, 6)
    for name, value in out.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    assert float(jnp.min(out["image"])) >= 0.0 and float(jnp.max(out["image"])) <= 1.0
    again = forward(cams, conds, None)  # no key: deterministic samples
    np.testing.assert_array_equal(np.asarray(out["image"]), np.asarray(again["image"]))

    # Frames are independent: rendering frame b alone gives the batched (vmapped) result.
    graphdef, state = nnx.split(model)

    @jax.jit
    def one_frame(state, c2w, intrinsics, condition):
        m = nnx.merge(graphdef, state)
        embedding = m.field.embed(condition)
        return render_feature_map(
            lambda p, d: m.field.sample(p, embedding), m.field.project, c2w, intrinsics / 2.0,
            m.background_feature(), None, height=6, width=6,
            bound_radius=TINY.bound_radius, num_coarse=8, num_fine=8,
        )  # fmt: skip

    full_condition = model.condition(conds)
    for b in range(2):
        single = one_frame(state, cams["c2w"][b], cams["intrinsics"][b], full_condition[b])
        np.testing.assert_allclose(
            np.asarray(single.features), np.asarray(out["features"][b]), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            np.asarray(single.depth), np.asarray(out["depth"][b]), rtol=1e-5, atol=1e-6
        )


def test_head_nerf_view_inputs_and_audio_net():
    config = HeadNeRFConfig.from_dict(
        {**TINY.to_dict(), "view_input": "ray", "view_width": 8, "audio_net": True,
         "audio_dim": 10, "audio_channels": [4, 4], "render_size": [4, 4]}
    )  # fmt: skip
    model = build(config)
    conds = conditions(config, 2)
    del conds["lip"]
    conds["audio"] = jnp.ones((2, 8, 10))
    out = jitted_forward(model)(cameras(2, 4, upsample=2), conds, jax.random.key(0))
    assert out["image"].shape == (2, 8, 8, 3)
    assert np.all(np.isfinite(np.asarray(out["image"])))
    # DFA-NeRF: a per-frame pose vector as the view input (traced only: shapes and wiring).
    pose_config = dataclasses.replace(config, view_input="pose", view_dim=6)
    pose_model = nnx.eval_shape(lambda: HeadNeRF(pose_config, rngs=nnx.Rngs(0)))
    conds["view"] = jnp.ones((2, 6))
    shapes = nnx.eval_shape(lambda m: m(cameras(2, 4, upsample=2), conds), pose_model)
    assert shapes["image"].shape == (2, 8, 8, 3)
    with pytest.raises(KeyError, match="needs conditions\\['view'\\]"):
        del conds["view"]
        nnx.eval_shape(lambda m: m(cameras(2, 4, upsample=2), conds), pose_model)


def test_lip_projection_starts_at_zero_and_learns():
    """lip_input_dim: precomputed F_lip features pass a zero-initialised linear map, so the
    untrained model ignores them, while the gradient reaches the map."""
    config = dataclasses.replace(TINY, lip_input_dim=7)
    model = build(config)
    cams = cameras(2, 6, upsample=2)
    conds = {**conditions(TINY, 2), "lip": jax.random.normal(jax.random.key(3), (2, 7))}
    forward = jitted_forward(model)
    out = forward(cams, conds, None)
    other = forward(cams, {**conds, "lip": 10.0 * conds["lip"] + 1.0}, None)
    np.testing.assert_array_equal(np.asarray(out["image"]), np.asarray(other["image"]))
    assert model.condition(conds).shape == (2, 3 + 4 + 5)
    np.testing.assert_array_equal(np.asarray(model.condition(conds)[:, 7:]), 0.0)

    graphdef, state = nnx.split(model)

    @jax.jit
    def loss(state):
        image = nnx.merge(graphdef, state)(cams, conds)["image"]
        return jnp.mean((image - 0.3) ** 2)

    grads = jax.grad(loss)(state)
    kernel = np.asarray(grads["lip_projection"]["kernel"][...])
    assert kernel.shape == (7, 5) and np.abs(kernel).max() > 0.0
    with pytest.raises(ValueError, match=r"condition 'lip' has shape \(2, 5\), expected \[B, 7\]"):
        model.condition({**conds, "lip": jnp.zeros((2, 5))})
    with pytest.raises(ValueError, match="lip_input_dim projects precomputed 'lip' features"):
        dataclasses.replace(TINY, lip_input_dim=7, audio_net=True, audio_dim=4)
    with pytest.raises(ValueError, match="lip_input_dim projects precomputed 'lip' features"):
        dataclasses.replace(TINY, condition_dims=(("id", 3),), lip_input_dim=7)


def test_mouth_grids_are_a_second_projection_of_the_lip_features_with_grids_of_their_own():
    """mouth_grids: F_lip's precomputed features also pass a projection of their own (not zero)
    to a "mouth" condition whose channels each scale a zero-initialised grid: at first the
    features change the image only through the trunk's columns; once the grids are not zero,
    a change of the features moves the point encoding of the head."""
    config = dataclasses.replace(
        TINY, condition_dims=TINY.condition_dims + (("mouth", 2),), lip_input_dim=7,
        mouth_grids=2, encoding="hash", grid_levels=2, grid_log2_table=8,
        grid_conditions=("mouth",),
    )  # fmt: skip
    model = build(config)
    lip = jax.random.normal(jax.random.key(3), (2, 7))
    conds = {**conditions(TINY, 2), "lip": lip}
    condition = np.asarray(model.condition(conds))
    assert condition.shape == (2, 3 + 4 + 5 + 2)
    np.testing.assert_allclose(
        condition[:, -2:], np.asarray(model.mouth_projection(lip)), rtol=1e-6
    )  # fmt: skip
    assert np.abs(condition[:, -2:]).min() > 0  # the projection is not zero
    np.testing.assert_array_equal(condition[:, 7:12], 0.0)  # the trunk's F_lip map still is
    field = model.field
    assert field.modulated == (12, 13) and not np.asarray(field.modulated_tables[...]).any()
    points = jax.random.uniform(jax.random.key(4), (2, 5, 3), minval=-0.5, maxval=0.5)
    embed = model.field.embed(jnp.asarray(condition))
    other = model.field.embed(jnp.asarray(model.condition({**conds, "lip": 2.0 * lip})))
    before = np.asarray(field.encode(points, embed.modulation[:, None]))
    np.testing.assert_array_equal(
        before, np.asarray(field.encode(points, other.modulation[:, None]))
    )
    field.modulated_tables[...] = jnp.ones_like(field.modulated_tables[...])
    after = np.asarray(field.encode(points, embed.modulation[:, None]))
    moved = np.asarray(field.encode(points, other.modulation[:, None]))
    assert np.abs(after - moved).max() > 1e-3
    with pytest.raises(ValueError, match="mouth_grids projects the precomputed 'lip' features"):
        dataclasses.replace(config, lip_input_dim=0)
    with pytest.raises(ValueError, match="mouth_grids projects the precomputed 'lip' features"):
        dataclasses.replace(config, grid_conditions=())
    with pytest.raises(ValueError, match="mouth_grids must be >= 0"):
        dataclasses.replace(TINY, mouth_grids=-1)
    # mouth_scale multiplies the projection's output (the same weights: nnx builds the same
    # parameters from the same seed), and must be positive.
    scaled = build(dataclasses.replace(config, mouth_scale=0.25))
    np.testing.assert_allclose(
        np.asarray(scaled.condition(conds))[:, -2:], 0.25 * condition[:, -2:], rtol=1e-5
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(scaled.condition(conds))[:, :-2], condition[:, :-2])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="mouth_scale must be > 0"):
            dataclasses.replace(config, mouth_scale=bad)


def test_head_nerf_input_errors():
    model = build(TINY)
    cams = cameras(2, 6, upsample=2)
    conds = conditions(TINY, 2)
    missing = {k: v for k, v in conds.items() if k != "ex"}
    with pytest.raises(KeyError, match="conditions lack 'ex'"):
        model(cams, missing)
    wrong = {**conds, "id": jnp.zeros((2, 4))}
    with pytest.raises(ValueError, match=r"condition 'id' has shape \(2, 4\), expected \[B, 3\]"):
        model(cams, wrong)
    with pytest.raises(ValueError, match="cameras need c2w"):
        model({"c2w": cams["c2w"], "intrinsics": cams["intrinsics"][:1]}, conds)
    with pytest.raises(ValueError, match="unknown HeadNeRFConfig keys"):
        HeadNeRFConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="view_input"):
        HeadNeRFConfig(view_input="camera")
    assert HeadNeRFConfig.full().image_size == (512, 512)


def test_latent_codes_lookup():
    codes = make(LatentCodes, {"id": (3, 4), "ex": (10, 2)}, init_std=0.1, seed=0)
    out = apply(codes, {"id": jnp.asarray([0, 2]), "ex": jnp.asarray([9, 1])})
    assert out["id"].shape == (2, 4) and out["ex"].shape == (2, 2)
    np.testing.assert_array_equal(np.asarray(out["ex"][0]), np.asarray(codes.tables["ex"][...][9]))
    zeros = LatentCodes({"ill": (2, 3)}, rngs=nnx.Rngs(0))
    assert float(jnp.abs(zeros({"ill": jnp.asarray([1])})["ill"]).sum()) == 0.0


def test_tiny_overfit_loss_drops_with_finite_gradients():
    """A few dozen Adam steps on one 12x12 target (field, renderer and codes): the loss falls."""
    model = build(TINY, seed=3)
    graphdef, params = nnx.split(model, nnx.Param)
    cams = cameras(1, 6, upsample=2)
    variables = (params, conditions(TINY, 1))  # the codes are learned too, as in the stage
    yy, xx = np.mgrid[0:12, 0:12] / 11.0
    target = jnp.asarray(np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1)[None], jnp.float32)
    tx = optax.adam(2e-2)
    opt_state = tx.init(variables)

    @jax.jit
    def step(variables, opt_state, i):
        def loss_fn(variables):
            params, conds = variables
            key = jax.random.fold_in(jax.random.key(0), i)
            out = nnx.merge(graphdef, params)(cams, conds, key)
            return jnp.mean((out["image"] - target) ** 2) + jnp.mean(
                (out["rgb_lowres"] - target[:, ::2, ::2]) ** 2
            )

        loss, grads = jax.value_and_grad(loss_fn)(variables)
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        code_grad = jnp.sum(jnp.abs(grads[1]["ex"]))
        updates, opt_state = tx.update(grads, opt_state, variables)
        return optax.apply_updates(variables, updates), opt_state, loss, finite, code_grad

    losses = []
    for i in range(30):
        variables, opt_state, loss, finite, code_grad = step(variables, opt_state, i)
        assert bool(finite), f"non-finite gradient at step {i}"
        losses.append(float(loss))
        if i == 0:  # the codes get gradients through volume rendering
            assert float(code_grad) > 0
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.3 * losses[0], losses


def test_camera_frame_points_stay_put_for_what_moves_with_the_camera():
    """A point fixed in front of the camera (the torso) has the same camera-frame coordinates
    whatever the head pose (c2w), while its head-frame coordinates change; the head's centre of
    a camera looking at it lands at the origin."""
    cams = cameras(3, 6, yaw_step=0.4)["c2w"]
    radius = 0.3
    in_camera = np.array([0.05, -0.12, -CAMERA_DISTANCE + 0.03])  # below the head, in view
    coords, head_coords = [], []
    for c2w in np.asarray(cams):
        world = c2w[:3, :3] @ in_camera + c2w[:3, 3]  # where that camera puts it in the head frame
        unit = world / radius
        head_coords.append(unit)
        coords.append(np.asarray(render_lib.camera_frame_points(unit, c2w, (0, 0, 0), radius)))
    expected = (in_camera + [0, 0, CAMERA_DISTANCE]) / radius
    np.testing.assert_allclose(coords, np.tile(expected, (3, 1)), atol=1e-5)
    assert np.abs(head_coords[0] - head_coords[2]).max() > 0.1
    origin = render_lib.camera_frame_points(np.zeros(3), np.asarray(cams[1]), (0, 0, 0), radius)
    np.testing.assert_allclose(np.asarray(origin), 0.0, atol=1e-6)


def test_full_frames_composite_over_the_background_and_see_both_frames():
    """``space="head+camera"``: the field reads both frames (its tables or encoding doubled);
    with a background the image is ``A I + (1 - A) background`` (A: the accumulation, upsampled
    bilinearly), the same render as without it, recomposited."""
    for encoding in ("frequency", "hash"):
        config = dataclasses.replace(TINY, space="head+camera", encoding=encoding)
        model = build(config)
        single = build(dataclasses.replace(TINY, encoding=encoding))
        assert model.field.point_dim == 2 * single.field.point_dim
        if encoding == "hash":
            assert model.field.tables.shape == (2,) + single.field.tables.shape
        cams = cameras(2, 6, upsample=2)
        conds = conditions(config, 2)
        background = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 12, 12, 3)))
        plain = model(cams, conds, None)
        over = model(cams, conds, None, background)
        alpha = jax.image.resize(plain["accumulation"][..., None], (2, 12, 12, 1), "linear")
        alpha = np.clip(np.asarray(alpha), 0, 1)
        expected = alpha * np.asarray(plain["image"]) + (1 - alpha) * np.asarray(background)
        np.testing.assert_allclose(np.asarray(over["image"]), expected, atol=1e-5)
        np.testing.assert_allclose(np.asarray(over["alpha"]), alpha[..., 0], atol=1e-6)
        low_alpha = np.clip(np.asarray(plain["accumulation"]), 0, 1)[..., None]
        low = np.asarray(jax.image.resize(background, (2, 6, 6, 3), "linear"))
        np.testing.assert_allclose(
            np.asarray(over["rgb_lowres"]),
            low_alpha * np.asarray(plain["rgb_lowres"]) + (1 - low_alpha) * low, atol=1e-5,
        )  # fmt: skip
        assert 0.0 < float(alpha.mean()) < 1.0


def test_a_patch_renders_what_the_whole_frame_renders_there():
    """A patch is the frame seen through a camera whose principal point moves to the patch's
    corner: its feature map equals that window of the whole frame's (deterministic samples),
    and ``cut_patch`` cuts the targets at the same place."""
    from jaxhead.nerf import patches

    model = build(TINY)
    cams = cameras(1, 6, upsample=2)
    conds = conditions(TINY, 1)
    whole = model.render_features(cams, conds, None)
    frame = {
        "intrinsics": cams["intrinsics"][0],
        "image": jnp.arange(12 * 12 * 3, dtype=jnp.float32).reshape(12, 12, 3),
        "image_lr": jnp.arange(6 * 6 * 3, dtype=jnp.float32).reshape(6, 6, 3),
        "landmarks": jnp.ones((68, 2)),
    }
    corner = jnp.asarray([2, 1])  # (y0, x0) in feature pixels
    cut = patches.cut_patch(frame, corner, 3, 2)
    np.testing.assert_array_equal(cut["image"], frame["image"][4:10, 2:8])
    np.testing.assert_array_equal(cut["image_lr"], frame["image_lr"][2:5, 1:4])
    np.testing.assert_allclose(cut["landmarks"], np.ones((68, 2)) - [2.0, 4.0])
    part = model.render_features(
        {"c2w": cams["c2w"], "intrinsics": cut["intrinsics"][None]}, conds, None, size=(3, 3)
    )
    np.testing.assert_allclose(
        np.asarray(part.features[0]), np.asarray(whole.features[0, 2:5, 1:4]), atol=1e-5
    )


def test_patches_go_to_the_mouth_the_eyes_or_anywhere_and_stay_inside():
    from jaxhead.nerf import patches

    landmarks = np.zeros((68, 2), np.float32)
    landmarks[48:68] = (200.0, 400.0)  # mouth at x=200, y=400 output pixels (map: 50, 100)
    landmarks[36:48] = (500.0, 20.0)  # eyes near the right top edge (map: 125, 5)
    keys = jax.random.split(jax.random.key(0), 400)

    def corners(mouth, eyes):
        return np.asarray(
            jax.vmap(lambda k: patches.patch_corner(k, landmarks, 128, 32, 4, mouth, eyes))(keys)
        )

    on_mouth = corners(1.0, 0.0)
    centre = on_mouth + 16
    assert np.all(np.abs(centre - [100, 50]) <= 8 + 1)  # within the jitter of the mouth
    on_eyes = corners(0.0, 1.0)
    assert np.all(on_eyes == np.clip(on_eyes, 0, 96)) and np.all(on_eyes[:, 1] == 96)
    anywhere = corners(0.0, 0.0)
    assert anywhere.min() >= 0 and anywhere.max() <= 96 and anywhere.std() > 15
    mixed = corners(0.3, 0.1)
    share = np.mean(np.all(np.abs(mixed + 16 - [100, 50]) <= 9, axis=1))
    assert 0.22 < share < 0.4


def test_blink_frames_are_the_top_share_or_from_a_value_on_and_their_pairs_repeat():
    from jaxhead.nerf import patches

    blink = np.array([0.1, 0.1, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1, 0.6, 0.1], np.float32)
    threshold = patches.blink_threshold(blink, 0.2)  # the two largest values stand out
    assert 0.2 < threshold <= 0.6
    pairs = np.stack([np.arange(9), np.arange(1, 10)], axis=1)
    repeats = patches.blink_repeats(blink, pairs, threshold, 4)
    np.testing.assert_array_equal(np.nonzero(repeats == 4)[0], [2, 3, 7, 8])
    assert set(repeats.tolist()) == {1, 4}
    # Off, or a signal without blinks: no frame is a blink frame.
    assert patches.blink_threshold(blink, 0.0) == np.inf
    assert patches.blink_threshold(np.full(10, 0.1), 0.2) == np.inf
    np.testing.assert_array_equal(patches.blink_repeats(blink, pairs, np.inf, 4), np.ones(9))
    with pytest.raises(ValueError, match="blink_share"):
        patches.blink_threshold(blink, 1.0)
    # data.blink_min: every frame from that value on, however many; none reach it: none.
    assert patches.blink_threshold(blink, 0.0, 0.5) == 0.5
    np.testing.assert_array_equal(
        np.nonzero(patches.blink_repeats(blink, pairs, 0.5, 3) == 3)[0], [2, 3, 7, 8]
    )
    assert patches.blink_threshold(blink, 0.0, 0.95) == np.inf
    with pytest.raises(ValueError, match="both choose the blink frames"):
        patches.blink_threshold(blink, 0.2, 0.5)
    with pytest.raises(ValueError, match="blink_min"):
        patches.blink_threshold(blink, 0.0, 1.5)
    with pytest.raises(ValueError, match="blink_repeat"):
        patches.blink_repeats(blink, pairs, threshold, 0)


def test_a_pair_in_a_blink_looks_at_the_eyes_unless_at_the_mouth():
    from jaxhead.nerf import step

    landmarks = np.zeros((68, 2), np.float32)
    landmarks[48:68] = (200.0, 400.0)  # mouth: map (y, x) = (100, 50)
    landmarks[36:48] = (300.0, 100.0)  # eyes: map (25, 75)
    pairs = 64
    setup = step.NeRFSetup(
        dataclasses.replace(TINY, render_size=(128, 128), upsample=4), {}, 10, 0,
        patch=(32, 0.3, 0.0), blink_threshold=0.5,
    )  # fmt: skip
    blink = np.repeat(np.array([0.9, 0.1] * (pairs // 2), np.float32), 2)  # every other pair
    frames = {
        "landmarks": jnp.asarray(np.broadcast_to(landmarks, (2 * pairs, 68, 2))),
        "blink": jnp.asarray(blink),
        "intrinsics": jnp.ones((2 * pairs, 4)),
    }
    cut = step.cut_patches(setup, frames, pairs, jax.random.key(3))
    centre = np.asarray(cut["intrinsics"][::2, 2:])  # cx - x0·u: the corner moved the point
    corner = (1.0 - centre) / 4  # (x0, y0) in feature pixels
    on_eyes = np.all(np.abs(corner + 16 - [75, 25]) <= 9, axis=1)
    on_mouth = np.all(np.abs(corner + 16 - [50, 100]) <= 9, axis=1)
    assert np.all(on_eyes[0::2] | on_mouth[0::2])  # blinking pairs: eyes or mouth, nowhere else
    assert on_eyes[0::2].mean() > 0.5
    assert not on_eyes[1::2].any()  # the others never go to the eyes (patch_eyes = 0)


def test_the_run_setup_takes_its_blink_frames_from_the_config():
    from jaxhead.nerf.conditions import LipSource, RunConditions
    from jaxhead.nerf.config import video_config
    from jaxhead.nerf.step import make_setup

    blink = np.array([0.1, 0.1, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1, 0.6, 0.1], np.float32)
    n = len(blink)
    tracks = {
        "c2w": np.tile(np.eye(4, dtype=np.float32)[:3], (n, 1, 1)),
        "intrinsics": np.ones((n, 4), np.float32),
        "blink": blink,
        "identity": np.zeros(n, np.int32),
        "sequence": np.zeros(n, np.int32),
        "sequence_index": np.zeros(n, np.int32),
    }
    run = RunConditions(tracks, 1, 1, 80, None)

    def threshold(**data):
        config = video_config("smoke")
        with config.unlocked():
            config.data.update(data)
            config.sync.train = False
        return make_setup(config, run, LipSource(config))[0].blink_threshold

    assert threshold() == np.inf
    assert threshold(blink_min=0.5) == 0.5
    assert 0.2 < threshold(blink_share=0.2) <= 0.6
    with pytest.raises(ValueError, match="both choose the blink frames"):
        threshold(blink_min=0.5, blink_share=0.2)


def test_pose_features_are_the_rotation_and_where_the_head_sits_seen_from_the_camera():
    c2w = np.eye(4, dtype=np.float32)
    c2w[:3, 3] = (0.0, 0.0, 0.6)  # the frontal camera: the head straight ahead, along -z
    np.testing.assert_allclose(
        np.asarray(render_lib.pose_features(jnp.asarray(c2w))),
        [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, -1], atol=1e-6,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    c2w[:3, :3], c2w[:3, 3] = rotation, (0.05, -0.02, 0.7)
    features = np.asarray(render_lib.pose_features(jnp.asarray(c2w)))
    head_in_camera = -rotation.T @ c2w[:3, 3]  # the head frame's origin in camera coordinates
    np.testing.assert_allclose(features[:9], rotation.ravel(), atol=1e-6)
    np.testing.assert_allclose(
        features[9:], head_in_camera / np.linalg.norm(head_in_camera), atol=1e-6
    )
    scaled = c2w.copy()
    scaled[:3, 3] *= 7.0  # another video's scene units: the same features
    np.testing.assert_allclose(
        np.asarray(render_lib.pose_features(jnp.asarray(scaled))), features, atol=1e-6
    )


def test_a_pose_conditioned_model_computes_its_standardised_pose_from_the_cameras():
    from jaxhead.nerf.step import pose_statistics

    cams = cameras(3, 6, upsample=2, yaw_step=0.2)
    mean, std = pose_statistics(np.asarray(cams["c2w"]))
    assert len(mean) == len(std) == POSE_FEATURES and min(std) >= 1e-3
    config = dataclasses.replace(
        TINY, condition_dims=TINY.condition_dims + (("pose", 12),), pose_mean=mean, pose_std=std
    )
    model = build(config)
    given = conditions(TINY, 3)
    standardised = (render_lib.pose_features(cams["c2w"]) - jnp.asarray([mean])) / jnp.asarray(
        [std]
    )
    computed = apply(model, cams, given)
    explicit = apply(model, cams, {**given, "pose": standardised})
    np.testing.assert_allclose(
        np.asarray(computed["image"]), np.asarray(explicit["image"]), atol=1e-6
    )
    other = apply(model, cams, {**given, "pose": standardised + 1.0})  # the pose is an input
    assert np.abs(np.asarray(other["image"]) - np.asarray(computed["image"])).max() > 1e-4
    with pytest.raises(ValueError, match="'pose' condition is 12 wide"):
        dataclasses.replace(TINY, condition_dims=(("pose", 6),))
    with pytest.raises(ValueError, match="pose_mean / pose_std"):
        dataclasses.replace(config, pose_std=())
