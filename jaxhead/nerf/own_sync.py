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
        sync.train.progress = bool(config.train.progress)  # as the NeRF's (a resumable key)
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
            val_seconds = float(data.val_seconds) or _val_tail_seconds(
                pathlib.Path(str(data.root)).expanduser(), float(data.fps)
            )
            sync.data.kind = "video"
            sync.data.video_roots = (str(data.root),)
            sync.data.video_audio = str(data.audio_file)
            sync.data.video_val_seconds = val_seconds
        else:
            raise UserError(
                f"no own sync stage for data.kind={data.kind!r}: pass --config.sync.init_from=DIR "
                "or --config.sync.train=False"
            )
    sync.lock()
    return sync


def _val_tail_seconds(root: pathlib.Path, fps: float) -> float:
    """Seconds of the video's end that ``transforms_val.json`` holds out (the NeRF's ``val``
    split when ``data.val_seconds`` is 0); it must be the video's end."""
    import json

    ids = {}
    for split in ("train", "val"):
        path = root / f"transforms_{split}.json"
        try:
            ids[split] = [int(f["img_id"]) for f in json.loads(path.read_text())["frames"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"cannot read the frame ids of {path} ({error}): the run's own sync stage must "
                "know the held-out frames; pass --config.data.val_seconds=S"
            ) from error
    if not ids["val"] or (ids["train"] and max(ids["train"]) > min(ids["val"])):
        raise UserError(
            f"{root}: transforms_val.json is not the end of the video, so the run's own sync "
            "stage cannot hold it out by time; pass --config.data.val_seconds=S (or "
            "--config.sync.init_from=DIR)"
        )
    total = max(ids["train"] + ids["val"]) + 1
    return (total - min(ids["val"])) / fps


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
