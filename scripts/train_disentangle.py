"""Train (or resume) the disentangle stage: latent-code extractor or landmark autoencoder.

python scripts/train_disentangle.py --config configs/disentangle.py --workdir runs/extractor
python scripts/train_disentangle.py --config configs/disentangle.py:model=landmark_ae \
    --workdir runs/landmark_ae
"""

from jaxhead.disentangle import stage
from jaxhead.train import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()


def main(argv):
    del argv
    stage.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
