"""Head NeRF on VOCASET-format data (paper 000): the embedded synthetic dataset by default.

Commands (from the repository root)::

    python scripts/train_nerf.py --config configs/voca.py --workdir runs/voca
    python scripts/train_nerf.py --config configs/voca.py:smoke --workdir runs/voca_smoke
    python scripts/train_nerf.py --config configs/voca.py:full --workdir runs/voca_full  # GPU
    python scripts/train_nerf.py --config configs/voca.py --workdir runs/real \\
        --config.data.root=/path/to/vocaset --config.data.template_mesh=/path/to/FLAME_sample.ply

Variants:

* default: 4 identities x 4 sentences x 4 s of the synthetic set, 32² feature map -> 128² image;
  about 30 minutes on 2 CPU cores; see README "Status" for the measured held-out PSNR/SSIM.
* ``smoke``: 2 identities x 2 sentences x 1 s, 16² -> 64², a few steps; well under a minute
  (after the one-off data generation and rendering) on 2 CPU cores.
* ``full``: the GPU-sized model (8x256 field, 64² features -> 512² image, 64+64 samples).

The first run generates the synthetic dataset and renders its frames into the cache
(``--config.data.cache_dir``, default ``~/.cache/jaxhead``); later runs reuse them.
"""

from __future__ import annotations

import ml_collections

from jaxhead.data.voca_frames import voca_frames_config
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

    config.data = voca_frames_config()
    # CPU budget (benchmarks/RESULTS.md): one frame pair (2 frames x 32² rays x 32 samples) per
    # step keeps a step near half a second on 2 cores; use larger batches on accelerators.
    config.data.batch_size = 1
    config.model = model_block()
    config.loss = loss_config()
    # Pre-trained stages (empty: none). sync: F_lip from the sync stage's frozen audio encoder
    # (standardised, through a learned projection to lip_dim) instead of the audio network;
    # disentangle: L_dis (weight loss.dis) against the extractor's reference codes, which also
    # initialise the codes. model.lip_dim=0 without a sync stage: no F_lip at all.
    config.sync = sync_init_config()
    config.disentangle = disentangle_init_config()
    config.eval = ml_collections.ConfigDict(
        {"fit_steps": 30, "batch_size": 8, "splits": ("val", "val_views")}
    )

    if arg.smoke:
        config.data.synthetic.update({"identities": 2, "sequences": 2, "seconds": 1.0})
        config.data.max_frames = 8
        config.data.resolution, config.data.lr_resolution = 64, 16
        config.data.supersample = 1
        config.data.batch_size = 2
        config.model.update(**SMOKE_MODEL)
        config.train.update(steps=6, log_every=2, checkpoint_every=3, sample_every=0)
        config.eval.fit_steps = 2
    if arg.full:
        config.data.synthetic.update({"identities": 8, "sequences": 8, "seconds": 6.0})
        config.data.resolution, config.data.lr_resolution = 512, 64
        config.data.batch_size = 8
        config.model.update(**FULL_MODEL)
        config.train.update(steps=200_000, checkpoint_every=2000, sample_every=5000)
        config.optim.learning_rate = 5e-4
    config.lock()
    return config
