"""Paper 000 table 2 on our data: the arms of the NeRF ablation and their table.

Every arm is an ordinary NeRF run of one config (``scripts/nerf_ablation.py`` trains them):

* ``no_lip``: no F_lip at all (``config.model.lip_dim=0``): the audio does not reach the field,
  paper 000 table 2's "w/o sync module" taken literally;
* ``base``: F_lip from the AD-NeRF-style audio network trained with the NeRF, no L_dis (codes
  start at zero): the peers' way of feeding audio, the stronger "without";
* ``sync``: F_lip from the sync stage's frozen audio encoder (``config.sync.init_from``, read as
  ``config.sync.features`` / ``projection`` say);
* ``dis``: L_dis against the extractor's reference codes, which also initialise the codes
  (``config.disentangle.init_from``);
* ``sync_dis``: both.

With several seeds each arm runs once per seed (``<arm>_seed<k>``) and the table gives the mean
and standard deviation over seeds beside the single runs.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

# arm -> (sync module, L_dis, F_lip at all)
ARMS = {
    "no_lip": (False, False, False),
    "base": (False, False, True),
    "sync": (True, False, True),
    "dis": (False, True, True),
    "sync_dis": (True, True, True),
}
SCORES = (
    "psnr",
    "ssim",
    "mouth_psnr",
    "mouth_psnr_open",
    "mouth_l1",
    "mouth_motion_r",
    "mouth_motion_r_truth",
)
SPLITS = ("val", "val_views")
DIGITS = {"ssim": 4, "mouth_l1": 4, "mouth_motion_r": 3, "mouth_motion_r_truth": 3}


def run_name(arm: str, seed: int | None) -> str:
    """``<arm>`` (the config's own seed) or ``<arm>_seed<k>``."""
    return arm if seed is None else f"{arm}_seed{seed}"


def arm_config(
    config: ml_collections.ConfigDict,
    arm: str,
    *,
    sync_workdir: str = "",
    extractor_workdir: str = "",
    seed: int | None = None,
) -> ml_collections.ConfigDict:
    """A copy of ``config`` set up as ``arm`` (and ``seed`` when given)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {list(ARMS)}")
    sync, dis, lip = ARMS[arm]
    if (sync and not sync_workdir) or (dis and not extractor_workdir):
        raise ValueError(f"arm {arm!r} needs --sync_workdir / --extractor_workdir")
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.sync.init_from = sync_workdir if sync else ""
        config.sync.train = False  # every arm's sync stage is the one given (or none)
        config.disentangle.init_from = extractor_workdir if dis else ""
        if not lip:
            config.model.lip_dim = 0
        if seed is not None:
            config.seed = int(seed)
    return config


def _fmt(values: Sequence[float], digits: int) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def tabulate(
    root: pathlib.Path, arms: Sequence[str], seeds: Sequence[int] | None = None
) -> tuple[dict, str]:
    """``(summary, markdown)`` of the finished runs under ``root``.

    ``summary[arm]``: per split, each score's mean / std / values over the arm's finished seeds
    (``runs``: the run folders used) and the swap test's summary where it was run.
    """
    seeds = list(seeds) if seeds else [None]
    summary, rows, swap_rows = {}, [], []
    for arm in arms:
        results = {}
        for seed in seeds:
            path = pathlib.Path(root) / run_name(arm, seed) / "eval.json"
            if path.exists():
                results[run_name(arm, seed)] = json.loads(path.read_text())
        if not results:
            continue
        entry = {"runs": sorted(results), "step": max(r.get("step", 0) for r in results.values())}
        for split in SPLITS:
            found = [r[split] for r in results.values() if split in r]
            if not found:
                continue
            entry[split] = {}
            for score in SCORES:
                values = [float(s[score]) for s in found if score in s]
                if values:
                    entry[split][score] = {
                        "mean": float(np.mean(values)),
                        "std": float(np.std(values)),
                        "values": values,
                    }
            cells = [
                _fmt(
                    entry[split].get(s, {}).get("values", []), 4 if s in ("ssim", "mouth_l1") else 2
                )
                for s in SCORES
            ]
            rows.append(f"| {arm} | {split} | {len(found)} | " + " | ".join(cells) + " |")
        swaps = {name: r["swap"]["summary"] for name, r in results.items() if "swap" in r}
        if swaps:
            entry["swap"] = swaps
            for name, s in swaps.items():
                swap_rows.append(
                    f"| {name} | {s['psnr_vs_swap_truth']:.2f} | {s['psnr_vs_source']:.2f} "
                    f"| {s['mouth_psnr_vs_swap_truth']:.2f} | {s['mouth_psnr_vs_closed']:.2f} |"
                )
        summary[arm] = entry
    lines = [
        "| arm | split | seeds | PSNR | SSIM | lip PSNR | lip PSNR (open) | lip L1 | lip motion r "
        "| (truth's) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    if swap_rows:
        lines += ["", "| run | S vs T_swap | S vs T_B | lip vs T_swap | lip vs T_closed |"]
        lines += ["|---|---|---|---|---|", *swap_rows]
    return summary, "\n".join(lines)
