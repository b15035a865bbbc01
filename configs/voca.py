"""Head NeRF on VOCASET-format data (paper 000): the embedded synthetic dataset by default.

Commands (from the repository root)::

    python scripts/train_nerf.py --config configs/voca.py --workdir runs/voca
    python scripts/train_nerf.py --config configs/voca.py:smoke --workdir runs/voca_smoke
    python scripts/train_nerf.py --config configs/voca.py:full --workdir runs/voca_full  # GPU
    python scripts/train_nerf.py --config configs/voca.py --workdir runs/real \\
        --config.data.root=/path/to/vocaset --config.data.template_mesh=/path/to/FLAME_sample.ply

The papers' whole system by default: F_lip comes from the sync stage (paper 000 fig. 3), which the
run trains first, over its own training sentences, into ``WORKDIR/sync`` (about 2 minutes on 2
CPU cores; resumable, skipped once done; ``jaxhead.nerf.own_sync``).
``--config.sync.init_from=DIR`` reuses a trained sync stage instead, and
``--config.sync.train=False`` keeps AD-NeRF's audio network (the ablation's ``base`` arm).

Variants:

* default: 4 identities x 4 sentences x 4 s of the synthetic set, 32² feature map -> 128² image;
  about 30 minutes on 2 CPU cores; see README "Status" for the measured held-out PSNR/SSIM.
* ``field=hash`` / ``field=triplane``: the point enters through instant-NGP's multi-resolution
  hash grid / ER-NeRF's three 2D hash grids and a 64-wide trunk (``field=frequency``: NeRF's
  positional encoding and MLP); ``benchmarks/bench_fields.py`` measures them against each other.
* ``smoke``: 2 identities x 2 sentences x 1 s, 16² -> 64², a few steps; well under a minute
  (after the one-off data generation and rendering) on 2 CPU cores.
* ``full``: the GPU-sized model (8x256 field, 64² features -> 512² image, 64+64 samples).

The first run generates the synthetic dataset and renders its frames into the cache
(``--config.data.cache_dir``, default ``~/.cache/jaxhead``); later runs reuse them.
"""

from __future__ import annotations

import ml_collections

from jaxhead.nerf.config import voca_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return voca_config(arg)
