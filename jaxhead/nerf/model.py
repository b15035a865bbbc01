"""The head NeRF forward pass: low-resolution feature rendering, then the neural renderer.

Paper 000 sec. 3.2 (after HeadNeRF): the conditional field of :mod:`jaxhead.nerf.field` is
volume-rendered into a feature map ``M`` at low resolution (32² by default, 64² for ``full``), and
the 2D renderer of :mod:`jaxhead.nerf.upsampler` turns ``M`` into the image (128² ... 512²).

API used by the stage (the train step calls :class:`HeadNeRF` inside ``jax.jit``)::

    config = HeadNeRFConfig()                      # CPU default; HeadNeRFConfig.full() for GPUs
    model = HeadNeRF(config, rngs=nnx.Rngs(seed))
    out = model(cameras, conditions, key)          # key=None: deterministic (evaluation)
    out["image"]        [B, H, W, 3]   upsampled RGB in [0, 1], H = render_size[0] * upsample
    out["rgb_lowres"]   [B, h, w, 3]   sigmoid of the first 3 feature channels (own L_pho term)
    out["features"]     [B, h, w, F]   the volume-rendered feature map M, background included
    out["accumulation"] [B, h, w]      Σ wᵢ (alpha)
    out["depth"]        [B, h, w]      Σ wᵢ tᵢ (t is depth along the optical axis, scene units)

``cameras = {"c2w": [B, 4, 4], "intrinsics": [B, 4]}`` in the layout of
``jaxhead.data.pipeline.FRAME_SPEC`` (``(fx, fy, cx, cy)`` in pixels of the *output* image; the
renderer scales them to the feature-map resolution). ``conditions`` maps each name of
``config.condition_dims`` to ``[B, D]`` (concatenated in that order into the field's condition);
with ``config.audio_net`` the ``lip`` entry may instead be computed from ``conditions["audio"]``
``[B, W, audio_dim]`` (AD-NeRF-style, until a sync module is loaded); with
``view_input="pose"`` ``conditions["view"]`` is ``[B, view_dim]`` (DFA-NeRF: the head pose in
canonical space replaces the view direction).

Design choices (the papers do not specify them):

* **Bounds.** Rays are clipped to a bounding sphere (``bound_center``, ``bound_radius``, scene
  units) and everything is computed in the sphere's normalised frame (unit ball): ``t`` keeps its
  meaning, densities are per unit of sphere radius, positions fit the encoding. Rays that miss the
  sphere get zero density (accumulation 0, pure background).
* **Hierarchical sampling with one field.** ``num_coarse`` stratified samples are evaluated,
  ``num_fine`` more are drawn from their weights (:func:`sample_pdf`) and evaluated, and the
  final render composites the union of both sets in depth order (NeRF's fine pass). Unlike NeRF
  there is no separate coarse network: the coarse evaluations are reused, so each ray costs
  ``num_coarse + num_fine`` field evaluations instead of ``2·num_coarse + num_fine``, and the
  coarse samples get gradients through the final render.
* **Background.** ``M = Σ wᵢ Mᵢ + (1 − Σ wᵢ)·b`` with ``b`` a feature vector whose first three
  channels are the logits of ``background_color``: learnable (``background="learned"``, the
  default: the renderer learns the dataset's backdrop, e.g. VOCASET's white) or ``"fixed"``.
  Compositing in feature space lets the 2D renderer see where the head ends.
* **Chunking.** ``chunk_rays > 0`` renders rays in sequential chunks (``jax.lax.map``) to bound
  memory for large feature maps; results are identical to the unchunked render.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.nerf.field import AudioNet, HeadField
from jaxhead.nerf.rays import generate_rays
from jaxhead.nerf.render import sample_along_rays, sample_pdf, volume_weights
from jaxhead.nerf.upsampler import Upsampler

# ``(points [..., S, 3], unit_dirs [..., 3]) -> (density [..., S], values [..., S, P])``.
SampleFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
# ``(composited [..., P], accumulation [...]) -> features [..., F]``.
ProjectFn = Callable[[jax.Array, jax.Array], jax.Array]

VIEW_INPUTS = ("none", "ray", "pose")
BACKGROUNDS = ("learned", "fixed")


# --------------------------------------------------------------------------------------------
# Pure orchestration
# --------------------------------------------------------------------------------------------


class FeatureMap(NamedTuple):
    """Output of :func:`render_feature_map` (leading ``[B]`` when batched over frames)."""

    features: jax.Array  # [h, w, F], background composited
    accumulation: jax.Array  # [h, w]
    depth: jax.Array  # [h, w]
    rgb: jax.Array  # [h, w, 3] = sigmoid(features[..., :3])


def scale_intrinsics(intrinsics: jax.Array, scale: float) -> jax.Array:
    """``(fx, fy, cx, cy)`` for an image resized by ``scale`` (pixel-edge coordinates).

    With the pixel-centre convention of :func:`generate_rays` (pixel ``i`` covers ``[i, i+1)``),
    resizing the image plane by ``s`` maps every coordinate ``u -> s·u``, so all four scale alike.
    """
    return jnp.asarray(intrinsics) * scale


def sphere_bounds(
    origins: jax.Array, directions: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Entry and exit ``t`` of rays ``o + t·d`` through the unit sphere, clipped to ``t >= 0``.

    Args:
      origins: ``[..., 3]``.
      directions: ``[..., 3]``, non-zero, not necessarily unit.

    Returns:
      ``(near [...], far [...], hit [...] bool)``; for missed rays ``near = far`` = the ``t`` of
      closest approach (clipped at 0), so samples stay finite.
    """
    a = jnp.sum(directions * directions, axis=-1)
    half_b = jnp.sum(origins * directions, axis=-1)
    c = jnp.sum(origins * origins, axis=-1) - 1.0
    discriminant = half_b * half_b - a * c
    closest = jnp.maximum(-half_b / a, 0.0)
    # Double where: the sqrt never sees a negative argument, so gradients stay finite.
    root = jnp.sqrt(jnp.where(discriminant > 0, discriminant, 0.0))
    near = jnp.maximum((-half_b - root) / a, 0.0)
    far = jnp.maximum((-half_b + root) / a, 0.0)
    hit = (discriminant > 0) & (far > near)
    near = jnp.where(hit, near, closest)
    far = jnp.where(hit, far, closest)
    return near, far, hit


def bounded_weights(
    density: jax.Array, t_vals: jax.Array, far: jax.Array, dir_norm: jax.Array
) -> jax.Array:
    """Quadrature weights (NeRF eq. 3) of samples inside a bounded interval ending at ``far``.

    :func:`volume_weights` gives the last sample an infinite interval (NeRF's 1e10), so with a
    softplus density every ray would end opaque and the background would never show. Appending
    an empty sample (σ = 0) at ``far`` makes the last real interval end at the far bound instead.

    Args:
      density: ``[..., S]``; t_vals: ``[..., S]`` sorted, ``<= far``; far: ``[...]``;
      dir_norm: ``[...]``.

    Returns:
      ``[..., S]`` weights.
    """
    t_closed = jnp.concatenate([t_vals, far[..., None]], axis=-1)
    density_closed = jnp.concatenate([density, jnp.zeros_like(density[..., :1])], axis=-1)
    _, _, weights = volume_weights(density_closed, t_closed, dir_norm)
    return weights[..., :-1]


def render_ray(
    sample_fn: SampleFn,
    origin: jax.Array,
    direction: jax.Array,
    key: jax.Array | None,
    *,
    num_coarse: int,
    num_fine: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Hierarchically sampled volume rendering of one ray through the unit sphere.

    Coarse: ``num_coarse`` stratified ``t`` in the sphere (NeRF eq. 2); fine: ``num_fine`` more
    from the coarse weights (NeRF sec. 5.2, :func:`sample_pdf`); the union is composited in depth
    order (NeRF eq. 3) over the interval ``[near, far]`` (:func:`bounded_weights`). Sorting
    permutes only ``t`` and ``σ``; the weights are scattered back to the unsorted samples, so the
    wide per-sample vectors are never gathered.

    Args:
      sample_fn: the field, see :data:`SampleFn`; called with ``[S, 3]`` points.
      origin: ``[3]`` in the unit-sphere frame.
      direction: ``[3]`` (unnormalised; ``t`` is the caller's ray parameter).
      key: PRNG key for stratified sampling, or None for deterministic midpoints/quantiles.
      num_coarse: coarse samples, >= 2 when ``num_fine > 0``.
      num_fine: fine samples (0 disables the fine pass).

    Returns:
      ``(composited [P], accumulation [], depth [])``.
    """
    near, far, hit = sphere_bounds(origin, direction)
    dir_norm = jnp.linalg.norm(direction)
    unit_dir = direction / dir_norm
    coarse_key, fine_key = (None, None) if key is None else tuple(jax.random.split(key))
    t_coarse = sample_along_rays(coarse_key, near, far, num_coarse, (), stratified=True)

    def evaluate(t):
        points = origin[None, :] + t[:, None] * direction[None, :]
        density, values = sample_fn(points, unit_dir)
        return jnp.where(hit, density, 0.0), values

    density, values = evaluate(t_coarse)
    t_all = t_coarse
    if num_fine > 0:
        if num_coarse < 3:
            raise ValueError(f"hierarchical sampling needs num_coarse >= 3, got {num_coarse}")
        coarse_weights = bounded_weights(density, t_coarse, far, dir_norm)
        # NeRF's bins: midpoints between coarse samples; the end samples' weights are dropped.
        mids = 0.5 * (t_coarse[1:] + t_coarse[:-1])
        t_fine = sample_pdf(fine_key, mids, jax.lax.stop_gradient(coarse_weights[1:-1]), num_fine)
        density_fine, values_fine = evaluate(t_fine)
        t_all = jnp.concatenate([t_coarse, t_fine])
        density = jnp.concatenate([density, density_fine])
        values = jnp.concatenate([values, values_fine], axis=0)

    order = jnp.argsort(t_all)
    t_sorted = t_all[order]
    sorted_weights = bounded_weights(density[order], t_sorted, far, dir_norm)
    weights = jnp.zeros_like(sorted_weights).at[order].set(sorted_weights)
    composited = weights @ values
    accumulation = jnp.sum(weights)
    depth = jnp.sum(weights * t_all)
    return composited, accumulation, depth


def render_feature_map(
    sample_fn: SampleFn,
    project_fn: ProjectFn | None,
    c2w: jax.Array,
    intrinsics: jax.Array,
    background: jax.Array,
    key: jax.Array | None,
    *,
    height: int,
    width: int,
    bound_center: tuple[float, float, float] | jax.Array = (0.0, 0.0, 0.0),
    bound_radius: float = 1.0,
    num_coarse: int = 32,
    num_fine: int = 32,
    chunk_rays: int = 0,
) -> FeatureMap:
    """Volume-renders one frame's feature map ``M`` at ``height x width`` (paper 000 eq. 1).

    Args:
      sample_fn: per-sample field, see :data:`SampleFn` (points in the unit-sphere frame, unit
        ray directions in the scene frame).
      project_fn: deferred per-ray projection of composited values to features (see
        :meth:`HeadField.project`), or None when ``sample_fn`` already returns features.
      c2w: ``[4, 4]`` or ``[3, 4]`` camera-to-world.
      intrinsics: ``(fx, fy, cx, cy)`` in pixels of the ``height x width`` render (see
        :func:`scale_intrinsics`).
      background: ``[F]`` or ``[height, width, F]`` feature composited behind the head.
      key: PRNG key (stratified sampling) or None (deterministic).
      height, width: feature-map resolution (static).
      bound_center, bound_radius: the bounding sphere, scene units.
      num_coarse, num_fine: samples per ray (static).
      chunk_rays: render rays in chunks of this many (0: all at once).

    Returns:
      a :class:`FeatureMap` ``(features [h, w, F], accumulation [h, w], depth [h, w],
      rgb [h, w, 3])``.
    """
    intrinsics = jnp.asarray(intrinsics)
    if intrinsics.shape != (4,):
        raise ValueError(f"intrinsics must be (fx, fy, cx, cy), got shape {intrinsics.shape}")
    origins, directions = generate_rays(
        c2w, intrinsics[:2], intrinsics[2], intrinsics[3], height, width
    )
    num_rays = height * width
    centre = jnp.asarray(bound_center, origins.dtype)
    # Unit-sphere frame: x' = (x − centre) / radius, so o' = (o − centre)/r and d' = d/r, with
    # the same t; deltas δ = Δt·‖d'‖ are then in units of the sphere radius.
    origins = (origins.reshape(num_rays, 3) - centre[None, :]) / bound_radius
    directions = directions.reshape(num_rays, 3) / bound_radius

    def one_ray(ray):
        origin, direction, ray_key = ray
        return render_ray(
            sample_fn, origin, direction, ray_key, num_coarse=num_coarse, num_fine=num_fine
        )

    keys = None if key is None else jax.random.split(key, num_rays)
    rays = (origins, directions, keys)
    if chunk_rays and chunk_rays < num_rays:
        composited, accumulation, depth = jax.lax.map(one_ray, rays, batch_size=chunk_rays)
    else:
        composited, accumulation, depth = jax.vmap(one_ray)(rays)
    features = composited if project_fn is None else project_fn(composited, accumulation)
    feature_dim = features.shape[-1]
    features = features.reshape(height, width, feature_dim)
    accumulation = accumulation.reshape(height, width)
    background = jnp.broadcast_to(jnp.asarray(background), (height, width, feature_dim))
    features = features + (1.0 - accumulation)[..., None] * background
    rgb = jax.nn.sigmoid(features[..., :3])
    return FeatureMap(features, accumulation, depth.reshape(height, width), rgb)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HeadNeRFConfig:
    """Sizes and rendering settings of :class:`HeadNeRF`; defaults train on 2 CPU cores.

    ``condition_dims`` lists the condition vector's parts in concatenation order; paper 000 uses
    ``id, ex, al, ill, lip``; DFA-NeRF (paper 001) uses e.g. ``(("audio_feature", 64),
    ("blink", 8))`` with ``view_input="pose"``. ``HeadNeRFConfig.full()`` is the GPU-sized
    model (NeRF's 8x256 field, 64² feature map, 512² image).
    """

    condition_dims: tuple[tuple[str, int], ...] = (
        ("id", 32),
        ("ex", 32),
        ("al", 32),
        ("ill", 16),
        ("lip", 64),
    )
    view_input: str = "none"  # none | ray (unit ray direction) | pose (conditions["view"])
    view_dim: int = 3  # size of conditions["view"] for view_input="pose"
    # field
    width: int = 128
    depth: int = 4
    skip_layer: int | None = 2
    pos_freqs: int = 6
    view_freqs: int = 4
    view_width: int = 64
    feature_dim: int = 256
    # volume rendering
    render_size: tuple[int, int] = (32, 32)
    num_coarse: int = 24
    num_fine: int = 24
    bound_center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bound_radius: float = 0.2  # scene units: VOCASET/synthetic heads are ~0.25 m across
    chunk_rays: int = 0
    background: str = "learned"  # learned | fixed
    background_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # neural renderer
    upsample: int = 4
    upsampler_widths: tuple[int, ...] = (64, 32)
    upsample_mode: str = "nearest"
    # AD-NeRF audio network producing conditions["lip"] from conditions["audio"]
    audio_net: bool = False
    audio_dim: int = 1024
    audio_channels: tuple[int, ...] = (32, 32, 64, 64)
    # > 0: conditions["lip"] arrives as [B, lip_input_dim] precomputed features (e.g. the sync
    # stage's frozen audio encoder) and a learned linear map, zero-initialised, projects them to
    # the "lip" condition's size: the field starts audio-free and learns how much of F_lip to use.
    lip_input_dim: int = 0

    def __post_init__(self):
        if self.view_input not in VIEW_INPUTS:
            raise ValueError(f"view_input {self.view_input!r} must be one of {VIEW_INPUTS}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background {self.background!r} must be one of {BACKGROUNDS}")
        names = [name for name, _ in self.condition_dims]
        if len(set(names)) != len(names):
            raise ValueError(f"condition_dims has repeated names: {names}")
        if self.audio_net and "lip" not in names:
            raise ValueError(
                "audio_net=True produces the 'lip' condition; add it to condition_dims"
            )
        if self.lip_input_dim and (self.audio_net or "lip" not in names):
            raise ValueError(
                "lip_input_dim projects precomputed 'lip' features: needs a 'lip' condition and "
                "audio_net=False"
            )
        if self.bound_radius <= 0:
            raise ValueError(f"bound_radius must be > 0, got {self.bound_radius}")

    @property
    def condition_dim(self) -> int:
        return sum(dim for _, dim in self.condition_dims)

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.render_size[0] * self.upsample, self.render_size[1] * self.upsample)

    @classmethod
    def full(cls, **overrides) -> HeadNeRFConfig:
        """GPU-sized: NeRF/AD-NeRF field (8x256, skip at 4, PE 10), 64² features -> 512²."""
        values = dict(
            width=256,
            depth=8,
            skip_layer=4,
            pos_freqs=10,
            view_width=128,
            render_size=(64, 64),
            num_coarse=64,
            num_fine=64,
            upsample=8,
            upsampler_widths=(256, 128, 64),
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HeadNeRFConfig:
        """From a plain dict (e.g. ``config.model.to_dict()``); lists become tuples."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown HeadNeRFConfig keys {unknown}; known: {sorted(names)}")

        def freeze(value):
            if isinstance(value, list | tuple):
                return tuple(freeze(v) for v in value)
            return value

        return cls(**{key: freeze(value) for key, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-3), 1.0 - 1e-3)
    return math.log(p) - math.log1p(-p)


class HeadNeRF(nnx.Module):
    """Field + volume rendering + neural renderer (+ optional AudioNet); see the module docs."""

    def __init__(self, config: HeadNeRFConfig, *, rngs: nnx.Rngs):
        self.config = config
        view_dim = {"none": 0, "ray": 3, "pose": config.view_dim}[config.view_input]
        self.field = HeadField(
            config.condition_dim,
            width=config.width,
            depth=config.depth,
            skip_layer=config.skip_layer,
            pos_freqs=config.pos_freqs,
            view_dim=view_dim,
            view_freqs=config.view_freqs,
            view_width=config.view_width,
            feature_dim=config.feature_dim,
            rngs=rngs,
        )
        self.upsampler = Upsampler(
            config.feature_dim,
            config.upsample,
            config.upsampler_widths,
            config.upsample_mode,
            rngs=rngs,
        )
        if config.audio_net:
            lip_dim = dict(config.condition_dims)["lip"]
            self.audio_net = AudioNet(
                config.audio_dim, lip_dim, channels=config.audio_channels, rngs=rngs
            )
        else:
            self.audio_net = None
        if config.lip_input_dim:
            zeros = nnx.initializers.zeros_init()
            self.lip_projection = nnx.Linear(
                config.lip_input_dim,
                dict(config.condition_dims)["lip"],
                kernel_init=zeros,
                bias_init=zeros,
                rngs=rngs,
            )
        else:
            self.lip_projection = None
        # NumPy, not jnp: the constant must stay concrete when the module is built under jit.
        background = np.zeros((config.feature_dim,), np.float32)
        background[:3] = [_logit(c) for c in config.background_color]
        if config.background == "learned":
            self.background = nnx.Param(jnp.asarray(background))
        else:
            # A constant, not a Variable: the train state holds only nnx.Param leaves.
            self.background = None
        self._fixed_background = tuple(float(v) for v in background)

    def background_feature(self) -> jax.Array:
        """``[F]`` the feature composited behind the head."""
        if self.background is not None:
            return self.background[...]
        return jnp.asarray(self._fixed_background, jnp.float32)

    def condition(self, conditions: Mapping[str, jax.Array]) -> jax.Array:
        """``[B, condition_dim]``: the parts of ``config.condition_dims`` concatenated in order.

        ``lip`` comes from ``AudioNet(conditions["audio"])`` when the model has an audio network
        and ``conditions`` has no ``lip`` entry; with ``lip_input_dim`` the given ``lip``
        features ``[B, lip_input_dim]`` pass through the learned projection first.
        """
        parts = []
        for name, dim in self.config.condition_dims:
            if name == "lip" and self.lip_projection is not None and name in conditions:
                value = jnp.asarray(conditions[name])
                if value.ndim != 2 or value.shape[-1] != self.config.lip_input_dim:
                    raise ValueError(
                        f"condition 'lip' has shape {value.shape}, expected "
                        f"[B, {self.config.lip_input_dim}] features to project"
                    )
                value = self.lip_projection(value)
            elif name in conditions:
                value = jnp.asarray(conditions[name])
            elif name == "lip" and self.audio_net is not None and "audio" in conditions:
                value = self.audio_net(conditions["audio"])
            else:
                hint = " (or 'audio' for the audio network)" if name == "lip" else ""
                raise KeyError(f"conditions lack '{name}'{hint}; got {sorted(conditions)}")
            if value.ndim != 2 or value.shape[-1] != dim:
                raise ValueError(f"condition '{name}' has shape {value.shape}, expected [B, {dim}]")
            parts.append(value)
        if not parts:
            raise ValueError("condition_dims is empty; the field needs at least one condition")
        batch = {p.shape[0] for p in parts}
        if len(batch) != 1:
            raise ValueError(f"conditions disagree on the batch size: {sorted(batch)}")
        return jnp.concatenate(parts, axis=-1)

    def render_features(
        self,
        cameras: Mapping[str, jax.Array],
        conditions: Mapping[str, jax.Array],
        key: jax.Array | None = None,
    ) -> FeatureMap:
        """Feature maps of ``B`` frames, :class:`FeatureMap` with a leading ``[B]`` axis."""
        config = self.config
        c2w = jnp.asarray(cameras["c2w"])
        intrinsics = jnp.asarray(cameras["intrinsics"])
        if c2w.ndim != 3 or intrinsics.shape != (c2w.shape[0], 4):
            raise ValueError(
                f"cameras need c2w [B, 4, 4] and intrinsics [B, 4], got {c2w.shape} and "
                f"{intrinsics.shape}"
            )
        batch = c2w.shape[0]
        condition = self.condition(conditions)
        if condition.shape[0] != batch:
            raise ValueError(f"conditions have batch {condition.shape[0]}, cameras {batch}")
        view = None
        if config.view_input == "pose":
            if "view" not in conditions:
                raise KeyError("view_input='pose' needs conditions['view'] [B, view_dim]")
            view = jnp.asarray(conditions["view"])
            if view.shape != (batch, config.view_dim):
                raise ValueError(
                    f"conditions['view'] is {view.shape}, expected {(batch, config.view_dim)}"
                )
        # Once per frame: the condition's (and pose's) share of the first and skip layers.
        embedding = self.field.embed(condition, view)
        intrinsics = scale_intrinsics(intrinsics, 1.0 / config.upsample)
        background = self.background_feature()
        keys = jax.random.split(key, batch) if key is not None else jnp.zeros((batch,), jnp.uint32)
        field = self.field

        def one_frame(c2w_b, intrinsics_b, embedding_b, key_b):
            def sample_fn(points, unit_dir):
                if config.view_input == "ray":
                    view_part = field.embed_view(unit_dir)
                    return field.sample(points, embedding_b._replace(view=view_part))
                return field.sample(points, embedding_b)

            return render_feature_map(
                sample_fn,
                field.project,
                c2w_b,
                intrinsics_b,
                background,
                None if key is None else key_b,
                height=config.render_size[0],
                width=config.render_size[1],
                bound_center=config.bound_center,
                bound_radius=config.bound_radius,
                num_coarse=config.num_coarse,
                num_fine=config.num_fine,
                chunk_rays=config.chunk_rays,
            )

        return jax.vmap(one_frame)(c2w, intrinsics, embedding, keys)

    def __call__(
        self,
        cameras: Mapping[str, jax.Array],
        conditions: Mapping[str, jax.Array],
        key: jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        """Renders ``B`` frames; see the module docstring for inputs and outputs."""
        maps = self.render_features(cameras, conditions, key)
        return {
            "image": self.upsampler(maps.features),
            "rgb_lowres": maps.rgb,
            "features": maps.features,
            "accumulation": maps.accumulation,
            "depth": maps.depth,
        }


class LatentCodes(nnx.Module):
    """Learnable code tables (paper 000: ``C_id``, ``C_ex``, ``C_al``, ``C_ill``).

    Each table ``name -> [num_entries, dim]`` starts at zeros or at ``N(0, init_std²)`` (the
    issue's "codes start from zeros or random") and is looked up by integer indices, e.g.
    ``id`` by identity, ``ex`` by global frame, ``al`` by identity, ``ill`` by sequence; the
    disentangle loss (paper 000 eq. 6) later pulls them towards reference codes.

    Args:
      sizes: ``{name: (num_entries, dim)}``.
      init_std: 0 for zeros.
      rngs: initialisation.
    """

    def __init__(
        self, sizes: Mapping[str, tuple[int, int]], init_std: float = 0.0, *, rngs: nnx.Rngs
    ):
        tables = {}
        for name, (num, dim) in sizes.items():
            if init_std > 0:
                table = init_std * jax.random.normal(rngs.params(), (num, dim), jnp.float32)
            else:
                table = jnp.zeros((num, dim), jnp.float32)
            tables[name] = nnx.Param(table)
        self.tables = nnx.Dict(tables)

    def __call__(self, indices: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """``{name: [B] int}`` -> ``{name: [B, dim]}`` for the names given."""
        out = {}
        for name, index in indices.items():
            if name not in self.tables:
                raise KeyError(f"no code table '{name}'; tables: {sorted(self.tables)}")
            out[name] = jnp.take(self.tables[name][...], jnp.asarray(index), axis=0)
        return out
