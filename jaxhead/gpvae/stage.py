"""The GP-VAE stage (paper 001 §3.4) as a task of the shared loop: data, the two-phase train
step (:mod:`jaxhead.gpvae.step`), evaluation (:mod:`jaxhead.gpvae.evaluate`), and fine-tuning
the cross-modal encoder from a pre-trained run (``config.finetune.init_from``)."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxhead.gpvae import data as data_lib
from jaxhead.gpvae import models
from jaxhead.gpvae.evaluate import (
    evaluate_generation,
    linear_baseline,
    plot_traces,
    window_distances,
)
from jaxhead.gpvae.generate import Generator, load_state
from jaxhead.gpvae.step import (
    TRAIN_COMMAND,
    graphdef_of,
    init_state,
    make_train_step,
    model_spec,
    prior_covariance,
)
from jaxhead.train import loop
from jaxhead.train.optim import make_optimizer

PyTree = Any

# Keys the GP-VAE config gained after runs existed, with the value their absence meant: older
# runs resume (jaxhead.train.workdir.config_differences).
ADDED_KEYS = {
    "data.heldout_groups": (),
    "data.max_gap_frames": 5,
    "model.relative_pose": False,
    "model.pose_anchor": "mean",
    "model.audio_dropout": 0.0,
    "data.mirror": False,
    "data.held_out_split": "fraction",
}


def build_task(config: ml_collections.ConfigDict, mesh) -> loop.Task:
    """The stage's :class:`loop.Task` (see the module docstring)."""
    del mesh
    spec = model_spec(config)
    train_seqs, held_seqs = data_lib.load_sequences(config.data)
    if bool(config.data.get("mirror", False)):  # every training sequence also mirrored
        train_seqs = train_seqs + [data_lib.mirrored(seq) for seq in train_seqs]
    relative_pose = bool(config.model.get("relative_pose", False))
    anchor = str(config.model.get("pose_anchor", "mean"))
    if anchor not in models.POSE_ANCHORS:
        raise ValueError(f"config.model.pose_anchor={anchor!r}; use one of {models.POSE_ANCHORS}")
    audio_dropout = float(config.model.get("audio_dropout", 0.0))  # range: train.validate
    mean, std = data_lib.normalizer(train_seqs, relative_pose)
    total = int(config.train.steps)
    tx = make_optimizer(config.optim, total)
    graphdef = graphdef_of(spec)
    prior_cov = np.asarray(prior_covariance(config))
    beta = float(config.loss.beta)
    cme_weight = float(config.loss.cme_weight)
    vae_steps = int(round(float(config.loss.vae_fraction) * total))
    bop = int(config.data.bop)
    pretrained = _pretrained(config)
    if pretrained is not None:
        if str(config.finetune.normalize) not in ("data", "pretrained"):
            raise ValueError(
                f"config.finetune.normalize={config.finetune.normalize!r}; "
                "use 'data' or 'pretrained'"
            )
        vae_steps = 0  # fine-tuning: E_h and D stay the pre-trained ones, only E_ah trains
        if str(config.finetune.normalize) == "pretrained":
            mean, std = pretrained.mean, pretrained.std

    def init_fn():
        state = init_state(config, spec, tx, mean, std)
        if pretrained is None:
            return state
        params = jax.tree.map(jnp.asarray, pretrained.params)
        return state.replace(params=params, opt_state=tx.init(params))

    train_step = make_train_step(
        graphdef, tx, prior_cov, beta=beta, cme_weight=cme_weight, vae_steps=vae_steps, bop=bop,
        seed=int(config.seed), relative_pose=relative_pose, anchor=anchor,
        audio_dropout=audio_dropout,
    )  # fmt: skip

    data = data_lib.WindowIterator(
        train_seqs,
        int(config.data.window),
        int(config.data.batch_size),
        int(config.seed),
        data_lib.AUDIO_DIM,
    )
    generator = Generator(config, graphdef)
    eval_seqs = held_seqs[: int(config.eval.max_sequences)]

    def evaluate(state):
        results = evaluate_generation(generator, state, eval_seqs, config)
        results.update(
            linear_baseline(
                train_seqs, eval_seqs, generator.window, generator.bop, np.asarray(state.std)
            )
        )
        if pretrained is not None:  # the same evaluation with the pre-trained E_ah, for comparison
            before = evaluate_generation(generator, init_fn(), eval_seqs, config)
            keys = ["d_rot", "d_pos", "d_rot_long", "d_pos_long", "velocity_ratio",
                    "blinks_per_s_generated", "diversity", "motion_ratio"]  # fmt: skip
            results["before_finetune"] = {k: before[k] for k in keys}
            results["init_from"] = str(config.finetune.init_from)
        return results

    def validate(state):
        # config.train.eval_every: D-Rot / D-Pos one window ahead on the held-out sequences and on
        # up to eval.max_sequences training sequences (the gap is memorisation), against steps.
        held = window_distances(generator, state, eval_seqs)
        seen = window_distances(generator, state, train_seqs[: int(config.eval.max_sequences)])
        keys = ("d_rot", "d_pos", "d_rot_hold", "d_pos_hold", "velocity_ratio")
        return {**{k: held[k] for k in keys}, **{f"train_{k}": seen[k] for k in keys}}

    def write_samples(state, step, samples_dir):
        plot_traces(generator, state, eval_seqs[: int(config.eval.plot_sequences)], config,
                    pathlib.Path(samples_dir) / f"traces_{step:06d}.png")  # fmt: skip

    return loop.Task(
        init_fn=init_fn, train_step=train_step, data=data, evaluate=evaluate,
        write_samples=write_samples, validate=validate,
    )  # fmt: skip


@flax.struct.dataclass
class Pretrained:
    """Weights and normalisation of a pre-trained GP-VAE run (``config.finetune.init_from``)."""

    params: PyTree
    mean: np.ndarray
    std: np.ndarray


# Config fields that must equal the pre-trained run's for its weights to fit and mean the same.
_ARCHITECTURE_FIELDS = (
    "variant",
    "latent_dim",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "cme_depth",
    "relative_pose",
    "pose_anchor",
)


def _pretrained(config: ml_collections.ConfigDict) -> Pretrained | None:
    """The pre-trained run named by ``config.finetune.init_from`` (None when empty).

    Paper 001 §3.4: the VAE (``E_h``, ``D``) is trained on many sequences, then the cross-modal
    encoder ``E_ah`` is fine-tuned on one person with ``E_h`` and ``D`` frozen. The pre-trained
    run's architecture, window and BOP must match this config's (checked, with the differing
    fields named).
    """
    finetune = config.get("finetune")
    init_from = str(finetune.init_from) if finetune is not None else ""
    if not init_from:
        return None
    try:
        pre_config, _, pre_state = load_state(init_from)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"config.finetune.init_from={init_from!r}: {err}. Pre-train one first, e.g. "
            f"`{TRAIN_COMMAND.format(workdir='DIR')}` (on many sequences), then fine-tune with "
            "--config.finetune.init_from=DIR"
        ) from None
    # A pre-trained run older than an added key had the value its absence meant.
    pre_model = {
        k: pre_config.model.get(k, ADDED_KEYS.get(f"model.{k}")) for k in _ARCHITECTURE_FIELDS
    }
    diffs = [
        f"model.{k}: pre-trained {pre_model[k]!r}, here {config.model[k]!r}"
        for k in _ARCHITECTURE_FIELDS
        if pre_model[k] != config.model[k]
    ] + [
        f"data.{k}: pre-trained {pre_config.data[k]!r}, here {config.data[k]!r}"
        for k in ("window", "bop", "fps")
        if pre_config.data[k] != config.data[k]
    ]
    if diffs:
        raise ValueError(
            f"config.finetune.init_from={init_from!r} does not fit this config: " + "; ".join(diffs)
        )
    return Pretrained(
        params=jax.device_get(pre_state.params),
        mean=np.asarray(pre_state.mean),
        std=np.asarray(pre_state.std),
    )


def finetune_config(
    init_from: str | os.PathLike, folders: tuple[str, ...], steps: int
) -> ml_collections.ConfigDict:
    """The config that fine-tunes ``E_ah`` of the pre-trained run ``init_from`` on the video
    folders ``folders`` (``scripts/preprocess.py``'s), each holding out its own held-out end
    (``data.held_out_split="video"``: the frames its NeRF never sees), for ``steps`` steps.

    Everything else (architecture, window, BOP, pose frame, mirroring, optimiser) is the
    pre-trained run's, so the two fit by construction; what ``scripts/avatar.py`` runs.

    Raises:
      FileNotFoundError: ``init_from`` is not a trained GP-VAE run.
    """
    if steps < 1:
        raise ValueError(f"fine-tuning needs at least one step, got {steps}")
    try:
        pre_config, _, _ = load_state(init_from)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{init_from}: {err}. Pre-train a GP-VAE on video folders first (docs/gpvae.md)"
        ) from None
    config = ml_collections.ConfigDict(pre_config.to_dict())
    for key, meant in ADDED_KEYS.items():  # an older pre-trained run: the values it meant
        block, name = key.split(".")
        if name not in config[block]:
            config[block][name] = meant
    config.finetune.init_from = str(pathlib.Path(init_from).expanduser().resolve())
    config.data.update(
        source="videos", paths=tuple(str(f) for f in folders), heldout_groups=(),
        held_out_split="video",
    )  # fmt: skip
    config.train.steps = int(steps)
    config.train.checkpoint_every = min(int(config.train.checkpoint_every), int(steps))
    config.lock()
    return config


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike):
    """Trains (or resumes) the stage in ``workdir``; returns the final state."""
    return loop.train(config, workdir, build_task, added_keys=ADDED_KEYS)
