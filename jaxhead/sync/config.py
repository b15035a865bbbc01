"""The sync stage's configuration (``configs/sync.py`` is :func:`sync_config`); the data block is
:func:`jaxhead.sync.data.sync_data_config`."""

from __future__ import annotations

import ml_collections

from jaxhead.sync.data import sync_data_config
from jaxhead.train.config import base_config, parse_arg
from jaxhead.train.optim import optim_config

# Keys the sync config gained after runs existed, with the value their absence meant.
ADDED_KEYS = {
    "data.video_val_seconds": 0.0,
    **{f"data.augment.{k}": 0.0 for k in ("lip_scale", "lip_rotation_deg", "audio_gain",
                                          "audio_noise")},
    "init_from": "",
    "eval.window_seconds": 0.0,
}  # fmt: skip
# The pre-training augmentation (sync experts' usual jitter of mouth shape and audio level).
AUGMENT = {"lip_scale": 0.1, "lip_rotation_deg": 5.0, "audio_gain": 0.3, "audio_noise": 0.05}


def sync_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``configs/sync.py``: variants ``smoke``, ``loss=info_nce|bce``, ``pretrain`` (across the
    synthetic speakers and the videos of ``--config.data.video_roots``, augmented) and ``adapt``
    (fine-tunes ``--config.init_from=PRETRAINED`` on one video's training part)."""
    arg = parse_arg(arg, smoke=False, loss="info_nce", pretrain=False, adapt=False)
    if arg.pretrain and arg.adapt:
        raise ValueError("choose one of the variants pretrain and adapt")
    config = base_config(seed=0, steps=1000, log_every=100, checkpoint_every=250)
    # A sync workdir whose trained parameters start this run (adaptation); empty: random init.
    config.init_from = ""
    config.optim = optim_config(learning_rate=1e-3, schedule="cosine", warmup_steps=100)
    config.data = sync_data_config()
    config.model = ml_collections.ConfigDict(
        {"channels": (64, 128, 256), "hidden": 256, "embed_dim": 128}
    )
    # info_nce: paper 000 eq. 8 (tau = 0.5, N = config.data.negatives = 10); bce: paper 001 eq. 3.
    config.loss = ml_collections.ConfigDict({"name": arg.loss, "temperature": 0.5})
    config.eval = ml_collections.ConfigDict(
        {
            "max_offset": 15,  # SyncNet's +-15 frames
            "leads": (0, -8, -4, -2, 2, 4, 8),  # artificial audio shifts (frames, audio leading)
            "tolerance": 1,  # a predicted offset within +-1 frame counts as correct
            "distance": "cosine",  # cosine | euclidean
            "video_roots": (),  # preprocessed video folders to score as well (no ground truth)
            "plot_clips": 4,  # held-out clips whose distance-vs-offset curves go to samples/
            # > 0: held-out clips are scored in consecutive windows of this many seconds
            # (SyncNet-style short-window offsets); 0: each clip as a whole
            "window_seconds": 0.0,
        }
    )
    if arg.pretrain:
        config.data.kind = "synthetic+video"
        config.data.augment.update(AUGMENT)
        config.train.update(steps=3000, checkpoint_every=500)
        config.eval.window_seconds = 2.0
    if arg.adapt:
        config.data.kind = "video"
        config.data.augment.update(AUGMENT)
        config.train.update(steps=300, log_every=50, checkpoint_every=100)
        config.optim.update(learning_rate=3e-4, warmup_steps=0)
        config.eval.window_seconds = 2.0
    if arg.smoke:
        config.train.update(steps=30, log_every=10, checkpoint_every=15, progress=False)
        config.optim.warmup_steps = 0
        config.data.synthetic.update(identities=3, sequences=2, seconds=2.0)
        config.data.update(heldout_subjects=1, heldout_sentences=1, batch_size=16)
        config.model.update(channels=(16, 32), hidden=32, embed_dim=16)
        config.eval.update(leads=(0, 4), plot_clips=2)
    config.lock()
    return config
