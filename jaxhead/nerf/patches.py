"""Training on patches of full frames: where a patch goes, and the frame's arrays cut to it (pure).

A full video frame at its own resolution (512²: a 128² feature map) costs 16x the rays of the
head crop's 32² map, too many for a CPU step. As the peers do with their rays (AD-NeRF, RAD-NeRF
and ER-NeRF sample a share of each batch's rays inside the lips' box), a training step renders a
``P x P`` patch of each frame's feature map (``P = config.data.patch``) and the neural upsampler
turns it into the ``P·u x P·u`` patch of the frame: with probability ``mouth`` the patch is
centred on the mouth (iBUG-68 points 48-67), with probability ``eyes`` on the eyes (36-47), else
anywhere in the frame. A patch is a frame seen by a camera whose principal point is moved to the
patch's corner, so the renderer needs nothing else; the two frames of a velocity pair (paper 000
eq. 7) share one patch.

Blinks: the eyes are closed in ~3 % of a talking-head video's frames (french.mp4: 1.3 % of the
frames have a blink value above 0.5), so among the ~2500 patch pairs of a CPU run only a handful
would show a closing eye, and the field learns to ignore its blink input (measured: rendering a
frame with blink 0 or 1 changed no pixel by more than 0.06). ``config.data.blink_min`` marks
the training frames whose blink value reaches it as blink frames (``config.data.blink_share``
instead: that share of the frames with the largest values, :func:`blink_threshold`): their
pairs come ``config.data.blink_repeat`` times per epoch (the input pipeline's ``repeats``,
:func:`blink_repeats`) and centre their patch on the eyes whenever it is not on the mouth. With
a grid of the blink's own (``config.model.grid_conditions``) that makes the blink input shut
the rendered eyes (docs/video.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxhead.face import EYES_68, MOUTH_68

MOUTH = np.asarray(MOUTH_68)  # iBUG-68 lips
EYES = np.asarray(EYES_68)  # iBUG-68 eyes
# Frame entries at the output resolution and at the feature map's (cut to the patch).
FULL_KEYS = ("image", "mask", "background")
LOW_KEYS = ("image_lr", "mask_lr")


def patch_corner(
    key: jax.Array,
    landmarks: jax.Array,
    map_size: int,
    patch: int,
    upsample: int,
    mouth: float,
    eyes: float,
) -> jax.Array:
    """``[2]`` int32 ``(y0, x0)``: the top-left corner of a ``patch x patch`` window of a
    ``map_size²`` feature map.

    Args:
      key: PRNG key.
      landmarks: ``[68, 2]`` ``(x, y)`` pixels of the output image (``map_size * upsample``).
      map_size, patch, upsample: feature-map side, patch side (feature pixels), upsampling.
      mouth, eyes: probabilities of centring the patch on the mouth / the eyes (the rest:
        uniform over the frame); scalars, possibly traced (a blink frame's ``1 - mouth``).
    """
    choose, jitter, anywhere = jax.random.split(key, 3)
    u = jax.random.uniform(choose)
    lms = jnp.asarray(landmarks, jnp.float32) / upsample
    centre_mouth = jnp.mean(lms[MOUTH], axis=0)[::-1]  # (y, x)
    centre_eyes = jnp.mean(lms[EYES], axis=0)[::-1]
    # A few pixels of jitter so the same features are not always at the same patch position.
    offset = jax.random.uniform(jitter, (2,), minval=-0.25, maxval=0.25) * patch
    random_centre = jax.random.uniform(
        anywhere, (2,), minval=patch / 2, maxval=map_size - patch / 2
    )
    centre = jnp.where(
        u < mouth, centre_mouth + offset, jnp.where(u < mouth + eyes, centre_eyes + offset,
                                                     random_centre),
    )  # fmt: skip
    corner = jnp.round(centre - patch / 2).astype(jnp.int32)
    return jnp.clip(corner, 0, map_size - patch)


def blink_threshold(blink: np.ndarray, share: float, minimum: float = 0.0) -> float:
    """The blink value from which a training frame is a blink frame (``inf``: none).

    ``minimum`` > 0 (``data.blink_min``): every frame whose ``blink`` reaches it (0.5: eyes at
    least half closed), whatever their number; ``inf`` if none does. Else ``share``
    (``data.blink_share``): the ``1 - share`` quantile of the training frames' ``blink``
    ``[N]``; ``inf`` when ``share`` is 0 or the signal never rises above its quantile (a video
    without blinks: no frame stands out). Setting both is refused: they choose the same frames
    two ways."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"data.blink_share={share} must lie in [0, 1)")
    if not 0.0 <= minimum <= 1.0:
        raise ValueError(f"data.blink_min={minimum} must lie in [0, 1] (0: off)")
    if share > 0.0 and minimum > 0.0:
        raise ValueError(
            f"data.blink_share={share} and data.blink_min={minimum} both choose the blink "
            "frames: set one of them (the other to 0)"
        )
    blink = np.asarray(blink, np.float64)
    if minimum > 0.0:
        return float(minimum) if (blink >= minimum).any() else float("inf")
    if share == 0.0 or blink.size == 0:
        return float("inf")
    threshold = float(np.quantile(blink, 1.0 - share))
    return threshold if (blink > threshold).any() else float("inf")


def blink_repeats(
    blink: np.ndarray, pairs: np.ndarray, threshold: float, repeat: int
) -> np.ndarray:
    """``[P]`` int64: how many times each frame pair (``pairs`` ``[P, 2]`` row indices of
    ``blink``) comes per epoch: ``repeat`` when either frame reaches ``threshold``, else 1."""
    if repeat < 1:
        raise ValueError(f"data.blink_repeat={repeat} must be at least 1")
    in_blink = np.asarray(blink)[np.asarray(pairs)].max(axis=1) >= threshold
    return np.where(in_blink, int(repeat), 1).astype(np.int64)


def cut_patch(
    frame: Mapping[str, jax.Array], corner: jax.Array, patch: int, upsample: int
) -> dict[str, jax.Array]:
    """One frame's arrays cut to the patch at ``corner`` (``(y0, x0)`` in feature pixels):
    :data:`FULL_KEYS` ``[P·u, P·u, C]``, :data:`LOW_KEYS` ``[P, P, C]``, the intrinsics'
    principal point moved to the patch (``(fx, fy, cx - x0·u, cy - y0·u)``) and the landmarks
    with it; every other entry as it is."""
    out = dict(frame)
    y0, x0 = corner[0], corner[1]
    for name in FULL_KEYS:
        if name in frame:
            value = frame[name]
            size = (patch * upsample, patch * upsample, value.shape[-1])
            out[name] = jax.lax.dynamic_slice(value, (y0 * upsample, x0 * upsample, 0), size)
    for name in LOW_KEYS:
        if name in frame:
            value = frame[name]
            out[name] = jax.lax.dynamic_slice(value, (y0, x0, 0), (patch, patch, value.shape[-1]))
    shift = jnp.stack([x0, y0]).astype(jnp.float32) * upsample
    intrinsics = frame["intrinsics"]
    out["intrinsics"] = jnp.concatenate([intrinsics[:2], intrinsics[2:] - shift])
    if "landmarks" in frame:
        out["landmarks"] = frame["landmarks"] - shift[None]
    return out
