"""Disentangle stage: latent-code extractor (paper 000 sec. 3.3) or landmark autoencoder
(paper 001 sec. 3.2), each followed by a held-out linear-probe table of its codes.

    python scripts/train_disentangle.py --config configs/disentangle.py --workdir runs/extractor
    python scripts/train_disentangle.py --config configs/disentangle.py:model=landmark_ae \\
        --workdir runs/landmark_ae
    python scripts/train_disentangle.py --config configs/disentangle.py:model=landmark_ae,real \\
        --workdir runs/landmark_ae_real \\
        --config.data.landmarks.path=../shared/data/real/sequences/echomimic_landmarks478.npy
    python scripts/train_disentangle.py --config configs/disentangle.py:smoke --workdir runs/s

Variants: ``model=extractor`` (default) | ``model=landmark_ae``; ``real``: the landmark
autoencoder on a MediaPipe-478 sequence (``data.landmarks.path``); ``smoke``: a few steps on a
tiny rendered set, well under a minute on 2 CPU cores (numbers not meaningful).

Expected (2 CPU cores shared with other jobs): extractor ~10-17 min including the one-off
rendering of the groups and probe scenes (~2-4 min, cached), held-out linear-probe R² on the own
factor about 0.2-0.3 for C_id / C_ex / C_al and 0.7 for C_ill (goal 0.9 not met; see
docs/disentangle.md); landmark_ae ~40 s, f_m -> mouth 0.999 and f_e -> blink 0.98. Results in
``WORKDIR/eval.json`` (``probe``: R² of a ridge probe per code and true factor; ``probe_kernel``:
the same with an RBF kernel; ``summary.goal_met``: own R² >= 0.9 and others <= 0.1) and
``WORKDIR/probe.md`` / ``probe.png``.
"""

from __future__ import annotations

import ml_collections

from jaxhead.disentangle.data import extractor_data_config, landmark_data_config
from jaxhead.train.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = parse_arg(arg, smoke=False, model="extractor", real=False)
    config = base_config(seed=0, steps=1500, log_every=50, checkpoint_every=500)
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 50
    config.optim.grad_clip_norm = 1.0

    config.data = ml_collections.ConfigDict(
        {
            "batch_size": 16,  # extractor: groups of 5 images; landmark_ae: face pairs
            "cache_dir": "",  # rendered groups / probe images ("" = the NeRF frames' cache)
            "extractor": extractor_data_config(),
            "landmarks": landmark_data_config(),
        }
    )
    config.model = ml_collections.ConfigDict(
        {
            "name": arg.model,  # extractor | landmark_ae
            "extractor": {
                # Matches configs/voca.py model.codes (C_id, C_ex, C_al, C_ill).
                "codes": {"id": 32, "ex": 16, "al": 32, "ill": 16},
                "channels": (32, 64, 96, 128),
                "hidden": 256,
            },
            "landmark_ae": {"mouth_dim": 16, "eye_dim": 4, "hidden": (256, 128)},
        }
    )
    config.loss = ml_collections.ConfigDict(
        {
            "temperature": 0.2,  # extractor InfoNCE τ (paper 000 gives τ = 0.5 for sync only)
            "swap_weight": 1.0,  # landmark_ae: weight of the swapped terms of eq. 2
        }
    )
    config.eval = ml_collections.ConfigDict({"ridge_alpha": 1e-2})

    if arg.model == "landmark_ae":
        config.train.update(steps=6000, log_every=100, checkpoint_every=2000)
        config.data.batch_size = 64
    if arg.real:
        config.data.landmarks.source = "real478"
    if arg.smoke:
        config.data.extractor.update(
            image_size=32, supersample=1, num_groups=24, probe_images=48, heldout_groups=4,
            mesh_rows=18, mesh_cols=24,
        )  # fmt: skip
        config.model.extractor.update(channels=(8, 16), hidden=32)
        config.model.landmark_ae.update(hidden=(32,))
        config.data.landmarks.synthetic.update(identities=2, sequences=2, seconds=1.0)
        config.data.batch_size = 8
        config.train.update(steps=6, log_every=2, checkpoint_every=3)
    config.lock()
    return config
