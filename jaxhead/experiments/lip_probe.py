"""How much of the true mouth each candidate F_lip holds: linear probes on held-out sentences.

On the synthetic data every frame carries its true mouth parameters (``expression[:2]``: jaw
opening and lip rounding). A ridge probe from a per-frame feature to them, fitted on the training
frames and scored by R² on the held-out sentences (``val``), measures what a NeRF conditioned on
that feature could read from it linearly, before any NeRF is trained:

* ``logmel_window``: the log-mel window the audio network (the ``base`` arm) reads, flattened;
* ``embedding`` / ``pre_activation`` / ``standardized``: the sync stage's frozen audio encoder,
  read as ``config.sync.features`` does (:class:`jaxhead.nerf.conditions.LipSource`).

The ridge penalty is chosen per feature by leave-one-group-out cross-validation over the
training sequences (never on the held-out sentences).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxhead.eval.probe import probe_r2, probe_r2_per_dim
from jaxhead.nerf import conditions as cond

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
TARGETS = ("jaw_open", "lip_round")
SYNC_READINGS = ("embedding", "pre_activation", "standardized")


def _frames_arrays(frames, with_lip: bool) -> dict[str, np.ndarray]:
    items = [frames[i] for i in range(len(frames))]
    out = {
        "logmel_window": np.stack([f["audio"].reshape(-1) for f in items]),
        "target": np.stack([f["expression"][:2] for f in items]),
        "group": np.asarray([int(f["sequence_index"]) for f in items]),
    }
    if with_lip:
        out["lip"] = np.stack([f["lip"] for f in items])
    return out


def choose_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 3) -> float:
    """The ridge penalty of :data:`ALPHAS` with the best mean R² over ``folds`` folds of whole
    groups (sequences), so that no sentence is in both the fit and the score."""
    unique = np.unique(groups)
    folds = min(folds, len(unique))
    if folds < 2:
        return 1e-2
    assignment = {g: k % folds for k, g in enumerate(unique)}
    fold_of = np.asarray([assignment[g] for g in groups])
    scores = []
    for alpha in ALPHAS:
        r2 = [
            probe_r2(x[fold_of != k], y[fold_of != k], x[fold_of == k], y[fold_of == k], alpha)
            for k in range(folds)
        ]
        scores.append(np.nanmean(r2))
    return float(ALPHAS[int(np.nanargmax(scores))])


def lip_feature_probe(config: ml_collections.ConfigDict, sync_workdir: str = "") -> dict:
    """``{feature: {"alpha", "dims", "r2": {jaw_open, lip_round}, "r2_mean"}}`` on ``config``'s
    synthetic data (``config.data.kind == "voca"``: the frames need their true expression)."""
    if config.data.kind != "voca":
        raise ValueError(
            "the lip-feature probe needs the true mouth parameters of every frame, which only "
            "the synthetic/VOCASET frames carry (config.data.kind='voca')"
        )
    readings = {}
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.sync.init_from = ""
    plain = cond.LipSource(config)
    train = _frames_arrays(cond.load_frames(config, "train", plain, progress=False), False)
    val = _frames_arrays(cond.load_frames(config, "val", plain, progress=False), False)
    readings["logmel_window"] = (train["logmel_window"], val["logmel_window"])
    for kind in SYNC_READINGS if sync_workdir else ():
        with config.unlocked():
            config.sync.init_from = str(sync_workdir)
            config.sync.features = kind
        lip = cond.LipSource(config)  # the training split sets its statistics
        lip_train = cond.load_frames(config, "train", lip, progress=False).lip
        lip_val = cond.load_frames(config, "val", lip, progress=False).lip
        readings[kind] = (lip_train, lip_val)
    results = {}
    for name, (x_train, x_val) in readings.items():
        alpha = choose_alpha(x_train, train["target"], train["group"])
        per_dim = probe_r2_per_dim(x_train, train["target"], x_val, val["target"], alpha)
        results[name] = {
            "alpha": alpha,
            "dims": int(x_train.shape[1]),
            "r2": dict(zip(TARGETS, (float(v) for v in per_dim), strict=True)),
            "r2_mean": float(np.nanmean(per_dim)),
        }
    return results


def probe_table(results: dict) -> str:
    """Markdown table of :func:`lip_feature_probe`'s results."""
    lines = [
        "| feature | dims | ridge α (CV) | R² jaw open | R² lip round | R² mean |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['dims']} | {r['alpha']:g} | {r['r2']['jaw_open']:.3f} "
            f"| {r['r2']['lip_round']:.3f} | {r['r2_mean']:.3f} |"
        )
    return "\n".join(lines)
