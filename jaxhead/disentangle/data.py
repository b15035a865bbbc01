"""Data of the disentangle stage: exact single-factor image pairs and landmark parts.

**Extractor groups** (paper 000 sec. 3.3). On procedural heads every factor is known, so the
contrastive pairs are exact. A scene is ``(shape, albedo, illumination, expression, pose)``
drawn with the synthetic dataset's own samplers (:mod:`jaxhead.data.head_model`); :func:`vary`
changes exactly one code factor:

* ``id``  — another identity's geometry (shape parameters), same albedo, light, expression, pose;
* ``ex``  — another expression ``(jaw_open, lip_round, blink)`` of the same person;
* ``al``  — re-coloured with another subject's albedo, same geometry;
* ``ill`` — re-lit with another SH illumination, same geometry and albedo;

and :func:`keep` resamples every factor but one. A *group* (:data:`GROUP_SLOTS`, 9 images) is an
anchor, its four single-factor changes and its four keep-one-factor images. For the head of
factor ``k`` the group holds exactly what the paper asks for: positives share ``k`` with the
anchor (``keep k``: "different people, same expression" for the expression head; and the changes
of the other factors), negatives do not (``change k``: "same person, different expression"; and
the images that keep another factor). :data:`SHARES` is that table. Images are rendered with
:func:`jaxhead.data.raster.render_mesh` as :meth:`jaxhead.data.voca.VocaSet.render` renders the
synthetic dataset (frontal world camera at the dataset's distance and field of view, white
background); every image but the anchor gets its own small head pose, so that no head can use pose
(a nuisance factor the NeRF models as camera motion) to tell images apart. The synthetic
VOCASET-format set itself has only a handful of identities, too few to learn an identity code;
the scenes here sample new people with the same generator. Groups and the held-out probe images
(independent scenes) are rendered once and cached like the NeRF frames.

**Landmark parts** (paper 001 sec. 3.2). The landmark autoencoder sees the mouth and eye landmarks
as one vector ``[mouth part, eye part]``. Sources: the synthetic VOCASET-format set's 68 landmark
vertices (unposed 3D, like the 3DMM landmarks of DFA-NeRF; ground-truth jaw/lip/blink for the
probe) or a real MediaPipe-478 sequence (held-out tail; the probe uses measured mouth and eye
openings). Each face is normalised by a reference pair of points that neither the mouth nor the
eyelids move (centre, in-plane roll, scale; the layout's ``corners``), then standardised per
coordinate with train-split statistics.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile

import ml_collections
import numpy as np
import tqdm

from jaxhead.data import head_model, raster, synthetic, voca_frames
from jaxhead.data.cache import cache_root
from jaxhead.data.errors import DatasetError, FeatureShapeError, MissingFileError
from jaxhead.data.voca import load_voca
from jaxhead.files import publish

CODE_FACTORS = ("id", "ex", "al", "ill")
# The true factor group each code should hold (probe columns), and the nuisance factor.
TRUE_FACTORS = {"id": "identity", "ex": "expression", "al": "albedo", "ill": "illumination"}
FACTOR_DIM_NAMES = {
    "identity": head_model.SHAPE_NAMES,
    "expression": head_model.EXPRESSION_NAMES,
    "albedo": head_model.ALBEDO_NAMES,
}
_CACHE_VERSION = 2


# --------------------------------------------------------------------------------------------
# Scenes and single-factor variations
# --------------------------------------------------------------------------------------------


def sample_lighting(rng: np.random.Generator) -> np.ndarray:
    """``[9, 3]`` SH: ambient + one key light of random direction, colour and intensity.

    Wider than the synthetic sentences' lighting (which is mostly frontal) so that relighting
    changes the image visibly.
    """
    direction = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-0.5, 1.0), rng.uniform(0.3, 1.0)])
    warmth = rng.uniform(-0.12, 0.12)
    color = rng.uniform(0.35, 0.8) * np.array([1.0 + warmth, 1.0, 1.0 - warmth])
    ambient = rng.uniform(0.25, 0.55) * np.array([1.0 - warmth, 1.0, 1.0 + warmth])
    return raster.sh_from_lights(ambient, direction, color).astype(np.float32)


def sample_expression(rng: np.random.Generator) -> np.ndarray:
    """``[3]`` ``(jaw_open, lip_round, blink)``, independent and uniform in ``[0, 1]``."""
    return rng.uniform(0.0, 1.0, 3).astype(np.float32)


def sample_pose(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Axis-angle ``[3]`` and translation ``[3]``: uniform within ``scale`` x (pitch 5°,
    yaw 10°, roll 3°; 6 mm), twice the synthetic sentences' standard deviations."""
    rotation = rng.uniform(-1, 1, 3) * np.radians([5.0, 10.0, 3.0]) * scale
    translation = rng.uniform(-1, 1, 3) * 0.006 * scale
    return rotation.astype(np.float32), translation.astype(np.float32)


def sample_scene(rng: np.random.Generator, pose_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Independent factors of one image: ``shape [10]``, ``albedo [8]``, ``sh [9, 3]``,
    ``expression [3]``, ``rotation [3]``, ``translation [3]``."""
    rotation, translation = sample_pose(rng, pose_scale)
    return {
        "shape": head_model.sample_shape(rng).astype(np.float32),
        "albedo": head_model.sample_albedo(rng).astype(np.float32),
        "sh": sample_lighting(rng),
        "expression": sample_expression(rng),
        "rotation": rotation,
        "translation": translation,
    }


_FACTOR_KEYS = {"id": "shape", "ex": "expression", "al": "albedo", "ill": "sh"}


def vary(scene: dict, factor: str, rng: np.random.Generator) -> dict:
    """A copy of ``scene`` with exactly the factor of code ``factor`` resampled (module doc)."""
    if factor not in _FACTOR_KEYS:
        raise ValueError(f"unknown factor {factor!r}; use one of {CODE_FACTORS}")
    new = dict(scene)
    fresh = sample_scene(rng)
    new[_FACTOR_KEYS[factor]] = fresh[_FACTOR_KEYS[factor]]
    return new


def keep(scene: dict, factor: str, rng: np.random.Generator, pose_scale: float = 1.0) -> dict:
    """A fresh scene (new pose too) that shares only the factor of code ``factor`` with
    ``scene``."""
    if factor not in _FACTOR_KEYS:
        raise ValueError(f"unknown factor {factor!r}; use one of {CODE_FACTORS}")
    new = sample_scene(rng, pose_scale)
    new[_FACTOR_KEYS[factor]] = scene[_FACTOR_KEYS[factor]]
    return new


# Slots of a group: the anchor, "change f" for each factor, "keep f" for each factor.
GROUP_SLOTS = (
    ("anchor",)
    + tuple(f"change_{f}" for f in CODE_FACTORS)
    + tuple(f"keep_{f}" for f in CODE_FACTORS)
)
# SHARES[k][s]: slot s shows the anchor's value of factor k (slot 0 is the anchor itself).
SHARES = tuple(
    tuple(
        slot == "anchor"
        or (slot.startswith("change_") and slot != f"change_{f}")
        or slot == f"keep_{f}"
        for slot in GROUP_SLOTS
    )
    for f in CODE_FACTORS
)


def with_new_pose(scene: dict, rng: np.random.Generator, scale: float) -> dict:
    new = dict(scene)
    new["rotation"], new["translation"] = sample_pose(rng, scale)
    return new


def true_factors(scenes: list[dict]) -> dict[str, np.ndarray]:
    """The probe's factor groups of scenes: ``identity [N, 10]``, ``expression [N, 3]``,
    ``albedo [N, 8]``, ``illumination [N, 27]``, ``pose [N, 6]``."""
    return {
        "identity": np.stack([s["shape"] for s in scenes]),
        "expression": np.stack([s["expression"] for s in scenes]),
        "albedo": np.stack([s["albedo"] for s in scenes]),
        "illumination": np.stack([s["sh"].reshape(-1) for s in scenes]),
        "pose": np.stack([np.concatenate([s["rotation"], s["translation"]]) for s in scenes]),
    }


class SceneRenderer:
    """Renders scenes as the synthetic dataset is rendered (frontal camera, white background).

    Args:
      image_size: output side in pixels.
      supersample: anti-aliasing factor.
      mesh_rows, mesh_cols: head mesh resolution (:func:`head_model.build_topology`; the
        synthetic dataset's default is 36 x 48).
    """

    def __init__(self, image_size: int, supersample: int = 1, mesh_rows=36, mesh_cols=48):
        self.image_size = int(image_size)
        self.supersample = int(supersample)
        self.topology = head_model.build_topology(mesh_rows, mesh_cols)
        self.intrinsics = raster.intrinsics_from_fov(
            synthetic.CAMERA_FOV_DEG, self.image_size, self.image_size
        )
        self.c2w = raster.orbit_cameras([0.0], 0.0, synthetic.CAMERA_DISTANCE)[0]
        self._templates: dict[bytes, np.ndarray] = {}

    def _template(self, shape: np.ndarray) -> np.ndarray:
        key = np.asarray(shape, np.float32).tobytes()
        if key not in self._templates:
            if len(self._templates) > 64:
                self._templates.clear()
            self._templates[key] = head_model.neutral_vertices(self.topology, shape)
        return self._templates[key]

    def vertices(self, scene: dict) -> np.ndarray:
        """``[V, 3]`` posed world-space vertices of a scene."""
        verts = head_model.animate(
            self.topology, self._template(scene["shape"]), scene["expression"][None]
        )[0]
        return head_model.pose_vertices(verts, scene["rotation"], scene["translation"])

    def render(self, scene: dict) -> raster.Render:
        return raster.render_mesh(
            self.vertices(scene),
            self.topology.faces,
            self.intrinsics,
            self.c2w,
            self.image_size,
            self.image_size,
            vertex_colors=head_model.vertex_albedo(self.topology, scene["albedo"]),
            sh=scene["sh"],
            landmark_indices=self.topology.landmark_indices,
            background=(1.0, 1.0, 1.0),
            supersample=self.supersample,
        )


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def make_group(rng: np.random.Generator, pose_jitter: float, pose_scale: float) -> list[dict]:
    """The :data:`GROUP_SLOTS` scenes of one group: anchor, ``vary(anchor, f)`` (each with a fresh
    pose scaled by ``pose_jitter``; 0 keeps the anchor's), ``keep(anchor, f)``."""
    anchor = sample_scene(rng, pose_scale)
    changed = [vary(anchor, f, rng) for f in CODE_FACTORS]
    if pose_jitter > 0:
        changed = [with_new_pose(s, rng, pose_jitter) for s in changed]
    kept = [keep(anchor, f, rng, pose_scale) for f in CODE_FACTORS]
    return [anchor, *changed, *kept]


def render_groups(
    renderer: SceneRenderer, num_groups: int, seed: int, pose_jitter: float = 1.0,
    pose_scale: float = 1.0, progress: bool = False,
) -> dict[str, np.ndarray]:  # fmt: skip
    """``images`` uint8 ``[G, 9, H, W, 3]`` of :func:`make_group` groups plus their factors
    (``factor_<name>`` ``[G, 9, ...]`` per group of :func:`true_factors`)."""
    rng = np.random.default_rng([seed, 1])
    size, slots = renderer.image_size, len(GROUP_SLOTS)
    images = np.zeros((num_groups, slots, size, size, 3), np.uint8)
    scenes = []
    for g in tqdm.trange(num_groups, desc="render groups", disable=not progress, leave=False):
        group = make_group(rng, pose_jitter, pose_scale)
        for s, scene in enumerate(group):
            images[g, s] = _to_uint8(renderer.render(scene).rgb)
        scenes.extend(group)
    factors = {
        k: v.reshape((num_groups, slots) + v.shape[1:]) for k, v in true_factors(scenes).items()
    }
    return {"images": images, **{f"factor_{k}": v for k, v in factors.items()}}


def render_probe_set(
    renderer: SceneRenderer, count: int, seed: int, pose_scale: float = 1.0, progress=False
) -> dict[str, np.ndarray]:
    """``images`` uint8 ``[N, H, W, 3]`` of independent scenes and their factors ``[N, ...]``."""
    rng = np.random.default_rng([seed, 2])
    scenes = [sample_scene(rng, pose_scale) for _ in range(count)]
    size = renderer.image_size
    images = np.zeros((count, size, size, 3), np.uint8)
    for i, scene in enumerate(tqdm.tqdm(scenes, desc="render probe", disable=not progress,
                                        leave=False)):  # fmt: skip
        images[i] = _to_uint8(renderer.render(scene).rgb)
    return {"images": images, **{f"factor_{k}": v for k, v in true_factors(scenes).items()}}


def extractor_data_config() -> ml_collections.ConfigDict:
    """The ``config.data.extractor`` block."""
    return ml_collections.ConfigDict(
        {
            "image_size": 64,
            "supersample": 2,
            "num_groups": 800,  # training groups of 9 images (GROUP_SLOTS)
            "probe_images": 800,  # independent held-out scenes, split in half for the probe
            "heldout_groups": 100,  # held-out groups for the per-head retrieval accuracy
            "pose_jitter": 1.0,  # fresh pose per change (x sample_pose's ranges), 0: anchor's
            "pose_scale": 1.0,
            "mesh_rows": 36,
            "mesh_cols": 48,
            "seed": 0,
        }
    )


def _cached(config, cache_dir: str, kind: str, make, ignore=()) -> dict[str, np.ndarray]:
    settings = {k: config[k] for k in sorted(config.keys()) if k not in ignore}
    digest = hashlib.sha256(
        json.dumps([_CACHE_VERSION, kind, settings], sort_keys=True).encode()
    ).hexdigest()[:16]
    root = cache_root(cache_dir)
    path = root / "disentangle" / f"{kind}_{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, KeyError) as e:
            print(f"Cached {path} is unreadable ({e}); rendering again.", flush=True)
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    publish(tmp, path)
    return arrays


def load_extractor_data(config: ml_collections.ConfigDict, cache_dir: str = "", progress=True):
    """``(groups, probe)``: training groups (:func:`render_groups`) and held-out data: scenes
    (:func:`render_probe_set`) plus ``group_images`` of ``heldout_groups`` new groups; cached."""
    renderer = SceneRenderer(
        config.image_size, config.supersample, config.mesh_rows, config.mesh_cols
    )
    groups = _cached(config, cache_dir, "groups", lambda: render_groups(
        renderer, config.num_groups, config.seed, config.pose_jitter, config.pose_scale, progress
    ), ignore=("heldout_groups",))  # fmt: skip

    def make_probe():
        scenes = render_probe_set(
            renderer, config.probe_images, config.seed + 1000, config.pose_scale, progress
        )
        heldout = render_groups(
            renderer, config.heldout_groups, config.seed + 2000, config.pose_jitter,
            config.pose_scale, progress,
        )  # fmt: skip
        return {**scenes, "group_images": heldout["images"]}

    probe = _cached(config, cache_dir, "probe", make_probe)
    return groups, probe


class GroupBatches:
    """Resumable iterator of ``{"images": uint8 [B, 9, H, W, 3]}`` (groups drawn without
    replacement within a batch; batch ``n`` depends only on ``(seed, n)``)."""

    def __init__(self, images: np.ndarray, batch_size: int, seed: int):
        if batch_size > len(images):
            raise ValueError(f"batch_size {batch_size} exceeds the {len(images)} training groups")
        self.images, self.batch_size, self.seed, self.step = images, batch_size, seed, 0

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        pick = np.sort(rng.choice(len(self.images), self.batch_size, replace=False))
        return {"images": self.images[pick]}

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])


# --------------------------------------------------------------------------------------------
# Landmarks
# --------------------------------------------------------------------------------------------

# 68-point (iBUG) layout of the synthetic heads: 36-47 eyes, 48-67 lips. The reference pair is
# the outer brow ends 17 / 26: on the synthetic heads the lids move the eye corners slightly
# (blinks would leak into every normalised point), the brows move with nothing but identity.
IBUG68 = {
    "mouth": tuple(range(48, 68)),
    "eyes": tuple(range(36, 48)),
    "corners": (17, 26),
    "size": 68,
}
# MediaPipe Face Mesh (478 with irises): the lip and eye contours of its FACEMESH_LIPS /
# FACEMESH_RIGHT_EYE / FACEMESH_LEFT_EYE connection sets; outer eye corners 33 and 263.
MEDIAPIPE478 = {
    "mouth": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269,
              270, 409, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13,
              312, 311, 310, 415),
    "eyes": (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7,
             362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382),
    "corners": (33, 263),
    "size": 478,
    # lip and lid midpoints for the measured openings: inner lips 13/14, lids 159/145, 386/374
    "mouth_open": (13, 14),
    "eye_open": ((159, 145), (386, 374)),
}  # fmt: skip
LAYOUTS = {"ibug68": IBUG68, "mediapipe478": MEDIAPIPE478}


def normalize_faces(points: np.ndarray, corners: tuple[int, int]) -> np.ndarray:
    """Removes position, in-plane roll and scale using a left/right reference pair of points.

    Args:
      points: ``[N, P, C]`` landmarks, ``C`` 2 or 3 (x, y[, z]).
      corners: indices of the reference pair (left, right), e.g. the outer eye corners.

    Returns:
      ``[N, P, C]``: the pair's midpoint at the origin, the pair's x-y direction along +x, pair
      distance 1.
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 3 or points.shape[-1] not in (2, 3):
        raise ValueError(f"landmarks must be [N, P, 2 or 3], got {points.shape}")
    left, right = points[:, corners[0]], points[:, corners[1]]
    centre = 0.5 * (left + right)
    delta = right - left
    scale = np.linalg.norm(delta, axis=-1)  # [N]
    if np.any(scale < 1e-9):
        raise ValueError("landmarks with coincident reference points cannot be normalised")
    angle = np.arctan2(delta[:, 1], delta[:, 0])  # [N]
    cos, sin = np.cos(-angle), np.sin(-angle)
    out = points - centre[:, None]
    x, y = out[..., 0].copy(), out[..., 1].copy()
    out[..., 0] = cos[:, None] * x - sin[:, None] * y
    out[..., 1] = sin[:, None] * x + cos[:, None] * y
    return out / scale[:, None, None]


def landmark_parts(points: np.ndarray, layout: dict) -> tuple[np.ndarray, np.ndarray]:
    """``[N, P, C] -> (mouth [N, M * C], eyes [N, E * C])`` normalised and flattened."""
    if points.shape[1] != layout["size"]:
        raise ValueError(f"expected {layout['size']} landmarks per face, got {points.shape}")
    norm = normalize_faces(points, layout["corners"])
    n = len(norm)
    mouth = norm[:, list(layout["mouth"])].reshape(n, -1)
    eyes = norm[:, list(layout["eyes"])].reshape(n, -1)
    return mouth.astype(np.float32), eyes.astype(np.float32)


def measured_openings(points: np.ndarray, layout: dict) -> dict[str, np.ndarray]:
    """Mouth and eye openings ``[N, 1]`` in reference-pair units (real data has no true
    factors)."""
    norm = normalize_faces(points, layout["corners"])
    a, b = layout["mouth_open"]
    mouth = np.linalg.norm(norm[:, a] - norm[:, b], axis=-1)
    eyes = np.mean([np.linalg.norm(norm[:, i] - norm[:, j], axis=-1)
                    for i, j in layout["eye_open"]], axis=0)  # fmt: skip
    return {"mouth": mouth[:, None], "blink": eyes[:, None]}


def landmark_data_config() -> ml_collections.ConfigDict:
    """The ``config.data.landmarks`` block."""
    return ml_collections.ConfigDict(
        {
            "source": "synthetic",  # synthetic | real478
            # synthetic: a VOCASET-format folder with factors.npz; "" generates `synthetic` once
            "root": "",
            "cache_dir": "",
            "synthetic": {"identities": 4, "sequences": 4, "seconds": 4.0, "seed": 0},
            "val_sentences": 1,  # synthetic: last sentences of each subject held out
            # real478: MediaPipe-478 landmarks [T, 478, 2 or 3] (.npy), read in place
            "path": "",
            "held_out_fraction": 0.2,  # real478: tail held out
        }
    )


def _synthetic_landmarks(config) -> dict:
    root = voca_frames.dataset_root(config)
    voca = load_voca(root)
    if voca.factors is None or "landmark_indices" not in voca.factors:
        raise DatasetError(
            root / "factors.npz",
            "is absent: landmark vertices and true factors exist for the synthetic set only",
            "use --config.data.landmarks.source=real478 with a landmark .npy, or a synthetic set",
        )
    f = voca.factors
    held = int(config.val_sentences)
    train_rows, test_rows = [], []
    for subject in voca.subjects:
        sentences = voca.sentences(subject)
        if held >= len(sentences):
            raise DatasetError(root, f"{subject} has {len(sentences)} sentences",
                               "lower --config.data.landmarks.val_sentences")  # fmt: skip
        for k, sentence in enumerate(sentences):
            rows = voca.frames(subject, sentence)[1]
            (test_rows if k >= len(sentences) - held else train_rows).append(rows)
    points = np.asarray(voca.verts[:, f["landmark_indices"]], np.float64)  # [N, 68, 3]

    def split(rows):
        rows = np.concatenate(rows)
        factors = {
            "mouth": f["expression"][rows, :2],
            "blink": f["expression"][rows, 2:],
            "identity": f["shape"][rows],
        }
        return points[rows], factors

    return {"layout": "ibug68", "train": split(train_rows), "test": split(test_rows)}


def _real_landmarks(config) -> dict:
    path = pathlib.Path(config.path).expanduser()
    if not config.path or not path.is_file():
        raise MissingFileError(
            path, produced_by="MediaPipe Face Mesh (478 points per frame) saved with np.save",
            why="landmark sequence (--config.data.landmarks.path)",
        )  # fmt: skip
    points = np.load(path).astype(np.float64)
    if points.ndim != 3 or points.shape[1] != 478 or points.shape[2] not in (2, 3):
        raise FeatureShapeError(path, points.shape, "[T, 478, 2 or 3]")
    if not np.all(np.isfinite(points)):
        raise DatasetError(path, "contains NaN or infinite landmarks", "re-run the detector")
    cut = int(round(len(points) * (1.0 - float(config.held_out_fraction))))
    if not 2 <= cut <= len(points) - 2:
        raise DatasetError(path, f"has {len(points)} frames, too few to hold out a tail",
                           "use a longer sequence or another held_out_fraction")  # fmt: skip
    train, test = points[:cut], points[cut:]
    layout = MEDIAPIPE478
    return {
        "layout": "mediapipe478",
        "train": (train, measured_openings(train, layout)),
        "test": (test, measured_openings(test, layout)),
    }


def load_landmark_data(config: ml_collections.ConfigDict) -> dict:
    """Normalised landmark parts of both splits plus their probe factors.

    Returns:
      ``{"layout": name, "mean": [M + E], "std": [M + E], "mouth_size": M,
      "train"/"test": {"mouth": [N, M], "eyes": [N, E], "factors": {name: [N, F]}}}`` with the
      parts standardised by the train split's per-coordinate mean and standard deviation.
    """
    if config.source == "synthetic":
        raw = _synthetic_landmarks(config)
    elif config.source == "real478":
        raw = _real_landmarks(config)
    else:
        raise ValueError(
            f"unknown config.data.landmarks.source {config.source!r}; use 'synthetic' or 'real478'"
        )
    layout = LAYOUTS[raw["layout"]]
    parts = {}
    for split in ("train", "test"):
        points, factors = raw[split]
        mouth, eyes = landmark_parts(points, layout)
        parts[split] = (np.concatenate([mouth, eyes], -1), factors)
    m = landmark_parts(raw["train"][0][:1], layout)[0].shape[1]
    flat = parts["train"][0]
    mean, std = flat.mean(0), np.maximum(flat.std(0), 1e-6)
    out = {"layout": raw["layout"], "mean": mean, "std": std, "mouth_size": m}
    for split, (x, factors) in parts.items():
        z = ((x - mean) / std).astype(np.float32)
        out[split] = {"mouth": z[:, :m], "eyes": z[:, m:], "factors": factors}
    return out


class PairBatches:
    """Resumable iterator of random face pairs ``{"mouth_a", "eyes_a", "mouth_b", "eyes_b"}``
    (A and B independent draws; batch ``n`` depends only on ``(seed, n)``)."""

    def __init__(self, mouth: np.ndarray, eyes: np.ndarray, batch_size: int, seed: int):
        self.mouth, self.eyes = mouth, eyes
        self.batch_size, self.seed, self.step = batch_size, seed, 0

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        a, b = rng.integers(0, len(self.mouth), (2, self.batch_size))
        return {"mouth_a": self.mouth[a], "eyes_a": self.eyes[a],
                "mouth_b": self.mouth[b], "eyes_b": self.eyes[b]}  # fmt: skip

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])
