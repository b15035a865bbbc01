"""Vectorised NumPy z-buffer triangle rasteriser; Lambertian shading under spherical harmonics.

Frames of the VOCASET-style datasets are rendered once on the host and cached by the data layer,
so the renderer is plain NumPy (no OpenGL, no JAX tracing) and vectorised over (face, pixel)
pairs instead of looping over triangles: a 128x128 frame of a 5k-vertex mesh takes a few
milliseconds (``benchmarks/bench_raster.py``).

Conventions (shared with the NeRF ray generator in ``jaxhead/nerf``):

* camera-to-world ``c2w`` ``[4, 4]`` (or ``[3, 4]``) in the NeRF/OpenGL convention: the camera
  looks down its ``-z`` axis, ``+y`` is up, ``+x`` right;
* intrinsics ``(fx, fy, cx, cy)`` in pixels; image coordinates ``u`` right, ``v`` down; pixel
  ``(i, j)`` (row, column) has its centre at ``(u, v) = (j + 0.5, i + 0.5)`` and is sampled
  there, so the ray of pixel ``(i, j)`` has camera-space direction
  ``((u - cx) / fx, -(v - cy) / fy, -1)``;
* depth is the distance along the camera's viewing axis (``-z_camera``), positive in front.

Shading is Lambertian with second-order spherical-harmonic (SH) irradiance, the illumination model
of 3DMM face reconstruction (Deep3DFaceRecon's 27 "gamma" coefficients, Ramamoorthi & Hanrahan
2001): ``rgb = albedo * sum_k sh[k] * Y_k(n)``, with ``sh`` ``[9, 3]`` (one column per colour).
:func:`sh_from_lights` turns an ambient + directional light into those coefficients.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "Render",
    "look_at",
    "orbit_cameras",
    "intrinsics_from_fov",
    "project",
    "world_to_camera",
    "vertex_normals",
    "sh_basis",
    "sh_from_lights",
    "sample_texture",
    "rasterize",
    "render_mesh",
]

# Real SH basis constants Y_00, Y_1m, Y_2m for unit normals (Ramamoorthi & Hanrahan 2001, eq. 3).
_SH_C0 = 0.5 / np.sqrt(np.pi)
_SH_C1 = np.sqrt(3.0 / (4.0 * np.pi))
_SH_C2 = 3.0 * np.sqrt(5.0 / (12.0 * np.pi))
_SH_C20 = 0.5 * np.sqrt(5.0 / (4.0 * np.pi))
_SH_C22 = 0.5 * _SH_C2
# Clamped-cosine (Lambertian) kernel per SH band: A_0 = pi, A_1 = 2 pi / 3, A_2 = pi / 4 (eq. 8).
_LAMBERT_BAND = np.array([np.pi] + [2.0 * np.pi / 3.0] * 3 + [np.pi / 4.0] * 5)

# Upper bound on (face, pixel) candidate pairs processed at once; bounds peak memory at ~200 MB.
_MAX_PAIRS = 4_000_000


class Render(NamedTuple):
    """One rendered frame.

    rgb: ``[H, W, 3]`` float32 in ``[0, 1]``, background composited in.
    mask: ``[H, W]`` float32 foreground coverage in ``[0, 1]`` (fractional with supersampling).
    depth: ``[H, W]`` float32 distance along the viewing axis; 0 where nothing is hit.
    landmarks: ``[L, 2]`` float32 pixel positions ``(u, v)`` of the landmark vertices (x right,
      y down, pixel centres at +0.5), or ``[0, 2]`` when no landmark indices were given.
    face_index: ``[H, W]`` int32 index of the visible face per pixel, -1 on background (at the
      supersampled resolution's top-left sample when supersampling).
    """

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    landmarks: np.ndarray
    face_index: np.ndarray


# --------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world matrix of a camera at ``eye`` looking at ``target``.

    Args:
      eye: ``[3]`` camera centre.
      target: ``[3]`` point the camera looks at (it lies on the camera's ``-z`` axis).
      up: ``[3]`` world direction that appears upward in the image (must not be parallel to
        the viewing direction).

    Returns:
      ``[4, 4]`` float64 c2w whose columns are the camera's x, y, z axes and centre.
    """
    eye = np.asarray(eye, np.float64)
    forward = np.asarray(target, np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, np.float64))
    norm = np.linalg.norm(right)
    if norm < 1e-8:
        raise ValueError(f"look_at: up {up} is parallel to the viewing direction {forward}")
    right /= norm
    true_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, -forward, eye
    return c2w


def orbit_cameras(yaws_deg, pitches_deg, radius: float, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Cameras on a sphere around ``target``, all looking at it (a yaw/pitch sweep).

    Yaw 0 / pitch 0 puts the camera on the ``+z`` axis of ``target`` (in front of a VOCASET/FLAME
    head, whose face looks down ``+z``); positive yaw moves it toward ``+x``, positive pitch up.

    Args:
      yaws_deg: ``[N]`` yaw angles in degrees (about ``+y``).
      pitches_deg: ``[N]`` pitch angles in degrees (or a scalar broadcast to ``[N]``).
      radius: distance from ``target`` in scene units (metres for VOCASET).
      target: ``[3]`` look-at point.

    Returns:
      ``[N, 4, 4]`` camera-to-world matrices.
    """
    yaws = np.radians(np.atleast_1d(np.asarray(yaws_deg, np.float64)))
    pitches = np.radians(np.asarray(pitches_deg, np.float64))
    pitches = np.broadcast_to(pitches, yaws.shape)
    target = np.asarray(target, np.float64)
    offsets = np.stack(
        [np.sin(yaws) * np.cos(pitches), np.sin(pitches), np.cos(yaws) * np.cos(pitches)], -1
    )
    return np.stack([look_at(target + radius * o, target) for o in offsets])


def intrinsics_from_fov(fov_deg: float, width: int, height: int) -> np.ndarray:
    """``[4]`` intrinsics ``(fx, fy, cx, cy)`` of a square-pixel camera with horizontal FOV."""
    fx = 0.5 * width / np.tan(0.5 * np.radians(fov_deg))
    return np.array([fx, fx, 0.5 * width, 0.5 * height])


def world_to_camera(points: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """``[N, 3]`` world points -> ``[N, 3]`` camera-space points (camera looks down ``-z``)."""
    c2w = np.asarray(c2w, np.float64)
    rotation, centre = c2w[:3, :3], c2w[:3, 3]
    return (np.asarray(points, np.float64) - centre) @ rotation


def project(points: np.ndarray, intrinsics, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of world points to pixel coordinates.

    Inverse of the ray generator: ``u = cx + fx * x / (-z)``, ``v = cy - fy * y / (-z)``.

    Args:
      points: ``[N, 3]`` world points.
      intrinsics: ``[4]`` ``(fx, fy, cx, cy)``.
      c2w: ``[4, 4]`` or ``[3, 4]`` camera-to-world.

    Returns:
      ``uv`` ``[N, 2]`` float64 pixel positions and ``depth`` ``[N]`` (``-z_camera``).
    """
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    cam = world_to_camera(points, c2w)
    depth = -cam[:, 2]
    safe = np.where(np.abs(depth) < 1e-12, 1e-12, depth)
    uv = np.stack([cx + fx * cam[:, 0] / safe, cy - fy * cam[:, 1] / safe], -1)
    return uv, depth


# --------------------------------------------------------------------------------------------
# Shading
# --------------------------------------------------------------------------------------------


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[V, 3]`` of a mesh with ``[F, 3]`` faces."""
    vertices = np.asarray(vertices, np.float64)
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    normals = np.stack(
        [
            np.bincount(faces.ravel(), np.repeat(face_n[:, c], 3), minlength=len(vertices))
            for c in range(3)
        ],
        -1,
    )
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    return normals / np.maximum(norm, 1e-12)


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """``[..., 3]`` unit normals -> ``[..., 9]`` real SH basis values (bands 0-2).

    Ordering: ``Y_00, Y_1-1 (y), Y_10 (z), Y_11 (x), Y_2-2 (xy), Y_2-1 (yz), Y_20, Y_21 (xz),
    Y_22 (x^2 - y^2)``.
    """
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    return np.stack(
        [
            np.full_like(x, _SH_C0),
            _SH_C1 * y,
            _SH_C1 * z,
            _SH_C1 * x,
            _SH_C2 * x * y,
            _SH_C2 * y * z,
            _SH_C20 * (3.0 * z * z - 1.0),
            _SH_C2 * x * z,
            _SH_C22 * (x * x - y * y),
        ],
        -1,
    )


def sh_from_lights(
    ambient=(0.3, 0.3, 0.3), direction=(0.3, 0.4, 1.0), color=(0.8, 0.8, 0.8)
) -> np.ndarray:
    """SH irradiance coefficients ``[9, 3]`` of an ambient light plus one directional light.

    ``irradiance(n) = ambient + color * max(0, n . d)`` up to the band-2 truncation of the
    clamped cosine (Ramamoorthi & Hanrahan 2001, eqs. 7-8): coefficient ``k`` is
    ``A_band(k) * Y_k(d) * color`` plus ``ambient / Y_00`` on ``k = 0``.

    Args:
      ambient: ``[3]`` RGB ambient irradiance.
      direction: ``[3]`` direction *toward* the light (need not be unit length).
      color: ``[3]`` RGB intensity of the directional light.
    """
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    # A distant light of intensity c from d has radiance coefficients L_k = c Y_k(d); irradiance
    # coefficients are A_band(k) L_k, which reproduce c * max(0, n . d) to within ~6%.
    coeffs = (_LAMBERT_BAND * sh_basis(d))[:, None] * np.asarray(color, np.float64)
    coeffs[0] += np.asarray(ambient, np.float64) / _SH_C0
    return coeffs


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup.

    Args:
      texture: ``[Ht, Wt, C]`` image (row 0 at the top).
      uv: ``[N, 2]`` coordinates in ``[0, 1]`` with the OBJ convention (``v = 0`` at the bottom).

    Returns:
      ``[N, C]`` float32 texel values.
    """
    tex_h, tex_w = texture.shape[:2]
    x = np.clip(uv[:, 0], 0.0, 1.0) * tex_w - 0.5
    y = (1.0 - np.clip(uv[:, 1], 0.0, 1.0)) * tex_h - 0.5
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0)[:, None].astype(np.float32)
    fy = (y - y0)[:, None].astype(np.float32)
    x0c, x1c = np.clip(x0, 0, tex_w - 1), np.clip(x0 + 1, 0, tex_w - 1)
    y0c, y1c = np.clip(y0, 0, tex_h - 1), np.clip(y0 + 1, 0, tex_h - 1)
    tex = np.asarray(texture, np.float32)
    top = tex[y0c, x0c] * (1 - fx) + tex[y0c, x1c] * fx
    bottom = tex[y1c, x0c] * (1 - fx) + tex[y1c, x1c] * fx
    return top * (1 - fy) + bottom * fy


# --------------------------------------------------------------------------------------------
# Rasterisation
# --------------------------------------------------------------------------------------------


class Fragments(NamedTuple):
    """Visible surface per covered pixel: the output of :func:`rasterize`.

    pixel: ``[P]`` flat pixel index ``i * W + j`` of each covered pixel.
    face: ``[P]`` index of the nearest face there.
    bary: ``[P, 3]`` perspective-correct barycentric weights of that face's vertices.
    depth: ``[P]`` depth of the surface at the pixel centre.
    """

    pixel: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    depth: np.ndarray


def rasterize(
    uv: np.ndarray, depth: np.ndarray, faces: np.ndarray, height: int, width: int, near=1e-6
) -> Fragments:
    """Nearest-surface fragments of a projected triangle mesh (z-buffer), all pixels at once.

    Each face is tested against the pixel centres inside its screen bounding box; the
    (face, pixel) pairs are generated with ``np.repeat`` and tested with edge functions in one
    vectorised pass, and the nearest pair per pixel wins (a sort replaces the z-buffer loop).
    Faces with a vertex at or behind ``near`` are dropped (no clipping: fine for cameras that
    see the whole head). Both windings are drawn (no back-face culling).

    Args:
      uv: ``[V, 2]`` projected vertex pixel positions (see :func:`project`).
      depth: ``[V]`` vertex depths (positive in front of the camera).
      faces: ``[F, 3]`` int vertex indices.
      height, width: image size in pixels.
      near: minimum vertex depth of a drawn face.

    Returns:
      :class:`Fragments` of the covered pixels, sorted by pixel index.
    """
    faces = np.asarray(faces, np.int64)
    tri_uv = uv[faces]  # [F, 3, 2]
    tri_z = depth[faces]  # [F, 3]
    lo = np.ceil(tri_uv.min(1) - 0.5).astype(np.int64)  # first pixel whose centre is inside
    hi = np.floor(tri_uv.max(1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    span = hi - lo + 1  # [F, 2] bbox width, height in pixels
    area2 = (tri_uv[:, 1, 0] - tri_uv[:, 0, 0]) * (tri_uv[:, 2, 1] - tri_uv[:, 0, 1]) - (
        tri_uv[:, 2, 0] - tri_uv[:, 0, 0]
    ) * (tri_uv[:, 1, 1] - tri_uv[:, 0, 1])
    keep = (
        (span > 0).all(1)
        & (tri_z > near).all(1)
        & (np.abs(area2) > 1e-12)
        & np.isfinite(tri_uv).all((1, 2))
    )
    face_ids = np.nonzero(keep)[0]
    counts = span[face_ids, 0] * span[face_ids, 1]

    pixels, winners, barys, depths = [], [], [], []
    # Chunk the faces so that no more than _MAX_PAIRS candidate pairs are alive at once.
    bounds = np.searchsorted(np.cumsum(counts), np.arange(_MAX_PAIRS, counts.sum(), _MAX_PAIRS))
    for chunk in np.split(np.arange(len(face_ids)), np.unique(bounds)):
        if len(chunk) == 0:
            continue
        f = face_ids[chunk]
        c = counts[chunk]
        pair_face = np.repeat(f, c)
        start = np.cumsum(c) - c
        local = np.arange(c.sum()) - np.repeat(start, c)
        w = span[pair_face, 0]
        px = lo[pair_face, 0] + local % w
        py = lo[pair_face, 1] + local // w
        pu = px + 0.5
        pv = py + 0.5
        t = tri_uv[pair_face]  # [P, 3, 2]
        # Edge functions: b_k is the signed area of the sub-triangle opposite vertex k.
        b0 = (t[:, 1, 0] - pu) * (t[:, 2, 1] - pv) - (t[:, 2, 0] - pu) * (t[:, 1, 1] - pv)
        b1 = (t[:, 2, 0] - pu) * (t[:, 0, 1] - pv) - (t[:, 0, 0] - pu) * (t[:, 2, 1] - pv)
        b2 = (t[:, 0, 0] - pu) * (t[:, 1, 1] - pv) - (t[:, 1, 0] - pu) * (t[:, 0, 1] - pv)
        bary = np.stack([b0, b1, b2], -1) / area2[pair_face, None]
        inside = (bary >= -1e-9).all(1)
        bary, pair_face = bary[inside], pair_face[inside]
        pix = (py * width + px)[inside]
        # Perspective-correct interpolation: 1/z is affine in screen space.
        inv_z = bary / tri_z[pair_face]
        inv_depth = inv_z.sum(1)
        pixels.append(pix)
        winners.append(pair_face)
        barys.append(inv_z / inv_depth[:, None])
        depths.append(1.0 / inv_depth)

    if not pixels:
        empty = np.zeros(0, np.int64)
        return Fragments(empty, empty, np.zeros((0, 3)), np.zeros(0))
    pix = np.concatenate(pixels)
    face = np.concatenate(winners)
    bary = np.concatenate(barys)
    dep = np.concatenate(depths)
    # z-buffer: sort by (pixel, depth) and keep the first fragment of each pixel.
    order = np.lexsort((dep, pix))
    pix = pix[order]
    first = np.ones(len(pix), bool)
    first[1:] = pix[1:] != pix[:-1]
    sel = order[first]
    return Fragments(pix[first], face[sel], bary[sel], dep[sel])


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    intrinsics,
    c2w: np.ndarray,
    height: int,
    width: int,
    *,
    vertex_colors: np.ndarray | None = None,
    uv: np.ndarray | None = None,
    uv_faces: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    sh: np.ndarray | None = None,
    landmark_indices: np.ndarray | None = None,
    background=(0.0, 0.0, 0.0),
    supersample: int = 1,
) -> Render:
    """Render a shaded triangle mesh: RGB, mask, depth and projected landmarks.

    ``rgb = albedo * (sh^T Y(n))`` (Lambertian under SH irradiance), with ``n`` the interpolated
    vertex normal turned toward the camera (so inner surfaces such as the mouth cavity shade
    like outer ones). ``albedo`` comes from ``vertex_colors`` or from ``texture`` sampled at the
    interpolated ``uv``; white when neither is given.

    Args:
      vertices: ``[V, 3]`` world-space vertices.
      faces: ``[F, 3]`` int vertex indices.
      intrinsics: ``[4]`` ``(fx, fy, cx, cy)`` in pixels of the ``height x width`` image.
      c2w: ``[4, 4]`` or ``[3, 4]`` camera-to-world (camera looks down ``-z``, ``+y`` up).
      height, width: output resolution.
      vertex_colors: ``[V, 3]`` per-vertex albedo in ``[0, 1]``.
      uv: ``[T, 2]`` texture coordinates (OBJ convention, ``v = 0`` at the texture's bottom).
      uv_faces: ``[F, 3]`` indices into ``uv`` per face corner (default: ``faces``).
      texture: ``[Ht, Wt, 3]`` float texture in ``[0, 1]`` (or uint8, rescaled).
      sh: ``[9, 3]`` SH irradiance coefficients (:func:`sh_basis` order); ``None`` = unlit
        (albedo shown as is).
      landmark_indices: ``[L]`` vertex indices to project.
      background: ``[3]`` RGB of uncovered pixels.
      supersample: render at ``supersample`` times the resolution and box-filter down
        (anti-aliased edges, fractional mask).

    Returns:
      :class:`Render`.
    """
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"render_mesh: vertices must be [V, 3], got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"render_mesh: faces must be [F, 3], got {faces.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(
            f"render_mesh: face indices span [{faces.min()}, {faces.max()}] but there are "
            f"{len(vertices)} vertices"
        )
    if texture is not None and uv is None:
        raise ValueError("render_mesh: a texture needs uv coordinates (pass uv=[T, 2])")
    s = int(supersample)
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    # Supersampled pixel (i', j') covers [j'/s, (j'+1)/s) of the output pixel grid.
    hi_intr = np.array([fx * s, fy * s, cx * s, cy * s])
    hi_h, hi_w = height * s, width * s
    uv_px, vdepth = project(vertices, hi_intr, c2w)
    frags = rasterize(uv_px, vdepth, faces, hi_h, hi_w)

    num = hi_h * hi_w
    color = np.empty((num, 3), np.float32)
    color[:] = np.asarray(background, np.float32)
    mask = np.zeros(num, np.float32)
    depth = np.zeros(num, np.float32)
    face_index = np.full(num, -1, np.int32)
    if len(frags.pixel):
        corners = faces[frags.face]  # [P, 3]
        w = frags.bary[:, :, None]
        if texture is not None:
            tex = np.asarray(texture)
            tex = tex.astype(np.float32) / 255.0 if tex.dtype == np.uint8 else tex
            corner_uv = np.asarray(uv, np.float64)[
                (faces if uv_faces is None else np.asarray(uv_faces))[frags.face]
            ]
            albedo = sample_texture(tex, (corner_uv * w).sum(1))
        elif vertex_colors is not None:
            albedo = (np.asarray(vertex_colors, np.float32)[corners] * w).sum(1)
        else:
            albedo = np.ones((len(frags.pixel), 3), np.float32)
        if sh is not None:
            normals = (vertex_normals(vertices, faces)[corners] * w).sum(1)
            normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
            # Turn normals toward the viewer: view ray = pixel point - camera centre.
            c2w_arr = np.asarray(c2w, np.float64)
            py, px = np.divmod(frags.pixel, hi_w)
            dirs_cam = np.stack(
                [(px + 0.5 - hi_intr[2]) / hi_intr[0], -(py + 0.5 - hi_intr[3]) / hi_intr[1]], -1
            )
            dirs = dirs_cam @ c2w_arr[:3, :2].T - c2w_arr[:3, 2]
            flip = np.sum(normals * dirs, -1) > 0
            normals[flip] *= -1
            shading = sh_basis(normals) @ np.asarray(sh, np.float64)
            albedo = albedo * np.maximum(shading, 0.0).astype(np.float32)
        color[frags.pixel] = albedo
        mask[frags.pixel] = 1.0
        depth[frags.pixel] = frags.depth
        face_index[frags.pixel] = frags.face

    color = np.clip(color, 0.0, 1.0).reshape(hi_h, hi_w, 3)
    mask = mask.reshape(hi_h, hi_w)
    depth = depth.reshape(hi_h, hi_w)
    face_index = face_index.reshape(hi_h, hi_w)
    if s > 1:
        color = color.reshape(height, s, width, s, 3).mean((1, 3))
        cover = mask.reshape(height, s, width, s).sum((1, 3))
        depth = depth.reshape(height, s, width, s).sum((1, 3)) / np.maximum(cover, 1)
        mask = cover / (s * s)
        face_index = face_index[::s, ::s]

    if landmark_indices is not None:
        landmarks, _ = project(vertices[np.asarray(landmark_indices)], intrinsics, c2w)
    else:
        landmarks = np.zeros((0, 2))
    return Render(
        rgb=color.astype(np.float32),
        mask=mask.astype(np.float32),
        depth=depth.astype(np.float32),
        landmarks=landmarks.astype(np.float32),
        face_index=face_index,
    )
