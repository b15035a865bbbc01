"""Where a whole-frame avatar's held-out error is, and how much of it the head's inputs can explain.

    python benchmarks/bench_torso.py --run W/nerf [--stride 5] [--json OUT.json]

``--run``: a finished whole-frame NeRF workdir (``configs/video.py:frame=full``;
``scripts/avatar.py`` writes it to ``WORKDIR/nerf``). Reads its held-out renders (the final
evaluation's ``samples/renders_val.npz``, the 8-bit frames of its videos), its training and
held-out frames (the run's own data settings and frame cache) and scores every ``--stride``-th
held-out frame.

1. **Error by region**: PSNR and share of the squared error of the run's renders in the head
   (with the neck band), the torso (the parsing's torso and the neck below the band) inside and
   within ``--edge`` px of its outline, the background within ``--near`` px of the torso and of
   the head, and the rest of the background.
2. **What predicts the torso**: the held-out torso (torso region and the background within
   ``--near`` px of it) scored against training frames chosen without looking at it: the mean
   training frame; the training frame nearest in head pose (the standardised pose features the
   field's pose condition takes, ``jaxhead.nerf.render.pose_features``) and the mean of the
   ``--k`` nearest; the same by the 68 landmarks (which a new-speech render does not have);
   the run's own renders; the true frame composited over the background with its own mask at
   the feature map's resolution (what the renderer's low-resolution alpha alone costs); and,
   as an upper bound that looks at the truth, the single training
   frame whose torso is closest to it.

If no choice by pose or landmarks beats the mean training frame, the torso's motion in the
held-out part is not explained by anything the renderer is given, and the field's best guess is
the blurred mean: the limit of the whole-frame scores on clips whose frame is mostly torso.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxhead.data.video_frames import REGION_BODY, REGION_HEAD, REGION_NECK_BAND  # noqa: E402
from jaxhead.eval.image import psnr_from_mse  # noqa: E402
from jaxhead.nerf.heldout import renders_path  # noqa: E402

REGIONS = (
    "head", "torso_inner", "torso_edge", "background_near_torso", "background_near_head",
    "background_far",
)  # fmt: skip


def error_regions(regions: np.ndarray, edge: float, near: float) -> dict[str, np.ndarray]:
    """``[H, W]`` region codes (:func:`jaxhead.data.video_frames.neck_regions`) -> boolean
    masks of :data:`REGIONS` (a partition of the frame)."""
    head = (regions == REGION_HEAD) | (regions == REGION_NECK_BAND)
    torso = regions == REGION_BODY
    background = ~(head | torso)
    to_background = distance_transform_edt(~background)
    to_head, to_torso = distance_transform_edt(~head), distance_transform_edt(~torso)
    near_person = background & (np.minimum(to_head, to_torso) <= near)
    return {
        "head": head,
        "torso_inner": torso & (to_background > edge),
        "torso_edge": torso & (to_background <= edge),
        "background_near_torso": near_person & (to_torso < to_head),
        "background_near_head": near_person & (to_head <= to_torso),
        "background_far": background & ~near_person,
    }


def standardised(train: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    return (train - mean) / std, (held - mean) / std


def psnr(sse: float, count: float) -> float:
    return float(psnr_from_mse(sse / count))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished whole-frame NeRF workdir")
    parser.add_argument("--stride", type=int, default=5, help="score every k-th held-out frame")
    parser.add_argument("--edge", type=float, default=6.0, help="torso outline width (px)")
    parser.add_argument("--near", type=float, default=12.0, help="background band width (px)")
    parser.add_argument("--k", type=int, default=10, help="neighbours averaged")
    parser.add_argument("--json", default="", help="also write the report here")
    args = parser.parse_args(argv)

    import jax.numpy as jnp

    from jaxhead.nerf.heldout import cached_render
    from jaxhead.nerf.render import pose_features
    from jaxhead.nerf.render_video import load_trained

    trained = load_trained(args.run)
    train, held = trained.train_frames, trained.load_split("val")
    if "regions" not in held.arrays:
        raise SystemExit(
            f"{args.run} is not a whole-frame run (its held-out frames have no regions): "
            "train one with configs/video.py:frame=full (scripts/avatar.py does)"
        )
    cached = cached_render(
        renders_path(args.run, "val"), trained.step, np.arange(len(held.arrays["image"]))
    )
    if cached is None:
        raise SystemExit(
            f"{args.run} has no held-out renders of its step {trained.step} "
            "(samples/renders_val.npz): run scripts/evaluate.py --workdir RUN first"
        )
    renders = cached[0]
    rows = np.arange(0, len(renders), args.stride)
    t_images, h_images = train.arrays["image"], held.arrays["image"]
    t_pose = np.asarray(pose_features(jnp.asarray(train.arrays["c2w"])))
    h_pose = np.asarray(pose_features(jnp.asarray(held.arrays["c2w"])))
    predictors = {
        "pose": standardised(t_pose, h_pose),
        "landmarks": standardised(
            train.arrays["landmarks"].reshape(len(t_images), -1),
            held.arrays["landmarks"].reshape(len(h_images), -1),
        ),
    }
    mean_frame = t_images.astype(np.float32).mean(axis=0) / 255.0
    small = t_images[:, ::2, ::2].astype(np.float32) / 255.0
    mask_of = held.arrays["mask"][..., 0].astype(np.float32)
    mask_of = mask_of / max(float(mask_of.max()), 1.0)
    background = held.arrays["background"].astype(np.float32) / 255.0
    low = int(trained.config.model.render_size[0])

    sse = {name: 0.0 for name in REGIONS}
    count = {name: 0.0 for name in REGIONS}
    torso_sse, torso_count = {}, 0.0

    def add(name, image, truth, mask):
        torso_sse[name] = torso_sse.get(name, 0.0) + float(
            np.square(image[mask] - truth[mask]).sum()
        )

    for row in rows:
        truth = h_images[row].astype(np.float32) / 255.0
        masks = error_regions(held.arrays["regions"][row], args.edge, args.near)
        error = np.square(renders[row] - truth)
        for name, mask in masks.items():
            sse[name] += float(error[mask].sum())
            count[name] += 3.0 * mask.sum()
        torso = masks["torso_inner"] | masks["torso_edge"] | masks["background_near_torso"]
        torso_count += 3.0 * torso.sum()
        add("run's renders", renders[row], truth, torso)
        add("mean training frame", mean_frame, truth, torso)
        for feature, (t_feat, h_feat) in predictors.items():
            order = np.argsort(np.square(t_feat - h_feat[row]).sum(axis=1))
            nearest = t_images[order[0]].astype(np.float32) / 255.0
            add(f"nearest {feature}", nearest, truth, torso)
            mean_k = t_images[order[: args.k]].astype(np.float32).mean(axis=0) / 255.0
            add(f"mean of {args.k} nearest {feature}", mean_k, truth, torso)
        # The truth composited over the background with its own mask at the feature map's
        # resolution, upsampled as the renderer upsamples its accumulation: what the alpha's
        # resolution alone costs.
        alpha = cv2.resize(
            cv2.resize(mask_of[row], (low, low), interpolation=cv2.INTER_AREA),
            truth.shape[1::-1], interpolation=cv2.INTER_LINEAR,
        )[..., None]  # fmt: skip
        add("the truth, its alpha at the feature map's resolution", alpha * truth
            + (1.0 - alpha) * background, truth, torso)  # fmt: skip
        small_mask = torso[::2, ::2]
        diff = np.square(small - truth[::2, ::2]) * small_mask[None, ..., None]
        best = int(np.argmin(diff.sum(axis=(1, 2, 3))))
        add("best training frame (looks at the truth)", t_images[best] / 255.0, truth, torso)

    total = sum(sse.values())
    report = {
        "run": str(args.run),
        "step": trained.step,
        "frames": len(rows),
        "error_by_region": {
            name: {
                "psnr": round(psnr(sse[name], count[name]), 2),
                "share_of_error": round(sse[name] / total, 3),
                "share_of_pixels": round(count[name] / sum(count.values()), 3),
            }
            for name in REGIONS
        },
        "torso_psnr": {name: round(psnr(v, torso_count), 2) for name, v in torso_sse.items()},
    }
    print(f"{args.run}, step {trained.step}, {len(rows)} held-out frames\n")
    print("| region | PSNR (dB) | share of the error | share of the pixels |\n|---|---|---|---|")
    for name, value in report["error_by_region"].items():
        print(f"| {name} | {value['psnr']} | {value['share_of_error']} | "
              f"{value['share_of_pixels']} |")  # fmt: skip
    print("\n| the held-out torso (and the background beside it) from | PSNR (dB) |\n|---|---|")
    for name, value in report["torso_psnr"].items():
        print(f"| {name} | {value} |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
