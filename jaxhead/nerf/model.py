"""The head NeRF's modules: the forward pass (feature rendering, then the neural renderer) and
the learnable latent codes. The ray math they call is :mod:`jaxhead.nerf.render`.

Paper 000 sec. 3.2 (after HeadNeRF): the conditional field of :mod:`jaxhead.nerf.field` is
volume-rendered into a feature map ``M`` at low resolution (32² by default, 64² for ``full``), and
the 2D renderer of :mod:`jaxhead.nerf.upsampler` turns ``M`` into the image (128² ... 512²).

API used by the stage (the train step calls :class:`HeadNeRF` inside ``jax.jit``)::

    config = HeadNeRFConfig()                      # CPU default; HeadNeRFConfig.full() for GPUs
    model = HeadNeRF(config, rngs=nnx.Rngs(seed))
    out = model(cameras, conditions, key)          # key=None: deterministic (evaluation)
    out["image"]        [B, H, W, 3]   upsampled RGB in [0, 1], H = render_size[0] * upsample
    out["rgb_lowres"]   [B, h, w, 3]   sigmoid of the first 3 feature channels (own L_pho term)
    out["alpha"]        [B, H, W]      with a background only: the upsampled accumulation that
                                       composites the image (and rgb_lowres) over it
    out["foreground"]   [B, H, W, 3]   with a background only: the upsampled image before that
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

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.nerf.config import HeadNeRFConfig
from jaxhead.nerf.field import AudioNet, GridSize, HeadField
from jaxhead.nerf.render import (
    FeatureMap,
    camera_frame_points,
    pose_features,
    render_feature_map,
    scale_intrinsics,
)
from jaxhead.nerf.upsampler import Upsampler


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
            encoding=config.encoding,
            grid=GridSize(*config.grid_size),
            spaces=2 if config.space == "head+camera" else 1,
            attended=config.attended_ranges,
            modulated=config.grid_channels,
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
        if config.mouth_grids:  # default init: the mouth grids start at zero instead
            self.mouth_projection = nnx.Linear(config.lip_input_dim, config.mouth_grids, rngs=rngs)
        else:
            self.mouth_projection = None
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

    def pose_condition(self, c2w: jax.Array) -> jax.Array:
        """``[B, 12]`` the "pose" condition of cameras ``[B, 4, 4]``: their
        :func:`pose_features`, standardised by ``config.pose_mean`` / ``pose_std`` (the training
        frames', when the stage set them)."""
        features = pose_features(c2w)
        if self.config.pose_mean:
            row = (1,) * (features.ndim - 1) + (-1,)
            mean = jnp.asarray(self.config.pose_mean, features.dtype).reshape(row)
            std = jnp.asarray(self.config.pose_std, features.dtype).reshape(row)
            features = (features - mean) / std
        return features

    def condition(self, conditions: Mapping[str, jax.Array]) -> jax.Array:
        """``[B, condition_dim]``: the parts of ``config.condition_dims`` concatenated in order.

        ``lip`` comes from ``AudioNet(conditions["audio"])`` when the model has an audio network
        and ``conditions`` has no ``lip`` entry; with ``lip_input_dim`` the given ``lip``
        features ``[B, lip_input_dim]`` pass through the learned projection first, and
        ``mouth`` (``mouth_grids``) is their other projection.
        """
        parts = []
        # The conditions projected from the given "lip" features, with the factor on each.
        projections = {
            "lip": (self.lip_projection, 1.0),
            "mouth": (self.mouth_projection, self.config.mouth_scale),
        }
        for name, dim in self.config.condition_dims:
            projection, scale = projections.get(name, (None, 1.0))
            if projection is not None and "lip" in conditions:
                value = jnp.asarray(conditions["lip"])
                if value.ndim != 2 or value.shape[-1] != self.config.lip_input_dim:
                    raise ValueError(
                        f"condition 'lip' has shape {value.shape}, expected "
                        f"[B, {self.config.lip_input_dim}] features to project"
                    )
                value = scale * projection(value)
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
        size: tuple[int, int] | None = None,
    ) -> FeatureMap:
        """Feature maps of ``B`` frames, :class:`FeatureMap` with a leading ``[B]`` axis;
        ``size``: ``(h, w)`` of the map (default ``config.render_size``; a patch of the frame
        when the intrinsics' principal point is moved to the patch's frame)."""
        height, width = size or self.config.render_size
        config = self.config
        c2w = jnp.asarray(cameras["c2w"])
        intrinsics = jnp.asarray(cameras["intrinsics"])
        if c2w.ndim != 3 or intrinsics.shape != (c2w.shape[0], 4):
            raise ValueError(
                f"cameras need c2w [B, 4, 4] and intrinsics [B, 4], got {c2w.shape} and "
                f"{intrinsics.shape}"
            )
        batch = c2w.shape[0]
        if "pose" in dict(config.condition_dims) and "pose" not in conditions:
            conditions = {**conditions, "pose": self.pose_condition(c2w)}
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
                if config.space == "head+camera":
                    in_camera = camera_frame_points(
                        points, c2w_b, config.bound_center, config.bound_radius
                    )
                    points = jnp.concatenate([points, in_camera], axis=-1)
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
                height=height,
                width=width,
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
        background: jax.Array | None = None,
        size: tuple[int, int] | None = None,
    ) -> dict[str, jax.Array]:
        """Renders ``B`` frames; see the module docstring for inputs and outputs.

        ``background`` ``[B, H, W, 3]`` (a full frame's static background): the upsampled image
        is composited over it with the accumulation upsampled to ``H x W`` (bilinear),
        ``I = A I_nerf + (1 - A) background``, as the peers composite their renders over
        ``bc.jpg``; ``out["alpha"]`` is that ``A``. ``size``: the feature map's ``(h, w)``
        (:meth:`render_features`)."""
        maps = self.render_features(cameras, conditions, key, size)
        image = self.upsampler(maps.features)
        rgb_lowres = maps.rgb
        out = {}
        if background is not None:
            background = jnp.asarray(background, image.dtype)
            alpha = jax.image.resize(
                maps.accumulation[..., None], image.shape[:-1] + (1,), method="linear"
            )
            alpha = jnp.clip(alpha, 0.0, 1.0)
            out["foreground"] = image  # the person as the renderer draws it, before compositing
            image = alpha * image + (1.0 - alpha) * background
            out["alpha"] = alpha[..., 0]
            # The low-resolution RGB (its own photometric term) over the background too, so
            # that no term asks the field to paint the background.
            low = jax.image.resize(background, rgb_lowres.shape, method="linear")
            low_alpha = jnp.clip(maps.accumulation[..., None], 0.0, 1.0)
            rgb_lowres = low_alpha * rgb_lowres + (1.0 - low_alpha) * low
        return {
            **out,
            "image": image,
            "rgb_lowres": rgb_lowres,
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
