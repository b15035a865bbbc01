"""A procedural parametric head: identity shape, albedo, jaw/lips, eyelids and rigid head pose.

The synthetic dataset's heads are built here from scratch (no third-party assets). Like FLAME,
every identity shares one topology (:class:`HeadTopology`) and differs by a template
(:func:`neutral_vertices`) and an albedo (:func:`vertex_albedo`); expressions are offsets applied
to the template (:func:`animate`). Units and axes follow VOCASET/FLAME: metres, ``+y`` up, the
face looking down ``+z``, ``+x`` toward the subject's left; the head is ~0.2 m tall without neck.

Construction. The skin is a latitude/longitude grid ``(theta, phi)`` about a centre (``theta`` =
polar angle from the top of the head, ``phi`` = azimuth, 0 at the face) over an ellipsoid, with
Gaussian bumps for nose, brows, cheeks, chin, lips and ears, and a neck tube below. Two grid rows
are duplicated and left unconnected over a range of columns, cutting slits: the mouth (upper / lower
lip) and the two eyes (upper / lower lid). Behind each slit sits a patch parallel to the skin:
the dark mouth cavity with teeth, and eyeballs with iris and pupil. Expressions (in ``[0, 1]``):

* ``jaw_open`` rotates the lower face about a horizontal axis behind the mouth (up to
  ``JAW_MAX_DEG``) and parts the lips, so the cavity shows;
* ``lip_round`` narrows the mouth and pushes the lips forward (rounded vowels o/u, w);
* ``blink`` lowers the upper lids onto the lower lids (0 = open, 1 = closed).

Head pose is rigid: ``world = R @ v + t``, ``R`` from an axis-angle vector (:func:`pose_vertices`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "NUM_SHAPE",
    "NUM_ALBEDO",
    "SHAPE_NAMES",
    "ALBEDO_NAMES",
    "EXPRESSION_NAMES",
    "HeadTopology",
    "build_topology",
    "sample_shape",
    "sample_albedo",
    "neutral_vertices",
    "vertex_albedo",
    "animate",
    "axis_angle_to_matrix",
    "pose_vertices",
    "camera_in_head_frame",
]

SHAPE_NAMES = (
    "head_width",
    "head_height",
    "head_depth",
    "nose_size",
    "nose_width",
    "chin",
    "cheeks",
    "jaw_width",
    "brow",
    "lip_fullness",
)
NUM_SHAPE = len(SHAPE_NAMES)
ALBEDO_NAMES = (
    "skin_tone",
    "skin_redness",
    "hair_darkness",
    "hair_redness",
    "hairline",
    "lip_redness",
    "iris_hue",
    "brow_darkness",
)
NUM_ALBEDO = len(ALBEDO_NAMES)
EXPRESSION_NAMES = ("jaw_open", "lip_round", "blink")

JAW_MAX_DEG = 14.0  # wide-open "a": ~2 cm between the lips at the mouth's centre
_CENTRE = np.array([0.0, 0.01, -0.035])  # head centre (FLAME's origin sits near the nose base)
_RADII = np.array([0.078, 0.115, 0.10])  # ellipsoid semi-axes x, y, z (z toward the face)
_THETA_EYE = 84.0  # degrees from the top of the head
_THETA_MOUTH = 113.0
_THETA_NECK = 138.0  # last skin row before the neck tube
_EYE_PHI = (9.0, 33.0)  # azimuth range of each eye slit (mirrored for the right eye)
_MOUTH_PHI = 21.0  # half-width of the mouth slit in azimuth


@dataclasses.dataclass(frozen=True)
class HeadTopology:
    """Identity-independent mesh structure shared by all procedural heads.

    Attributes:
      faces: ``[F, 3]`` int32 triangles, counter-clockwise seen from outside.
      theta, phi: ``[V]`` float64 surface parameters in degrees (for patches: of the skin point
        they sit behind).
      part: ``[V]`` int8, 0 skin, 1 eyeball, 2 mouth cavity, 3 neck.
      below_mouth: ``[V]`` bool, on the lower-lip side of the mouth line (moves with the jaw).
      below_eye: ``[V]`` bool, on the lower-lid side of the eye line.
      landmark_indices: ``[68]`` int32 vertex indices in the 68-point (iBUG/dlib) layout:
        0-16 jaw contour, 17-26 brows, 27-35 nose, 36-47 eyes (lid rows of the slits),
        48-59 outer lips, 60-67 inner lips (the slit's lip rows).
    """

    faces: np.ndarray
    theta: np.ndarray
    phi: np.ndarray
    part: np.ndarray
    below_mouth: np.ndarray
    below_eye: np.ndarray
    landmark_indices: np.ndarray

    @property
    def num_vertices(self) -> int:
        return len(self.theta)


# --------------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------------


def _columns(cols: int) -> np.ndarray:
    """Azimuths in degrees, denser at the face: phi = 180 (0.45 s + 0.55 s^3), s in [-1, 1)."""
    s = -1.0 + 2.0 * np.arange(cols) / cols
    return 180.0 * (0.45 * s + 0.55 * s**3)


def _snap(values: np.ndarray, target: float) -> float:
    return float(values[np.argmin(np.abs(values - target))])


def _grid_faces(index: np.ndarray, skip=None, wrap=True) -> list[np.ndarray]:
    """Triangles of a ``[R, C]`` vertex-index grid; ``skip[r, c]`` drops the quad (r, c)."""
    rows, cols = index.shape
    out = []
    for r in range(rows - 1):
        for c in range(cols if wrap else cols - 1):
            if skip is not None and skip[r, c]:
                continue
            a, b = index[r, c], index[r + 1, c]
            cc = (c + 1) % cols
            c_, d = index[r, cc], index[r + 1, cc]
            out.append((a, b, c_))
            out.append((c_, b, d))
    return out


def build_topology(rows: int = 36, cols: int = 48) -> HeadTopology:
    """Build the shared head topology.

    Args:
      rows: skin rows over the face region (about a third more cover the cranium and neck).
      cols: columns around the head (denser toward the face).

    Returns:
      :class:`HeadTopology`; the default has about 2.1k vertices.
    """
    phi_cols = _columns(cols)
    mouth_phi = _snap(phi_cols, _MOUTH_PHI)
    eye_lo, eye_hi = _snap(phi_cols, _EYE_PHI[0]), _snap(phi_cols, _EYE_PHI[1])
    # Rows: sparse over the cranium, dense over the face, exact rows at the eye and mouth lines.
    n_face = max(rows, 12)
    n_top = max(n_face // 4, 4)
    seg = [
        np.linspace(8.0, 60.0, n_top, endpoint=False),
        np.linspace(60.0, _THETA_EYE, round(n_face * 0.3), endpoint=False),
        np.linspace(_THETA_EYE, _THETA_MOUTH, round(n_face * 0.37), endpoint=False),
        np.linspace(_THETA_MOUTH, _THETA_NECK, n_face - round(n_face * 0.3) - round(n_face * 0.37)),
    ]
    theta_rows = np.concatenate(seg)
    neck_rows = np.array([145.0, 152.0, 160.0, 170.0])
    # Duplicate the eye and mouth rows: the second copy is the lower lid / lower lip.
    eye_row = int(np.argmin(np.abs(theta_rows - _THETA_EYE)))
    mouth_row = int(np.argmin(np.abs(theta_rows - _THETA_MOUTH)))
    row_theta = list(theta_rows)
    row_kind = [0] * len(row_theta)  # 0 plain, 1 lower copy of eye row, 2 lower copy of mouth row
    row_theta.insert(mouth_row + 1, theta_rows[mouth_row])
    row_kind.insert(mouth_row + 1, 2)
    row_theta.insert(eye_row + 1, theta_rows[eye_row])
    row_kind.insert(eye_row + 1, 1)
    row_theta += list(neck_rows)
    row_kind += [3] * len(neck_rows)
    row_theta = np.asarray(row_theta)
    row_kind = np.asarray(row_kind)
    n_rows = len(row_theta)

    grid = np.arange(n_rows * cols).reshape(n_rows, cols)
    theta = np.repeat(row_theta, cols)
    phi = np.tile(phi_cols, n_rows)
    kind = np.repeat(row_kind, cols)
    part = np.where(kind == 3, 3, 0)
    eye_upper_row = int(np.nonzero(row_kind == 1)[0][0]) - 1
    mouth_upper_row = int(np.nonzero(row_kind == 2)[0][0]) - 1
    below_eye = (theta > _THETA_EYE + 1e-9) | (kind == 1)
    below_mouth = (theta > _THETA_MOUTH + 1e-9) | (kind == 2)

    # Slits: no quads between the duplicated rows where both columns lie inside the opening.
    skip = np.zeros((n_rows - 1, cols), bool)
    nxt = np.roll(phi_cols, -1)
    in_mouth = (np.abs(phi_cols) <= mouth_phi + 1e-9) & (np.abs(nxt) <= mouth_phi + 1e-9)
    in_eye = (
        (np.abs(phi_cols) >= eye_lo - 1e-9)
        & (np.abs(phi_cols) <= eye_hi + 1e-9)
        & (np.abs(nxt) >= eye_lo - 1e-9)
        & (np.abs(nxt) <= eye_hi + 1e-9)
        & (np.sign(phi_cols) == np.sign(nxt))
    )
    skip[mouth_upper_row] = in_mouth
    skip[eye_upper_row] = in_eye
    faces = _grid_faces(grid, skip)
    # Cap the top with a fan around a pole vertex.
    pole = n_rows * cols
    faces += [(pole, grid[0, c], grid[0, (c + 1) % cols]) for c in range(cols)]
    theta = np.append(theta, 0.0)
    phi = np.append(phi, 0.0)
    part = np.append(part, 0)
    below_eye = np.append(below_eye, False)
    below_mouth = np.append(below_mouth, False)

    def patch(th_range, ph_range, n_th, n_ph, kind_id):
        nonlocal theta, phi, part, below_eye, below_mouth, faces
        th = np.linspace(*th_range, n_th)
        ph = np.linspace(*ph_range, n_ph)
        start = len(theta)
        idx = start + np.arange(n_th * n_ph).reshape(n_th, n_ph)
        t, p = np.meshgrid(th, ph, indexing="ij")
        theta = np.append(theta, t.ravel())
        phi = np.append(phi, p.ravel())
        part = np.append(part, np.full(t.size, kind_id))
        below_eye = np.append(below_eye, t.ravel() > _THETA_EYE)
        below_mouth = np.append(below_mouth, t.ravel() > _THETA_MOUTH)
        faces += _grid_faces(idx, wrap=False)

    eye_th = (_THETA_EYE - 6.0, _THETA_EYE + 5.0)
    patch(eye_th, (-eye_hi - 2.0, -eye_lo + 2.0), 10, 15, 1)
    patch(eye_th, (eye_lo - 2.0, eye_hi + 2.0), 10, 15, 1)
    patch((_THETA_MOUTH - 8.0, _THETA_MOUTH + 16.0), (-mouth_phi - 4, mouth_phi + 4), 13, 13, 2)

    # 68-point landmarks: nearest skin vertex (in parameter space) of the right row copy.
    skin = part == 0

    def nearest(th, ph, mask=None):
        m = skin if mask is None else skin & mask
        d = (theta - th) ** 2 + (phi - ph) ** 2
        return int(np.argmin(np.where(m, d, np.inf)))

    upper_eye = skin & (np.isclose(theta, theta_rows[eye_row])) & ~below_eye
    lower_eye = skin & (np.isclose(theta, theta_rows[eye_row])) & below_eye
    upper_lip = skin & (np.isclose(theta, theta_rows[mouth_row])) & ~below_mouth
    lower_lip = skin & (np.isclose(theta, theta_rows[mouth_row])) & below_mouth
    lm = []
    for t in np.linspace(-1.0, 1.0, 17):  # 0-16 jaw contour, image left (subject's right) first
        lm.append(nearest(95.0 + 40.0 * (1 - t * t), 75.0 * t))
    for ph in np.linspace(-38.0, -8.0, 5):  # 17-21 right brow
        lm.append(nearest(71.0 - 3.0 * np.sin(np.pi * (ph + 38) / 30), ph))
    for ph in np.linspace(8.0, 38.0, 5):  # 22-26 left brow
        lm.append(nearest(71.0 - 3.0 * np.sin(np.pi * (ph - 8) / 30), ph))
    for th in np.linspace(80.0, 98.0, 4):  # 27-30 nose bridge to tip
        lm.append(nearest(th, 0.0))
    for ph in np.linspace(-8.0, 8.0, 5):  # 31-35 nose base
        lm.append(nearest(103.0 - 1.5 * np.cos(np.pi * ph / 16), ph))
    e_mid, e_w = 0.5 * (eye_lo + eye_hi), eye_hi - eye_lo
    for sign in (-1.0, 1.0):  # 36-41 right eye, 42-47 left eye, clockwise in the image
        outer, inner = sign * eye_hi, sign * eye_lo
        a, b = sign * (e_mid + e_w / 6), sign * (e_mid - e_w / 6)
        if sign < 0:
            ring = [(outer, upper_eye), (a, upper_eye), (b, upper_eye), (inner, upper_eye)]
            ring += [(b, lower_eye), (a, lower_eye)]
        else:
            ring = [(inner, upper_eye), (b, upper_eye), (a, upper_eye), (outer, upper_eye)]
            ring += [(a, lower_eye), (b, lower_eye)]
        lm += [nearest(_THETA_EYE, p, m) for p, m in ring]
    outer_phi = _snap(phi_cols, mouth_phi + 4.0)
    lm.append(nearest(_THETA_MOUTH, -outer_phi, upper_lip))  # 48
    for f in (-0.66, -0.33, 0.0, 0.33, 0.66):  # 49-53 upper outer lip
        lm.append(nearest(_THETA_MOUTH - 5.0, f * mouth_phi))
    lm.append(nearest(_THETA_MOUTH, outer_phi, upper_lip))  # 54
    for f in (0.66, 0.33, 0.0, -0.33, -0.66):  # 55-59 lower outer lip
        lm.append(nearest(_THETA_MOUTH + 6.0, f * mouth_phi))
    lm.append(nearest(_THETA_MOUTH, -mouth_phi, upper_lip))  # 60 inner corner
    for f in (-0.5, 0.0, 0.5):  # 61-63 upper inner lip
        lm.append(nearest(_THETA_MOUTH, f * mouth_phi, upper_lip))
    lm.append(nearest(_THETA_MOUTH, mouth_phi, upper_lip))  # 64
    for f in (0.5, 0.0, -0.5):  # 65-67 lower inner lip
        lm.append(nearest(_THETA_MOUTH, f * mouth_phi, lower_lip))

    return HeadTopology(
        faces=np.asarray(faces, np.int32),
        theta=theta,
        phi=phi,
        part=part.astype(np.int8),
        below_mouth=below_mouth,
        below_eye=below_eye,
        landmark_indices=np.asarray(lm, np.int32),
    )


# --------------------------------------------------------------------------------------------
# Identity: shape and albedo
# --------------------------------------------------------------------------------------------


def sample_shape(rng: np.random.Generator) -> np.ndarray:
    """``[NUM_SHAPE]`` identity shape parameters, standard normal clipped to +-2.5."""
    return np.clip(rng.standard_normal(NUM_SHAPE), -2.5, 2.5)


def sample_albedo(rng: np.random.Generator) -> np.ndarray:
    """``[NUM_ALBEDO]`` albedo parameters, uniform in ``[0, 1]``."""
    return rng.uniform(0.0, 1.0, NUM_ALBEDO)


def _bump(theta, phi, th0, ph0, s_th, s_ph):
    return np.exp(-(((theta - th0) / s_th) ** 2) - ((phi - ph0) / s_ph) ** 2)


def _skin_points(theta, phi, shape):
    """Skin surface positions ``[N, 3]`` and unit outward directions at ``(theta, phi)``."""
    s = np.asarray(shape, np.float64)
    radii = _RADII * np.array([1 + 0.05 * s[0], 1 + 0.04 * s[1], 1 + 0.04 * s[2]])
    th = np.radians(np.minimum(theta, _THETA_NECK))
    ph = np.radians(phi)
    direction = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1)
    t, p = np.minimum(theta, _THETA_NECK), phi
    # Jaw narrowing toward the chin, and the features as radial Gaussian bumps (metres).
    lower = np.clip((t - 95.0) / 40.0, 0.0, 1.0)
    side = np.abs(np.sin(ph))
    narrow = 1.0 - lower * side * (0.18 - 0.04 * s[7])
    radial = (
        (0.017 + 0.004 * s[3]) * _bump(t, p, 97.0, 0.0, 9.0 + 0.8 * s[3], 5.0 + 0.6 * s[4])
        + 0.005 * _bump(t, p, 104.0, 0.0, 3.0, 9.0 + s[4])  # nostrils / nose base
        + (0.005 + 0.002 * s[8]) * _bump(t, p, 72.0, 20.0, 4.0, 14.0)
        + (0.005 + 0.002 * s[8]) * _bump(t, p, 72.0, -20.0, 4.0, 14.0)
        - 0.006 * _bump(t, p, _THETA_EYE, 21.0, 5.0, 11.0)  # eye sockets
        - 0.006 * _bump(t, p, _THETA_EYE, -21.0, 5.0, 11.0)
        + (0.006 + 0.002 * s[6]) * _bump(t, p, 100.0, 38.0, 8.0, 12.0)
        + (0.006 + 0.002 * s[6]) * _bump(t, p, 100.0, -38.0, 8.0, 12.0)
        + (0.004 + 0.0015 * s[9]) * _bump(t, p, _THETA_MOUTH, 0.0, 4.0, 20.0)  # lips
        + (0.008 + 0.003 * s[5]) * _bump(t, p, 131.0, 0.0, 6.0, 13.0)  # chin
        + 0.012 * _bump(t, p, 90.0, 92.0, 7.0, 5.0)  # ears
        + 0.012 * _bump(t, p, 90.0, -92.0, 7.0, 5.0)
    )
    scaled = direction * radii * np.stack([narrow, np.ones_like(narrow), narrow], -1)
    points = _CENTRE + scaled + radial[:, None] * direction
    normal_dir = scaled / np.linalg.norm(scaled, axis=-1, keepdims=True)
    return points, normal_dir


def neutral_vertices(topology: HeadTopology, shape: np.ndarray) -> np.ndarray:
    """Template (neutral-expression) vertices ``[V, 3]`` float32 of one identity.

    Args:
      topology: the shared :class:`HeadTopology`.
      shape: ``[NUM_SHAPE]`` identity shape parameters (see ``SHAPE_NAMES``).
    """
    points, normal_dir = _skin_points(topology.theta, topology.phi, shape)
    # Neck: a tube below the last skin row, blending from the chin ring to a cylinder.
    neck = topology.part == 3
    if neck.any():
        ring, _ = _skin_points(np.full(neck.sum(), _THETA_NECK), topology.phi[neck], shape)
        frac = np.clip((topology.theta[neck] - _THETA_NECK) / (170.0 - _THETA_NECK), 0.0, 1.0)
        ph = np.radians(topology.phi[neck])
        neck_r = 0.052 * (1 + 0.04 * shape[0])
        tube = np.stack(
            [neck_r * np.sin(ph), np.full_like(ph, -0.175), -0.045 + neck_r * np.cos(ph)], -1
        )
        w = np.sqrt(frac)[:, None]
        points[neck] = (1 - w) * ring + w * tube
        points[neck, 1] = ring[:, 1] + frac * (-0.175 - ring[:, 1])
    # Patches sit behind the skin along the inward direction: eyeballs 3 mm (bulging to 2 mm at
    # the iris), the mouth cavity 13 mm, so neither pokes through closed lids or lips.
    eye = topology.part == 1
    eye_c = _eye_centre_phi(topology.phi[eye])
    bulge = _bump(topology.theta[eye], topology.phi[eye], _THETA_EYE - 1.0, eye_c, 6.0, 9.0)
    points[eye] -= (0.0035 - 0.0015 * bulge)[:, None] * normal_dir[eye]
    mouth = topology.part == 2
    points[mouth] -= 0.013 * normal_dir[mouth]
    return points.astype(np.float32)


def _eye_centre_phi(phi):
    return np.sign(phi) * 0.5 * (_EYE_PHI[0] + _EYE_PHI[1])


def vertex_albedo(topology: HeadTopology, albedo: np.ndarray) -> np.ndarray:
    """Per-vertex albedo ``[V, 3]`` float32 in ``[0, 1]`` from ``[NUM_ALBEDO]`` parameters."""
    a = np.asarray(albedo, np.float64)
    t, p, part = topology.theta, topology.phi, topology.part
    light = np.array([0.93, 0.76, 0.64])
    dark = np.array([0.42, 0.27, 0.18])
    skin = (1 - a[0]) * light + a[0] * dark
    skin = skin * np.array([1.0 + 0.08 * a[1], 1.0 - 0.04 * a[1], 1.0 - 0.05 * a[1]])
    hair = (1 - a[2]) * np.array([0.55, 0.42, 0.25]) + a[2] * np.array([0.07, 0.05, 0.04])
    hair = hair * np.array([1.0 + 0.5 * a[3], 1.0, 1.0 - 0.3 * a[3]])
    lips = skin * np.array([0.95 + 0.1 * a[5], 0.6 - 0.1 * a[5], 0.62 - 0.1 * a[5]])
    iris = (1 - a[6]) * np.array([0.35, 0.2, 0.1]) + a[6] * np.array([0.25, 0.45, 0.65])
    brow = (1 - a[7]) * hair + a[7] * np.array([0.08, 0.06, 0.05])

    color = np.broadcast_to(skin, (len(t), 3)).copy()
    # Cheek flush.
    color *= 1.0 + 0.06 * _bump(t, p, 100.0, 36.0, 9.0, 12.0)[:, None] * np.array([1, -0.5, -0.5])
    color *= 1.0 + 0.06 * _bump(t, p, 100.0, -36.0, 9.0, 12.0)[:, None] * np.array([1, -0.5, -0.5])
    # Hair over the top and back of the head: the hairline drops from the forehead to the nape.
    hairline = (42.0 + 14.0 * a[4]) + (118.0 - 42.0 - 14.0 * a[4]) * (1 - np.cos(np.radians(p))) / 2
    w_hair = 1.0 / (1.0 + np.exp((t - hairline) / 2.5))
    color = (1 - w_hair[:, None]) * color + w_hair[:, None] * hair
    w_brow = _bump(t, np.abs(p), 70.5, 22.0, 2.2, 14.0)
    w_brow = np.clip(1.6 * w_brow, 0, 1)
    color = (1 - w_brow[:, None]) * color + w_brow[:, None] * brow
    lip_band = np.where(topology.below_mouth, 6.0, 4.5)
    w_lip = np.clip(1.6 * _bump(t, p, _THETA_MOUTH, 0.0, lip_band, _MOUTH_PHI + 1.0) - 0.3, 0, 1)
    color = (1 - w_lip[:, None]) * color + w_lip[:, None] * lips
    color[part == 3] *= 0.93  # neck slightly shadowed / less made-up than the face

    eye = part == 1
    d_iris = np.hypot(t[eye] - (_THETA_EYE - 1.0), p[eye] - _eye_centre_phi(p[eye]))
    eye_col = np.where((d_iris < 5.5)[:, None], iris, np.array([0.92, 0.9, 0.88]))
    eye_col = np.where((d_iris < 2.3)[:, None], np.array([0.03, 0.03, 0.03]), eye_col)
    color[eye] = eye_col
    mouth = part == 2
    tm = t[mouth] - _THETA_MOUTH
    # Cavity rows lie 2 degrees apart with one on the mouth line: teeth on the rows at -2 (upper)
    # and +4 (lower), dark throat between them where the wall stretches as the jaw opens.
    cav = np.where((np.abs(tm + 2.0) < 0.5)[:, None], [0.9, 0.88, 0.82], [0.22, 0.04, 0.05])
    cav = np.where((np.abs(tm - 4.0) < 0.5)[:, None], [0.85, 0.83, 0.78], cav)
    cav = np.where((tm > 7.0)[:, None], [0.55, 0.2, 0.22], cav)  # tongue
    color[mouth] = cav
    return np.clip(color, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Expression and pose
# --------------------------------------------------------------------------------------------


def animate(topology: HeadTopology, template: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Vertices ``[T, V, 3]`` float32 of a template under per-frame expressions.

    Args:
      topology: the shared :class:`HeadTopology`.
      template: ``[V, 3]`` neutral vertices (:func:`neutral_vertices`).
      expression: ``[T, 3]`` ``(jaw_open, lip_round, blink)`` in ``[0, 1]``.
    """
    expression = np.asarray(expression, np.float64)
    if expression.ndim != 2 or expression.shape[1] != 3:
        raise ValueError(f"animate: expression must be [T, 3], got {expression.shape}")
    jaw, rnd, blink = (expression[:, k, None] for k in range(3))  # [T, 1]
    v = np.asarray(template, np.float64)
    t, p = topology.theta, topology.phi
    mouth_w = np.sqrt(np.clip(1 - (p / _MOUTH_PHI) ** 2, 0.0, 1.0))  # elliptic mouth opening
    # Jaw weight: a step across the mouth line inside the slit, a smooth ramp outside it, so the
    # lips part in the middle while the corners stay closed and the cheeks stretch.
    ramp = np.clip((t - (_THETA_MOUTH - 8.0)) / 16.0, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)
    lateral = np.clip((85.0 - np.abs(p)) / 40.0, 0.0, 1.0)
    neck_fade = np.clip((165.0 - t) / 25.0, 0.0, 1.0)
    w_jaw = lateral * neck_fade * (mouth_w * topology.below_mouth + (1 - mouth_w) * ramp)
    w_jaw = np.where(topology.part == 1, 0.0, w_jaw)
    angle = np.radians(JAW_MAX_DEG) * jaw * w_jaw  # [T, V]
    pivot = np.array([-0.01, -0.045])  # (y, z) of the jaw's hinge axis, parallel to x
    y, z = v[:, 1] - pivot[0], v[:, 2] - pivot[1]
    cos, sin = np.cos(angle), np.sin(angle)
    out = np.broadcast_to(v, (len(expression),) + v.shape).copy()
    out[..., 1] = pivot[0] + y * cos - z * sin
    out[..., 2] = pivot[1] + y * sin + z * cos
    skin = (topology.part == 0) | (topology.part == 3)
    # Lip parting on top of the jaw rotation: upper lip up, lower lip down.
    d_mouth = np.exp(-(((t - _THETA_MOUTH) / 5.0) ** 2)) * mouth_w * skin
    sign = np.where(topology.below_mouth, -1.0, 0.8)
    out[..., 1] += 0.003 * jaw * sign * d_mouth
    # Lip rounding: narrow toward the mouth's centre line and protrude.
    w_rnd = _bump(t, p, _THETA_MOUTH, 0.0, 9.0, 30.0) * (topology.part != 1)
    out[..., 0] *= 1.0 - 0.45 * rnd * w_rnd
    out[..., 2] += 0.007 * rnd * w_rnd
    # Eyelids: open by default; blink brings the upper lid (5 mm) and lower lid (1.5 mm) together.
    eye_c = _eye_centre_phi(p)
    half = 0.5 * (_EYE_PHI[1] - _EYE_PHI[0])
    eye_w = np.sqrt(np.clip(1 - ((p - eye_c) / half) ** 2, 0.0, 1.0)) * skin
    up = ~topology.below_eye
    lid = np.where(up, 0.005 * np.exp(-(((t - _THETA_EYE) / 6.0) ** 2)), 0.0)
    lid = lid - np.where(up, 0.0, 0.0015 * np.exp(-(((t - _THETA_EYE) / 4.0) ** 2)))
    out[..., 1] += (1.0 - blink) * lid * eye_w
    return out.astype(np.float32)


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues: ``[..., 3]`` axis-angle vectors (radians) -> ``[..., 3, 3]`` rotations."""
    rotvec = np.asarray(rotvec, np.float64)
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)[..., None]  # [..., 1, 1]
    axis = rotvec / np.maximum(angle[..., 0], 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(rotvec.shape[:-1] + (3, 3))
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def pose_vertices(vertices: np.ndarray, rotvec: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Apply a rigid head pose: ``[..., V, 3] -> R @ v + t`` with ``R`` from ``rotvec [..., 3]``."""
    rot = axis_angle_to_matrix(rotvec)
    moved = np.einsum("...ij,...vj->...vi", rot, np.asarray(vertices, np.float64))
    return moved + np.asarray(translation, np.float64)[..., None, :]


def camera_in_head_frame(c2w_world: np.ndarray, rotvec, translation) -> np.ndarray:
    """Camera-to-head ``[4, 4]``: head pose expressed as camera motion (as AD-NeRF does).

    A head posed by ``(R, t)`` seen by a camera ``c2w_world`` yields the same image (up to
    lighting, which lives in the world) as the unposed head seen by ``inv([R | t]) @ c2w_world``.
    This is the camera the NeRF stage uses per frame.
    """
    pose = np.eye(4)
    pose[:3, :3] = axis_angle_to_matrix(rotvec)
    pose[:3, 3] = translation
    c2w = np.eye(4)
    c2w[: np.asarray(c2w_world).shape[0]] = c2w_world
    return np.linalg.inv(pose) @ c2w
