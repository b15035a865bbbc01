"""GP-VAE stage: head pose + blink from audio (paper 001 §3.4, table 4).

    python scripts/train_gpvae.py --config configs/gpvae.py --workdir runs/gpvae
    python scripts/train_gpvae.py --config configs/gpvae.py:smoke --workdir runs/gpvae_smoke
    python scripts/train_gpvae.py --config configs/gpvae.py:variant=lstm_vae --workdir runs/lstm

Variants (``model.variant``, also ``:variant=NAME``): ``transformer_gpvae`` (default; Cauchy GP
prior, structured posterior), ``transformer_vae`` (i.i.d. N(0, 1) prior), ``lstm_vae``,
``mlp_vae``. ``scripts/gpvae_ablation.py`` runs all four and writes the table.

Data: by default the synthetic dataset's ground-truth pose/blink (generated once into the cache,
8 subjects x 6 sentences x 12 s, each subject's last sentence held out by the split every stage
shares); ``--config.data.root=DIR`` reads an existing
synthetic folder; ``--config.data.source=files --config.data.paths="('a.mat', 'b.json')"`` reads
real pose sequences (AD-NeRF transforms, Deep3DFaceRecon .mat, AniPortrait .npy);
``--config.data.source=videos --config.data.paths="('DIR/a', 'DIR/b', 'DIR/c')"
--config.data.heldout_groups="('c',)" --config.model.relative_pose=True`` reads folders of
scripts/preprocess.py (pose, real blinks, audio), models each window relative to its BOP's pose
(speakers' camera distances differ) and evaluates on speaker ``c``, never trained on;
``--config.data.source=mixed`` takes both kinds in one ``data.paths`` (a pose file's blink is
"not measured" and left out of the losses). ``--config.model.pose_anchor=last`` models the change
from the BOP's last frame, ``--config.model.audio_dropout=P`` hides a window's audio from E_ah
with probability P (docs/gpvae.md measures both).

Expected: default ~10 min on 2 CPU cores (3000 steps), eval.json d_rot / d_pos in percent (one
window after a true BOP; the hold-last-frame baseline alongside) and the long-horizon
d_rot_long / d_pos_long; smoke ~30-40 s on 2 CPU cores (numbers not meaningful); ``:ablation``
(1500 steps, what scripts/gpvae_ablation.py runs) 1.5-4.5 min per variant on 2 shared cores. On the
synthetic data the head motion is random and unrelated to the audio, so D-Rot/D-Pos measure
extrapolation from the BOP; see docs/gpvae.md for measured values.

Fine-tuning E_ah on one person from a pre-trained run (E_h and D frozen):
``--config.finetune.init_from=RUN --config.data.source=files --config.data.paths="('p.mat',)"``.
"""

from __future__ import annotations

import ml_collections

from jaxhead.train.config import base_config, parse_arg
from jaxhead.train.optim import optim_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = parse_arg(arg, smoke=False, ablation=False, variant="transformer_gpvae")
    config = base_config(seed=0, steps=3000, log_every=50, checkpoint_every=500)
    config.optim = optim_config(
        learning_rate=1e-3, schedule="cosine", warmup_steps=100, grad_clip_norm=1.0
    )
    config.data = ml_collections.ConfigDict(
        {
            "source": "synthetic",  # synthetic | files | videos
            "root": "",  # synthetic VOCASET folder; "" generates `synthetic` once into the cache
            "synthetic": {"identities": 8, "sequences": 6, "seconds": 12.0, "seed": 0},
            # files: pose files (.json AD-NeRF, .mat Deep3D, .npy AniPortrait); videos: folders
            # written by scripts/preprocess.py (pose, blink, audio; the folder name is the speaker)
            "paths": (),
            "max_gap_frames": 5,  # videos: faceless gaps up to this are interpolated, longer split
            "fps": 25.0,
            "window": 32,  # T frames per training window
            "bop": 8,  # τ beginning-of-pose frames
            "batch_size": 32,
            "held_out": 1,  # synthetic: sentences per subject held out for eval
            # files / videos: speakers (folder names, pose-file stems) held out whole for eval;
            # none named: the last held_out_fraction of every sequence is held out
            "heldout_groups": (),
            "held_out_fraction": 0.2,
            # "fraction": the last held_out_fraction of every sequence; "video": each video
            # folder's own held-out end (its transforms_val.json frames, as the NeRF splits it)
            "held_out_split": "fraction",
            # every training sequence also mirrored left-right (jaxhead.gpvae.data.mirrored):
            # twice the motion for a few real clips
            "mirror": False,
        }
    )
    config.model = ml_collections.ConfigDict(
        {
            "variant": arg.variant,  # transformer_gpvae | transformer_vae | lstm_vae | mlp_vae
            "latent_dim": 8,
            "width": 64,
            "depth": 2,
            "heads": 4,
            "mlp_ratio": 2,
            "cme_depth": 2,
            # windows relative to their BOP's mean pose (jaxhead.gpvae.models.bop_offset): for
            # several speakers whose mean head position / facing differ (data.source=videos)
            "relative_pose": False,
            # relative_pose's reference: the BOP's mean pose, or its last frame ("last": an output
            # of zero holds the last BOP frame, the short-horizon baseline)
            "pose_anchor": "mean",
            # probability that a training window's audio is zeroed for E_ah (conditioning
            # dropout; 1.0: E_ah continues the BOP without audio)
            "audio_dropout": 0.0,
            "prior_sigma": 1.0,  # Cauchy kernel variance (eq. 7)
            "prior_length_scale": 8.0,  # frames
            "prior_jitter": 1e-3,
        }
    )
    config.loss = ml_collections.ConfigDict(
        {
            "beta": 0.1,  # KL weight (eq. 8)
            "cme_weight": 1.0,  # eq. 9
            "vae_fraction": 0.6,  # steps of phase 1 (VAE trains); then only E_ah trains
        }
    )
    # Per-person fine-tuning (paper 001 §3.4): start from a pre-trained GP-VAE run and train only
    # the cross-modal encoder E_ah on this config's data (E_h and D frozen; vae_fraction ignored).
    config.finetune = ml_collections.ConfigDict(
        {
            "init_from": "",  # a pre-trained GP-VAE workdir (or its checkpoints/<step>)
            "normalize": "data",  # data: this person's mean/std | pretrained: the pre-trained run's
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "num_samples": 4,
            "max_sequences": 8,
            "plot_sequences": 2,
            "blink_high": 0.5,
            "blink_low": 0.25,
            "blink_min_gap_s": 0.2,
        }
    )
    if arg.ablation:
        # scripts/gpvae_ablation.py: the default model and data at a CPU budget of ~7 min per
        # variant on 2 shared cores (measured in docs/gpvae.md).
        config.train.steps = 1500
        config.train.log_every = 100
        config.train.progress = False
    if arg.smoke:
        config.train.steps = 60
        config.train.log_every = 10
        config.train.checkpoint_every = 30
        config.optim.warmup_steps = 0
        config.data.synthetic.update(identities=3, sequences=2, seconds=4.0)
        config.data.update(window=24, bop=6, batch_size=16)
        config.model.update(width=32, depth=1, cme_depth=1, heads=2, latent_dim=4)
        config.eval.update(num_samples=2, max_sequences=3, plot_sequences=1)
    config.lock()
    return config
