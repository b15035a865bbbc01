"""Tests for the NumPy rasteriser (jaxhead.data.raster) and mesh readers (jaxhead.data.mesh_io)."""

import numpy as np
import pytest

from jaxhead.data import head_model, mesh_io, raster
from jaxhead.data.errors import CorruptFileError, MissingFileError


def _sphere(radius=0.1, n_lat=40, n_lon=48, centre=(0.0, 0.0, 0.0)):
    th = np.linspace(0.0, np.pi, n_lat)
    ph = np.linspace(0.0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    v = radius * np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1)
    v = v.reshape(-1, 3) + np.asarray(centre)
    faces = []
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            faces += [(a, a + n_lon, b), (b, a + n_lon, b + n_lon)]
    return v, np.asarray(faces)


def _head(jaw=0.0, blink=0.0):
    topo = head_model.build_topology(24, 36)
    rng = np.random.default_rng(0)
    template = head_model.neutral_vertices(topo, head_model.sample_shape(rng))
    verts = head_model.animate(topo, template, np.array([[jaw, 0.0, blink]]))[0]
    return topo, verts, head_model.vertex_albedo(topo, head_model.sample_albedo(rng))


def test_single_triangle_matches_reference_loop_and_analytic_depth():
    # A fronto-parallel triangle at depth 2: every covered pixel has depth exactly 2.
    c2w = np.eye(4)
    intr = np.array([40.0, 40.0, 16.0, 12.0])
    tri = np.array([[-0.6, -0.4, -2.0], [0.7, -0.2, -2.0], [0.1, 0.5, -2.0]])
    out = raster.render_mesh(tri, np.array([[0, 1, 2]]), intr, c2w, 24, 32)
    uv, _ = raster.project(tri, intr, c2w)
    ref = np.zeros((24, 32), bool)
    for i in range(24):  # slow reference: point-in-triangle at every pixel centre
        for j in range(32):
            p = np.array([j + 0.5, i + 0.5])
            e = [(uv[(k + 1) % 3] - uv[k], p - uv[k]) for k in range(3)]
            s = [a[0] * b[1] - a[1] * b[0] for a, b in e]
            ref[i, j] = all(x >= 0 for x in s) or all(x <= 0 for x in s)
    np.testing.assert_array_equal(out.mask > 0, ref)
    np.testing.assert_allclose(out.depth[ref], 2.0, rtol=1e-6)
    assert ref.sum() > 50


def test_projection_inverts_the_nerf_ray_generator():
    rng = np.random.default_rng(1)
    c2w = raster.orbit_cameras([25.0], [-10.0], 0.7)[0]
    intr = np.array([150.0, 140.0, 60.0, 70.0])
    pix = rng.uniform(0, 120, (20, 2))
    dist = rng.uniform(0.3, 1.0, 20)
    # NeRF convention: direction ((u - cx)/fx, -(v - cy)/fy, -1) in camera space.
    d_cam = np.stack(
        [(pix[:, 0] - intr[2]) / intr[0], -(pix[:, 1] - intr[3]) / intr[1], -np.ones(20)], -1
    )
    points = c2w[:3, 3] + (d_cam * dist[:, None]) @ c2w[:3, :3].T
    uv, depth = raster.project(points, intr, c2w)
    np.testing.assert_allclose(uv, pix, atol=1e-9)
    np.testing.assert_allclose(depth, dist, rtol=1e-9)


def test_sphere_mask_coverage_matches_the_analytic_disc():
    verts, faces = _sphere(0.1, 60, 72)
    d, size = 0.5, 128
    intr = raster.intrinsics_from_fov(30.0, size, size)
    out = raster.render_mesh(verts, faces, intr, raster.look_at([0, 0, d], [0, 0, 0]), size, size)
    # Silhouette of a sphere: a disc of angular radius asin(r / d).
    disc_r = intr[0] * np.tan(np.arcsin(0.1 / d))
    expected = np.pi * disc_r**2 / size**2
    assert abs(out.mask.mean() - expected) / expected < 0.03
    # Depth at the centre pixel is d - r.
    assert abs(out.depth[size // 2, size // 2] - (d - 0.1)) < 1e-3


def test_lighting_changes_shading_but_not_mask():
    topo, verts, albedo = _head()
    intr = raster.intrinsics_from_fov(22.0, 96, 96)
    c2w = raster.look_at([0, 0, 0.6], [0, 0, 0])
    left = raster.sh_from_lights((0.3,) * 3, (-1.0, 0.2, 0.5), (0.8,) * 3)
    right = raster.sh_from_lights((0.3,) * 3, (1.0, 0.2, 0.5), (0.8,) * 3)
    a = raster.render_mesh(verts, topo.faces, intr, c2w, 96, 96, vertex_colors=albedo, sh=left)
    b = raster.render_mesh(verts, topo.faces, intr, c2w, 96, 96, vertex_colors=albedo, sh=right)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.depth, b.depth)
    fg = a.mask > 0
    lum_a, lum_b = a.rgb.mean(-1), b.rgb.mean(-1)
    # The light from the subject's left (+x, image right) brightens the image's right half.
    cols = np.arange(96)[None, :].repeat(96, 0)
    assert lum_a[fg & (cols < 40)].mean() > lum_a[fg & (cols > 56)].mean() + 0.05
    assert lum_b[fg & (cols > 56)].mean() > lum_b[fg & (cols < 40)].mean() + 0.05
    assert np.abs(lum_a - lum_b)[fg].mean() > 0.05


def test_viewpoint_moves_the_silhouette_as_expected():
    # A sphere off the orbit centre: its silhouette centroid is its projected centre.
    centre = np.array([0.08, 0.03, 0.0])
    verts, faces = _sphere(0.05, 40, 48, centre)
    intr = raster.intrinsics_from_fov(30.0, 128, 128)
    for c2w in raster.orbit_cameras([-40.0, 0.0, 35.0], [10.0, 0.0, -20.0], 0.6):
        out = raster.render_mesh(verts, faces, intr, c2w, 128, 128)
        ii, jj = np.nonzero(out.mask)
        (uv,), _ = raster.project(centre[None], intr, c2w)
        np.testing.assert_allclose([jj.mean() + 0.5, ii.mean() + 0.5], uv, atol=0.7)
    # The head is left-right symmetric: yaw +30 is the mirror image of yaw -30.
    topo, head, _ = _head()
    plus, minus = raster.orbit_cameras([30.0, -30.0], [0.0, 0.0], 0.6)
    a = raster.render_mesh(head, topo.faces, intr, plus, 128, 128).mask > 0
    b = raster.render_mesh(head, topo.faces, intr, minus, 128, 128).mask > 0
    iou = (a & b[:, ::-1]).sum() / (a | b[:, ::-1]).sum()
    assert iou > 0.97
    assert (a & b).sum() / (a | b).sum() < 0.95  # but the two views do differ


def test_landmarks_land_on_the_rendered_surface_within_a_pixel():
    topo, verts, albedo = _head(jaw=0.3)
    intr = raster.intrinsics_from_fov(22.0, 128, 128)
    c2w = raster.look_at([0, 0, 0.6], [0, 0, 0])
    out = raster.render_mesh(
        verts, topo.faces, intr, c2w, 128, 128, landmark_indices=topo.landmark_indices
    )
    uv, depth = raster.project(verts[topo.landmark_indices], intr, c2w)
    np.testing.assert_allclose(out.landmarks, uv, atol=1e-4)
    # Frontal landmarks (brows, nose, eyes, mouth): the rendered surface within one pixel of each
    # projected landmark is at the landmark's own depth (it is visible and where we say it is).
    hits = 0
    for k in range(17, 68):
        j, i = np.floor(uv[k]).astype(int)
        window = out.depth[i - 1 : i + 2, j - 1 : j + 2]
        window = window[window > 0]
        if len(window) and np.abs(window - depth[k]).min() < 0.003:
            hits += 1
    assert hits >= 48  # of 51; a few lip-slit points may sit on an occluding edge
    assert (out.mask[np.floor(uv[:, 1]).astype(int), np.floor(uv[:, 0]).astype(int)] > 0).all()


def test_sh_from_lights_approximates_ambient_plus_clamped_cosine():
    rng = np.random.default_rng(2)
    n = rng.standard_normal((500, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    d = np.array([0.3, 0.5, 0.8])
    sh = raster.sh_from_lights((0.2, 0.2, 0.2), d, (1.0, 1.0, 1.0))
    approx = raster.sh_basis(n) @ sh[:, 0]
    exact = 0.2 + np.maximum(n @ (d / np.linalg.norm(d)), 0.0)
    assert np.abs(approx - exact).max() < 0.1  # band-2 truncation error of max(0, cos)
    assert np.abs(approx - exact).mean() < 0.05


def test_supersampling_gives_fractional_edges_and_same_coverage():
    verts, faces = _sphere(0.1, 40, 48)
    intr = raster.intrinsics_from_fov(30.0, 64, 64)
    c2w = raster.look_at([0, 0, 0.5], [0, 0, 0])
    hard = raster.render_mesh(verts, faces, intr, c2w, 64, 64)
    soft = raster.render_mesh(verts, faces, intr, c2w, 64, 64, supersample=3)
    assert ((soft.mask > 0) & (soft.mask < 1)).sum() > 20
    assert abs(soft.mask.mean() - hard.mask.mean()) < 0.005
    assert soft.rgb.shape == (64, 64, 3) and soft.rgb.dtype == np.float32


def test_uv_texture_is_sampled_with_obj_orientation():
    # A quad facing the camera textured with top half red, bottom half blue (v = 1 at the top).
    verts = np.array([[-1, -1, -3], [1, -1, -3], [1, 1, -3], [-1, 1, -3]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    tex = np.zeros((8, 8, 3), np.float32)
    tex[:4, :, 0] = 1.0  # image rows 0-3 (top) red
    tex[4:, :, 2] = 1.0
    out = raster.render_mesh(verts, faces, [20, 20, 16, 16], np.eye(4), 32, 32, uv=uv, texture=tex)
    assert out.rgb[10, 16, 0] > 0.9 and out.rgb[22, 16, 2] > 0.9


def test_bad_render_input_is_one_clear_error():
    with pytest.raises(ValueError, match="face indices"):
        raster.render_mesh(np.zeros((3, 3)), np.array([[0, 1, 5]]), [1, 1, 0, 0], np.eye(4), 4, 4)
    with pytest.raises(ValueError, match="uv"):
        raster.render_mesh(
            np.zeros((3, 3)),
            np.array([[0, 1, 2]]),
            [1, 1, 0, 0],
            np.eye(4),
            4,
            4,
            texture=np.zeros((2, 2, 3)),
        )


def test_mesh_io_reads_ascii_ply_and_obj_with_quads(tmp_path):
    ply = tmp_path / "quad.ply"
    ply.write_text(
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
        "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n"
    )
    mesh = mesh_io.read_mesh(ply)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    obj = tmp_path / "quad.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 1\nf 1/1 2/2 3/1 -1/2\n")
    mesh = mesh_io.read_mesh(obj)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(mesh.uv_faces, [[0, 1, 0], [0, 0, 1]])
    bad = tmp_path / "bad.ply"
    bad.write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\n"
        b"property float y\nproperty float z\nelement face 0\n"
        b"property list uchar int vertex_indices\nend_header\n\x00\x00"
    )
    with pytest.raises(CorruptFileError, match="bad.ply"):
        mesh_io.read_mesh(bad)
    with pytest.raises(MissingFileError, match="nothere.obj"):
        mesh_io.read_mesh(tmp_path / "nothere.obj")


def test_flame_template_renders_textured_from_several_views(shared_data, tmp_path):
    voca = shared_data / "voca"
    if not (voca / "texture_mesh.obj").is_file():
        pytest.skip(f"{voca} has no FLAME template")
    ply = mesh_io.read_ply(voca / "FLAME_sample.ply")
    obj = mesh_io.read_obj(voca / "texture_mesh.obj")
    assert ply.vertices.shape == obj.vertices.shape == (5023, 3)
    np.testing.assert_array_equal(ply.faces, obj.faces)
    assert obj.texture.shape[2] == 3 and obj.uv_faces.shape == obj.faces.shape
    centre = obj.vertices.mean(0)
    intr = raster.intrinsics_from_fov(20.0, 128, 128)
    sh = raster.sh_from_lights((0.5,) * 3, (0.3, 0.5, 1.0), (0.6,) * 3)
    lum = []
    for c2w in raster.orbit_cameras([-60.0, 0.0, 60.0], [0.0, 15.0, 0.0], 0.9, centre):
        out = raster.render_mesh(
            obj.vertices,
            obj.faces,
            intr,
            c2w,
            128,
            128,
            uv=obj.uv,
            uv_faces=obj.uv_faces,
            texture=obj.texture,
            sh=sh,
        )
        assert 0.25 < out.mask.mean() < 0.7  # the head fills a good part of the frame
        fg = out.mask > 0
        # Textured, not flat: hair, skin, eyes and lips give a wide spread of colours.
        assert out.rgb[fg].std(0).mean() > 0.08
        lum.append(out.rgb[fg].mean())
    # The mesh is left-right symmetric enough that the two side views cover similar areas.
    assert abs(lum[0] - lum[2]) < 0.2
