"""Paper 001 table 4 on our data: train the four VAE variants and tabulate D-Rot / D-Pos.

    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation            # full, ~40 min CPU
    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation_smoke --smoke   # ~3 min

Writes WORKDIR/<variant>/ (one ordinary GP-VAE run each) and WORKDIR/ablation.md.
"""

from __future__ import annotations

import importlib.util
import pathlib

from absl import flags

from jaxhead.gpvae import models, stage
from jaxhead.train import cli

_WORKDIR = cli.define_workdir_flag()
_SMOKE = flags.DEFINE_bool("smoke", False, "Use the smoke variant of every config.")
_CONFIG = flags.DEFINE_string(
    "config_file",
    str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "gpvae.py"),
    "The GP-VAE config file.",
)


def main(argv):
    del argv
    spec = importlib.util.spec_from_file_location("gpvae_config", _CONFIG.value)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    smoke = "smoke," if _SMOKE.value else ""
    configs = {v: module.get_config(f"{smoke}variant={v}") for v in models.VARIANTS}
    print(stage.run_ablation(configs, _WORKDIR.value))


if __name__ == "__main__":
    cli.run(main)
