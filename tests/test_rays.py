"""Tests for jaxhead.nerf.rays.generate_rays (pinhole camera, NeRF/OpenGL convention)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhead.nerf.rays import generate_rays

SETTINGS = settings(max_examples=20, deadline=None)

generate_rays_jit = jax.jit(generate_rays, static_argnums=(4, 5))


def generate_rays_reference(c2w, fx, fy, cx, cy, height, width):
    """Pixel by pixel: camera-space direction through the pixel centre, rotated by R."""
    c2w = np.asarray(c2w, np.float64)
    origins = np.zeros((height, width, 3))
    directions = np.zeros((height, width, 3))
    for row in range(height):
        for col in range(width):
            camera = np.array([(col + 0.5 - cx) / fx, -(row + 0.5 - cy) / fy, -1.0])
            directions[row, col] = c2w[:3, :3] @ camera
            origins[row, col] = c2w[:3, 3]
    return origins, directions


def random_pose(seed):
    """A random rotation (via QR) and translation as a [4, 4] camera-to-world matrix."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    pose = np.eye(4)
    pose[:3, :3] = q
    pose[:3, 3] = rng.normal(size=3) * 3.0
    return pose.astype(np.float32)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    shape=st.sampled_from([(1, 1), (3, 4), (6, 5)]),
    focal=st.floats(0.5, 500.0),
)
def test_matches_reference_loop(seed, shape, focal):
    height, width = shape
    pose = random_pose(seed)
    cx, cy = width / 2 + 0.3, height / 2 - 0.2
    origins, directions = generate_rays_jit(pose, focal, cx, cy, height, width)
    want_origins, want_directions = generate_rays_reference(
        pose, focal, focal, cx, cy, height, width
    )
    np.testing.assert_allclose(origins, want_origins, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(directions, want_directions, rtol=1e-5, atol=1e-5)


def test_identity_camera_conventions():
    # 3x3 image, centred principal point: the middle pixel looks straight down -z.
    origins, directions = generate_rays(jnp.eye(4), 2.0, 1.5, 1.5, 3, 3)
    np.testing.assert_allclose(directions[1, 1], [0.0, 0.0, -1.0], atol=1e-7)
    np.testing.assert_array_equal(origins, 0.0)
    # Top-left pixel: left (-x) and up (+y); bottom-right: right and down. z is always -1.
    np.testing.assert_allclose(directions[0, 0], [-0.5, 0.5, -1.0], atol=1e-7)
    np.testing.assert_allclose(directions[2, 2], [0.5, -0.5, -1.0], atol=1e-7)
    np.testing.assert_array_equal(directions[..., 2], -1.0)


def test_pixel_centres_project_back_to_themselves():
    # A point on ray (row, col) projects to pixel coordinates (col + 0.5, row + 0.5).
    pose = random_pose(3)
    height, width, focal, cx, cy = 4, 6, 7.0, 2.9, 2.2
    origins, directions = generate_rays(pose, focal, cx, cy, height, width)
    points = np.asarray(origins + 2.5 * directions, np.float64)
    world_to_camera = np.linalg.inv(pose.astype(np.float64))
    camera = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    u = focal * camera[..., 0] / -camera[..., 2] + cx
    v = -focal * camera[..., 1] / -camera[..., 2] + cy
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5, indexing="xy")
    np.testing.assert_allclose(u, cols, atol=1e-4)
    np.testing.assert_allclose(v, rows, atol=1e-4)
    np.testing.assert_allclose(camera[..., 2], -2.5, atol=1e-4)


def test_accepts_3x4_and_focal_pairs():
    pose = random_pose(1)
    full = generate_rays(pose, 3.0, 2.0, 1.0, 2, 4)
    np.testing.assert_array_equal(generate_rays(pose[:3], 3.0, 2.0, 1.0, 2, 4)[1], full[1])
    np.testing.assert_allclose(generate_rays(pose, (3.0, 3.0), 2.0, 1.0, 2, 4)[1], full[1])
    _, anisotropic = generate_rays(jnp.eye(4), jnp.array([2.0, 4.0]), 2.0, 1.0, 2, 4)
    np.testing.assert_allclose(anisotropic[0, 0], [(0.5 - 2.0) / 2.0, -(0.5 - 1.0) / 4.0, -1.0])
    with pytest.raises(ValueError, match="c2w"):
        generate_rays(jnp.eye(3), 1.0, 0.0, 0.0, 2, 2)
    with pytest.raises(ValueError, match="focal"):
        generate_rays(jnp.eye(4), jnp.ones(3), 0.0, 0.0, 2, 2)


def test_jit_and_vmap_match_eager_and_loop():
    poses = np.stack([random_pose(s) for s in range(3)])
    fn = functools.partial(generate_rays, focal=5.0, cx=2.0, cy=1.5, height=3, width=4)
    mapped = jax.vmap(fn)(poses)
    for i in range(3):
        eager = fn(poses[i])
        jitted = generate_rays_jit(poses[i], 5.0, 2.0, 1.5, 3, 4)
        for a, b, c in zip(eager, jitted, (mapped[0][i], mapped[1][i]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)


def test_gradient_through_pose_is_finite():
    def loss(pose):
        origins, directions = generate_rays(pose, 1e3, 2.0, 2.0, 4, 4)
        return jnp.sum(origins + 10.0 * directions)

    grad = jax.grad(loss)(jnp.asarray(random_pose(2)))
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[3], 0.0)  # the bottom row of a [4, 4] pose is unused
