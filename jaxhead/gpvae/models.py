"""Transformer GP-VAE over head-pose + blink sequences and its cross-modal encoder (paper 001 §3.4).

Layout, top to bottom:

* Flax NNX modules holding parameters and a forward pass only: sequence backbones (Transformer,
  LSTM, per-frame MLP), the posterior head, the VAE (encoder ``E_h``, decoder ``D``) and the
  cross-modal encoder ``E_ah`` (fig. 4b);
* generation: one window from audio + beginning-of-pose (eq. 9), autoregressive generation of any
  length, and prior sampling without audio.

The latent math they call (the posterior's Cholesky factor, reparameterised sampling, the GP
prior and its conditional) is framework-free, in :mod:`jaxhead.gpvae.kernels`. Per latent channel
the posterior head outputs, at each frame ``t``, a mean ``µ_t``, an innovation scale ``s_t > 0``
and an autoregressive coefficient ``ρ_t ∈ (−1, 1)``: the Gauss-Markov posterior described there
(a choice the paper leaves open). The i.i.d.-prior baselines use the diagonal posterior
(``ρ = 0``) of a plain VAE.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.gpvae.kernels import gp_conditional, sample_posterior

# Ablation variants of paper 001 table 4: (backbone, prior, posterior).
VARIANTS = {
    "mlp_vae": ("mlp", "iid", "diagonal"),
    "lstm_vae": ("lstm", "iid", "diagonal"),
    "transformer_vae": ("transformer", "iid", "diagonal"),
    "transformer_gpvae": ("transformer", "gp", "ar1"),
}
MIN_SCALE = 1e-3  # floor of the posterior innovation scale s_t
MAX_COEFF = 0.99  # |ρ_t| bound: keeps A⁻¹ well conditioned over a window


def sinusoidal_positions(num_positions: int, width: int) -> jax.Array:
    """``[num_positions, width]`` fixed sinusoidal position codes (Vaswani et al.)."""
    pos = jnp.arange(num_positions, dtype=jnp.float32)[:, None]
    freq = jnp.exp(-jnp.log(10_000.0) * jnp.arange(0, width, 2, dtype=jnp.float32) / width)
    angles = pos * freq[None, :]
    codes = jnp.zeros((num_positions, width), jnp.float32)
    codes = codes.at[:, 0::2].set(jnp.sin(angles))
    return codes.at[:, 1::2].set(jnp.cos(angles[:, : width // 2]))


# ------------------------------------------------------------------------------------------------
# Modules
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Static architecture of one variant (built from ``config.model``)."""

    variant: str = "transformer_gpvae"
    feature_dim: int = 7  # 3 rotation + 3 translation + 1 blink
    audio_dim: int = 52
    latent_dim: int = 8
    width: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 2
    cme_depth: int = 2

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(
                f"unknown model.variant {self.variant!r}; use one of {sorted(VARIANTS)}"
            )

    @property
    def backbone(self) -> str:
        return VARIANTS[self.variant][0]

    @property
    def prior(self) -> str:
        return VARIANTS[self.variant][1]

    @property
    def posterior(self) -> str:
        return VARIANTS[self.variant][2]


class TransformerBlock(nnx.Module):
    """Pre-LayerNorm Transformer block; optionally causal (frame t attends to frames ≤ t)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(width, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, rngs=rngs)
        self.mlp_in = nnx.Linear(width, mlp_ratio * width, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp_ratio * width, width, rngs=rngs)

    def __call__(self, x: jax.Array, causal: bool) -> jax.Array:
        mask = nnx.make_causal_mask(x[..., 0]) if causal else None
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm2(x))))


class TransformerStack(nnx.Module):
    """``[B, T, in] -> [B, T, width]``: projection, sinusoidal positions, blocks, LayerNorm."""

    def __init__(self, in_features, width, depth, heads, mlp_ratio, causal, rngs: nnx.Rngs):
        self.proj = nnx.Linear(in_features, width, rngs=rngs)
        self.blocks = nnx.List(
            [TransformerBlock(width, heads, mlp_ratio, rngs) for _ in range(depth)]
        )
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.causal = causal
        self.width = width

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.proj(x)
        x = x + jnp.broadcast_to(sinusoidal_positions(x.shape[-2], self.width), x.shape)
        for block in self.blocks:
            x = block(x, self.causal)
        return self.norm(x)


class LSTMLayer(nnx.Module):
    """One LSTM layer ``[B, T, W] -> [B, T, W]`` (gates i, f, g, o; carry starts at zero).

    Written with ``jax.lax.scan`` over plain ``nnx.Linear`` layers rather than ``nnx.RNN`` so the
    module can be rebuilt with ``nnx.merge`` inside the jitted step like every other module.
    """

    def __init__(self, width: int, rngs: nnx.Rngs):
        self.input_gates = nnx.Linear(width, 4 * width, rngs=rngs)
        self.hidden_gates = nnx.Linear(width, 4 * width, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        gates_x = jnp.moveaxis(self.input_gates(x), -2, 0)  # [T, B, 4W]
        kernel = self.hidden_gates.kernel[...]
        zeros = jnp.zeros(x.shape[:-2] + x.shape[-1:], x.dtype)

        def step(carry, gx):
            c, h = carry
            i, f, g, o = jnp.split(gx + h @ kernel, 4, axis=-1)
            c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, h), h

        _, hs = jax.lax.scan(step, (zeros, zeros), gates_x)
        return jnp.moveaxis(hs, 0, -2)


class LSTMStack(nnx.Module):
    """``[B, T, in] -> [B, T, width]``: unidirectional (hence causal) stacked residual LSTM."""

    def __init__(self, in_features, width, depth, rngs: nnx.Rngs):
        self.proj = nnx.Linear(in_features, width, rngs=rngs)
        self.layers = nnx.List([LSTMLayer(width, rngs) for _ in range(depth)])

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.proj(x)
        for layer in self.layers:
            x = x + layer(x)
        return x


class MLPStack(nnx.Module):
    """``[B, T, in] -> [B, T, width]``: the same MLP on every frame (no temporal mixing)."""

    def __init__(self, in_features, width, depth, rngs: nnx.Rngs):
        sizes = [in_features] + [width] * max(depth, 1)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.gelu(x)
        return x


def make_backbone(spec: ModelSpec, in_features: int, causal: bool, rngs: nnx.Rngs) -> nnx.Module:
    if spec.backbone == "transformer":
        return TransformerStack(
            in_features, spec.width, spec.depth, spec.heads, spec.mlp_ratio, causal, rngs
        )
    if spec.backbone == "lstm":
        return LSTMStack(in_features, spec.width, spec.depth, rngs)
    return MLPStack(in_features, spec.width, spec.depth, rngs)


class PosteriorHead(nnx.Module):
    """Features ``[B, T, W]`` -> posterior ``(mean, scale, coeff)``, each ``[B, L, T]``.

    ``scale = softplus(·) + MIN_SCALE``; ``coeff = MAX_COEFF · tanh(·)`` for the structured
    (``ar1``) posterior and exactly 0 for the diagonal one.
    """

    def __init__(self, width: int, latent_dim: int, structured: bool, rngs: nnx.Rngs):
        self.out = nnx.Linear(width, 3 * latent_dim, rngs=rngs)
        self.structured = structured

    def __call__(self, features: jax.Array):
        mean, raw_scale, raw_coeff = jnp.split(jnp.swapaxes(self.out(features), -1, -2), 3, -2)
        # Start near the unit-variance prior: softplus(x + 0.5413) = 1 at x = 0.
        scale = jax.nn.softplus(raw_scale + 0.5413) + MIN_SCALE
        coeff = MAX_COEFF * jnp.tanh(raw_coeff) if self.structured else jnp.zeros_like(raw_coeff)
        return mean, scale, coeff


class CrossModalEncoder(nnx.Module):
    """``E_ah`` (fig. 4b): ``[BOP latents (τ) : audio (T)]`` along time -> posterior over T frames.

    The encoded beginning-of-pose ``f_h = E_h(h_{1:τ})`` (latent means, ``[B, τ, L]``) and the
    audio features ``f_a`` (``[B, T, A]``) are projected to a shared width, tagged with a segment
    embedding, concatenated along time (BOP first) and mixed by a causal Transformer; the outputs at
    the ``T`` audio positions give the latent distribution of the window. Causal attention makes
    frame ``t`` depend on the BOP and on audio frames ``≤ t`` only.
    """

    def __init__(self, spec: ModelSpec, rngs: nnx.Rngs):
        w = spec.width
        self.audio_proj = nnx.Linear(spec.audio_dim, w, rngs=rngs)
        self.bop_proj = nnx.Linear(spec.latent_dim, w, rngs=rngs)
        self.segment = nnx.Param(0.02 * jax.random.normal(rngs.params(), (2, w)))
        self.blocks = nnx.List(
            [TransformerBlock(w, spec.heads, spec.mlp_ratio, rngs) for _ in range(spec.cme_depth)]
        )
        self.norm = nnx.LayerNorm(w, rngs=rngs)
        self.head = PosteriorHead(w, spec.latent_dim, spec.posterior == "ar1", rngs)
        self.width = w

    def __call__(self, audio: jax.Array, bop_latent: jax.Array):
        tau = bop_latent.shape[-2]
        bop = self.bop_proj(bop_latent)
        bop = bop + jnp.broadcast_to(self.segment[0], bop.shape)
        bop = bop + jnp.broadcast_to(sinusoidal_positions(tau, self.width), bop.shape)
        aud = self.audio_proj(audio)
        aud = aud + jnp.broadcast_to(self.segment[1], aud.shape)
        aud = aud + jnp.broadcast_to(sinusoidal_positions(audio.shape[-2], self.width), aud.shape)
        x = jnp.concatenate([bop, aud], axis=-2)
        for block in self.blocks:
            x = block(x, causal=True)
        return self.head(self.norm(x[..., tau:, :]))


class SequenceVAE(nnx.Module):
    """Face-attribute VAE (fig. 4a) plus its cross-modal encoder (fig. 4b).

    ``encode``: ``h [B, T, D] -> (mean, scale, coeff)`` each ``[B, L, T]`` (eqs. 4-5), by the
    encoder ``E_h`` (bidirectional for the Transformer: the posterior sees the whole window).
    ``decode``: ``z [B, L, T] -> ĥ [B, T, D]`` by the decoder ``D`` (causal: frame t reads
    ``z_{≤t}``, so generated frames never depend on later latents).
    ``cme``: the cross-modal encoder ``E_ah``.
    """

    def __init__(self, spec: ModelSpec, rngs: nnx.Rngs):
        self.encoder = make_backbone(spec, spec.feature_dim, causal=False, rngs=rngs)
        self.posterior = PosteriorHead(spec.width, spec.latent_dim, spec.posterior == "ar1", rngs)
        self.decoder = make_backbone(spec, spec.latent_dim, causal=True, rngs=rngs)
        self.readout = nnx.Linear(spec.width, spec.feature_dim, rngs=rngs)
        self.cme = CrossModalEncoder(spec, rngs)

    def encode(self, h: jax.Array):
        return self.posterior(self.encoder(h))

    def decode(self, z: jax.Array) -> jax.Array:
        return self.readout(self.decoder(jnp.swapaxes(z, -1, -2)))


# ------------------------------------------------------------------------------------------------
# Generation (eq. 9 and autoregressive continuation)
# ------------------------------------------------------------------------------------------------


POSE_ANCHORS = ("mean", "last")


def bop_offset(bop: jax.Array, anchor: str = "mean") -> jax.Array:
    """``[..., 1, D]``: the BOP frames' ``[..., τ, D]`` mean pose (``anchor="mean"``) or the pose
    of their last frame (``"last"``); blink channel 0.

    With ``model.relative_pose`` every window is expressed relative to it: the model sees and
    predicts pose changes from where the head is, not absolute poses, so speakers whose mean
    head position and orientation differ (camera distance, facing) share one motion model and a
    new speaker's offset is not pulled toward the training speakers' mean. With the last frame
    as the anchor (``model.pose_anchor="last"``) an output of zero is "hold the last BOP frame",
    the baseline a short-horizon predictor has to beat; the model learns the change from there.
    """
    if anchor not in POSE_ANCHORS:
        raise ValueError(f"pose anchor {anchor!r}: use one of {POSE_ANCHORS}")
    if anchor == "mean":
        ref = jnp.mean(bop, axis=-2, keepdims=True)
    else:
        ref = bop[..., -1:, :]
    mask = (jnp.arange(bop.shape[-1]) < 6).astype(bop.dtype)  # rotation 3 + translation 3
    return ref * jnp.broadcast_to(mask, ref.shape)


def cme_window(
    model: SequenceVAE,
    audio: jax.Array,
    bop: jax.Array,
    noise: jax.Array,
    relative_pose: bool = False,
    anchor: str = "mean",
):
    """One window: audio ``[B, T, A]`` + BOP frames ``[B, τ, D]`` -> ``ĥ [B, T, D]`` (eq. 9).

    ``noise [B, L, T]`` (zeros give the posterior mean). Frames ``τ..T−1`` are the prediction;
    frames ``0..τ−1`` re-decode the BOP. ``relative_pose``: the model works on the window
    minus :func:`bop_offset` of ``anchor`` (as it was trained); the offset is added back to its
    output.
    """
    offset = bop_offset(bop, anchor) if relative_pose else jnp.zeros((), bop.dtype)
    bop_latent, _, _ = model.encode(bop - offset)  # f_h = E_h(h_{1:τ}): latent means [B, L, τ]
    mean, scale, coeff = model.cme(audio, jnp.swapaxes(bop_latent, -1, -2))
    out = model.decode(sample_posterior(mean, scale, coeff, noise))
    return out + jnp.broadcast_to(offset, out.shape) if relative_pose else out


def window_starts(num_frames: int, window: int, bop: int) -> list[int]:
    """Start frames of the windows covering ``num_frames``; consecutive windows overlap by τ."""
    stride = window - bop
    if stride < 1:
        raise ValueError(f"window ({window}) must be longer than the BOP ({bop})")
    count = max(1, -(-(num_frames - bop) // stride))
    return [k * stride for k in range(count)]


def generate(
    window_fn, audio: jax.Array | None, bop: jax.Array, num_frames: int, window: int
) -> jax.Array:
    """Autoregressive generation of any length, window by window (paper 001 §3.4 test phase).

    The first ``τ`` output frames are the given BOP; window ``k`` covers frames
    ``[k(T−τ), k(T−τ)+T)``, takes the last ``τ`` frames of the sequence so far as its BOP and
    appends its frames ``τ..T−1``. Audio past the end is padded with its last frame. Because
    ``E_ah`` and ``D`` are causal and window ``k`` draws its own noise, frame ``n`` depends only on
    audio frames ``≤ n``, the BOP and the noise of windows up to ``n``'s: frames after ``t`` never
    change frames ``≤ t`` (tests/test_gpvae_models.py checks this).

    Args:
      window_fn: ``(audio [B, T, A] | None, bop [B, τ, D], k) -> [B, T, D]`` (see
        :func:`cme_window`; the caller jits it and derives window ``k``'s noise from ``k``).
      audio: ``[B, N_a, A]`` per-frame audio features (``N_a >= 1``), or None.
      bop: ``[B, τ, D]`` first frames.
      num_frames: ``N``, frames to return.
      window: ``T``.

    Returns:
      ``[B, N, D]`` NumPy array.
    """
    # Host-side bookkeeping in NumPy: eager jnp ops on growing shapes would compile every window.
    bop = np.asarray(bop)
    tau = bop.shape[-2]
    if num_frames <= tau:
        return bop[..., :num_frames, :]
    audio = None if audio is None else np.asarray(audio)
    chunks = [bop]
    last = bop
    for k, start in enumerate(window_starts(num_frames, window, tau)):
        win_audio = None
        if audio is not None:
            idx = np.clip(np.arange(start, start + window), 0, audio.shape[-2] - 1)
            win_audio = np.take(audio, idx, axis=-2)
        out = np.asarray(window_fn(win_audio, last, k))
        chunks.append(out[..., tau:, :])
        last = np.concatenate([last, out[..., tau:, :]], axis=-2)[..., -tau:, :]
    return np.concatenate(chunks, axis=-2)[..., :num_frames, :]


def sample_prior_latents(
    prior_cov: jax.Array, batch: int, latent_dim: int, num_frames: int, bop: int, key: jax.Array
) -> jax.Array:
    """Latents ``[B, L, N]`` from the prior, continued window by window without audio.

    The first window is ``z ~ N(0, K)``; each next window of ``T − τ`` frames is drawn from the GP
    conditioned on the last ``τ`` latents (:func:`gp_conditional`), so the sequence is smooth
    across window seams for any ``N`` (for the i.i.d. prior, ``K = I`` and windows are
    independent). Window ``k`` uses ``fold_in(key, k)``.
    """
    window = prior_cov.shape[0]
    chol = jnp.linalg.cholesky(prior_cov)
    first = jax.random.normal(jax.random.fold_in(key, 0), (batch, latent_dim, window))
    chunks = [np.asarray(jnp.einsum("ij,...j->...i", chol, first))]
    last = chunks[0][..., -bop:]
    total, k = window, 1
    while total < num_frames:
        mean, cond_chol = gp_conditional(prior_cov, jnp.asarray(last))
        noise = jax.random.normal(jax.random.fold_in(key, k), (*mean.shape,))
        chunks.append(np.asarray(mean + jnp.einsum("ij,...j->...i", cond_chol, noise)))
        last = np.concatenate([last, chunks[-1]], -1)[..., -bop:]
        total, k = total + chunks[-1].shape[-1], k + 1
    return np.concatenate(chunks, -1)[..., :num_frames]


def decode_long(model: SequenceVAE, z: jax.Array, window: int, bop: int) -> jax.Array:
    """Decodes latents ``[B, L, N]`` of any length with the window-``T`` causal decoder.

    Window ``k`` decodes latents ``[k(T−τ), k(T−τ)+T)`` and keeps its frames from ``τ`` on (the
    first window keeps all), so every frame is decoded with at least ``τ`` frames of context.
    """
    num = z.shape[-1]
    if num <= window:
        return model.decode(z)
    frames = []
    for k, start in enumerate(window_starts(num, window, bop)):
        chunk = z[..., start : start + window]
        out = model.decode(chunk)
        frames.append(out if k == 0 else out[..., bop:, :])
    return jnp.concatenate(frames, axis=-2)[..., :num, :]
