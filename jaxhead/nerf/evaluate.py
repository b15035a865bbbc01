"""The metric suite of a trained NeRF run (the library behind ``scripts/evaluate.py``).

Definitions in ``docs/video.md``. Every held-out frame is rendered with the held-out protocol
(:mod:`jaxhead.nerf.heldout`: the mean training ``C_ex``, the fitted ``C_ill``), then scored:
PSNR / SSIM (:mod:`jaxhead.eval.image`) and the lip region (:mod:`jaxhead.eval.lip`), as the
stage's own evaluation scores them; LPIPS and SyncNet (syncnet_python) when their published
weights are given; FID is not computed (InceptionV3 is not ported); MediaPipe Face Mesh landmarks
of rendered and true frames (:mod:`jaxhead.eval.face_mesh`, when a face-mesh environment exists)
give the mouth LMD, the mouth opening's agreement with the truth (r, amplitude, calibration
slope: :func:`jaxhead.eval.lip.opening_agreement`) and its traces, blinks per second from the
eye-aspect ratio, and the AV offset / confidence of our sync stage (SyncNet protocol). With a
generated pose (``pose_from="gpvae"``) the held-out audio drives the GP-VAE and D-Rot / D-Pos
compare its pose with the truth. A metric that cannot be computed is recorded with its reason,
never as a number.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

from jaxhead.audio.frontend import COMPUTED
from jaxhead.data.cache import save_npz
from jaxhead.eval import fid as fid_lib
from jaxhead.eval import image as image_lib
from jaxhead.eval import landmarks as landmarks_lib
from jaxhead.eval import lpips as lpips_lib
from jaxhead.eval.face_mesh import FaceMeshUnavailable, face_mesh, fill_gaps
from jaxhead.eval.lip import opening_agreement
from jaxhead.eval.report import markdown_table, not_computed, write_report
from jaxhead.face import MEDIAPIPE_MOUTH, blink_from_ear, eye_aspect_ratio, mouth_opening
from jaxhead.gpvae import metrics as gp_metrics
from jaxhead.nerf import conditions as cond
from jaxhead.nerf.heldout import score_heldout
from jaxhead.nerf.render_video import (
    Trained,
    generated_pose_blink,
    heldout_sequences,
    load_trained,
    render_sequence,
)
from jaxhead.sync.data import clip_from_arrays
from jaxhead.sync.stage import MODEL_FILE, load_sync_encoder


def _posed(trained: Trained, pose_blink) -> dict:
    """The ``c2w`` / ``blink`` a generated ``(pose [T, 6], blink [T])`` renders with."""
    pose, blink = pose_blink
    return {
        "c2w": trained.cameras_of_poses(pose),
        "blink": np.clip(np.asarray(blink, np.float32), 0.0, 1.0),
    }


def _sync_info(workdir: pathlib.Path) -> dict:
    return json.loads((workdir / MODEL_FILE).read_text())


def sync_scores(
    encoder, info: dict, points: np.ndarray, audio: np.ndarray, fps: float, name: str
) -> dict:
    """Our sync stage's SyncNet-protocol offset / confidence of one clip's Face Mesh mouth."""
    if info["features"] not in COMPUTED:
        raise ValueError(f"the sync stage reads {info['features']} files, not raw audio")
    mouth = fill_gaps(np.asarray(points)[:, list(MEDIAPIPE_MOUTH), :2])
    clip = clip_from_arrays(
        name, mouth, audio, float(info["fps"]), landmark_fps=fps,
        features=info["features"], window=int(info["window"]),
    )  # fmt: skip
    if clip.num_valid < 1:
        raise ValueError(f"{name}: too short for the sync window")
    score = encoder.score(clip)
    return {"offset": score["offset"], "confidence": score["confidence"]}


def _mean_over(records: list[dict], key: str, weights: list[int]) -> float:
    values = np.array([r[key] for r in records], np.float64)
    return float(np.average(values, weights=np.asarray(weights, np.float64)))


@dataclasses.dataclass(frozen=True)
class Suite:
    """What the metric suite uses beyond the run: ``mediapipe_python`` (a MediaPipe interpreter
    for Face Mesh), ``sync_workdir`` (the sync stage that scores lip sync; default the run's),
    ``lpips`` (``{"net", "trunk", "lin"}`` weight paths), ``syncnet_weights``, ``pose_from``
    (``"source"``: the true pose; ``"gpvae"``: generated from the held-out audio by the GP-VAE of
    ``gpvae_workdir``) and the generator's ``seed``."""

    mediapipe_python: str | None = None
    sync_workdir: str | None = None
    lpips: dict | None = None
    syncnet_weights: str | None = None
    pose_from: str = "source"
    gpvae_workdir: str | None = None
    seed: int = 0


def evaluate_split(trained: Trained, split: str, suite: Suite, traces: dict | None = None) -> dict:
    """The metric suite on one held-out split (module docstring); ``traces`` receives the
    per-frame series the plots show."""
    config = trained.config
    fps = float(config.data.fps)
    source, sequences = heldout_sequences(trained, split)
    pose_blinks = [None] * len(sequences)
    generated = []
    if suite.pose_from == "gpvae":
        if not suite.gpvae_workdir:
            raise ValueError("pose_from='gpvae' needs gpvae_workdir (a trained GP-VAE run)")
        for j, rows in enumerate(sequences):
            audio = cond.sequence_audio(config, source, rows)
            if audio is None:
                raise ValueError(f"split {split!r}: no audio track to drive the GP-VAE with")
            # The sequence's own first frames are the BOP: the head starts where it truly is.
            start = (
                np.stack([source[int(r)]["c2w"] for r in rows]),
                np.asarray([source[int(r)]["blink"] for r in rows], np.float32),
            )
            pose, blink = generated_pose_blink(
                trained, suite.gpvae_workdir, audio, len(rows), seed=suite.seed + j, start=start
            )
            pose_blinks[j] = (pose, blink)
            generated.append(pose)

    held = [
        render_sequence(
            trained, source, rows, replace=None if pb is None else _posed(trained, pb), split=split
        )
        for rows, pb in zip(sequences, pose_blinks, strict=True)
    ]
    audios = [cond.sequence_audio(config, source, h.rows) for h in held]
    pred = np.concatenate([h.pred[h.scored] for h in held])
    truth = np.concatenate([h.truth[h.scored] for h in held])
    result: dict[str, Any] = {"pose": suite.pose_from, "sequences": len(held)}
    if traces is not None:
        traces["fps"] = fps

    if suite.pose_from == "source":
        # Self-reconstruction: the held-out frames with their true audio, pose and blinks.
        # PSNR / SSIM and the lip region of paper 000 table 2: the held-out protocol's scores.
        face_box = getattr(source, "face_box", None)
        result.update(score_heldout(held, face_box, source.arrays.get("regions")))
        per_frame = np.asarray(image_lib.psnr(pred, truth))
        if traces is not None:
            traces["psnr"] = per_frame
        lpips = suite.lpips or {}
        if lpips.get("trunk"):
            result["lpips"] = lpips_lib.compute_lpips(
                pred, truth, lpips.get("net", "alex"), lpips["trunk"], lpips.get("lin")
            )
        else:  # the long how-to of jaxhead.eval.lpips.HOW_TO_GET is in docs/video.md
            result["lpips"] = not_computed(
                "lpips", "weights not configured (--lpips_trunk [--lpips_lin], docs/video.md)"
            )
        result["fid"] = fid_lib.compute_fid(pred, truth)
    else:
        result["frames"] = int(len(pred))
        result["render_fps"] = float(np.mean([h.render_fps for h in held]))
        truth_pose = [
            trained.poses_of_cameras(np.stack([source[int(r)]["c2w"] for r in h.rows]))
            for h in held
        ]
        result.update(gp_metrics.pose_distances(generated, truth_pose))
        result["note"] = (
            "pose and blinks generated from the held-out audio; D-Rot / D-Pos against the "
            "tracked pose (scene units); image metrics need the true pose and are not computed"
        )

    # Blinks per second of the blink signal the frames were rendered with, and of the truth.
    truth_blinks = [np.stack([source[int(r)]["blink"] for r in h.rows]) for h in held]
    duration = sum(len(h.rows) for h in held) / fps

    def rate(signals):
        return sum(len(gp_metrics.detect_blinks(s, fps)) for s in signals) / duration

    blinks = {
        "driving_signal": rate([h.frames["blink"] for h in held]),
        "truth_signal": rate(truth_blinks),
    }
    if traces is not None:
        traces["blink_driving"] = np.concatenate([h.frames["blink"] for h in held])
        traces["blink_truth"] = np.concatenate(truth_blinks)

    # Face Mesh: LMD, mouth opening, blinks from the eye-aspect ratio, our sync model.
    try:
        pred_points = [face_mesh(h.pred, suite.mediapipe_python) for h in held]
        truth_points = [face_mesh(h.truth, suite.mediapipe_python) for h in held]
    except FaceMeshUnavailable as error:
        reason = str(error)
        result["lmd"] = not_computed("lmd", reason)
        result["mouth_opening"] = not_computed("r", reason)
        blinks["rendered_ear"] = not_computed("blinks_per_second", reason)
        result["blink_control"] = not_computed("closure", reason)
        result["sync"] = not_computed("confidence", reason)
    else:
        result["lmd"] = _lmd(held, pred_points, truth_points, suite.pose_from)
        # Each sequence's mouth opening, once: its scored frames are scored, all are traced.
        pred_open = [mouth_opening(p) for p in pred_points]
        truth_open = [mouth_opening(p) for p in truth_points]
        result["mouth_opening"] = opening_agreement(
            *(np.concatenate([o[h.scored] for o, h in zip(x, held, strict=True)])
              for x in (pred_open, truth_open))
        )  # fmt: skip
        blinks.update(_ear_blinks(held, pred_points, truth_points, fps, traces))
        result["blink_control"] = _blink_control(
            trained, source, held[0], truth_points, suite.mediapipe_python
        )
        result["sync"] = _sync(
            config, held, audios, pred_points, truth_points, suite.sync_workdir, fps, split
        )
        if traces is not None:
            traces["mouth_pred"] = np.concatenate(pred_open)
            traces["mouth_truth"] = np.concatenate(truth_open)
    result["blinks_per_second"] = blinks
    result["syncnet"] = (
        not_computed(
            "syncnet_confidence",
            "syncnet_python's front-end (S3FD face crops, python_speech_features MFCCs) is not "
            "ported, so its published confidence cannot be reproduced from the weights alone",
        )
        if suite.syncnet_weights
        else not_computed("syncnet_confidence", "weights not configured")
    )
    return result


def _lmd(held, pred_points, truth_points, pose_from) -> dict:
    if pose_from != "source":
        return not_computed("lmd", "the pose is generated: landmarks are not comparable")
    pred = np.concatenate([p[h.scored] for p, h in zip(pred_points, held, strict=True)])
    truth = np.concatenate([p[h.scored] for p, h in zip(truth_points, held, strict=True)])
    ok = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(truth).all(axis=(1, 2))
    if not ok.any():
        return not_computed("lmd", "Face Mesh found no face in the rendered frames")
    size = held[0].truth.shape[1:3]
    out = landmarks_lib.mouth_lmd(pred[ok, :, :2], truth[ok, :, :2], size, layout="mediapipe")
    out["frames_without_face"] = int((~ok).sum())
    return out


def _ear_blinks(held, pred_points, truth_points, fps, traces: dict | None = None) -> dict:
    """Blinks per second the EAR detector finds in the rendered and in the true frames; with
    ``traces``, the eye closure it reads (``blink_from_ear`` of each sequence's own EAR, what
    the detector thresholds) as ``eyes_pred`` / ``eyes_truth``."""
    duration = sum(len(h.rows) for h in held) / fps
    out = {}
    for name, points in (("rendered_ear", pred_points), ("truth_ear", truth_points)):
        try:
            count = 0
            closure = []
            for p in points:
                blink, _ = blink_from_ear(eye_aspect_ratio(p))
                closure.append(blink)
                count += len(gp_metrics.detect_blinks(blink, fps))
            out[name] = count / duration
        except ValueError as error:
            out[name] = not_computed("blinks_per_second", str(error))
        else:
            if traces is not None:
                traces["eyes_pred" if name == "rendered_ear" else "eyes_truth"] = np.concatenate(
                    closure
                )
    return out


BLINK_CONTROL_FRAMES = 8


def _blink_control(trained: Trained, source, held, truth_points, mediapipe_python) -> dict:
    """Paper 001 fig. 7, measured: the first :data:`BLINK_CONTROL_FRAMES` frames of a held-out
    sequence rendered with the blink input at 0 (open) and at the largest value of the training
    frames (the most closed the eyes were seen), and the Face Mesh eye-aspect ratio (EAR) of
    both. ``closure = 1 - EAR_closed / EAR_open``: 0 when the input does nothing, about
    ``truth_closure`` (from the true held-out frames: their least EAR against their 90th
    percentile, :func:`jaxhead.face.blink_from_ear`'s open reference) when it closes the eyes as
    far as the person does."""
    rows = held.rows[:BLINK_CONTROL_FRAMES]
    closed = float(np.max(trained.run.tracks["blink"]))
    ears = {}
    for name, value in (("open", 0.0), ("closed", closed)):
        blink = np.full(len(rows), value, np.float32)
        frames = render_sequence(trained, source, rows, replace={"blink": blink}).pred
        ear = eye_aspect_ratio(face_mesh(frames, mediapipe_python))
        ears[name] = float(np.nanmean(ear)) if np.isfinite(ear).any() else float("nan")
    truth = eye_aspect_ratio(np.concatenate(truth_points))
    if not np.isfinite(truth).any() or not all(np.isfinite(v) for v in ears.values()):
        return not_computed("closure", "Face Mesh found no face in the rendered or true frames")
    truth_open = float(np.nanpercentile(truth, 90))
    return {
        "blink_input": closed,
        "frames": len(rows),
        "rendered_ear_open": ears["open"],
        "rendered_ear_closed": ears["closed"],
        "closure": 1.0 - ears["closed"] / ears["open"],
        "truth_ear_open": truth_open,
        "truth_ear_min": float(np.nanmin(truth)),
        "truth_closure": 1.0 - float(np.nanmin(truth)) / truth_open,
    }


def _sync(config, held, audios, pred_points, truth_points, sync_workdir, fps, split) -> dict:
    init_from = sync_workdir or (str(config.sync.init_from) if "sync" in config else "")
    if not init_from:
        return not_computed(
            "confidence", "no sync stage (give --sync_workdir or train with config.sync.init_from)"
        )
    try:
        encoder = load_sync_encoder(init_from)
        info = _sync_info(pathlib.Path(init_from).expanduser())
    except (FileNotFoundError, OSError, KeyError) as error:
        return not_computed("confidence", str(error))
    records = {"rendered": [], "truth": []}
    weights = []
    for j, (h, audio, pp, tp) in enumerate(
        zip(held, audios, pred_points, truth_points, strict=True)
    ):
        if audio is None:
            return not_computed("confidence", "the held-out frames have no audio track")
        try:
            rendered = sync_scores(encoder, info, pp, audio, fps, f"{split}/{j}/rendered")
            truth = sync_scores(encoder, info, tp, audio, fps, f"{split}/{j}/truth")
        except ValueError as error:
            return not_computed("confidence", str(error))
        records["rendered"].append(rendered)
        records["truth"].append(truth)
        weights.append(len(h.rows))
    out = {"sync_workdir": str(init_from), "protocol": "SyncNet offset/confidence, our encoders"}
    for name, recs in records.items():
        out[name] = {
            "confidence": _mean_over(recs, "confidence", weights),
            "offset": _mean_over(recs, "offset", weights),
            "abs_offset": float(
                np.average([abs(r["offset"]) for r in recs], weights=np.asarray(weights, float))
            ),
        }
    return out


# panel -> (y label, ((trace key, legend label), ...))
_PANELS = {
    "psnr": ("PSNR (dB)", (("psnr", None),)),
    "mouth": ("mouth opening / IOD", (("mouth_truth", "truth"), ("mouth_pred", "rendered"))),
    "blink": ("blink", (("blink_truth", "truth (data)"), ("blink_driving", "driving"))),
    "eyes": ("eye closure (EAR)", (("eyes_truth", "truth"), ("eyes_pred", "rendered"))),
}


def plot_traces(path: pathlib.Path, traces: dict, title: str) -> pathlib.Path | None:
    """Per-frame PSNR, mouth opening (rendered vs truth), blink and eye-closure traces as one
    PNG; the traces themselves beside it (``.npz``, same name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in _PANELS if any(x.startswith(k) for x in traces)]
    if not panels:
        return None
    fps = traces.get("fps", 25.0)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        ylabel, series = _PANELS[panel]
        for key, label in series:
            if key in traces:
                y = traces[key]
                ax.plot(np.arange(len(y)) / fps, y, lw=1, label=label)
        ax.set_ylabel(ylabel)
        if len(series) > 1:
            ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds (held-out frames, concatenated)")
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    save_npz(path.with_suffix(".npz"), {k: np.asarray(v) for k, v in traces.items()})
    return path


def _data_note(data) -> str:
    """What the scores of a run are computed on (docs/video.md)."""
    if data.kind != "video":
        return "scores are on the rendered dataset frames"
    if str(data.get("frame", "crop")) == "full":
        return (
            "scores are on whole frames over the static background; face_*: the head crop's box "
            "of them, docs/video.md"
        )
    return "scores are on the matted head crops (white outside head + neck), docs/video.md"


def evaluate_workdir(workdir: str | pathlib.Path, splits=None, **suite) -> dict:
    """Re-scores a NeRF run on its held-out splits with the :class:`Suite` of ``suite``; merges
    into ``eval.json``, writes ``eval.md`` and ``samples/eval_<split>_traces.png``. ``splits``:
    default ``config.eval.splits`` (else ``val`` and ``val_views``). Returns the merged results
    plus ``"table"`` (the markdown)."""
    suite = Suite(**suite)
    pose_from = suite.pose_from
    workdir = pathlib.Path(workdir)
    trained = load_trained(workdir)
    if splits is None:
        splits = tuple(trained.config.eval.get("splits", ("val", "val_views")))
    scores = {}
    for split in splits:
        traces: dict = {}
        key = split if pose_from == "source" else f"{split}_{pose_from}_pose"
        scores[key] = evaluate_split(trained, split, suite, traces)
        plot = plot_traces(
            workdir / "samples" / f"eval_{key}_traces.png", traces, f"{workdir.name}: {key}"
        )
        if plot is not None:
            scores[key]["plot"] = str(plot.relative_to(workdir))
    scores["step"] = trained.step
    scores["data"] = {
        "kind": str(trained.config.data.kind),
        "note": _data_note(trained.config.data),
    }
    merged = write_report(scores, workdir, title=f"Evaluation of {workdir.name}")
    table = markdown_table({k: v for k, v in merged.items() if k in scores})
    return {**merged, "table": table}
