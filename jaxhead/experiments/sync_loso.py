"""Leave-one-speaker-out evaluation of the sync expert: pre-trained across speakers, adapted to one.

For every preprocessed video folder (one speaker each) ``held``:

* ``pretrain``: the sync stage trained across the synthetic speakers and every *other* video
  (``configs/sync.py:pretrain``: augmented, negatives across and within clips);
* ``adapted``: that run fine-tuned on the first part of ``held`` (``configs/sync.py:adapt``,
  ``init_from`` the pre-trained run);
* ``single``: today's single-speaker stage, trained from scratch on the same first part;
* ``pretrained``: the pre-trained run as it is (no adaptation; it never saw ``held``).

Each arm is scored on the held-out end of ``held`` (the last ``val_fraction``, frames no arm
trained on) in consecutive windows of ``window_seconds`` (SyncNet's 2 s; a shorter held-out end is
one window), with the audio as recorded and shifted by the planted leads: the share of windows
whose offset is found within ±1 frame of the truth (as recorded: 0; planted: the lead), and the
SyncNet confidence on aligned vs shifted audio.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

ARMS = ("single", "pretrained", "adapted")
LEADS = (0, -8, -4, -2, 2, 4, 8)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The held-out split and the scoring windows shared by every arm."""

    val_fraction: float = 0.2
    window_seconds: float = 2.0
    leads: tuple[int, ...] = LEADS
    smoke: bool = False  # tiny models and budgets: a plumbing check of the whole protocol
    # The pre-training's data: the synthetic speakers and the other videos (True), or the other
    # videos alone (False).
    synthetic: bool = True


def _with_protocol(config: ml_collections.ConfigDict, protocol: Protocol, cache_dir: str):
    with config.unlocked():
        config.data.video_val_fraction = float(protocol.val_fraction)
        config.data.cache_dir = cache_dir
        config.eval.update(leads=tuple(protocol.leads), window_seconds=protocol.window_seconds)
        if protocol.smoke:
            config.train.update(steps=6, log_every=2, checkpoint_every=3, progress=False)
            config.model.update(channels=(8,), hidden=8, embed_dim=8)
            config.data.synthetic.update(identities=3, sequences=2, seconds=1.6)
            config.data.update(heldout_subjects=1, heldout_sentences=1, batch_size=16)
            config.eval.plot_clips = 0
    return config


def pretrain_config(others: Sequence[str], protocol: Protocol, cache_dir: str = ""):
    from jaxhead.sync.config import sync_config

    config = _with_protocol(sync_config("pretrain"), protocol, cache_dir)
    if not protocol.synthetic and not others:
        raise ValueError("pre-training without the synthetic speakers needs other videos")
    with config.unlocked():
        config.data.video_roots = tuple(str(r) for r in others)
        if not others:
            config.data.kind = "synthetic"
        elif not protocol.synthetic:
            config.data.kind = "video"
    return config


def adapt_config(held: str, pretrained: str, protocol: Protocol, cache_dir: str = ""):
    from jaxhead.sync.config import sync_config

    config = _with_protocol(sync_config("adapt"), protocol, cache_dir)
    with config.unlocked():
        config.data.video_roots = (str(held),)
        config.init_from = str(pretrained)
        if protocol.smoke:
            config.train.steps = 3
    return config


def single_config(held: str, protocol: Protocol, cache_dir: str = ""):
    from jaxhead.sync.config import sync_config

    config = _with_protocol(sync_config(), protocol, cache_dir)
    with config.unlocked():
        config.data.update(kind="video", video_roots=(str(held),))
    return config


def score_run(run_dir: pathlib.Path, held: str, protocol: Protocol) -> dict:
    """The scores of a trained sync run on the held-out end of ``held`` (module docstring)."""
    from jaxhead.sync import data as data_lib
    from jaxhead.sync import stage as sync_stage

    loaded = sync_stage.load_sync_params(run_dir)
    config = loaded.config.copy_and_resolve_references()
    with config.unlocked():
        config.data.update(kind="video", video_roots=(str(held),))
        config.data.video_val_fraction = float(protocol.val_fraction)
        config.data.video_val_seconds = 0.0
        config.eval.update(leads=tuple(protocol.leads), window_seconds=protocol.window_seconds)
    (clip,) = data_lib.load_clips(config.data, progress=False)["heldout_time"]
    apply = jax.jit(functools.partial(sync_stage._apply, loaded.graphdef))

    def embed_fn(audio, lips):
        return apply(loaded.params, jnp.asarray(audio), jnp.asarray(lips))

    records = sync_stage.evaluate_clips(
        embed_fn, {"heldout": [clip]}, config.eval, float(config.data.fps)
    )["clips"]
    return summarize(records, int(config.eval.tolerance))


def summarize(records: list[dict], tolerance: int = 1) -> dict:
    """Windows, offset found within ``tolerance`` (as recorded / planted), confidences."""
    aligned = [r for r in records if r["true_offset"] == 0]
    planted = [r for r in records if r["true_offset"] != 0]

    def found(rs):
        if not rs:
            return None
        return float(np.mean([abs(r["offset"] - r["true_offset"]) <= tolerance for r in rs]))

    def mean(rs, key):
        return float(np.mean([r[key] for r in rs])) if rs else None

    return {
        "windows": len(aligned),
        "found_aligned": found(aligned),
        "found_planted": found(planted),
        "confidence_aligned": mean(aligned, "confidence"),
        "confidence_shifted": mean(planted, "confidence"),
        "offsets_aligned": [int(r["offset"]) for r in aligned],
    }


def run(
    roots: Sequence[str], workdir: pathlib.Path, protocol: Protocol, cache_dir: str = ""
) -> dict:
    """Trains (or resumes) every arm for every held-out speaker and scores them."""
    from jaxhead.sync import stage as sync_stage

    workdir = pathlib.Path(workdir)
    results = {}
    for held in roots:
        name = pathlib.Path(held).name
        folder = workdir / name
        others = [r for r in roots if r != held]
        print(f"[{name}] pre-training without it on {len(others)} other videos", flush=True)
        sync_stage.train(pretrain_config(others, protocol, cache_dir), folder / "pretrain")
        print(f"[{name}] adapting", flush=True)
        sync_stage.train(
            adapt_config(held, str(folder / "pretrain"), protocol, cache_dir), folder / "adapted"
        )
        print(f"[{name}] single-speaker stage", flush=True)
        sync_stage.train(single_config(held, protocol, cache_dir), folder / "single")
        runs = {"single": "single", "pretrained": "pretrain", "adapted": "adapted"}
        results[name] = {arm: score_run(folder / d, held, protocol) for arm, d in runs.items()}
    return results


def _weighted(rows: list[dict], key: str) -> float | None:
    """The mean of ``key`` over speakers, weighted by their windows."""
    values = [(r[key], r["windows"]) for r in rows if r[key] is not None]
    total = sum(w for _, w in values)
    return sum(v * w for v, w in values) / total if total else None


def table(results: dict) -> str:
    """The markdown table of :func:`run`'s results, one row per speaker and arm, and the pooled
    rows per arm (windows pooled over speakers)."""

    def cell(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| held-out speaker | arm | 2 s windows | offset found ±1 (as recorded) "
        "| planted offsets found ±1 | confidence aligned | confidence shifted "
        "| offsets found (as recorded) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pooled = {arm: [] for arm in ARMS}
    for name, arms in results.items():
        for arm in ARMS:
            r = arms[arm]
            pooled[arm].append(r)
            lines.append(
                f"| {name} | {arm} | {r['windows']} | {cell(r['found_aligned'])} "
                f"| {cell(r['found_planted'])} | {cell(r['confidence_aligned'], 3)} "
                f"| {cell(r['confidence_shifted'], 3)} | {r['offsets_aligned']} |"
            )
    for arm, rs in pooled.items():
        n = sum(r["windows"] for r in rs)
        if not n:
            continue

        lines.append(
            f"| **all** | **{arm}** | {n} | {cell(_weighted(rs, 'found_aligned'))} "
            f"| {cell(_weighted(rs, 'found_planted'))} "
            f"| {cell(_weighted(rs, 'confidence_aligned'), 3)} "
            f"| {cell(_weighted(rs, 'confidence_shifted'), 3)} | |"
        )
    return "\n".join(lines)
