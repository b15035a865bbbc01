"""The NeRF run's own sync stage, trained first into ``WORKDIR/sync`` when none is given.

Paper 000's whole system feeds the field the sync module's F_lip (fig. 3); on our data it moves
the mouth where AD-NeRF's audio network does not (docs/nerf_ablation.md). So the NeRF configs
default to ``config.sync.train=True``: with ``config.sync.init_from`` empty,
:func:`with_own_sync` trains the sync stage over the NeRF's own training data, resumable and
skipped once done (its own ``eval.json``, progress and checkpoints in ``WORKDIR/sync``), and
returns the config with ``init_from`` pointing at it. ``--config.sync.init_from=DIR`` reuses a
trained stage instead; ``--config.sync.train=False`` keeps AD-NeRF's audio network (the
ablation's ``base`` arm).

:func:`own_sync_config` maps the NeRF's data block onto the sync stage's: the same synthetic set
(or VOCASET-format folder) with the NeRF's held-out sentences held out, or the same preprocessed
video with its held-out end (``data.val_seconds``) held out: the sync stage never sees a frame or
a second of audio that the NeRF is scored on.
"""

from __future__ import annotations

import pathlib

import ml_collections

from jaxhead.nerf.conditions import init_from
from jaxhead.train.errors import UserError

SYNC_FOLDER = "sync"


def trains_own_sync(config: ml_collections.ConfigDict) -> bool:
    """Whether ``config`` trains its own sync stage (``sync.train`` and no ``sync.init_from``)."""
    return (
        "sync" in config and bool(config.sync.get("train", False)) and not init_from(config, "sync")
    )


def own_sync_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The sync stage's config (:func:`jaxhead.sync.config.sync_config` of variant
    ``config.sync.train_config``) over the NeRF config's training data."""
    from jaxhead.sync.config import sync_config

    sync = sync_config(str(config.sync.get("train_config", "")) or None)
    data = config.data
    with sync.unlocked():
        sync.seed = int(config.seed)
        sync.data.cache_dir = str(data.cache_dir)
        sync.data.fps = float(data.fps)
        if data.kind == "voca":
            root = pathlib.Path(str(data.root)).expanduser()
            if str(data.root) and not (root / "factors.npz").is_file():
                raise UserError(
                    f"{root} has no factors.npz (the synthetic set's mouth landmarks): the run "
                    "cannot train its own sync stage on it; pass a trained one with "
                    "--config.sync.init_from=DIR (e.g. pre-trained on videos, "
                    "configs/sync.py:pretrain) or --config.sync.train=False"
                )
            sync.data.kind = "synthetic"
            sync.data.root = str(data.root)
            sync.data.synthetic = ml_collections.ConfigDict(data.synthetic.to_dict())
            # The NeRF's held-out sentences (its last val_sentences per subject) stay unseen.
            sync.data.heldout_subjects = 0
            sync.data.heldout_sentences = int(data.val_sentences)
        elif data.kind == "video":
            if not float(data.val_seconds):
                raise UserError(
                    "training the run's own sync stage on a video needs its held-out end: pass "
                    "--config.data.val_seconds=S (or a trained stage with "
                    "--config.sync.init_from=DIR, or --config.sync.train=False)"
                )
            sync.data.kind = "video"
            sync.data.video_roots = (str(data.root),)
            sync.data.video_audio = str(data.audio_file)
            sync.data.video_val_seconds = float(data.val_seconds)
        else:
            raise UserError(
                f"no own sync stage for data.kind={data.kind!r}: pass --config.sync.init_from=DIR "
                "or --config.sync.train=False"
            )
    sync.lock()
    return sync


def own_sync_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    """``WORKDIR/sync`` (absolute: the NeRF's config records it as ``sync.init_from``)."""
    return pathlib.Path(workdir).expanduser().resolve() / SYNC_FOLDER


def resolved(config: ml_collections.ConfigDict, workdir) -> ml_collections.ConfigDict:
    """``config`` with ``sync.init_from`` set to the run's own sync stage when it trains one."""
    if not trains_own_sync(config):
        return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.sync.init_from = str(own_sync_dir(workdir))
    config.lock()
    return config


def with_own_sync(config: ml_collections.ConfigDict, workdir) -> ml_collections.ConfigDict:
    """Trains (or resumes, or finds finished) the run's own sync stage when ``config`` asks for
    one; returns the config the NeRF trains with (:func:`resolved`)."""
    if not trains_own_sync(config):
        return config
    from jaxhead.sync import stage as sync_stage

    folder = own_sync_dir(workdir)
    print(f"Sync stage (F_lip of this run): {folder}", flush=True)
    sync_stage.train(own_sync_config(config), folder)
    return resolved(config, workdir)
