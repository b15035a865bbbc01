"""Paper 001 table 4 on our data: train the four VAE variants and tabulate D-Rot / D-Pos.

    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation          # ~7 min/variant CPU
    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation --seeds=0,1 \\
        --variants=transformer_vae,transformer_gpvae                        # more seeds
    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation_smoke --smoke   # ~3 min

Every run uses the ablation config (``configs/gpvae.py:ablation``, or ``:smoke``) with one
variant and one seed; the synthetic data set is generated once into ``WORKDIR/data`` and shared.
Writes ``WORKDIR/<variant>_seed<k>/`` (ordinary GP-VAE runs; re-running resumes / reuses them)
and ``WORKDIR/ablation.md`` / ``ablation.json``.
"""

from __future__ import annotations

import importlib.util
import pathlib

from absl import flags

from jaxhead.experiments import gpvae_ablation
from jaxhead.gpvae import models
from jaxhead.train import cli

_WORKDIR = cli.define_workdir_flag()
_SMOKE = flags.DEFINE_bool("smoke", False, "Use the smoke config instead of the ablation one.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds (config.seed) to run for every variant.")
_VARIANTS = flags.DEFINE_list("variants", list(models.VARIANTS), "Variants to run.")
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
    preset = "smoke" if _SMOKE.value else "ablation"
    root = pathlib.Path(_WORKDIR.value)
    configs = {}
    for variant in _VARIANTS.value:
        if variant not in models.VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(models.VARIANTS)}")
        for seed in _SEEDS.value:
            config = module.get_config(f"{preset},variant={variant}")
            with config.unlocked():
                config.seed = int(seed)
            configs[f"{variant}_seed{seed}"] = config
    first = next(iter(configs.values()))
    if first.data.source == "synthetic" and not first.data.root:
        data_root = gpvae_ablation.shared_synthetic_data(first.data, root / "data")
        for config in configs.values():
            with config.unlocked():
                config.data.root = str(data_root)
    print(gpvae_ablation.run_ablation(configs, root))


if __name__ == "__main__":
    cli.run(main)
