"""A still of a rendered avatar whose pose and blinks were generated (docs/gpvae.md's sample).

    python scripts/render.py --workdir RUN --audio A.wav --pose_from gpvae --gpvae_workdir G \
        --out sample.mp4 --pose_out sample.npz
    python benchmarks/pose_sample_sheet.py sample.mp4 sample.npz --out sheet.jpg

Top: ``--columns`` frames at even times and, below them, the frames where the generated blink
signal peaks above 0.5 (the rendered eyes should be shut there); bottom: the generated head
rotation (degrees, axis-angle components) and blink signal against time, with the shown frames
marked.
"""

from __future__ import annotations

import argparse
import pathlib

import av
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.signal import find_peaks  # noqa: E402


def read_frames(path: pathlib.Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=pathlib.Path)
    parser.add_argument("pose", type=pathlib.Path, help="render.py --pose_out file")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--columns", type=int, default=6)
    args = parser.parse_args()

    frames = read_frames(args.video)
    with np.load(args.pose) as data:
        pose, blink, fps = data["pose"], data["blink"], float(data["fps"])
    count = min(len(frames), len(pose))
    even = np.linspace(0, count - 1, args.columns).round().astype(int)
    peaks, _ = find_peaks(blink[:count], height=0.5, distance=int(fps // 2))
    peaks = peaks[: args.columns]
    rows = [even] + ([peaks] if len(peaks) else [])

    fig = plt.figure(figsize=(2.2 * args.columns, 2.3 * len(rows) + 2.6))
    grid = fig.add_gridspec(len(rows) + 1, args.columns, height_ratios=[1] * len(rows) + [1.1])
    for r, picks in enumerate(rows):
        for c, i in enumerate(picks):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(frames[i])
            label = f"{i / fps:.1f} s" + (f", blink {blink[i]:.2f}" if r else "")
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    t = np.arange(count) / fps
    ax = fig.add_subplot(grid[len(rows), :])
    for k, name in enumerate("xyz"):  # axis-angle components, change from the first frame
        ax.plot(t, np.degrees(pose[:count, k] - pose[0, k]), label=f"rotation {name}")
    ax.set_xlabel("s")
    ax.set_ylabel("rotation change, deg")
    twin = ax.twinx()
    twin.plot(t, blink[:count], "k", lw=1, label="blink")
    twin.set_ylim(-0.05, 1.6)
    twin.set_ylabel("blink")
    for i in np.concatenate(rows):
        ax.axvline(i / fps, color="0.8", lw=0.5)
    ax.legend(loc="upper left", fontsize=7)
    twin.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({count} frames, {len(peaks)} blink peaks above 0.5)")


if __name__ == "__main__":
    main()
