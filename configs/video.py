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

Variants:

* default: the whole training part of the video, a fixed square crop of the head resized to
  128² (32² feature map x4), matted onto white outside head + neck (docs/video.md); 2500 steps of
  one frame pair, about 30 minutes on 2 CPU cores after the one-off frame preparation.
* ``smoke``: 8 frames per split, 16² -> 64², a tiny model, 6 steps; well under a minute on 2 CPU
  cores.
* ``full``: the GPU-sized model (8x256 field, 64² features -> 512² crop, 64+64 samples).

Evaluation is the held-out end of the video (``val``: self-reconstruction with its true audio,
pose and blinks); a monocular video has no held-out views. Measured (docs/video.md): french.mp4,
first 40 s / last 10 s, ``--config.train.steps=1000`` (29.5 min on 2 shared CPU cores): val PSNR
25.93 dB, SSIM 0.912; the mouth does not follow the audio yet at that length.

The frames are prepared once into the cache (``--config.data.cache_dir``, default
``~/.cache/jaxhead``); later runs reuse them.
"""

from __future__ import annotations

import ml_collections

from jaxhead.data.video_frames import video_frames_config
from jaxhead.disentangle.stage import disentangle_init_config
from jaxhead.nerf.stage import FULL_MODEL, SMOKE_MODEL, loss_config, model_block
from jaxhead.sync.stage import sync_init_config
from jaxhead.train.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = parse_arg(arg, smoke=False, full=False)
    config = base_config(seed=0, steps=2500, log_every=25, checkpoint_every=250, sample_every=500)
    config.optim.learning_rate = 2e-3
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 50
    config.optim.grad_clip_norm = 1.0

    config.data = video_frames_config()
    # CPU budget (as configs/voca.py): one frame pair per step; larger batches on accelerators.
    config.data.batch_size = 1
    # One video is one identity and one sequence: C_ill would be a single constant vector (and
    # would have to be re-fitted on the held-out part), so it is dropped. The frames are scaled so
    # the crop's half side at the head is data.scene_radius (0.2): the bounding sphere holds what
    # the crop shows, with a margin for depth.
    config.model = model_block(codes={"id": 32, "ex": 16, "al": 32, "ill": 0}, bound_radius=0.22)
    config.loss = loss_config()
    # Pre-trained stages (empty: none). sync: F_lip from the sync stage's frozen audio encoder
    # (standardised, through a learned projection to lip_dim) instead of the audio network;
    # disentangle: L_dis (weight loss.dis) against the extractor's reference codes, which also
    # initialise the codes. model.lip_dim=0 without a sync stage: no F_lip at all.
    config.sync = sync_init_config()
    config.disentangle = disentangle_init_config()
    # No C_ill to fit on the held-out part (fit_steps is unused); one held-out split.
    config.eval = ml_collections.ConfigDict({"fit_steps": 0, "batch_size": 8, "splits": ("val",)})

    if arg.smoke:
        config.data.max_frames = 8
        config.data.resolution, config.data.lr_resolution = 64, 16
        config.data.batch_size = 2
        config.model.update(**SMOKE_MODEL)
        config.train.update(steps=6, log_every=2, checkpoint_every=3, sample_every=0)
    if arg.full:
        config.data.resolution, config.data.lr_resolution = 512, 64
        config.data.batch_size = 8
        config.model.update(**FULL_MODEL)
        config.train.update(steps=200_000, checkpoint_every=2000, sample_every=5000)
        config.optim.learning_rate = 5e-4
    config.lock()
    return config
