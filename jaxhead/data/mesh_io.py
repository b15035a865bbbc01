"""Read triangle meshes: PLY (ASCII or binary) and Wavefront OBJ with its MTL texture.

Enough of both formats for the FLAME template VOCASET uses (``FLAME_sample.ply``,
``texture_mesh.obj`` + ``.mtl`` + ``.png``) and for meshes other tools write: vertex positions,
triangle (or polygon, fan-triangulated) faces, OBJ texture coordinates with their own per-corner
indices, and the diffuse texture image named by the MTL's ``map_Kd``.
"""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import numpy as np

from jaxhead.data.errors import CorruptFileError, MissingFileError

__all__ = ["Mesh", "read_ply", "read_obj", "read_mesh"]

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


class Mesh(NamedTuple):
    """A triangle mesh.

    vertices: ``[V, 3]`` float32 positions.
    faces: ``[F, 3]`` int32 vertex indices.
    uv: ``[T, 2]`` float32 texture coordinates (OBJ convention, ``v = 0`` at the bottom), or None.
    uv_faces: ``[F, 3]`` int32 indices into ``uv`` per face corner, or None.
    texture: ``[Ht, Wt, 3]`` float32 diffuse texture in ``[0, 1]``, or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    texture: np.ndarray | None = None


def _fan(polygons: list[list[int]]) -> np.ndarray:
    """Fan-triangulate polygons given as vertex-index lists -> ``[F, 3]``."""
    tris = [(p[0], p[k], p[k + 1]) for p in polygons for k in range(1, len(p) - 1)]
    return np.asarray(tris, np.int32).reshape(-1, 3)


def read_ply(path: str | os.PathLike) -> Mesh:
    """Read vertices and faces of a PLY file (ascii, binary_little_endian or binary_big_endian)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(path, why="PLY mesh")
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise CorruptFileError(path, "no 'ply ... end_header' header")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", "replace").splitlines()
    fmt = None
    elements: list[tuple[str, int, list[tuple]]] = []  # (name, count, properties)
    for line in header:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == "property" and elements:
            if tok[1] == "list":
                elements[-1][2].append(("list", tok[4], _PLY_TYPES[tok[2]], _PLY_TYPES[tok[3]]))
            else:
                elements[-1][2].append(("scalar", tok[2], _PLY_TYPES[tok[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise CorruptFileError(path, f"unknown PLY format {fmt!r}")

    vertices = faces = None
    try:
        if fmt == "ascii":
            tokens = data[body_start:].split()
            pos = 0
            for name, count, props in elements:
                if all(p[0] == "scalar" for p in props):
                    n = len(props)
                    block = np.asarray(tokens[pos : pos + n * count], np.float64).reshape(count, n)
                    pos += n * count
                    if name == "vertex":
                        names = [p[1] for p in props]
                        vertices = block[:, [names.index(c) for c in "xyz"]]
                else:
                    polys = []
                    for _ in range(count):
                        k = int(tokens[pos])
                        polys.append([int(t) for t in tokens[pos + 1 : pos + 1 + k]])
                        pos += 1 + k
                    if name == "face":
                        faces = _fan(polys)
        else:
            endian = "<" if fmt == "binary_little_endian" else ">"
            pos = body_start
            for name, count, props in elements:
                if all(p[0] == "scalar" for p in props):
                    dtype = np.dtype([(p[1], endian + p[2]) for p in props])
                    block = np.frombuffer(data, dtype, count, pos)
                    pos += dtype.itemsize * count
                    if name == "vertex":
                        vertices = np.stack([block[c] for c in "xyz"], -1)
                elif len(props) == 1 and name == "face":
                    _, _, count_t, index_t = props[0]
                    # Fast path: all faces are triangles (checked below), as in FLAME.
                    dtype = np.dtype([("n", endian + count_t), ("idx", endian + index_t, (3,))])
                    block = np.frombuffer(data, dtype, count, pos)
                    if not (block["n"] == 3).all():
                        raise CorruptFileError(path, "only triangle faces are supported in binary")
                    faces = block["idx"].astype(np.int32)
                    pos += dtype.itemsize * count
                else:
                    raise CorruptFileError(path, f"unsupported list element {name!r}")
    except (ValueError, IndexError) as err:
        if isinstance(err, CorruptFileError):
            raise
        raise CorruptFileError(path, f"truncated or malformed body ({err})") from err
    if vertices is None or faces is None:
        raise CorruptFileError(path, "needs both a 'vertex' and a 'face' element")
    return Mesh(vertices.astype(np.float32), faces.astype(np.int32))


def _read_texture(obj_path: pathlib.Path, mtl_name: str) -> np.ndarray | None:
    """Diffuse texture named by ``map_Kd`` in the MTL file next to the OBJ, or None."""
    mtl_path = obj_path.parent / mtl_name
    if not mtl_path.is_file():
        raise MissingFileError(mtl_path, why=f"material library named by {obj_path.name}")
    image_name = None
    for line in mtl_path.read_text().splitlines():
        tok = line.split()
        if tok and tok[0] == "map_Kd":
            image_name = tok[-1]
            break
    if image_name is None:
        return None
    image_path = mtl_path.parent / image_name
    if not image_path.is_file():
        raise MissingFileError(image_path, why=f"texture named by map_Kd in {mtl_path.name}")
    from PIL import Image

    with Image.open(image_path) as image:
        return np.asarray(image.convert("RGB"), np.float32) / 255.0


def read_obj(path: str | os.PathLike, load_texture: bool = True) -> Mesh:
    """Read a Wavefront OBJ: ``v``, ``vt``, ``f v/vt[/vn]`` lines and the ``mtllib`` texture."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(path, why="OBJ mesh")
    vertices, uvs, polys, uv_polys = [], [], [], []
    mtl_name = None
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        tok = line.split()
        if not tok:
            continue
        try:
            if tok[0] == "v":
                vertices.append([float(t) for t in tok[1:4]])
            elif tok[0] == "vt":
                uvs.append([float(t) for t in tok[1:3]])
            elif tok[0] == "f":
                corners = [c.split("/") for c in tok[1:]]
                # OBJ indices are 1-based; negative ones count back from the end.
                polys.append(
                    [int(c[0]) - 1 if int(c[0]) > 0 else len(vertices) + int(c[0]) for c in corners]
                )
                if all(len(c) > 1 and c[1] for c in corners):
                    uv_polys.append(
                        [int(c[1]) - 1 if int(c[1]) > 0 else len(uvs) + int(c[1]) for c in corners]
                    )
            elif tok[0] == "mtllib":
                mtl_name = tok[1]
        except (ValueError, IndexError) as err:
            raise CorruptFileError(path, f"line {lineno} {line!r} is malformed ({err})") from err
    if not vertices or not polys:
        raise CorruptFileError(path, "no 'v' or no 'f' lines")
    faces = _fan(polys)
    uv = uv_faces = None
    if uvs and len(uv_polys) == len(polys):
        uv = np.asarray(uvs, np.float32)
        uv_faces = _fan(uv_polys)
    texture = _read_texture(path, mtl_name) if (load_texture and mtl_name) else None
    return Mesh(np.asarray(vertices, np.float32), faces, uv, uv_faces, texture)


def read_mesh(path: str | os.PathLike) -> Mesh:
    """Read a ``.ply`` or ``.obj`` mesh by extension."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix == ".ply":
        return read_ply(path)
    if suffix == ".obj":
        return read_obj(path)
    raise CorruptFileError(path, f"unknown mesh extension {suffix!r}; expected .ply or .obj")
