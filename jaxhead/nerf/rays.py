"""Camera rays for volume rendering (pinhole camera, NeRF/OpenGL convention)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def generate_rays(
    c2w: jax.Array,
    focal: float | jax.Array,
    cx: float | jax.Array,
    cy: float | jax.Array,
    height: int,
    width: int,
) -> tuple[jax.Array, jax.Array]:
    """One ray per pixel of a pinhole camera, as in NeRF (Mildenhall et al. 2020, sec. 4).

    Camera space follows NeRF/OpenGL: the camera looks down -z, +x points right and +y points up
    in the image. Pixel ``(row j, column i)`` covers ``[i, i+1) x [j, j+1)`` in pixel coordinates,
    so its ray passes through the pixel centre ``(i + 0.5, j + 0.5)``; ``(cx, cy)`` is the
    principal point in the same coordinates (``(width / 2, height / 2)`` for a centred camera).
    The camera-space direction is ``((i + 0.5 - cx) / fx, -(j + 0.5 - cy) / fy, -1)``: like NeRF
    the directions are *not* normalised, their camera-space z component is exactly -1, so a ray
    parameter ``t`` is a depth along the optical axis. Pass ``‖d‖`` to ``render.composite`` to turn
    ``t`` intervals into metric distances.

    Args:
      c2w: ``[3, 4]`` or ``[4, 4]`` camera-to-world matrix ``[R | t]`` (extra row ignored).
      focal: focal length in pixels, a scalar (``fx = fy``) or a ``(fx, fy)`` pair.
      cx: principal point x in pixels (scalar).
      cy: principal point y in pixels (scalar).
      height: image height in pixels (static Python int).
      width: image width in pixels (static Python int).

    Returns:
      ``(origins [height, width, 3], directions [height, width, 3])`` in world space; every origin
      is the camera centre ``c2w[:3, 3]``.
    """
    c2w = jnp.asarray(c2w)
    if c2w.shape not in ((3, 4), (4, 4)):
        raise ValueError(f"c2w must be [3, 4] or [4, 4], got shape {c2w.shape}")
    focal = jnp.asarray(focal, dtype=c2w.dtype)
    if focal.shape == ():
        fx = fy = focal
    elif focal.shape == (2,):
        fx, fy = focal[0], focal[1]
    else:
        raise ValueError(f"focal must be a scalar or an (fx, fy) pair, got shape {focal.shape}")
    cols, rows = jnp.meshgrid(
        jnp.arange(width, dtype=c2w.dtype) + 0.5,
        jnp.arange(height, dtype=c2w.dtype) + 0.5,
        indexing="xy",
    )
    # Image rows grow downwards while camera +y points up, hence the minus sign on y.
    cam_dirs = jnp.stack([(cols - cx) / fx, -(rows - cy) / fy, -jnp.ones_like(cols)], axis=-1)
    rotation = c2w[:3, :3]
    # R @ d per pixel as an elementwise product and sum: exact float32, no matmul precision knob.
    directions = jnp.sum(cam_dirs[..., None, :] * rotation[None, None, :, :], axis=-1)
    origins = jnp.broadcast_to(c2w[:3, 3], directions.shape)
    return origins, directions
