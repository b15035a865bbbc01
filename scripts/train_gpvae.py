"""Train the GP-VAE stage (head pose + blink from audio, paper 001 §3.4).

    python scripts/train_gpvae.py --config configs/gpvae.py --workdir runs/gpvae
    python scripts/train_gpvae.py --config configs/gpvae.py:smoke --workdir runs/gpvae_smoke
    python scripts/train_gpvae.py --config configs/gpvae.py --config.model.variant=lstm_vae ...

Re-running the same command on the same workdir resumes from the latest checkpoint.
"""

from __future__ import annotations

from jaxhead.gpvae import stage
from jaxhead.train import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()


def main(argv):
    del argv
    stage.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
