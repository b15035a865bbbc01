"""Train (or resume) the head NeRF stage.

python scripts/train_nerf.py --config configs/voca.py --workdir runs/voca
"""

from jaxhead.nerf import stage
from jaxhead.train import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()


def main(argv):
    del argv
    stage.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
