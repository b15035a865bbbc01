"""Perceptual loss (paper 000 eq. 4) and its structural fallback, SSIM. Pure functions.

``L_per = Σᵢ λᵢ ‖φᵢ(I) − φᵢ(I_GT)‖²`` with ``φᵢ`` VGG16 activations
(:mod:`jaxhead.pretrained.vgg`). Each term is a *mean* over the activation's elements rather than
a sum, as in Johnson et al. (who divide by ``C·H·W``): layers of very different sizes then
contribute on similar scales and the loss does not change with the image resolution.

When no VGG16 weights are configured, the stage uses ``1 − SSIM`` instead
(:func:`jaxhead.eval.image.ssim`: Wang et al. 2004, with the standard 11x11 Gaussian window of
σ = 1.5, K1 = 0.01, K2 = 0.03): like the perceptual
loss it compares local structure (means, variances, covariances over a neighbourhood) rather than
single pixels, needs no pre-trained network, and costs a few separable convolutions.
:func:`perceptual_loss_choice` says which one a run uses, in one line the stage prints once.

Using VGG inside a jitted train step: pass the (frozen) VGG parameters as an argument rather
than closing over them, so they are not baked into the compiled program as constants::

    graphdef, vgg_params = nnx.split(load_vgg16(path))
    def features_fn(params, images):
        return nnx.merge(graphdef, params)(images, DEFAULT_LAYERS)
    loss = perceptual_loss(functools.partial(features_fn, vgg_params), pred, target)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxhead.eval.image import ssim
from jaxhead.pretrained.vgg import DEFAULT_LAYERS

# ``images [N, H, W, 3] -> {layer: [N, h, w, C]}``.
FeaturesFn = Callable[[jax.Array], Mapping[str, jax.Array]]


def perceptual_loss(
    features_fn: FeaturesFn,
    pred: jax.Array,
    target: jax.Array,
    layers: Sequence[str] = DEFAULT_LAYERS,
    weights: Sequence[float] | None = None,
) -> jax.Array:
    """``Σᵢ λᵢ mean((φᵢ(pred) − φᵢ(target))²)`` (paper 000 eq. 4).

    Both images go through ``features_fn`` in one batch; the target's features carry no
    gradient.

    Args:
      features_fn: ``images [N, H, W, 3] -> {layer: [N, h, w, C]}`` with at least ``layers``.
      pred: ``[N, H, W, 3]`` rendered images in [0, 1].
      target: ``[N, H, W, 3]`` ground truth.
      layers: layer names (default relu1_2, relu2_2, relu3_3, relu4_3).
      weights: ``λᵢ`` per layer (default all 1).

    Returns:
      scalar loss.
    """
    pred = jnp.asarray(pred)
    target = jnp.asarray(target)
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must both be [N, H, W, 3]")
    layers = tuple(layers)
    weights = (1.0,) * len(layers) if weights is None else tuple(weights)
    if len(weights) != len(layers):
        raise ValueError(f"{len(weights)} weights for {len(layers)} layers")
    features = features_fn(jnp.concatenate([pred, target], axis=0))
    n = pred.shape[0]
    total = jnp.zeros((), jnp.float32)
    for name, weight in zip(layers, weights, strict=True):
        if name not in features:
            raise KeyError(f"features_fn returned no '{name}'; it returned {sorted(features)}")
        pred_features = features[name][:n]
        target_features = jax.lax.stop_gradient(features[name][n:])
        total = total + weight * jnp.mean(jnp.square(pred_features - target_features))
    return total


def ssim_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """The structural fallback of the perceptual loss: ``mean(1 − SSIM)`` over images."""
    return jnp.mean(1.0 - ssim(pred, target))


def perceptual_loss_choice(vgg_weights: str | os.PathLike | None) -> tuple[str, str]:
    """``(kind, message)``: ``"vgg16"`` when weights are configured, else ``"ssim"``.

    The message is the one line the stage prints once, e.g. at the start of training.
    """
    if vgg_weights:
        return "vgg16", f"perceptual loss: VGG16 features {DEFAULT_LAYERS} from {vgg_weights}"
    return "ssim", (
        "perceptual loss: no VGG16 weights configured (set the config's VGG16 weights path to a "
        "torchvision vgg16 .pth/.safetensors/.npz); using the structural fallback 1 - SSIM "
        "(11x11 Gaussian window, sigma 1.5)"
    )
