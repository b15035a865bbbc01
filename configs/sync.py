"""Sync stage: audio + lip encoders, contrastive (paper 000 §3.4 InfoNCE / paper 001 §3.3 BCE).

Command (the synthetic dataset is generated into the cache folder on first use, ~30 s)::

    python scripts/train_sync.py --config configs/sync.py --workdir runs/sync
    python scripts/train_sync.py --config configs/sync.py:loss=bce --workdir runs/sync_bce
    python scripts/train_sync.py --config configs/sync.py:smoke --workdir runs/sync_smoke

Default: 8 synthetic speakers x 8 sentences of 5 s; 6 speakers' first 7 sentences train, their
8th sentences and the 2 other speakers are held out. Measured on 2 shared CPU cores: 3 minutes
for the 1000 steps (+ ~30 s to generate the dataset once); eval.json ``overall.accuracy`` (SyncNet
AV offset within +-1 frame over 22 held-out clips x audio shifts 0, +-2, +-4, +-8 frames = 154
trials) = 1.0 (all exact), ``overall.mean_confidence`` = 0.85; ``splits`` separates held-out
sentences from held-out speakers (both 1.0). ``loss=bce``: also 1.0, confidence 0.86.

Real speech: the synthetic-trained encoders scored on the one real clip of the shared data that
has lip landmarks (EchoMimic's MediaPipe sequence and its audio; ``SyncEncoder.score`` of a
``clip_from_arrays`` clip) give offset +3 frames with confidence 0.05 (bce: 0.09), an offset that
follows an artificial 4-frame shift exactly but a confidence far below the synthetic 0.85: the
synthetic-to-real gap. The real videos have no landmarks until the preprocessing issue lands;
``--config.eval.video_roots`` scores preprocessed folders then.

``smoke``: a 3-speaker dataset of 2 s sentences and a small model; under a minute on 2 cores;
checks the plumbing, not the accuracy.

Preprocessed videos (AD-NeRF layout: ori_imgs/*.lms and aud.wav)::

    --config.data.kind=video --config.data.video_roots="('data/May',)"

Variants: ``smoke``, ``loss=info_nce|bce``.
"""

from __future__ import annotations

import ml_collections

from jaxhead.sync.config import sync_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return sync_config(arg)
