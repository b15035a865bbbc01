"""The conditional head radiance field (paper 000 eq. 1) and an audio-feature network.

:class:`HeadField` is the MLP ``D_θ(x, v, C, F_lip) = (σ(x), M(x))`` of paper 000 sec. 3.2: it
maps a positionally encoded 3D point ``γ(x)``, a condition vector ``c`` (the concatenation of
``C_id, C_ex, C_al, C_ill, F_lip``; or, for DFA-NeRF, paper 001 sec. 3.5, of the audio/lip
feature ``f_a`` and the eye-blink feature ``f_e``) and optionally a view input ``v`` (the ray
direction, or for DFA-NeRF the head pose in canonical space) to a density ``σ`` and a feature
vector ``M(x)`` (256 channels in paper 000; the first 3 act as a low-resolution RGB after a
sigmoid, as in HeadNeRF).

Architecture (NeRF's, with its skip connection)::

    h₀ = relu(A₀ [γ(x), c] + b₀)                       layer 0
    h_k = relu(A_k h_{k-1} + b_k)                       layers 1 .. depth-1
    h_s = relu(A_s [h_{s-1}, γ(x), c] + b_s)            the skip layer s re-reads the inputs
    σ = softplus(a_σ · h_{depth-1} + b_σ − 1)           view independent (mip-NeRF's softplus)
    g = h_{depth-1}                                     without a view input, or
    g = relu(V [h_{depth-1}, γ_v(v)] + b_v)             NeRF's view branch (``view_dim > 0``)
    M(x) = W_o g + b_o                                  ``feature_dim`` channels

Every ``[..., inputs]`` layer is one ``nnx.Linear`` over the concatenation (so the parameters are
those of the plain MLP, and a PyTorch reference that concatenates per sample is the same
function), but it is *evaluated* split: ``A [γ(x), c] = A_x γ(x) + A_c c``. The condition (and
view) part is computed once per ray or per frame by :meth:`HeadField.embed` and broadcast over
the ray's samples, instead of once per sample: for a 128-wide field with a 200-dim condition
this removes most of the first layer's cost.

**Region attention** (ER-NeRF's region-aware conditioning, optional: ``attended``). Chosen parts of
the condition (the audio feature F_lip and the blink, say) do not enter as one vector for the
whole head: each channel is scaled, per sample, by a gate computed from the sample's own point
encoding, ``g(x) = 2·sigmoid(W₂ relu(W₁ enc(x) + b₁) + b₂)``, so the field can let the audio act
near the mouth and the blink near the eyes only::

    h₀ = relu(A_x enc(x) + A_c c_rest + A_a (c_att ⊙ g(x)) + b₀)

(likewise at the skip layer). ``W₂``, ``b₂`` start at zero: every gate is 1 and the field is
exactly the one without attention at initialisation (ER-NeRF's code,
``nerf_triplane/network.py``: the audio feature times an unbounded 2-layer MLP of the tri-plane
encoding, the eye feature times a sigmoid one; here one bounded form for both, so training starts
from the plain field). The attended channels then cost one ``[S, n_att] @ [n_att, width]`` product
per sample instead of nothing; the others stay per ray.

**Condition grids** (optional: ``modulated``). Chosen scalar channels of the condition (the blink,
say) each scale a grid of their own, added to the head-space point encoding::

    enc(x) = H(x) + Σ_k c_k · H_k(x)

the expression-weighted hash grids of NeRFBlendShape (Gao et al. 2022, "Reconstructing
Personalized Semantic Facial NeRF Models From Monocular Video"). A channel that changes a small
part of the face in a few frames (a blink: 1-3 % of a talking head's frames) then has a
per-position effect stored in tables trained at the grid's rate, instead of one shared
direction of the MLP's first layer that must learn where the eyes are. ``H_k`` start at zero:
the field is exactly the one without them at initialisation. The ``H_k`` have the head grid's
shape and are read at the same points, and the encodings are linear in their tables, so for a
frame's one condition ``enc(x)`` is a single lookup of ``T + Σ_k c_k T_k``, built once per frame
(``HeadField._encode_head``): the grids cost dense passes over their tables, not lookups per
sample. The channel also enters the MLP as before.

**Deferred output projection.** The last layer is affine, and volume rendering is a weighted sum,
so ``Σᵢ wᵢ (W_o gᵢ + b_o) = W_o (Σᵢ wᵢ gᵢ) + b_o Σᵢ wᵢ`` exactly. The renderer therefore
composites the narrow per-sample vectors ``g`` (:meth:`HeadField.sample`) and projects each
*ray* to ``feature_dim`` channels afterwards (:meth:`HeadField.project`): the 256-channel head
costs nothing per sample. :meth:`HeadField.__call__` is the plain per-sample eq. 1 form, used by
the tests to show both agree.

Inputs are expected in the normalised frame of the scene's bounding sphere (points inside the
unit ball; :func:`jaxhead.nerf.model.render_feature_map` does the normalisation); like NeRF's
code the encoding has no factor π, so ``pos_freqs`` bands reach ``2^(pos_freqs-1)`` cycles/2π.

:class:`AudioNet` is AD-NeRF's audio-feature network, used to produce ``F_lip`` from a window of
per-frame audio features while no sync module is loaded.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxhead.nerf import grid as grid_lib
from jaxhead.nerf.encoding import positional_encoding

ENCODINGS = ("frequency", "hash", "triplane")


class GridSize(NamedTuple):
    """A grid encoding's sizes: ``levels`` ``L``, ``features`` ``F`` per level, ``2^log2_table``
    rows per level, resolutions ``min_resolution`` … ``max_resolution`` (the defaults: RAD-NeRF's
    16 levels of 2 features in 2^16 rows)."""

    levels: int = 16
    features: int = 2
    log2_table: int = 16
    min_resolution: int = 16
    max_resolution: int = 1024


# mip-NeRF's density shift: softplus(raw − 1) starts the field mostly transparent (σ ≈ 0.31 in
# unit-sphere units) without ReLU's dead units at initialisation.
DENSITY_SHIFT = -1.0

# He initialisation keeps ReLU activations at unit scale through the depth of the trunk.
_RELU_INIT = jax.nn.initializers.he_uniform()


def _add_bias(x: jax.Array, bias: jax.Array) -> jax.Array:
    """``x [..., D] + bias [D]`` with the rank made explicit (rank promotion is an error)."""
    return x + bias.reshape((1,) * (x.ndim - 1) + bias.shape)


def _pe_dim(dim: int, num_freqs: int) -> int:
    return dim * (1 + 2 * num_freqs)


class FieldEmbedding(NamedTuple):
    """Per-ray (or per-frame) contributions of the condition and view inputs (``[..., *]``).

    ``first``/``skip`` are the condition's share of layer 0 and of the skip layer (bias included
    in ``first``; the attended channels left out); ``view`` is the view input's share of the view
    layer (bias included), or None; ``attended``: the condition's attended channels
    ``[..., n_att]``, gated per sample (region attention), or None; ``modulation``: the channels
    that scale the condition grids ``[..., n_mod]``, or None.
    """

    first: jax.Array
    skip: jax.Array | None
    view: jax.Array | None
    attended: jax.Array | None = None
    modulation: jax.Array | None = None


class HeadField(nnx.Module):
    """Conditional NeRF MLP ``(x, c, v) -> (σ, M)`` of paper 000 eq. 1 (module docstring).

    Args:
      condition_dim: length of the concatenated condition vector ``c`` (may be 0).
      width: hidden width of the trunk (256 in NeRF / AD-NeRF).
      depth: number of trunk layers (8 in NeRF / AD-NeRF).
      skip_layer: index of the layer that re-reads ``[γ(x), c]`` (4 in NeRF); None for no skip.
      pos_freqs: frequency bands of the point encoding (10 in NeRF).
      view_dim: size of the view input (3 for a direction); 0 for a view-independent field.
      view_freqs: frequency bands of the view encoding (4 in NeRF).
      view_width: width of the view layer (``width // 2`` in NeRF).
      feature_dim: channels of ``M(x)`` (256 in paper 000); the first 3 are RGB logits.
      encoding: how a point enters the trunk: ``"frequency"`` (NeRF's positional encoding
        ``γ(x)`` with ``pos_freqs`` bands), ``"hash"`` (instant-NGP's multi-resolution hash grid
        of :func:`jaxhead.nerf.grid.hash_encode`) or ``"triplane"`` (ER-NeRF's three 2D hash
        grids, :func:`jaxhead.nerf.grid.triplane_encode`); a grid's tables are parameters of the
        field (``tables``), and its points are the unit-sphere frame mapped to ``[0, 1]^3``.
      grid: the grid's sizes (:class:`GridSize`: ``L``, ``F``, ``log2 T``, ``N_min``,
        ``N_max``); default :class:`GridSize`'s.
      spaces: how many 3D frames a point arrives in (``points [..., 3 * spaces]``): 1, or 2 for
        the head's and the camera's frame; each is encoded on its own (its own grid tables) and
        the encodings are concatenated.
      attended: ``(start, stop)`` ranges of the condition vector whose channels are gated per
        sample by the region attention (module docstring); empty: none.
      attention_width: hidden width of the attention's gate network.
      modulated: channels of the condition vector that each scale a grid of their own, added to
        the head-space encoding (module docstring: condition grids); grid encodings only.
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        condition_dim: int,
        *,
        width: int = 128,
        depth: int = 4,
        skip_layer: int | None = 2,
        pos_freqs: int = 6,
        view_dim: int = 0,
        view_freqs: int = 4,
        view_width: int = 64,
        feature_dim: int = 256,
        encoding: str = "frequency",
        grid: GridSize | None = None,
        spaces: int = 1,
        attended: tuple[tuple[int, int], ...] = (),
        attention_width: int = 32,
        modulated: tuple[int, ...] = (),
        rngs: nnx.Rngs,
    ):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding {encoding!r} must be one of {ENCODINGS}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if skip_layer is not None and not 0 < skip_layer < depth:
            raise ValueError(f"skip_layer must be in [1, {depth - 1}] or None, got {skip_layer}")
        if feature_dim < 3:
            raise ValueError(f"feature_dim must be >= 3 (RGB channels first), got {feature_dim}")
        if condition_dim < 0 or view_dim < 0:
            raise ValueError(f"condition_dim {condition_dim} and view_dim {view_dim} must be >= 0")
        self.condition_dim = condition_dim
        self.width = width
        self.depth = depth
        self.skip_layer = skip_layer
        self.pos_freqs = pos_freqs
        self.view_dim = view_dim
        self.view_freqs = view_freqs
        self.feature_dim = feature_dim
        self.encoding = encoding
        if spaces not in (1, 2):
            raise ValueError(f"spaces must be 1 or 2, got {spaces}")
        self.spaces = spaces
        if encoding == "frequency":
            self.point_dim = spaces * _pe_dim(3, pos_freqs)
            self.tables = None
            self.resolutions = ()
        else:
            size = grid or GridSize()
            self.resolutions = grid_lib.level_resolutions(
                size.levels, size.min_resolution, size.max_resolution
            )
            planes = len(grid_lib.PLANES) if encoding == "triplane" else 1
            keys = jax.random.split(rngs.params(), planes * spaces)
            tables = jnp.stack(
                [
                    grid_lib.init_tables(k, size.levels, 2**size.log2_table, size.features)
                    for k in keys
                ]
            )
            shape = ((spaces,) if spaces > 1 else ()) + ((planes,) if planes > 1 else ())
            self.tables = nnx.Param(tables.reshape(shape + tables.shape[1:]))
            self.point_dim = spaces * planes * size.levels * size.features
        self.modulated = tuple(int(c) for c in modulated)
        if self.modulated and self.tables is None:
            raise ValueError("modulated channels add grids: they need a grid encoding")
        if any(not 0 <= c < condition_dim for c in self.modulated) or len(
            set(self.modulated)
        ) != len(self.modulated):
            raise ValueError(
                f"modulated channels {modulated} must be distinct channels of the condition's "
                f"{condition_dim}"
            )
        if self.modulated:
            head_shape = self.tables.shape[1:] if spaces > 1 else self.tables.shape
            # Zero: the field starts as the one without condition grids.
            self.modulated_tables = nnx.Param(jnp.zeros((len(self.modulated), *head_shape)))
        else:
            self.modulated_tables = None
        self.view_pe_dim = _pe_dim(view_dim, view_freqs) if view_dim else 0

        layers = []
        for k in range(depth):
            if k == 0:
                fan_in = self.point_dim + condition_dim
            elif k == skip_layer:
                fan_in = width + self.point_dim + condition_dim
            else:
                fan_in = width
            layers.append(nnx.Linear(fan_in, width, kernel_init=_RELU_INIT, rngs=rngs))
        self.layers = nnx.List(layers)
        self.density_out = nnx.Linear(width, 1, rngs=rngs)
        if view_dim:
            self.view_layer = nnx.Linear(
                width + self.view_pe_dim, view_width, kernel_init=_RELU_INIT, rngs=rngs
            )
            self.sample_dim = view_width
        else:
            self.view_layer = None
            self.sample_dim = width
        self.feature_out = nnx.Linear(self.sample_dim, feature_dim, rngs=rngs)

        channels = [c for start, stop in attended for c in range(start, stop)]
        if any(not 0 <= c < condition_dim for c in channels) or len(set(channels)) != len(channels):
            raise ValueError(
                f"attended ranges {attended} must be disjoint and inside the condition's "
                f"{condition_dim} channels"
            )
        self.attended = tuple(channels)
        if channels:
            self.attention_hidden = nnx.Linear(
                self.point_dim, attention_width, kernel_init=_RELU_INIT, rngs=rngs
            )
            zeros = jax.nn.initializers.zeros
            self.attention_out = nnx.Linear(
                attention_width, len(channels), kernel_init=zeros, bias_init=zeros, rngs=rngs
            )
        else:
            self.attention_hidden = self.attention_out = None

    # -- split evaluation ---------------------------------------------------------------------

    def encode(self, points: jax.Array, modulation: jax.Array | None = None) -> jax.Array:
        """``[..., 3 * spaces]`` points in the unit-sphere frame(s) -> ``[..., point_dim]``;
        ``modulation`` ``[n_mod]`` (one for all the points) or ``[..., n_mod]`` (broadcast
        against the points' leading axes): the condition grids' channels, whose grids add to
        the head space's encoding (:meth:`_encode_head`)."""
        if self.modulated and modulation is None:
            raise ValueError("this field has condition grids: give their channels")
        if self.spaces == 1:
            parts = [self._encode_head(points, modulation)]
        else:
            parts = [self._encode_head(points[..., :3], modulation)] + [
                self._encode_space(
                    points[..., 3 * k : 3 * k + 3], None if self.tables is None else self.tables[k]
                )
                for k in range(1, self.spaces)
            ]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

    def _encode_head(self, points: jax.Array, modulation: jax.Array | None) -> jax.Array:
        """``[..., 3]`` head-space points -> ``H(x) + Σ_k c_k H_k(x)`` (module docstring).

        ``modulation``: ``[n_mod]``, one for all the points (a frame's rays), or
        ``[..., n_mod]`` broadcast against the points' leading axes. The encodings are linear
        in their tables, so for one ``c`` the sum is one lookup of the tables
        ``T + Σ_k c_k T_k``, built once (a frame's rendering or training step): the grids cost
        ``K`` dense passes over their tables instead of ``K`` more lookups per sample. Per-point
        channels take the ``K`` lookups."""
        tables = None if self.tables is None else self.tables[...]
        if self.spaces > 1 and tables is not None:
            tables = tables[0]
        if not self.modulated:
            return self._encode_space(points, tables)
        grids = self.modulated_tables[...]  # [K, (planes,) L, T, F]
        if modulation.ndim == 1:
            return self._encode_space(points, tables + jnp.tensordot(modulation, grids, axes=1))
        encoded = self._encode_space(points, tables)
        for k in range(len(self.modulated)):
            encoded = encoded + modulation[..., k : k + 1] * self._encode_space(points, grids[k])
        return encoded

    def _encode_space(self, points: jax.Array, tables: jax.Array | None) -> jax.Array:
        """``[..., 3]`` points of one frame -> their encoding (``encoding``)."""
        if self.encoding == "frequency":
            return positional_encoding(points, self.pos_freqs)
        unit = 0.5 * (points + 1.0)  # the unit ball's cube [-1, 1]^3 -> [0, 1]^3
        encode = grid_lib.hash_encode if self.encoding == "hash" else grid_lib.triplane_encode
        return encode(unit, tables, self.resolutions)

    def grid_smoothness(self, key: jax.Array, num_points: int = 4096) -> jax.Array:
        """Sampled total variation of the grid encoding (``loss.grid_tv``): the mean over
        ``num_points`` points ``x`` drawn uniformly in ``[-1, 1]^3`` of
        ``||E(x) - E(x + δ)||² / D``, with ``δ`` uniform in one cell of the finest level
        (``[-2/N_max, 2/N_max]^3`` in these coordinates) and ``E`` each grid the field has (every
        space's tables and every condition grid), ``D`` its channels; summed over the grids.

        A hash table has no neighbour structure to take differences over (its rows are
        hashed), so the difference is taken between encodings of nearby points, which for a
        dense level is the squared total variation of its cells (K-Planes / TensoRF regularise
        their planes this way) and for a hashed level that of the field the table stores. 0 for
        the frequency encoding (no tables)."""
        if self.tables is None:
            return jnp.zeros((), jnp.float32)
        point_key, step_key = jax.random.split(key)
        points = jax.random.uniform(point_key, (num_points, 3), minval=-1.0, maxval=1.0)
        cell = 2.0 / self.resolutions[-1]
        moved = points + jax.random.uniform(step_key, points.shape, minval=-cell, maxval=cell)
        tables = [self.tables[...]] if self.spaces == 1 else list(self.tables[...])
        if self.modulated:
            tables += list(self.modulated_tables[...])
        total = jnp.zeros((), jnp.float32)
        for table in tables:
            difference = self._encode_space(points, table) - self._encode_space(moved, table)
            total = total + jnp.mean(jnp.square(difference))
        return total

    def embed(self, condition: jax.Array, view: jax.Array | None = None) -> FieldEmbedding:
        """The condition's (and view's) contributions to their layers, once per ray or frame.

        Args:
          condition: ``[..., condition_dim]``.
          view: ``[..., view_dim]`` (a unit direction or a pose vector), or None to fill in
            ``embedding._replace(view=field.embed_view(v))`` later (e.g. per ray direction).

        Returns:
          a :class:`FieldEmbedding` of ``[..., width]`` / ``[..., view_width]`` arrays.
        """
        condition = jnp.asarray(condition)
        if condition.shape[-1:] != (self.condition_dim,):
            raise ValueError(
                f"condition has shape {condition.shape}, expected [..., {self.condition_dim}]"
            )
        modulation = condition[..., jnp.asarray(self.modulated)] if self.modulated else None
        attended = None
        if self.attended:
            index = jnp.asarray(self.attended)
            attended = condition[..., index]
            # The attended channels enter per sample (sample()), not here.
            keep = jnp.ones((self.condition_dim,), condition.dtype).at[index].set(0.0)
            condition = condition * keep.reshape((1,) * (condition.ndim - 1) + keep.shape)
        first = self.layers[0]
        first_part = _add_bias(condition @ first.kernel[...][self.point_dim :], first.bias[...])
        skip_part = None
        if self.skip_layer is not None:
            skip_kernel = self.layers[self.skip_layer].kernel[...][self.width + self.point_dim :]
            skip_part = condition @ skip_kernel
        view_part = None if view is None else self.embed_view(view)
        return FieldEmbedding(first_part, skip_part, view_part, attended, modulation)

    def gates(self, encoded: jax.Array) -> jax.Array:
        """Region attention: ``[..., point_dim]`` point encodings -> ``[..., n_att]`` gates in
        ``(0, 2)`` (1 at initialisation), one per attended condition channel."""
        if self.attention_out is None:
            raise ValueError("this field has no attended condition channels")
        hidden = jax.nn.relu(self.attention_hidden(encoded))
        return 2.0 * jax.nn.sigmoid(self.attention_out(hidden))

    def embed_view(self, view: jax.Array) -> jax.Array:
        """``[..., view_dim]`` -> the view input's share of the view layer ``[..., view_width]``."""
        if not self.view_dim:
            raise ValueError("this field has view_dim=0 but a view input was given")
        view = jnp.asarray(view)
        if view.shape[-1:] != (self.view_dim,):
            raise ValueError(f"view has shape {view.shape}, expected [..., {self.view_dim}]")
        view_kernel = self.view_layer.kernel[...][self.width :]
        return _add_bias(
            positional_encoding(view, self.view_freqs) @ view_kernel, self.view_layer.bias[...]
        )

    def sample(self, points: jax.Array, embedding: FieldEmbedding) -> tuple[jax.Array, jax.Array]:
        """Per-sample density and pre-projection vectors ``g`` (module docstring).

        Args:
          points: ``[..., S, 3 * spaces]`` sample positions in the unit-sphere frame(s).
          embedding: from :meth:`embed`, arrays ``[..., *]`` (one per ray: the leading axes of
            ``points`` without ``S``) or ``[*]`` (one for all rays).

        Returns:
          ``(density [..., S], g [..., S, sample_dim])``; density is ``σ >= 0``.
        """
        points = jnp.asarray(points)
        if points.shape[-1:] != (3 * self.spaces,):
            raise ValueError(
                f"points must be [..., S, {3 * self.spaces}], got shape {points.shape}"
            )

        def per_ray(x: jax.Array | None) -> jax.Array | None:
            # [..., D] -> [..., 1, D]: broadcast over the samples of each ray, rank explicit.
            return None if x is None else jnp.expand_dims(x, -2)

        if self.modulated and embedding.modulation is None:
            raise ValueError("this field has condition grids: embed() gives their channels")
        modulation = embedding.modulation
        if modulation is not None and modulation.ndim > 1:
            modulation = per_ray(modulation)  # one per ray; [n_mod]: one for all the points
        encoded = self.encode(points, modulation)
        p = self.point_dim

        gated = None
        if self.attended:
            if embedding.attended is None:
                raise ValueError("this field gates condition channels: embed() gives them")
            # The attended channels, scaled per sample by the region attention's gates.
            gated = per_ray(embedding.attended) * self.gates(encoded)
            index = jnp.asarray(self.attended)

        first = self.layers[0]
        pre = encoded @ first.kernel[...][:p] + per_ray(embedding.first)
        if gated is not None:
            pre = pre + gated @ first.kernel[...][p + index]
        h = jax.nn.relu(pre)
        for k in range(1, self.depth):
            layer = self.layers[k]
            kernel = layer.kernel[...]
            if k == self.skip_layer:
                pre = h @ kernel[: self.width] + encoded @ kernel[self.width : self.width + p]
                if gated is not None:
                    pre = pre + gated @ kernel[self.width + p + index]
                pre = _add_bias(pre + per_ray(embedding.skip), layer.bias[...])
            else:
                pre = _add_bias(h @ kernel, layer.bias[...])
            h = jax.nn.relu(pre)
        density = jax.nn.softplus(self.density_out(h)[..., 0] + DENSITY_SHIFT)
        if self.view_layer is not None:
            if embedding.view is None:
                raise ValueError(f"this field needs a view input of size {self.view_dim}")
            g = h @ self.view_layer.kernel[...][: self.width] + per_ray(embedding.view)
            h = jax.nn.relu(g)
        return density, h

    def project(self, composited: jax.Array, accumulation: jax.Array | None = None) -> jax.Array:
        """Output projection ``W_o Σwᵢgᵢ + b_o Σwᵢ``: per-ray features from composited ``g``.

        Args:
          composited: ``[..., sample_dim]`` (``Σᵢ wᵢ gᵢ``, or a single ``g``).
          accumulation: ``[...]`` ``Σᵢ wᵢ``; None means 1 (projecting a single sample).

        Returns:
          ``[..., feature_dim]``.
        """
        out = composited @ self.feature_out.kernel[...]
        bias = self.feature_out.bias[...]
        if accumulation is None:
            return _add_bias(out, bias)
        return out + jnp.expand_dims(accumulation, -1) * bias.reshape((1,) * (out.ndim - 1) + (-1,))

    # -- per-sample eq. 1 form ----------------------------------------------------------------

    def __call__(
        self, points: jax.Array, condition: jax.Array, view: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """``(σ, M)`` per sample, paper 000 eq. 1.

        Args:
          points: ``[..., S, 3 * spaces]`` in the unit-sphere frame(s).
          condition: ``[..., condition_dim]`` per ray (leading axes of ``points`` without S).
          view: ``[..., view_dim]`` per ray, iff ``view_dim > 0``.

        Returns:
          ``(density [..., S, 1], features [..., S, feature_dim])``.
        """
        density, g = self.sample(points, self.embed(condition, view))
        return density[..., None], self.project(g)


class AudioNet(nnx.Module):
    """AD-NeRF's audio network: a window of audio features ``[W, D]`` -> ``F_lip [out_dim]``.

    AD-NeRF runs strided 1D convolutions with LeakyReLU(0.02) over the time axis of a 16-frame
    DeepSpeech window (29 -> 32 -> 32 -> 64 -> 64 channels, 16 -> 1 steps), a linear layer to a
    64-dim code, and smooths codes over 8 neighbouring frames with an attention network. Here the
    window (HuBERT or any per-frame feature) already spans the frame's neighbourhood, so the
    attention smoothing runs over the time steps left after the convolutions: a linear score per
    step, softmax over time, weighted mean, then the output layer. With a 16-step window and 4
    convolutions this is AD-NeRF's network exactly up to the attention.

    Args:
      in_dim: channels ``D`` of the audio features (1024 for HuBERT-large, 29 for DeepSpeech).
      out_dim: size of ``F_lip``.
      channels: output channels of the strided convolutions (each halves the time axis).
      spaces: how many 3D frames a point arrives in (``points [..., 3 * spaces]``): 1, or 2 for
        the head's and the camera's frame; each is encoded on its own (its own grid tables) and
        the encodings are concatenated.
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 64,
        *,
        channels: tuple[int, ...] = (32, 32, 64, 64),
        rngs: nnx.Rngs,
    ):
        self.in_dim = in_dim
        convs = []
        previous = in_dim
        for c in channels:
            convs.append(
                nnx.Conv(previous, c, kernel_size=(3,), strides=(2,), padding="SAME", rngs=rngs)
            )
            previous = c
        self.convs = nnx.List(convs)
        self.attention_score = nnx.Linear(previous, 1, rngs=rngs)
        self.out = nnx.Linear(previous, out_dim, rngs=rngs)

    def __call__(self, window: jax.Array) -> jax.Array:
        """``window [..., W, D]`` -> ``[..., out_dim]``."""
        window = jnp.asarray(window)
        if window.ndim < 2 or window.shape[-1] != self.in_dim:
            raise ValueError(f"audio window must be [..., W, {self.in_dim}], got {window.shape}")
        batch = window.shape[:-2]
        x = window.reshape((-1, *window.shape[-2:]))
        for conv in self.convs:
            x = jax.nn.leaky_relu(conv(x), negative_slope=0.02)
        attention = jax.nn.softmax(self.attention_score(x), axis=-2)  # [N, T', 1] over time
        pooled = jnp.sum(attention * x, axis=-2)
        return self.out(pooled).reshape((*batch, -1))
