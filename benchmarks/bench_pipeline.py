"""Throughput of the input pipeline (jaxhead.data.pipeline) in batches/s and frames/s.

    python benchmarks/bench_pipeline.py                       # both sources, 512 x 512, lr / 4
    python benchmarks/bench_pipeline.py --source video --height 450 --width 450 --lr-factor 2
    python benchmarks/bench_pipeline.py --threads 0 2 4 --batches 30

Two frame sources at the NeRF stage's default size (full 512 x 512 target, 128 x 128 low-res):

* ``memory``: an `InMemoryFrameSource` of float32 frames, the path of rendered (cached) VOCASET
  frames; measures the pipeline's own cost (shuffle, pairing, stacking, batching, prefetch).
* ``video``: a `VideoDataset` over a folder in the AD-NeRF layout written to a temporary directory
  (JPEG frames, PNG parsing maps, text landmarks, DeepSpeech features), decoding every frame.

Every example is a pair of consecutive frames (the velocity loss), so frames/s = 2 x batch x
batches/s. The NeRF stage is data-bound only if a train step takes less than 1 / (batches/s).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

from jaxhead.data.pipeline import InMemoryFrameSource, make_pipeline
from jaxhead.data.video import VideoDataset


def memory_source(num_frames: int, height: int, width: int, lr_factor: int) -> InMemoryFrameSource:
    rng = np.random.default_rng(0)
    h, w = height // lr_factor, width // lr_factor
    return InMemoryFrameSource(
        {
            "image": rng.random((num_frames, height, width, 3), np.float32),
            "image_lr": rng.random((num_frames, h, w, 3), np.float32),
            "mask": rng.random((num_frames, height, width, 1), np.float32),
            "mask_lr": rng.random((num_frames, h, w, 1), np.float32),
            "intrinsics": rng.random((num_frames, 4), np.float32),
            "c2w": rng.random((num_frames, 4, 4), np.float32),
            "audio": rng.random((num_frames, 8, 16 * 29), np.float32),
            "landmarks": rng.random((num_frames, 68, 2), np.float32),
            "expression": rng.random((num_frames, 52), np.float32),
            "blink": rng.random(num_frames, np.float32),
            "identity": np.zeros(num_frames, np.int32),
            "sequence": np.zeros(num_frames, np.int32),
            "frame": np.arange(num_frames, dtype=np.int32),
        }
    )


def video_source(
    folder: pathlib.Path, num_frames: int, height: int, width: int, lr_factor: int
) -> VideoDataset:
    # The fixture builder lives with the tests; the benchmark reuses it rather than duplicating it.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
    from video_fixture import write_video_fixture

    write_video_fixture(
        folder, train_ids=list(range(num_frames)), val_ids=[num_frames], height=height, width=width
    )
    return VideoDataset(folder, "train", lr_factor=lr_factor)


def measure(source, batch_size: int, threads: int, batches: int, warmup: int) -> float:
    """Batches per second after `warmup` batches (which fill the prefetch buffer)."""
    pipeline = make_pipeline(source, batch_size=batch_size, seed=0, num_threads=threads)
    for _ in range(warmup):
        next(pipeline)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(pipeline)
    elapsed = time.perf_counter() - start
    assert batch["image"].shape[:2] == (batch_size, 2)
    return batches / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("memory", "video", "both"), default="both")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--lr-factor", type=int, default=4)
    parser.add_argument("--frames", type=int, default=24, help="frames in the source")
    parser.add_argument("--batch-size", type=int, default=8, help="frame pairs per batch")
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    size = (args.frames, args.height, args.width, args.lr_factor)
    sources = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.source in ("memory", "both"):
            sources["memory"] = memory_source(*size)
        if args.source in ("video", "both"):
            sources["video"] = video_source(pathlib.Path(tmp) / "clip", *size)
        print(
            f"{args.height}x{args.width} (lr /{args.lr_factor}), batch {args.batch_size} pairs, "
            f"{args.batches} batches after {args.warmup} warm-up"
        )
        print(f"{'source':8} {'threads':>7} {'batches/s':>10} {'frames/s':>9} {'ms/batch':>9}")
        for name, source in sources.items():
            for threads in args.threads:
                rate = measure(source, args.batch_size, threads, args.batches, args.warmup)
                frames = rate * 2 * args.batch_size
                print(f"{name:8} {threads:7d} {rate:10.2f} {frames:9.1f} {1000 / rate:9.1f}")


if __name__ == "__main__":
    main()
