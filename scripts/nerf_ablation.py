"""Paper 000 table 2 on our data: the head NeRF with and without the sync module and L_dis.

    python scripts/nerf_ablation.py --config configs/voca.py --workdir runs/nerf_ablation \\
        --sync_workdir runs/sync --extractor_workdir runs/extractor \\
        [--arms no_lip,base,sync,dis] [--seeds=0,1]

Every arm (:mod:`jaxhead.experiments.nerf_ablation`: ``no_lip``, ``base``, ``sync``, ``dis``,
``sync_dis``) is an ordinary NeRF run of the same config in ``WORKDIR/<arm>``, or
``WORKDIR/<arm>_seed<k>`` per seed with ``--seeds`` (re-running resumes a run; a finished one is
only tabulated).

Writes ``WORKDIR/eval.json`` (``ablation``: each arm's held-out scores, mean / std / values over
its seeds, with the lip region's PSNR / L1 and motion correlation that table 2's lip error stands
for; the swap test's summary where ``scripts/swap_test.py`` was run on a run) and
``WORKDIR/ablation.md``.
"""

from __future__ import annotations

import pathlib

from absl import flags

from jaxhead.experiments import nerf_ablation as ablation
from jaxhead.nerf import stage
from jaxhead.train import cli
from jaxhead.train.workdir import write_json_atomic

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_SYNC = flags.DEFINE_string("sync_workdir", "", "A trained sync stage (scripts/train_sync.py).")
_EXTRACTOR = flags.DEFINE_string(
    "extractor_workdir", "", "A trained extractor (scripts/train_disentangle.py)."
)
_ARMS = flags.DEFINE_list(
    "arms", ["no_lip", "base", "sync", "dis"], f"Arms to run, of {list(ablation.ARMS)}."
)
_SEEDS = flags.DEFINE_list(
    "seeds", [], "Seeds (config.seed) to run every arm with; empty: the config's seed only."
)


def main(argv):
    del argv
    root = pathlib.Path(_WORKDIR.value)
    seeds = [int(s) for s in _SEEDS.value] or [None]
    # Every run's config is built (and checked) before the first one trains.
    runs = [
        (
            ablation.run_name(arm, seed),
            ablation.arm_config(
                _CONFIG.value,
                arm,
                sync_workdir=_SYNC.value,
                extractor_workdir=_EXTRACTOR.value,
                seed=seed,
            ),
        )
        for arm in _ARMS.value
        for seed in seeds
    ]
    for name, config in runs:
        print(f"--- {name}: {root / name}", flush=True)
        stage.train(config, root / name)
    summary, table = ablation.tabulate(root, _ARMS.value, [s for s in seeds if s is not None])
    write_json_atomic(root / "eval.json", {"ablation": summary})
    (root / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    cli.run(main)
