"""Paper 001 table 4 on our data: train the four VAE variants and tabulate D-Rot / D-Pos.

    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation          # ~7 min/variant CPU
    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation --seeds=0,1 \\
        --variants=transformer_vae,transformer_gpvae                        # more seeds
    python scripts/gpvae_ablation.py --workdir runs/gpvae_ablation_smoke --smoke   # ~3 min
    python scripts/gpvae_ablation.py --workdir runs/real --seeds=0,1 --set=data.source=videos \
        --set="data.paths=('DIR/a','DIR/b','DIR/c')" --set="data.heldout_groups=('c',)" \
        --set=model.relative_pose=True --set=model.pose_anchor=last --set=data.mirror=True

Every run uses the ablation config (``configs/gpvae.py:ablation``, or ``:smoke``) with one
variant and one seed; the synthetic data set is generated once into ``WORKDIR/data`` and shared.
Writes ``WORKDIR/<variant>_seed<k>/`` (ordinary GP-VAE runs; re-running resumes / reuses them)
and ``WORKDIR/ablation.md`` / ``ablation.json``.
"""

from __future__ import annotations

import ast
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
_SET = flags.DEFINE_multi_string(
    "set", [], "KEY=VALUE: a config field for every run (e.g. data.source=videos); repeatable."
)
_CONFIG = flags.DEFINE_string(
    "config_file",
    str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "gpvae.py"),
    "The GP-VAE config file.",
)


def apply_settings(config, settings) -> None:
    """``KEY=VALUE`` strings onto ``config``; VALUE is a Python literal or else a string."""
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep:
            raise ValueError(f"--set={setting!r}: write KEY=VALUE, e.g. --set=data.source=videos")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        try:
            current = config
            *parents, leaf = key.split(".")
            for name in parents:
                current = current[name]
            current[leaf]  # an unknown field is an error, not a new one
            with config.unlocked():
                current[leaf] = value
        except (KeyError, AttributeError):
            raise ValueError(f"--set: {key!r} is not a field of the GP-VAE config") from None
        except TypeError as err:
            raise ValueError(f"--set={setting!r}: {err}") from None


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
            apply_settings(config, _SET.value)
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
