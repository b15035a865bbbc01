"""Paper 000 table 2 on our data: the head NeRF with and without the sync module and L_dis.

    python scripts/nerf_ablation.py --config configs/voca.py --workdir runs/nerf_ablation \\
        --sync_workdir runs/sync --extractor_workdir runs/extractor [--arms base,sync,dis]

Every arm is an ordinary NeRF run of the same config in ``WORKDIR/<arm>`` (re-running resumes
it, a finished arm is only tabulated):

* ``no_lip``: no F_lip at all (``config.model.lip_dim=0``): the audio does not reach the field,
  paper 000 table 2's "w/o sync module" taken literally;
* ``base``: F_lip from the AD-NeRF-style audio network trained with the NeRF, no L_dis (codes
  start at zero): the peers' way of feeding audio, the stronger "without";
* ``sync``: F_lip from the sync stage's frozen audio encoder (``config.sync.init_from``, read as
  ``config.sync.features`` / ``projection`` say);
* ``dis``: L_dis against the extractor's reference codes, which also initialise the codes
  (``config.disentangle.init_from``);
* ``sync_dis``: both.

Writes ``WORKDIR/eval.json`` (``ablation``: each arm's held-out scores, with the lip region's
PSNR / L1 and motion correlation that table 2's lip error stands for; the swap test's summary where
``scripts/swap_test.py`` was run on the arm) and ``WORKDIR/ablation.md``.
"""

from __future__ import annotations

import json
import pathlib

from absl import flags

from jaxhead.nerf import stage
from jaxhead.train import cli
from jaxhead.train.workdir import write_json_atomic

# arm -> (sync module, L_dis, F_lip at all)
ARMS = {
    "no_lip": (False, False, False),
    "base": (False, False, True),
    "sync": (True, False, True),
    "dis": (False, True, True),
    "sync_dis": (True, True, True),
}

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_SYNC = flags.DEFINE_string("sync_workdir", "", "A trained sync stage (scripts/train_sync.py).")
_EXTRACTOR = flags.DEFINE_string(
    "extractor_workdir", "", "A trained extractor (scripts/train_disentangle.py)."
)
_ARMS = flags.DEFINE_list("arms", ["base", "sync", "dis"], f"Arms to run, of {list(ARMS)}.")


def tabulate(root: pathlib.Path, arms) -> tuple[dict, str]:
    """Each finished arm's scores and the markdown table."""
    results = {}
    for arm in arms:
        path = root / arm / "eval.json"
        if path.exists():
            results[arm] = json.loads(path.read_text())
    lines = [
        "| arm | split | PSNR | SSIM | lip PSNR | lip L1 | lip motion r |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, r in results.items():
        for split in ("val", "val_views"):
            if split in r:
                s = r[split]
                lines.append(
                    f"| {arm} | {split} | {s['psnr']:.2f} | {s['ssim']:.4f} "
                    f"| {s.get('mouth_psnr', float('nan')):.2f} "
                    f"| {s.get('mouth_l1', float('nan')):.4f} "
                    f"| {s.get('mouth_motion_r', float('nan')):.3f} |"
                )
    swaps = {arm: r["swap"]["summary"] for arm, r in results.items() if "swap" in r}
    if swaps:
        lines += ["", "| arm | S vs T_swap | S vs T_B | lip vs T_swap | lip vs T_closed |"]
        lines.append("|---|---|---|---|---|")
        for arm, s in swaps.items():
            lines.append(
                f"| {arm} | {s['psnr_vs_swap_truth']:.2f} | {s['psnr_vs_source']:.2f} "
                f"| {s['mouth_psnr_vs_swap_truth']:.2f} | {s['mouth_psnr_vs_closed']:.2f} |"
            )
    return results, "\n".join(lines)


def main(argv):
    del argv
    root = pathlib.Path(_WORKDIR.value)
    unknown = [arm for arm in _ARMS.value if arm not in ARMS]
    if unknown:
        raise ValueError(f"unknown arms {unknown}; choose from {list(ARMS)}")
    for arm in _ARMS.value:
        sync, dis, _ = ARMS[arm]
        if (sync and not _SYNC.value) or (dis and not _EXTRACTOR.value):
            raise ValueError(f"arm {arm!r} needs --sync_workdir / --extractor_workdir")
    for arm in _ARMS.value:
        sync, dis, lip = ARMS[arm]
        config = _CONFIG.value.copy_and_resolve_references()
        with config.unlocked():
            config.sync.init_from = _SYNC.value if sync else ""
            config.disentangle.init_from = _EXTRACTOR.value if dis else ""
            if not lip:
                config.model.lip_dim = 0
        print(f"--- arm {arm}: {root / arm}", flush=True)
        stage.train(config, root / arm)
    results, table = tabulate(root, _ARMS.value)
    summary = {
        arm: {k: r[k] for k in ("val", "val_views", "step") if k in r}
        | ({"swap": r["swap"]["summary"]} if "swap" in r else {})
        for arm, r in results.items()
    }
    write_json_atomic(root / "eval.json", {"ablation": summary})
    (root / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    cli.run(main)
