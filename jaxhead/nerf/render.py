"""Volume rendering along rays: sampling ``t`` values, compositing, hierarchical resampling.

The quadrature is NeRF's (Mildenhall et al. 2020, eq. 3), which both papers use unchanged to
render their head NeRFs (paper 000 sec. 3.2, paper 001 sec. 3.4). All functions are pure and
batch over arbitrary leading axes ``[...]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
    density = jnp.asarray(density)
    t_vals = jnp.asarray(t_vals)
    dir_norm = jnp.asarray(dir_norm)
    deltas = jnp.concatenate(
        [t_vals[..., 1:] - t_vals[..., :-1], jnp.full_like(t_vals[..., :1], LAST_DELTA)], axis=-1
    )
    deltas = deltas * dir_norm[..., None]
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
    key: jax.Array | None, bins: jax.Array, weights: jax.Array, num_samples: int
) -> jax.Array:
    """Inverse-CDF sampling of a piecewise-constant pdf: NeRF's hierarchical sampling (sec. 5.2).

    Bin ``i`` spans ``[bins[i], bins[i+1]]`` and has probability ∝ ``max(weights[i], 0) + 1e-5``.
    The 1e-5 is NeRF's: all-zero weights give the uniform pdf over ``[bins[0], bins[-1]]``.
    Quantiles ``u`` are mapped through the inverse CDF, which is linear inside each bin.

    With a key the quantiles are stratified, ``u_k = (k + U_k) / n`` with ``U_k ~ U[0, 1)`` (as in
    multinerf): each sample, taken alone, is not uniform over the pdf, but their pooled
    distribution is exactly the pdf, with lower variance than i.i.d. draws, and they come out
    sorted. With ``key=None`` the quantiles are NeRF's deterministic ``linspace(0, 1, n)``, so the
    first and last samples are ``bins[0]`` and ``bins[-1]``.

    Like NeRF, the samples carry no gradient (``stop_gradient``): the proposal distribution is
    not trained through the positions it proposes.

    Args:
      key: PRNG key, or None for evenly spaced quantiles.
      bins: ``[..., S+1]`` sorted bin edges.
      weights: ``[..., S]`` non-negative bin weights (need not be normalised).
      num_samples: ``n``, static Python int.

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
        u = jnp.broadcast_to(
            jnp.linspace(0.0, 1.0, num_samples, dtype=cdf.dtype), (*batch_shape, num_samples)
        )
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
