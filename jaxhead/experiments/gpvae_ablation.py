"""The GP-VAE ablation of paper 001 table 4 (MLP / LSTM / Trans VAE / Trans GP-VAE): one run per
variant and seed, tabulated (``scripts/gpvae_ablation.py``; results in docs/gpvae.md)."""

from __future__ import annotations

import json
import os
import pathlib
import time

import ml_collections
import numpy as np

from jaxhead.gpvae import data as data_lib
from jaxhead.gpvae.stage import train

ABLATION_NAMES = {
    "mlp_vae": "MLP VAE",
    "lstm_vae": "LSTM VAE",
    "transformer_vae": "Trans VAE",
    "transformer_gpvae": "Trans GP-VAE",
}


def run_ablation(configs: dict[str, ml_collections.ConfigDict], root: str | os.PathLike) -> str:
    """Trains one run per config in ``root/<name>`` and writes ``root/ablation.{md,json}``.

    ``configs`` maps a run name (e.g. ``transformer_gpvae_seed0``) to its config; each run resumes
    if its workdir exists (its recorded wall time is then the one of the call that finished it).
    Returns the markdown table in the layout of paper 001 table 4 plus our extra columns: one row
    per run, a mean row per variant with several seeds, the hold-last-BOP-frame baseline and
    (runs that have it) the linear extrapolation baseline.
    """
    root = pathlib.Path(root)
    rows = []
    for name, config in configs.items():
        workdir = root / name
        timing = workdir / "ablation_wall_s.json"
        if not (workdir / "eval.json").is_file() or not timing.is_file():
            start = time.perf_counter()
            train(config, workdir)
            timing.write_text(json.dumps({"wall_s": time.perf_counter() - start}))
        results = json.loads((workdir / "eval.json").read_text())
        results["wall_s"] = json.loads(timing.read_text())["wall_s"]
        results["seed"] = int(config.seed)
        results["run"] = name
        rows.append(results)
    (root / "ablation.json").write_text(json.dumps(rows, indent=2))
    table = ablation_table(rows)
    (root / "ablation.md").write_text(table)
    return table


def variant_configs(
    base: ml_collections.ConfigDict, variants, seeds
) -> dict[str, ml_collections.ConfigDict]:
    """``{"<variant>_seed<k>": config}``: a copy of ``base`` (with its overrides) per variant
    and seed, ``model.variant`` and ``seed`` set."""
    configs = {}
    for variant in variants:
        for seed in seeds:
            config = base.copy_and_resolve_references()
            with config.unlocked():
                config.model.variant = str(variant)
                config.seed = int(seed)
            config.lock()
            configs[f"{variant}_seed{seed}"] = config
    return configs


def shared_synthetic_data(data_config, folder: str | os.PathLike) -> pathlib.Path:
    """Generates (or reuses) ``data_config.synthetic`` under ``folder`` for several runs."""
    data = data_config.copy_and_resolve_references()
    with data.unlocked():
        data.root, data.cache_dir = "", str(folder)
    return data_lib.synthetic_root(data, progress=True)


def ablation_table(rows: list[dict]) -> str:
    """Markdown table of :func:`run_ablation` results (see docs/gpvae.md for the columns)."""
    if not rows:
        return ""
    gt = rows[0]["blinks_per_s_ground_truth"]
    head = (
        "| Method | seed | D-Rot ↓ | D-Pos ↓ | D-Rot long ↓ | D-Pos long ↓ | "
        f"blinks/s (GT {gt:.2f}) | diversity | motion ratio | train wall |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]

    def line(name, seed, r, wall):
        return (
            f"| {name} | {seed} | {r['d_rot']:.2f}% | {r['d_pos']:.2f}% | {r['d_rot_long']:.2f}% | "
            f"{r['d_pos_long']:.2f}% | {r['blinks_per_s_generated']:.2f} | {r['diversity']:.3f} | "
            f"{r['motion_ratio']:.3f} | {wall} |"
        )

    keys = ["d_rot", "d_pos", "d_rot_long", "d_pos_long", "blinks_per_s_generated", "diversity",
            "motion_ratio"]  # fmt: skip
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    for variant, group in by_variant.items():
        name = ABLATION_NAMES.get(variant, variant)
        for r in group:
            lines.append(line(name, r["seed"], r, f"{r['wall_s'] / 60:.1f} min"))
        if len(group) > 1:
            cells = []
            for k in keys:
                values = [r[k] for r in group]
                unit = "%" if k.startswith("d_") else ""
                cells.append(f"{np.mean(values):.2f} ± {np.std(values):.2f}{unit}")
            lines.append(
                f"| **{name}, mean ± std** | {len(group)} seeds | " + " | ".join(cells) + " | |"
            )
    r = rows[0]
    if "d_rot_hold" in r:
        lines.append(
            f"| hold last BOP frame | - | {r['d_rot_hold']:.2f}% | {r['d_pos_hold']:.2f}% | "
            f"{r['d_rot_long_hold']:.2f}% | {r['d_pos_long_hold']:.2f}% | - | - | - | - |"
        )
    if "d_rot_linear" in r:  # the runs share their training data, so their linear baseline
        lines.append(
            f"| linear extrapolation of the BOP | - | {r['d_rot_linear']:.2f}% | "
            f"{r['d_pos_linear']:.2f}% | - | - | - | - | - | - |"
        )
    return "\n".join(lines) + "\n"
