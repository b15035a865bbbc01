"""Evaluate a trained head-NeRF run: PSNR / SSIM on held-out sentences and views.

    python scripts/evaluate.py --workdir runs/voca [--split val]

Writes WORKDIR/eval.json (merged with what is there) and WORKDIR/eval.md (a table).
"""

from absl import flags

from jaxhead.nerf import render_video
from jaxhead.train import cli

_WORKDIR = cli.define_workdir_flag()
_SPLIT = flags.DEFINE_multi_enum(
    "split", ["val", "val_views"], ["val", "val_views"], "Held-out split(s) to score."
)


def main(argv):
    del argv
    results = render_video.evaluate_workdir(_WORKDIR.value, tuple(_SPLIT.value))
    print(results["table"])


if __name__ == "__main__":
    cli.run(main)
