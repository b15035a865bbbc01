"""Evaluating a GP-VAE on held-out sequences (definitions in docs/gpvae.md): D-Rot / D-Pos one
window ahead and over whole sequences, against the hold-last-frame baseline, with the velocity
ratio beside them; blinks per second, inter-blink intervals and closure durations; diversity and
motion ratio; trace plots."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxhead.gpvae import data as data_lib
from jaxhead.gpvae import metrics as metrics_lib
from jaxhead.gpvae.generate import Generator


def window_distances(generator: Generator, state, sequences) -> dict:
    """D-Rot / D-Pos of one window ``ĥ_{τ+1:T}`` from its ground-truth BOP and audio (eq. 9).

    Every held-out sequence is cut into windows starting at ``0, T−τ, 2(T−τ), …`` (the predicted
    parts tile the sequence without overlap); each window's frames ``τ..T−1`` are generated from
    the window's true first ``τ`` frames and its audio (posterior mean, noise 0) and pooled with
    :func:`metrics.relative_mae`, deviations measured from the whole sequence's mean pose (so a
    constant per-sequence mean scores ≈ 100 %). ``*_hold`` is the trivial baseline that repeats the
    last BOP frame: a model below it has learned something about head motion. ``velocity_ratio``:
    :func:`metrics.velocity_ratio` of the same predicted rotations (0 for a frozen head, as the
    hold baseline's).
    """
    window, bop = generator.window, generator.bop
    mean, std = np.asarray(state.mean), np.asarray(state.std)
    audio_rows, bop_rows, targets, holds, centers = [], [], [], [], []
    for seq in sequences:
        h = seq.features
        audio = seq.audio if seq.audio is not None else np.zeros((len(h), data_lib.AUDIO_DIM))
        for start in range(0, len(h) - window + 1, window - bop):
            audio_rows.append(audio[start : start + window])
            bop_rows.append(np.nan_to_num((h[start : start + bop] - mean) / std))
            targets.append(h[start + bop : start + window, :6])
            holds.append(np.repeat(h[start + bop - 1 : start + bop, :6], window - bop, 0))
            centers.append(h[:, :6].mean(0))
    if not targets:
        nan = float("nan")
        return {"d_rot": nan, "d_pos": nan, "velocity_ratio": nan, "num_windows": 0}
    preds = []
    for i in range(0, len(targets), 64):  # fixed-size chunks: one compilation
        a = np.stack(audio_rows[i : i + 64]).astype(np.float32)
        b = np.stack(bop_rows[i : i + 64]).astype(np.float32)
        n = len(a)
        a = np.concatenate([a, np.repeat(a[-1:], 64 - n, 0)])
        b = np.concatenate([b, np.repeat(b[-1:], 64 - n, 0)])
        noise = jnp.zeros((64, generator.spec.latent_dim, window), jnp.float32)
        out = np.asarray(generator._window_fn(state.params, a, b, noise))[:n]
        preds += list(out[:, bop:, :6] * std[:6] + mean[:6])
    model = metrics_lib.pose_distances(preds, targets, centers)
    hold = metrics_lib.pose_distances(holds, targets, centers)
    return {
        "d_rot": model["d_rot"],
        "d_pos": model["d_pos"],
        "d_rot_hold": hold["d_rot"],
        "d_pos_hold": hold["d_pos"],
        "d_rot_deg": model["d_rot_deg"],
        "d_pos_abs": model["d_pos_abs"],
        "d_rot_deg_hold": hold["d_rot_deg"],
        "d_pos_abs_hold": hold["d_pos_abs"],
        "velocity_ratio": metrics_lib.velocity_ratio(
            [p[:, :3] for p in preds], [t[:, :3] for t in targets]
        ),
        "num_windows": len(targets),
    }


def linear_baseline(
    train_sequences, held_sequences, window: int, bop: int, std: np.ndarray, ridge: float = 1e-3
) -> dict:
    """D-Rot / D-Pos of the best linear extrapolation of the BOP, a baseline a learned model
    should beat beside holding the last frame (``*_linear``; docs/gpvae.md).

    Ridge regression (closed form, float64; the penalty ``ridge`` times the mean diagonal of
    ``XᵀX``, so it does not depend on the data's units) from the ``τ`` BOP poses to the
    ``T−τ`` poses after it, both taken relative to the last BOP frame and divided by the
    per-channel ``std``, fitted on every window of ``train_sequences`` (stride 1) and scored on
    the held-out windows :func:`window_distances` scores, with their velocity ratio.
    """
    std = np.asarray(std[:6], np.float64)

    def windows(sequences, stride):
        x, y, last, target, center = [], [], [], [], []
        for seq in sequences:
            pose = np.asarray(seq.pose, np.float64)
            for start in range(0, len(pose) - window + 1, stride):
                w = pose[start : start + window]
                x.append(((w[:bop] - w[bop - 1]) / std).ravel())
                y.append(((w[bop:] - w[bop - 1]) / std).ravel())
                last.append(w[bop - 1])
                target.append(w[bop:])
                center.append(pose.mean(0))
        return np.asarray(x), np.asarray(y), last, target, center

    x, y, *_ = windows(train_sequences, 1)
    xh, _, last, targets, centers = windows(held_sequences, window - bop)
    if not len(x) or not targets:
        nan = float("nan")
        return {"d_rot_linear": nan, "d_pos_linear": nan, "velocity_ratio_linear": nan}
    gram = x.T @ x
    penalty = ridge * np.trace(gram) / len(gram)
    weights = np.linalg.solve(gram + penalty * np.eye(len(gram)), x.T @ y)
    steps = (xh @ weights).reshape(len(xh), window - bop, 6) * std
    preds = [lst + d for lst, d in zip(last, steps, strict=True)]
    scores = metrics_lib.pose_distances(preds, targets, centers)
    return {
        "d_rot_linear": scores["d_rot"],
        "d_pos_linear": scores["d_pos"],
        "velocity_ratio_linear": metrics_lib.velocity_ratio(
            [p[:, :3] for p in preds], [t[:, :3] for t in targets]
        ),
    }


def evaluate_generation(generator: Generator, state, sequences, config) -> dict:
    """eval.json on held-out sequences (definitions in docs/gpvae.md).

    ``d_rot`` / ``d_pos``: one window ahead of a true BOP (:func:`window_distances`, the paper's
    ``ĥ_{τ+1:T}``), with the hold-last-frame baseline ``*_hold``; ``d_rot_long`` / ``d_pos_long``:
    the whole sequence generated autoregressively from its first ``τ`` frames (posterior mean),
    with its hold baseline ``*_long_hold``; velocity ratios of the window predictions
    (``velocity_ratio``), of the whole-sequence posterior mean (``velocity_ratio_long``) and of
    the samples (``velocity_ratio_samples``); blinks/s and the blink rhythm
    (:func:`metrics.blink_statistics`: ``blink_interval_{mean,median}_s``,
    ``blink_interval_cv``, ``blink_closure_s``) of the generated samples and of the ground truth
    (``*_generated``, ``*_ground_truth``; whole sequences, BOP included); diversity and motion
    ratio of the whole-sequence samples.
    """
    num_samples = int(config.eval.num_samples)
    bop = generator.bop
    thresholds = dict(
        high=float(config.eval.blink_high),
        low=float(config.eval.blink_low),
        min_gap_s=float(config.eval.blink_min_gap_s),
    )
    key = jax.random.key(int(config.seed) + 1)
    mean, std = np.asarray(state.mean), np.asarray(state.std)
    preds, targets, diversity, gen_blinks, gt_blinks, gen_norm, gt_norm = [], [], [], [], [], [], []
    full_targets, gen_signals, gt_signals, sample_rot, sample_rot_gt = [], [], [], [], []
    for i, seq in enumerate(sequences):
        h = seq.features
        if len(h) <= bop:
            continue
        hn = np.nan_to_num((h - mean) / std)  # an unmeasured blink enters as the mean
        audio = seq.audio if seq.audio is not None else np.zeros((len(h), data_lib.AUDIO_DIM))
        rows = 1 + num_samples
        out = generator.from_audio(
            state.params,
            jnp.broadcast_to(jnp.asarray(audio, jnp.float32), (rows, *audio.shape)),
            jnp.broadcast_to(jnp.asarray(hn[:bop]), (rows, bop, h.shape[-1])),
            len(h),
            jax.random.fold_in(key, i),
            np.asarray([0.0] + [1.0] * num_samples),
        )
        out = np.asarray(out)
        frames = out * std + mean
        preds.append(frames[0, bop:, :6])
        targets.append(h[bop:, :6])
        full_targets.append(h)
        diversity.append(metrics_lib.sample_diversity(out[1:, bop:]))
        gen_norm += [o[bop:] for o in out[1:]]
        gt_norm += [hn[bop:]] * num_samples
        if np.all(np.isfinite(h[:, 6])):  # blink metrics where the truth has a blink signal
            gen_blinks.append(
                np.mean(
                    [
                        metrics_lib.blinks_per_second(f[:, 6], generator.fps, **thresholds)
                        for f in frames[1:]
                    ]
                )
            )
            gt_blinks.append(metrics_lib.blinks_per_second(h[:, 6], generator.fps, **thresholds))
            gen_signals += [f[:, 6] for f in frames[1:]]
            gt_signals.append(h[:, 6])
        sample_rot += [f[bop:, :3] for f in frames[1:]]
        sample_rot_gt += [h[bop:, :3]] * num_samples
    if not preds:
        raise ValueError(f"no held-out sequence is longer than the BOP ({bop} frames)")
    results = window_distances(generator, state, sequences)
    long = metrics_lib.pose_distances(preds, targets, [h[:, :6].mean(0) for h in full_targets])
    hold = metrics_lib.pose_distances(
        [np.repeat(h[bop - 1 : bop, :6], len(h) - bop, 0) for h in full_targets],
        targets,
        [h[:, :6].mean(0) for h in full_targets],
    )
    results.update(
        d_rot_long=long["d_rot"],
        d_pos_long=long["d_pos"],
        d_rot_long_hold=hold["d_rot"],
        d_pos_long_hold=hold["d_pos"],
        velocity_ratio_long=metrics_lib.velocity_ratio(
            [p[:, :3] for p in preds], [t[:, :3] for t in targets]
        ),
        velocity_ratio_samples=metrics_lib.velocity_ratio(sample_rot, sample_rot_gt),
        blinks_per_s_generated=float(np.mean(gen_blinks)) if gen_blinks else float("nan"),
        blinks_per_s_ground_truth=float(np.mean(gt_blinks)) if gt_blinks else float("nan"),
        diversity=float(np.mean(diversity)),
        motion_ratio=metrics_lib.motion_ratio(gen_norm, gt_norm),
        num_sequences=len(preds),
        variant=config.model.variant,
    )
    for which, signals in (("generated", gen_signals), ("ground_truth", gt_signals)):
        stats = metrics_lib.blink_statistics(signals, generator.fps, **thresholds)
        results.update(
            {
                f"blink_interval_mean_s_{which}": stats["interval_mean_s"],
                f"blink_interval_median_s_{which}": stats["interval_median_s"],
                f"blink_interval_cv_{which}": stats["interval_cv"],
                f"blink_closure_s_{which}": stats["closure_mean_s"],
                f"num_blinks_{which}": stats["num_blinks"],
            }
        )
    return results


def plot_traces(generator: Generator, state, sequences, config, path: pathlib.Path) -> None:
    """Generated (mean and one sample) vs real pose and blink traces, plus a prior sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not sequences:
        return
    names = ["rot x", "rot y", "rot z", "trans x", "trans y", "trans z", "blink"]
    mean, std = np.asarray(state.mean), np.asarray(state.std)
    bop = generator.bop
    fig, axes = plt.subplots(7, len(sequences), figsize=(5 * len(sequences), 12), squeeze=False)
    key = jax.random.key(int(config.seed) + 2)
    for j, seq in enumerate(sequences):
        h = seq.features
        hn = np.nan_to_num((h - mean) / std)  # an unmeasured blink enters as the mean
        audio = seq.audio if seq.audio is not None else np.zeros((len(h), data_lib.AUDIO_DIM))
        out = generator.from_audio(
            state.params,
            jnp.broadcast_to(jnp.asarray(audio, jnp.float32), (2, *audio.shape)),
            jnp.broadcast_to(jnp.asarray(hn[:bop]), (2, bop, h.shape[-1])),
            len(h),
            jax.random.fold_in(key, j),
            np.asarray([0.0, 1.0]),
        )
        frames = np.asarray(out) * std + mean
        prior = np.asarray(
            generator.from_prior(state.params, 1, len(h), jax.random.fold_in(key, 99 + j))
        )
        prior = prior[0] * std + mean
        t = np.arange(len(h)) / generator.fps
        for c in range(7):
            ax = axes[c, j]
            ax.plot(t, h[:, c], "k", lw=1.5, label="ground truth")
            ax.plot(t, frames[0, :, c], "C0", lw=1, label="generated (mean)")
            ax.plot(t, frames[1, :, c], "C1", lw=0.8, label="generated (sample)")
            ax.plot(t, prior[:, c], "C2", lw=0.6, alpha=0.7, label="prior, no audio")
            ax.axvline(bop / generator.fps, color="gray", ls=":", lw=0.8)
            ax.set_ylabel(names[c])
        axes[0, j].set_title(seq.name, fontsize=8)
        axes[-1, j].set_xlabel("seconds")
    axes[0, 0].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
