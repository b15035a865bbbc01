"""The sync stage: audio + lip encoders trained contrastively on the shared loop; F_lip loading.

    python scripts/train_sync.py --config configs/sync.py --workdir runs/sync

:func:`train` runs :func:`jaxhead.train.loop.train` with :func:`build_task`: the data of
:mod:`jaxhead.sync.data`, the encoders of :mod:`jaxhead.sync.models`, a loss picked by name from
:data:`LOSSES` (paper 000 eq. 8 InfoNCE, or paper 001 eq. 3 BCE on cosine similarity), and an
evaluation with the SyncNet protocol (:mod:`jaxhead.sync.scoring`) on held-out clips, each
scored as recorded and with its audio artificially shifted by ``config.eval.leads`` frames; the
AV offset accuracy (within ``config.eval.tolerance`` frames), the confidences per clip and their
averages go to ``eval.json``.

Besides the shared workdir files, a run writes ``WORKDIR/sync_model.json`` (the encoders' input
shapes and the audio front-end settings) so that :func:`load_sync_encoder` rebuilds the encoders
from ``config.sync.init_from`` without the training data: the NeRF stage's lip conditioning
``F_lip`` is ``encoder.embed_audio(encoder.audio_windows(audio, num_frames))``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxhead.audio import frontend
from jaxhead.numerics import cosine_similarity
from jaxhead.sync import data as data_lib
from jaxhead.sync import scoring
from jaxhead.sync.config import ADDED_KEYS
from jaxhead.sync.losses import bce_cosine, info_nce
from jaxhead.sync.models import SyncModel
from jaxhead.train import loop
from jaxhead.train.errors import UserError
from jaxhead.train.optim import make_optimizer
from jaxhead.train.restore import finished_run_config, restore_run
from jaxhead.train.state import TrainState, tree_l2
from jaxhead.train.workdir import write_json_atomic

__all__ = [
    "LOSSES",
    "SyncEncoder",
    "build_task",
    "contrastive_loss",
    "evaluate_clips",
    "load_sync_encoder",
    "train",
]

MODEL_FILE = "sync_model.json"
TRAIN_COMMAND = "python scripts/train_sync.py --config configs/sync.py --workdir {workdir}"


# --- losses (picked by name) ----------------------------------------------------------------------


def _info_nce(lip, positive, negatives, temperature):
    # Paper 000 eq. 8: the lip feature is the anchor, the aligned audio the positive.
    return info_nce(lip, positive, negatives, temperature)


def _bce(lip, positive, negatives, temperature):
    # Paper 001 eq. 3 on the same pairs; positives and negatives weigh half each, since one
    # positive meets N negatives per anchor (Wav2Lip samples the two classes 50/50).
    del temperature
    num, count, dim = negatives.shape
    pos = bce_cosine(positive, lip, jnp.ones((num,), lip.dtype))
    repeated = jnp.broadcast_to(lip[:, None, :], (num, count, dim)).reshape(num * count, dim)
    neg = bce_cosine(negatives.reshape(num * count, dim), repeated, jnp.zeros((num * count,)))
    return 0.5 * (pos + neg)


LOSSES: dict[str, Callable] = {"info_nce": _info_nce, "bce": _bce}


def contrastive_loss(
    name: str, lip: jax.Array, positive: jax.Array, negatives: jax.Array, temperature: float
) -> jax.Array:
    """The loss ``name`` of ``LOSSES`` on lip ``[B, D]``, audio ``[B, D]`` and ``[B, N, D]``."""
    if name not in LOSSES:
        raise ValueError(f"unknown config.loss.name {name!r}; use one of {sorted(LOSSES)}")
    return LOSSES[name](lip, positive, negatives, temperature)


# --- model ----------------------------------------------------------------------------------------


def build_model(config: ml_collections.ConfigDict, audio_shape, lip_shape, seed: int) -> SyncModel:
    m = config.model
    return SyncModel(
        tuple(audio_shape),
        tuple(lip_shape),
        tuple(m.channels),
        int(m.hidden),
        int(m.embed_dim),
        rngs=nnx.Rngs(seed),
    )


def _apply(graphdef, params, audio=None, lips=None):
    model = nnx.merge(graphdef, params)
    return (
        None if audio is None else model.audio(audio),
        None if lips is None else model.lip(lips),
    )


def embed_clip(embed_fn, clip: data_lib.SyncClip) -> tuple[np.ndarray, np.ndarray]:
    """Audio and lip embeddings ``[V, D]`` of a clip's valid frames."""
    audio, lips = clip.valid_windows()
    a, v = embed_fn(jnp.asarray(audio), jnp.asarray(lips))
    return np.asarray(a), np.asarray(v)


def evaluate_clips(
    embed_fn: Callable,
    splits: dict[str, list[data_lib.SyncClip]],
    config: ml_collections.ConfigDict,
    fps: float = 25.0,
) -> dict:
    """SyncNet scores of held-out clips, as recorded and with artificially shifted audio.

    Args:
      embed_fn: ``(audio windows, lip windows) -> (audio [V, D], lip [V, D])`` embeddings.
      splits: ``{split name: clips}``.
      config: ``config.eval`` (``leads``, ``max_offset``, ``distance``, ``tolerance``;
        ``window_seconds > 0``: each clip scored in consecutive windows of that length, e.g.
        SyncNet's usual 2 s, one record per window and lead, ``start`` its first frame; a clip
        shorter than a window is scored whole).
      fps: the clips' frame rate (for ``window_seconds``).

    Returns:
      ``{"overall": summary, "splits": {name: summary}, "clips": [per clip and lead]}`` with the
      summaries of :func:`jaxhead.sync.scoring.summarize`.
    """
    records = []
    span = int(round(float(config.get("window_seconds", 0.0)) * fps)) if fps else 0
    for split, clips in splits.items():
        for clip in clips:
            audio_all, lips_all = embed_clip(embed_fn, clip)
            # Whole windows of `span` frames; a clip shorter than one window is one window.
            starts = [0] if span <= 0 else range(0, max(len(audio_all) - span, 0) + 1, span)
            for start in starts:
                stop = len(audio_all) if span <= 0 else start + span
                audio, lips = audio_all[start:stop], lips_all[start:stop]
                for lead in config.leads:
                    if len(audio) - abs(lead) <= config.max_offset:
                        continue
                    a, v = scoring.shift_audio(audio, lips, int(lead))
                    score = scoring.score_clip(a, v, int(config.max_offset), config.distance)
                    records.append(
                        {
                            "split": split,
                            "clip": clip.name,
                            "start": int(clip.lo + start),
                            "true_offset": int(lead),
                            "offset": score["offset"],
                            "confidence": score["confidence"],
                            "min_distance": score["min_distance"],
                        }
                    )
    if not records:
        raise ValueError(
            f"no held-out clip is longer than {config.max_offset} frames (+ the largest lead)"
        )
    tol = int(config.tolerance)
    return {
        "overall": scoring.summarize(records, tol),
        "splits": {
            s: scoring.summarize([r for r in records if r["split"] == s], tol)
            for s in dict.fromkeys(r["split"] for r in records)
        },
        "clips": records,
    }


def score_videos(embed_fn: Callable, roots, config: ml_collections.ConfigDict) -> list[dict]:
    """AV offset and confidence of whole preprocessed video folders (true offset unknown)."""
    out = []
    d = config.data
    for root in roots:
        clip = data_lib.load_video_clip(
            root, d.video_audio, fps=d.fps, features=d.features, window=d.window
        )
        audio, lips = embed_clip(embed_fn, clip)
        score = scoring.score_clip(audio, lips, int(config.eval.max_offset), config.eval.distance)
        out.append({"clip": str(root), **{k: v for k, v in score.items() if k != "distances"}})
    return out


def _plot_offsets(embed_fn, clips, config, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    shifts = np.arange(-config.eval.max_offset, config.eval.max_offset + 1)
    for clip in clips:
        audio, lips = embed_clip(embed_fn, clip)
        if len(audio) <= config.eval.max_offset:
            continue
        dist = scoring.offset_distances(audio, lips, config.eval.max_offset, config.eval.distance)
        # Plotted against the SyncNet offset (-shift): the minimum should sit at 0.
        ax.plot(-shifts, np.asarray(dist), label=clip.name, lw=1)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("AV offset (frames, audio leading > 0)")
    ax.set_ylabel(f"mean {config.eval.distance} distance")
    ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- the task -------------------------------------------------------------------------------------


def _model_info(config, clip: data_lib.SyncClip) -> dict:
    d = config.data
    source = d.video_audio if d.kind == "video" else "wav"
    return {
        "audio_shape": list(clip.audio.shape[1:]),
        "lip_shape": [int(d.window), int(clip.lips.shape[1])],
        "features": d.features if source not in data_lib.AUDIO_FEATURE_FILES else source,
        "fps": float(d.fps),
        "window": int(d.window),
    }


def build_task(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, workdir: pathlib.Path | None = None
) -> loop.Task:
    """The sync stage as a :class:`jaxhead.train.loop.Task` (``workdir``: where to write
    ``sync_model.json``; None writes nothing)."""
    del mesh  # the loop shards the batch over it; the state is replicated (small encoders)
    if config.loss.name not in LOSSES:
        raise ValueError(
            f"unknown config.loss.name {config.loss.name!r}; use one of {sorted(LOSSES)}"
        )
    splits = data_lib.load_clips(config.data, progress=bool(config.train.progress))
    train_clips = splits.pop("train")
    if not train_clips:
        raise ValueError("the training split is empty; check config.data")
    info = _model_info(config, train_clips[0])
    if workdir is not None and jax.process_index() == 0:
        write_json_atomic(pathlib.Path(workdir) / MODEL_FILE, info)
    tx = make_optimizer(config.optim, config.train.steps)
    graphdef = nnx.graphdef(
        nnx.eval_shape(lambda: build_model(config, info["audio_shape"], info["lip_shape"], 0))
    )
    loss_name, temperature = config.loss.name, float(config.loss.temperature)
    pretrained = None
    if config.get("init_from", ""):
        pretrained = load_sync_params(config.init_from)
        _check_compatible(pretrained, config, info)
        print(f"sync: starting from {pretrained.workdir} (step {pretrained.step})", flush=True)

    def init_fn():
        if pretrained is not None:  # adaptation: the pre-trained encoders, a fresh optimiser
            return TrainState.create(jax.tree.map(jnp.asarray, pretrained.params), tx)
        model = build_model(config, info["audio_shape"], info["lip_shape"], config.seed)
        return TrainState.create(nnx.to_pure_dict(nnx.state(model, nnx.Param)), tx)

    def train_step(state, batch):
        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            lip = model.lip(batch["lips"])  # [B, D]  F_lip, the anchor
            positive = model.audio(batch["audio"])  # [B, D]  F_al+
            negatives = model.audio(batch["negatives"])  # [B, N, D]  F_al-
            loss = contrastive_loss(loss_name, lip, positive, negatives, temperature)
            return loss, (lip, positive, negatives)

        (loss, (lip, positive, negatives)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        new_state, updates = state.apply_gradients(grads, tx)
        pos = cosine_similarity(lip, positive)  # [B]
        neg = cosine_similarity(lip[:, None, :], negatives)  # [B, N]
        same = (batch["negative_clip"] == batch["clip"][:, None]).astype(neg.dtype)
        metrics = {
            "loss": loss,
            "pos_similarity": jnp.mean(pos),
            "neg_similarity": jnp.mean(neg),
            "shifted_neg_similarity": jnp.sum(neg * same) / jnp.maximum(jnp.sum(same), 1.0),
            # The positive beats every negative: the retrieval accuracy InfoNCE optimises.
            "accuracy": jnp.mean((pos > jnp.max(neg, axis=-1)).astype(jnp.float32)),
            "l2_grads": tree_l2(grads),
            "l2_params": tree_l2(new_state.params),
            "l2_updates": tree_l2(updates),
        }
        return new_state, metrics

    embed = jax.jit(functools.partial(_apply, graphdef))

    def embed_fn_of(state):
        return lambda audio, lips: embed(state.params, audio, lips)

    def evaluate(state):
        embed_fn = embed_fn_of(state)
        results = evaluate_clips(embed_fn, splits, config.eval, float(config.data.fps))
        if config.eval.video_roots:
            results["videos"] = score_videos(embed_fn, config.eval.video_roots, config)
        o = results["overall"]
        print(
            f"sync eval: offset accuracy (+-{config.eval.tolerance}) {o['accuracy']:.3f} over "
            f"{o['num_clips']} clip x shift trials, mean confidence {o['mean_confidence']:.3f}",
            flush=True,
        )
        return results

    def write_samples(state, step, samples_dir):
        clips = [c for split in splits.values() for c in split][: int(config.eval.plot_clips)]
        if clips:
            _plot_offsets(
                embed_fn_of(state), clips, config, samples_dir / f"offsets_{step:06d}.png"
            )

    data = data_lib.SyncExamples(train_clips, config.data, int(config.seed))
    return loop.Task(
        init_fn=init_fn,
        train_step=train_step,
        data=data,
        evaluate=evaluate,
        write_samples=write_samples if config.eval.plot_clips else None,
    )


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
    """Trains (or resumes) the sync stage in ``workdir``; returns the final train state."""
    workdir = pathlib.Path(workdir)
    return loop.train(
        config, workdir, functools.partial(build_task, workdir=workdir), added_keys=ADDED_KEYS
    )


# --- F_lip for the NeRF stage ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SyncEncoder:
    """A trained sync stage, loaded for use by other stages.

    Attributes:
      embed_audio: pure ``[..., steps, F] audio windows -> [..., D]`` F_lip (jitted; closes over
        the trained parameters): the audio encoder, trained so that its output matches the lip
        encoder's embedding of the synchronised mouth (paper 000 fig. 3).
      embed_lips: pure ``[..., window, 40] lip windows -> [..., D]``.
      audio_features: pure ``[..., steps, F] -> [..., D]``: the audio encoder's output layer
        before its final ReLU (dense and signed; after the ReLU most entries of an embedding are
        exactly zero): the F_lip the NeRF stage reads.
      audio_windows: host ``(audio [num_samples] at 16 kHz, num_frames) -> [num_frames, steps, F]``
        (the same front-end and per-clip normalisation as in training).
      embed_dim: ``D``.
      fps: the video frame rate the windows are cut for.
      step: the checkpoint's training step.
      workdir: where it was loaded from.
    """

    embed_audio: Callable[[jax.Array], jax.Array]
    embed_lips: Callable[[jax.Array], jax.Array]
    audio_features: Callable[[jax.Array], jax.Array]
    audio_windows: Callable[[np.ndarray, int], np.ndarray]
    embed_dim: int
    fps: float
    step: int
    workdir: pathlib.Path

    def score(self, clip: data_lib.SyncClip, max_offset: int = 15, distance: str = "cosine"):
        """SyncNet AV offset and confidence of a clip (:func:`jaxhead.sync.scoring.score_clip`);
        build the clip with :func:`jaxhead.sync.data.clip_from_arrays` or ``load_video_clip``."""
        audio, lips = clip.valid_windows()
        a = np.asarray(self.embed_audio(jnp.asarray(audio)))
        v = np.asarray(self.embed_lips(jnp.asarray(lips)))
        return scoring.score_clip(a, v, max_offset, distance)


@dataclasses.dataclass(frozen=True)
class TrainedSync:
    """A sync-stage run's config, model description (``sync_model.json``), graph, trained
    parameters and step."""

    config: ml_collections.ConfigDict
    info: dict
    graphdef: Any
    params: Any
    step: int
    workdir: pathlib.Path


def load_sync_params(init_from: str | pathlib.Path) -> TrainedSync:
    """The latest checkpoint's parameters of a sync-stage workdir.

    Raises:
      FileNotFoundError: no trained sync stage there; the message gives the command that makes one.
    """
    workdir = pathlib.Path(init_from).expanduser()
    command = TRAIN_COMMAND.format(workdir=workdir)
    config = finished_run_config(workdir, "sync", command, required=(MODEL_FILE,))
    info = json.loads((workdir / MODEL_FILE).read_text())
    # Shapes only: the parameters come from the checkpoint.
    model = nnx.eval_shape(lambda: build_model(config, info["audio_shape"], info["lip_shape"], 0))
    graphdef = nnx.graphdef(model)

    def abstract_state(config):
        params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        tx = make_optimizer(config.optim, config.train.steps)
        return jax.eval_shape(lambda p: TrainState.create(p, tx), params)

    run = restore_run(workdir, "sync", command, abstract_state, config=config)
    return TrainedSync(config, info, graphdef, run.state.params, int(run.step), workdir)


def _check_compatible(pretrained: TrainedSync, config, info: dict) -> None:
    """A run that starts from ``pretrained`` must have its model and its inputs."""
    problems = [
        f"{key} {pretrained.info.get(key)} there vs {info[key]} here"
        for key in ("audio_shape", "lip_shape", "features", "fps", "window")
        if pretrained.info.get(key) != info[key]
    ]
    mine, theirs = config.model.to_dict(), pretrained.config.model.to_dict()
    problems += [
        f"model.{key} {theirs.get(key)} there vs {mine[key]} here"
        for key in mine
        if json.dumps(theirs.get(key)) != json.dumps(mine[key])
    ]
    if problems:
        raise UserError(
            f"config.init_from={pretrained.workdir} was trained on other inputs or another model "
            f"({'; '.join(problems)}): adapt with the same data.features / data.window / "
            "data.fps and model block as the pre-trained run"
        )


def load_sync_encoder(init_from: str | pathlib.Path) -> SyncEncoder:
    """Loads the latest checkpoint of a sync-stage workdir (``config.sync.init_from``).

    Raises:
      FileNotFoundError: no trained sync stage there; the message gives the command that makes one.
    """
    loaded = load_sync_params(init_from)
    config, info, graphdef, trained = loaded.config, loaded.info, loaded.graphdef, loaded.params
    step, workdir = loaded.step, loaded.workdir
    apply = jax.jit(functools.partial(_apply, graphdef))

    def embed_audio(windows):
        return apply(trained, audio=windows)[0]

    def embed_lips(windows):
        return apply(trained, lips=windows)[1]

    features_fn = jax.jit(
        lambda params, windows: nnx.merge(graphdef, params).audio(windows, pre_activation=True)
    )

    def audio_features(windows):
        return features_fn(trained, windows)

    features = info["features"]
    if features in frontend.COMPUTED:

        def audio_windows(audio, num_frames):
            return data_lib.audio_feature_windows(
                audio, int(num_frames), info["fps"], features, info["window"]
            )[0]

    else:

        def audio_windows(audio, num_frames):
            raise ValueError(
                f"this sync stage was trained on {features} feature files, not raw audio; build "
                f"the windows from {features} as jaxhead.sync.data.load_video_clip does"
            )

    return SyncEncoder(
        embed_audio, embed_lips, audio_features, audio_windows, int(config.model.embed_dim),
        float(info["fps"]), int(step), workdir,
    )  # fmt: skip
