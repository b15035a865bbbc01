"""Swap test of a trained head-NeRF run on the synthetic data (see jaxhead/experiments/swap.py).

    python scripts/swap_test.py --workdir runs/voca [--frames 8]

Merges ``swap`` into WORKDIR/eval.json and writes WORKDIR/swap.md and WORKDIR/samples/swap.png.
"""

import pathlib

from absl import flags

from jaxhead.experiments import swap
from jaxhead.train import cli

_WORKDIR = cli.define_workdir_flag()
_FRAMES = flags.DEFINE_integer("frames", 8, "Frames of B (widest jaw opening) per pair.")


def main(argv):
    del argv
    swap.write_swap_report(_WORKDIR.value, frames=_FRAMES.value)
    print((pathlib.Path(_WORKDIR.value) / "swap.md").read_text())


if __name__ == "__main__":
    cli.run(main)
