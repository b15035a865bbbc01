"""Preprocess one talking-head video into a dataset folder (AD-NeRF / ER-NeRF layout).

    python scripts/preprocess.py VIDEO --out DIR [--val_seconds 10] \
        [--mediapipe_python .venv-mediapipe/bin/python] [--hubert_checkpoint DIR]

Re-running the command resumes: finished steps are skipped. MediaPipe runs under a separate
interpreter (see docs/preprocess.md); the result loads with `jaxhead.data.video.VideoDataset`.
"""

from __future__ import annotations

import argparse
import json

from jaxhead.preprocess.pipeline import MEDIAPIPE_ENV, Options, preprocess
from jaxhead.train import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", help="input video with a face and a sound track")
    parser.add_argument("--out", required=True, help="dataset folder to write (or resume)")
    parser.add_argument("--fps", type=int, default=Options.fps, help="output frame rate")
    parser.add_argument("--max_seconds", type=float, help="only the first seconds of the video")
    parser.add_argument(
        "--val_seconds",
        type=float,
        help="the last seconds go to transforms_val.json (default: AD-NeRF's last 1/11)",
    )
    parser.add_argument(
        "--mediapipe_python",
        help=f"python of the MediaPipe environment (default ${MEDIAPIPE_ENV}, else this one)",
    )
    parser.add_argument("--hubert_checkpoint", help="Hugging Face HuBERT folder -> aud_hu.npy")
    parser.add_argument("--focal", type=float, help="fix the focal length (pixels)")
    parser.add_argument(
        "--smooth_sigma", type=float, default=Options.smooth_sigma, help="pose filter (frames)"
    )
    parser.add_argument(
        "--redo",
        choices=["mediapipe", "landmarks", "pose", "masks", "audio_features", "finalize"],
        help="re-run this step and the later ones (after a code or model change)",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    state = preprocess(
        args.video,
        args.out,
        fps=args.fps,
        max_seconds=args.max_seconds,
        val_seconds=args.val_seconds,
        mediapipe_python=args.mediapipe_python,
        hubert_checkpoint=args.hubert_checkpoint,
        focal=args.focal,
        smooth_sigma=args.smooth_sigma,
        redo=args.redo,
        progress=not args.no_progress,
    )
    for step, info in state["steps"].items():
        numbers = {k: v for k, v in info.items() if k not in ("status", "options", "finished")}
        print(f"{step:>14}: {json.dumps(numbers)}")
    print(f"dataset ready: {args.out} (details in {args.out}/preprocess.json)")
    return 0


if __name__ == "__main__":
    cli.run_plain(main)
