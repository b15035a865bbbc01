"""Head NeRF on one preprocessed talking-head video (paper 000's NeRF, DFA-NeRF's setting).

Commands (from the repository root; DIR is a folder written by ``scripts/preprocess.py`` or by
the AD-NeRF / ER-NeRF preprocessing, with ``aud.wav``)::

    python scripts/train_nerf.py --config configs/video.py --workdir runs/video \\
        --config.data.root=DIR
    # french.mp4: train on the first 40 s, score the last 10 s
    python scripts/train_nerf.py --config configs/video.py --workdir runs/french \\
        --config.data.root=DIR --config.data.train_seconds=40 --config.data.val_seconds=10
    python scripts/train_nerf.py --config configs/video.py:smoke --workdir runs/video_smoke \\
        --config.data.root=DIR
    python scripts/evaluate.py --workdir runs/french --split val

F_lip comes from the speaker's own sync stage, trained first on the training part of the same
video (the last ``data.val_seconds`` held out) into ``WORKDIR/sync``;
``--config.sync.init_from=DIR`` reuses a trained one, ``--config.sync.train=False`` keeps AD-NeRF's
audio network.

Variants:

* default: the whole training part of the video, a fixed square crop of the head resized to
  128² (32² feature map x4), matted onto white outside head + neck (docs/video.md); 2500 steps of
  one frame pair, about 30 minutes on 2 CPU cores after the one-off frame preparation.
* ``smoke``: 8 frames per split, 16² -> 64², a tiny model, 6 steps; well under a minute on 2 CPU
  cores.
* ``full``: the GPU-sized model (8x256 field, 64² features -> 512² crop, 64+64 samples).
* ``frame=full``: the whole 512² frame, head and torso from one field over the static
  background, trained on patches (docs/video.md), with the hash-grid field (``field=frequency``:
  NeRF's MLP; docs/fields.md compares them) and, on the CPU size, a grid of the blink's own with
  the blink frames oversampled (the blink input shuts the eyes). What ``scripts/avatar.py``
  trains.
* ``field=hash`` / ``field=triplane`` / ``field=frequency``: the point encoding (docs/fields.md).

Evaluation is the held-out end of the video (``val``: self-reconstruction with its true audio,
pose and blinks); a monocular video has no held-out views. Measured (docs/video.md): french.mp4,
first 40 s / last 10 s, ``--config.train.steps=1000`` (29.5 min on 2 shared CPU cores): val PSNR
25.93 dB, SSIM 0.912; the mouth does not follow the audio yet at that length.

The frames are prepared once into the cache (``--config.data.cache_dir``, default
``~/.cache/jaxhead``); later runs reuse them.
"""

from __future__ import annotations

import ml_collections

from jaxhead.nerf.config import video_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return video_config(arg)
