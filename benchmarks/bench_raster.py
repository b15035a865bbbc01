"""Render time of the NumPy mesh rasteriser (jaxhead.data.raster).

    python benchmarks/bench_raster.py [--repeats 20] [--save-images docs/images]

Renders a ~5k-vertex mesh (a UV sphere and, when ../shared/data/voca is present, the textured
FLAME template with 5023 vertices) at several resolutions, and prints the median time per frame.
The target is well under 100 ms for a 128x128 frame on 2 CPU cores, so that rendering the
dataset once (it is cached) never dominates a run. ``--save-images`` writes a few small PNGs of the
synthetic heads and the FLAME template for people to look at.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import numpy as np

from jaxhead.data import head_model, mesh_io, raster

SHARED = pathlib.Path(
    os.environ.get(
        "JAXHEAD_SHARED_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


def uv_sphere(n_lat=70, n_lon=72, radius=0.1):
    th = np.linspace(0, np.pi, n_lat)
    ph = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    v = radius * np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1)
    idx = np.arange(n_lat * n_lon).reshape(n_lat, n_lon)
    a, b = idx[:-1], np.roll(idx, -1, 1)[:-1]
    c, d = idx[1:], np.roll(idx, -1, 1)[1:]
    faces = np.concatenate([np.stack([a, c, b], -1), np.stack([b, c, d], -1)]).reshape(-1, 3)
    return v.reshape(-1, 3), faces


def time_render(repeats, *args, **kwargs):
    raster.render_mesh(*args, **kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        raster.render_mesh(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def save_images(folder: pathlib.Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    topo = head_model.build_topology()
    rng = np.random.default_rng(7)
    intr = raster.intrinsics_from_fov(22.0, 128, 128)
    sh = raster.sh_from_lights((0.45,) * 3, (0.4, 0.5, 1.0), (0.6,) * 3)
    expressions = np.array([[0, 0, 0], [0.9, 0, 0], [0.4, 1, 0], [0, 0, 1]], float)
    rows = []
    for _ in range(3):
        template = head_model.neutral_vertices(topo, head_model.sample_shape(rng))
        albedo = head_model.vertex_albedo(topo, head_model.sample_albedo(rng))
        tiles = []
        frames = head_model.animate(topo, template, expressions)
        cams = [raster.look_at([0, 0, 0.6], [0, 0, 0])] * 4
        cams += list(raster.orbit_cameras([-45.0, 70.0], [10.0, 0.0], 0.6))
        for k, c2w in enumerate(cams):
            out = raster.render_mesh(
                frames[min(k, 3) if k < 4 else 1],
                topo.faces,
                intr,
                c2w,
                128,
                128,
                vertex_colors=albedo,
                sh=sh,
                background=(1, 1, 1),
                supersample=2,
            )
            tiles.append(out.rgb)
        rows.append(np.concatenate(tiles, 1))
    image = (np.concatenate(rows, 0) * 255).astype(np.uint8)
    Image.fromarray(image).save(folder / "synthetic_heads.png", optimize=True)
    obj = SHARED / "voca" / "texture_mesh.obj"
    if obj.is_file():
        mesh = mesh_io.read_obj(obj)
        centre = mesh.vertices.mean(0)
        tiles = []
        for c2w in raster.orbit_cameras([-60, -25, 0, 25, 60], [0, 5, 15, 5, 0], 0.9, centre):
            out = raster.render_mesh(
                mesh.vertices,
                mesh.faces,
                raster.intrinsics_from_fov(20.0, 128, 128),
                c2w,
                128,
                128,
                uv=mesh.uv,
                uv_faces=mesh.uv_faces,
                texture=mesh.texture,
                sh=sh,
                background=(1, 1, 1),
                supersample=2,
            )
            tiles.append(out.rgb)
        image = (np.concatenate(tiles, 1) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "flame_template_views.png", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--save-images", type=pathlib.Path, default=None)
    args = parser.parse_args()

    sh = raster.sh_from_lights()
    cases = []
    verts, faces = uv_sphere()
    colors = np.full_like(verts, 0.7)
    cases.append(("sphere, vertex colours", verts, faces, dict(vertex_colors=colors), 0.5))
    obj = SHARED / "voca" / "texture_mesh.obj"
    if obj.is_file():
        mesh = mesh_io.read_obj(obj)
        kw = dict(uv=mesh.uv, uv_faces=mesh.uv_faces, texture=mesh.texture)
        cases.append(
            ("FLAME, UV texture", mesh.vertices - mesh.vertices.mean(0), mesh.faces, kw, 0.9)
        )
    topo = head_model.build_topology()
    head = head_model.neutral_vertices(topo, np.zeros(head_model.NUM_SHAPE))
    alb = head_model.vertex_albedo(topo, np.full(head_model.NUM_ALBEDO, 0.5))
    cases.append(("synthetic head", head, topo.faces, dict(vertex_colors=alb), 0.6))

    print(f"{'mesh':24s} {'V':>6s} {'F':>6s} {'res':>9s} {'ms/frame':>9s}")
    for name, v, f, kw, dist in cases:
        c2w = raster.look_at([0, 0, dist], [0, 0, 0])
        for res in (128, 256, 512):
            intr = raster.intrinsics_from_fov(22.0, res, res)
            ms = time_render(args.repeats, v, f, intr, c2w, res, res, sh=sh, **kw)
            print(f"{name:24s} {len(v):6d} {len(f):6d} {res:4d}x{res:<4d} {ms:9.1f}")
    if args.save_images is not None:
        save_images(args.save_images)
        print(f"wrote images to {args.save_images}")


if __name__ == "__main__":
    main()
