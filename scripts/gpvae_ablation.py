"""Paper 001 table 4 on our data: train the four VAE variants and tabulate D-Rot / D-Pos.

    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation          # ~7 min/variant CPU
    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation --seeds=0,1 \\
        --variants=transformer_vae,transformer_gpvae                        # more seeds
    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation_smoke \\
        --config configs/gpvae.py:smoke                                     # ~3 min
    python scripts/gpvae_ablation.py --workdir runs/real --seeds=0,1 --config.data.source=videos \\
        --config.data.paths="('DIR/a','DIR/b','DIR/c')" --config.data.heldout_groups="('c',)" \\
        --config.model.relative_pose=True --config.model.pose_anchor=last --config.data.mirror=True

Every run uses the config of ``--config`` (default ``configs/gpvae.py:ablation``) with its
``--config.X=Y`` overrides, one variant and one seed; the synthetic data set is generated once
into ``WORKDIR/data`` and shared. Writes ``WORKDIR/<variant>_seed<k>/`` (ordinary GP-VAE runs;
re-running resumes / reuses them) and ``WORKDIR/ablation.md`` / ``ablation.json``.
"""

from __future__ import annotations

import pathlib

from absl import flags

from jaxhead.experiments import gpvae_ablation
from jaxhead.gpvae import models
from jaxhead.train import cli

_WORKDIR = cli.define_workdir_flag()
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds (config.seed) to run for every variant.")
_VARIANTS = flags.DEFINE_list("variants", list(models.VARIANTS), "Variants to run.")
_CONFIG = cli.define_config_flag(
    "config", str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "gpvae.py:ablation")
)


def main(argv):
    del argv
    root = pathlib.Path(_WORKDIR.value)
    for variant in _VARIANTS.value:
        if variant not in models.VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(models.VARIANTS)}")
    configs = gpvae_ablation.variant_configs(
        _CONFIG.value, _VARIANTS.value, [int(seed) for seed in _SEEDS.value]
    )
    first = next(iter(configs.values()))
    if first.data.source == "synthetic" and not first.data.root:
        data_root = gpvae_ablation.shared_synthetic_data(first.data, root / "data")
        for config in configs.values():
            with config.unlocked():
                config.data.root = str(data_root)
    print(gpvae_ablation.run_ablation(configs, root))


if __name__ == "__main__":
    cli.run(main)
