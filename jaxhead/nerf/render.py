"""Volume rendering: sampling ``t`` values, compositing, hierarchical resampling, feature maps.

The quadrature is NeRF's (Mildenhall et al. 2020, eq. 3), which both papers use unchanged to
render their head NeRFs (paper 000 sec. 3.2, paper 001 sec. 3.4). All functions are pure and
batch over arbitrary leading axes ``[...]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxhead.nerf.rays import generate_rays

# NeRF's stand-in for the infinite length of the last interval: the last sample absorbs all
# remaining transmittance whenever its density is non-zero.
LAST_DELTA = 1e10

# Added to every weight before building the CDF in ``sample_pdf`` (NeRF's 1e-5): keeps the CDF
# strictly increasing so that all-zero weights resample uniformly and no interval has width 0.
PDF_WEIGHT_EPS = 1e-5


def sample_along_rays(
    key: jax.Array | None,
    near: float | jax.Array,
    far: float | jax.Array,
    num_samples: int,
    batch_shape: tuple[int, ...],
    stratified: bool = True,
) -> jax.Array:
    """Sorted ray parameters ``t`` in ``[near, far]``: NeRF's stratified sampling (eq. 2).

    ``[near, far]`` is split into ``num_samples`` equal bins. With a key and ``stratified`` one
    ``t`` is drawn uniformly inside each bin (so the result is sorted and lies in ``[near, far)``);
    otherwise each ``t`` is its bin's midpoint.

    Args:
      key: PRNG key, or None for the deterministic midpoints.
      near: scalar or array broadcastable to ``batch_shape``.
      far: scalar or array broadcastable to ``batch_shape``.
      num_samples: ``S``, static Python int.
      batch_shape: leading shape of the result (static tuple).
      stratified: jitter inside the bins (training); False gives midpoints (evaluation).

    Returns:
      ``t [*batch_shape, S]``.
    """
    batch_shape = tuple(batch_shape)
    dtype = jnp.result_type(near, far, jnp.float32)
    near = jnp.broadcast_to(jnp.asarray(near, dtype), batch_shape)[..., None]
    far = jnp.broadcast_to(jnp.asarray(far, dtype), batch_shape)[..., None]
    bin_starts = jnp.arange(num_samples, dtype=dtype) / num_samples
    if key is None or not stratified:
        offsets = jnp.full((*batch_shape, num_samples), 0.5, dtype)
    else:
        offsets = jax.random.uniform(key, (*batch_shape, num_samples), dtype)
    bin_starts = bin_starts.reshape((1,) * len(batch_shape) + (num_samples,))
    fractions = bin_starts + offsets / num_samples  # in [0, 1), one per bin
    return near + (far - near) * fractions


def volume_weights(
    density: jax.Array, t_vals: jax.Array, dir_norm: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Alpha, transmittance and weights of NeRF's quadrature (eq. 3).

    δᵢ = (tᵢ₊₁ − tᵢ)·‖d‖ with the last δ = 1e10·‖d‖; αᵢ = 1 − exp(−max(σᵢ, 0)·δᵢ);
    Tᵢ = Πⱼ<ᵢ(1 − αⱼ); wᵢ = Tᵢ·αᵢ.

    Tᵢ is computed as ``exp(−Σⱼ<ᵢ σⱼδⱼ)``, which equals the product of ``1 − αⱼ`` exactly in
    real arithmetic, and (as in multinerf) keeps gradients finite when some ``αⱼ`` is 1.
    Overflowing optical depths (``σδ = inf`` for σ ~ 1e30) give α = 1 and zero gradients, not NaN.

    Args:
      density: ``[..., S]`` raw densities σ (negative values count as 0).
      t_vals: ``[..., S]`` sorted ray parameters.
      dir_norm: ``[...]`` norms of the (unnormalised) ray directions.

    Returns:
      ``(alpha [..., S], transmittance [..., S], weights [..., S])``.
    """
    t_vals = jnp.asarray(t_vals)
    dir_norm = jnp.asarray(dir_norm)
    deltas = jnp.concatenate(
        [t_vals[..., 1:] - t_vals[..., :-1], jnp.full_like(t_vals[..., :1], LAST_DELTA)], axis=-1
    )
    return interval_weights(density, deltas * dir_norm[..., None])


def interval_weights(
    density: jax.Array, deltas: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Alpha, transmittance and weights of samples with their own interval lengths ``δᵢ``
    (NeRF eq. 3; :func:`volume_weights` takes ``δᵢ = tᵢ₊₁ − tᵢ``, the occupancy-guided renderer
    the spacing of its samples): ``αᵢ = 1 − exp(−max(σᵢ, 0)·δᵢ)``, ``Tᵢ = exp(−Σⱼ<ᵢ σⱼδⱼ)``,
    ``wᵢ = Tᵢ·αᵢ``.

    Args:
      density: ``[..., S]`` raw densities σ (negative values count as 0).
      deltas: ``[..., S]`` interval lengths in scene units along the ray (``Δt·‖d‖``).

    Returns:
      ``(alpha [..., S], transmittance [..., S], weights [..., S])``.
    """
    density = jnp.asarray(density)
    optical_depth = jnp.maximum(density, 0.0) * deltas
    alpha = 1.0 - jnp.exp(-optical_depth)
    accumulated_depth = jnp.concatenate(
        [jnp.zeros_like(optical_depth[..., :1]), jnp.cumsum(optical_depth[..., :-1], axis=-1)],
        axis=-1,
    )
    transmittance = jnp.exp(-accumulated_depth)
    weights = alpha * transmittance
    return alpha, transmittance, weights


def composite(
    density: jax.Array, values: jax.Array, t_vals: jax.Array, dir_norm: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Volume-render per-sample values along rays (NeRF eq. 3; paper 000 eq. 1).

    Weights are those of :func:`volume_weights`; the rendered value is ``Σᵢ wᵢ vᵢ``, which for the
    head NeRF of paper 000 is the 256-channel feature map the neural renderer upsamples. No
    background is added: callers composite one with ``rendered + (1 − accumulation)·bg``.

    Args:
      density: ``[..., S]`` raw densities σ.
      values: ``[..., S, C]`` per-sample values (colours or features).
      t_vals: ``[..., S]`` sorted ray parameters.
      dir_norm: ``[...]`` norms of the ray directions (``‖d‖``, 1 for unit directions).

    Returns:
      ``(rendered [..., C], weights [..., S], accumulation [...] = Σ wᵢ, depth [...] = Σ wᵢ tᵢ)``.
    """
    _, _, weights = volume_weights(density, t_vals, dir_norm)
    rendered = jnp.sum(weights[..., None] * values, axis=-2)
    accumulation = jnp.sum(weights, axis=-1)
    depth = jnp.sum(weights * t_vals, axis=-1)
    return rendered, weights, accumulation, depth


def sample_pdf(
    key: jax.Array | None,
    bins: jax.Array,
    weights: jax.Array,
    num_samples: int,
    midpoints: bool = False,
) -> jax.Array:
    """Inverse-CDF sampling of a piecewise-constant pdf: NeRF's hierarchical sampling (sec. 5.2).

    Bin ``i`` spans ``[bins[i], bins[i+1]]`` and has probability ∝ ``max(weights[i], 0) + 1e-5``.
    The 1e-5 is NeRF's: all-zero weights give the uniform pdf over ``[bins[0], bins[-1]]``.
    Quantiles ``u`` are mapped through the inverse CDF, which is linear inside each bin.

    With a key the quantiles are stratified, ``u_k = (k + U_k) / n`` with ``U_k ~ U[0, 1)`` (as in
    multinerf): each sample, taken alone, is not uniform over the pdf, but their pooled
    distribution is exactly the pdf, with lower variance than i.i.d. draws, and they come out
    sorted. With ``key=None`` the quantiles are NeRF's deterministic ``linspace(0, 1, n)``, so the
    first and last samples are ``bins[0]`` and ``bins[-1]``; with ``midpoints`` they are the
    strata's midpoints ``(k + 1/2) / n`` instead (no sample on the span's ends).

    Like NeRF, the samples carry no gradient (``stop_gradient``): the proposal distribution is
    not trained through the positions it proposes.

    Args:
      key: PRNG key, or None for evenly spaced quantiles.
      bins: ``[..., S+1]`` sorted bin edges.
      weights: ``[..., S]`` non-negative bin weights (need not be normalised).
      num_samples: ``n``, static Python int.
      midpoints: deterministic quantiles at the strata's midpoints (``key=None`` only).

    Returns:
      ``[..., n]`` sorted samples inside ``[bins[..., 0], bins[..., -1]]``.
    """
    bins = jnp.asarray(bins)
    weights = jnp.maximum(jnp.asarray(weights), 0.0) + PDF_WEIGHT_EPS
    num_bins = weights.shape[-1]
    if bins.shape[-1] != num_bins + 1:
        raise ValueError(f"bins {bins.shape} must have one more entry than weights {weights.shape}")
    batch_shape = jnp.broadcast_shapes(bins.shape[:-1], weights.shape[:-1])
    bins = jnp.broadcast_to(bins, (*batch_shape, num_bins + 1))
    weights = jnp.broadcast_to(weights, (*batch_shape, num_bins))

    pdf = weights / jnp.sum(weights, axis=-1, keepdims=True)
    # Interior CDF values only: cdf[0] = 0 and cdf[S] = 1 hold by construction, written exactly.
    interior_cdf = jnp.minimum(jnp.cumsum(pdf[..., :-1], axis=-1), 1.0)
    cdf = jnp.concatenate(
        [jnp.zeros_like(pdf[..., :1]), interior_cdf, jnp.ones_like(pdf[..., :1])], axis=-1
    )

    if key is None:
        quantiles = (
            (jnp.arange(num_samples, dtype=cdf.dtype) + 0.5) / num_samples
            if midpoints
            else jnp.linspace(0.0, 1.0, num_samples, dtype=cdf.dtype)
        )
        u = jnp.broadcast_to(quantiles, (*batch_shape, num_samples))
    else:
        jitter = jax.random.uniform(key, (*batch_shape, num_samples), cdf.dtype)
        strata = jnp.arange(num_samples, dtype=cdf.dtype).reshape(
            (1,) * len(batch_shape) + (num_samples,)
        )
        u = (strata + jitter) / num_samples

    # Bin index of each quantile: the number of interior CDF values at or below it, in [0, S-1].
    index = jnp.sum(u[..., :, None] >= interior_cdf[..., None, :], axis=-1)
    cdf_lo = jnp.take_along_axis(cdf, index, axis=-1)
    cdf_hi = jnp.take_along_axis(cdf, index + 1, axis=-1)
    bin_lo = jnp.take_along_axis(bins, index, axis=-1)
    bin_hi = jnp.take_along_axis(bins, index + 1, axis=-1)
    width = cdf_hi - cdf_lo
    fraction = jnp.clip((u - cdf_lo) / jnp.where(width > 0, width, 1.0), 0.0, 1.0)
    samples = bin_lo + fraction * (bin_hi - bin_lo)
    # Rounding in bin_lo + fraction * width can cross a bin edge by one ulp; sorting and clipping
    # make "sorted and inside the bins" exact rather than approximate.
    samples = jnp.sort(samples, axis=-1)
    samples = jnp.clip(samples, bins[..., :1], bins[..., -1:])
    return jax.lax.stop_gradient(samples)


# --- rendering a frame: bounds, hierarchical sampling, the feature map ---------------------------

# ``(points [..., S, 3], unit_dirs [..., 3]) -> (density [..., S], values [..., S, P])``.
SampleFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
# ``(composited [..., P], accumulation [...]) -> features [..., F]``.
ProjectFn = Callable[[jax.Array, jax.Array], jax.Array]


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


def occupancy_at(occupancy: jax.Array, points: jax.Array) -> jax.Array:
    """``[...]`` occupancy of points ``[..., 3]`` (unit-sphere frame) in a grid ``[R, R, R]`` over
    the cube ``[-1, 1]^3`` (nearest cell; 0 outside the cube)."""
    resolution = occupancy.shape[0]
    cell = jnp.floor((points + 1.0) * (0.5 * resolution)).astype(jnp.int32)
    inside = jnp.all((cell >= 0) & (cell < resolution), axis=-1)
    cell = jnp.clip(cell, 0, resolution - 1)
    value = occupancy[cell[..., 0], cell[..., 1], cell[..., 2]]
    return jnp.where(inside, value, 0.0)


def render_ray_occupancy(
    sample_fn: SampleFn,
    origin: jax.Array,
    direction: jax.Array,
    key: jax.Array | None,
    occupancy: jax.Array,
    *,
    num_candidates: int,
    num_samples: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Volume rendering of one ray with its samples placed where an occupancy grid says the
    scene is (instant-NGP's empty-space skipping, in fixed shapes).

    The ray's span in the unit sphere is cut into ``num_candidates`` equal bins; each bin is
    occupied when the grid is at its midpoint (:func:`occupancy_at`). ``num_samples`` samples
    are drawn from the pdf that is uniform over the occupied bins (:func:`sample_pdf`: stratified
    with a key, the strata's midpoints without), so they are spaced ``Δ = L / num_samples``
    apart inside the occupied length ``L``. Each sample then stands for ``min(tᵢ₊₁ − tᵢ, Δ)`` of
    the ray (its interval, but never the empty gap to the next occupied stretch), and the samples
    are composited with those lengths (:func:`interval_weights`). A ray through no occupied bin
    spreads its samples over the whole span.

    Args:
      sample_fn: the field (:data:`SampleFn`), called with ``[num_samples, 3]`` points.
      origin, direction: ``[3]`` in the unit-sphere frame.
      key: PRNG key (stratified samples) or None (deterministic).
      occupancy: ``[R, R, R]`` grid over ``[-1, 1]^3``, > 0 where occupied.
      num_candidates, num_samples: static.

    Returns:
      ``(composited [P], accumulation [], depth [])``.
    """
    near, far, hit = sphere_bounds(origin, direction)
    dir_norm = jnp.linalg.norm(direction)
    unit_dir = direction / dir_norm
    edges = near + (far - near) * jnp.linspace(0.0, 1.0, num_candidates + 1)
    mids = 0.5 * (edges[1:] + edges[:-1])
    occupied = occupancy_at(occupancy, origin[None, :] + mids[:, None] * direction[None, :]) > 0
    occupied = occupied.astype(edges.dtype)
    t = sample_pdf(key, edges, occupied, num_samples, midpoints=True)
    length = (far - near) * jnp.maximum(jnp.sum(occupied), 1.0) / num_candidates
    spacing = length / num_samples
    gaps = jnp.concatenate([t[1:] - t[:-1], (far - t[-1])[None]])
    deltas = jnp.minimum(gaps, spacing) * dir_norm
    points = origin[None, :] + t[:, None] * direction[None, :]
    density, values = sample_fn(points, unit_dir)
    density = jnp.where(hit, density, 0.0)
    _, _, weights = interval_weights(density, deltas)
    return weights @ values, jnp.sum(weights), jnp.sum(weights * t)


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


def camera_frame_points(
    points: jax.Array, c2w: jax.Array, center: Sequence[float], radius: float
) -> jax.Array:
    """Sample points of one frame in its camera's frame, normalised like the head's.

    Args:
      points: ``[..., 3]`` in the head's unit-sphere frame (``x = center + radius * points``).
      c2w: ``[4, 4]`` the frame's camera-to-world (head) transform ``(R, t)``.
      center, radius: the bounding sphere (scene units).

    Returns:
      ``[..., 3]``: ``(R^T (x - t) + (0, 0, |t|) - center) / radius``: the point in camera
      coordinates, moved along the optical axis by the camera's distance to the head, so that a
      camera looking at the head puts its centre at the origin. A point that stays put in front
      of the camera while the head turns (the torso, the shoulders) keeps these coordinates from
      frame to frame; the head's own points do not (the head frame keeps those).
    """
    points = jnp.asarray(points)
    row = (1,) * (points.ndim - 1) + (3,)  # explicit broadcasting over the leading axes
    center = jnp.asarray(center, jnp.float32).reshape(row)
    world = center + radius * points
    rotation, translation = c2w[:3, :3], c2w[:3, 3]
    camera = (world - translation.reshape(row)) @ rotation  # R^T (x - t), row vectors
    shift = jnp.stack([0.0, 0.0, jnp.linalg.norm(translation)]).astype(camera.dtype)
    return (camera + shift.reshape(row) - center) / radius


def pose_features(c2w: jax.Array) -> jax.Array:
    """The head's pose relative to its camera as a condition: ``[..., 4, 4]`` -> ``[..., 12]``.

    ``(R.ravel(), -R^T t / |t|)`` of the camera-to-head transform ``(R, t)``: the nine rotation
    entries and the direction of the head's centre seen from the camera (where in the image
    the head sits), both dimensionless, so they do not depend on a video's scene scale. A field
    that takes them (``config.model.pose_condition``) can let what the camera frame keeps
    still (the torso) follow the head's turns and shifts, as AD-NeRF's torso NeRF does with the
    head pose.
    """
    c2w = jnp.asarray(c2w)
    rotation, translation = c2w[..., :3, :3], c2w[..., :3, 3]
    direction = -jnp.einsum("...ji,...j->...i", rotation, translation)
    direction = direction / jnp.maximum(jnp.linalg.norm(direction, axis=-1, keepdims=True), 1e-9)
    flat = rotation.reshape(rotation.shape[:-2] + (9,))
    return jnp.concatenate([flat, direction], axis=-1)
