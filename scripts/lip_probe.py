"""Linear probes of the candidate F_lip features against the true mouth
(jaxhead/experiments/lip_probe.py).

    python scripts/lip_probe.py --config configs/voca.py --sync_workdir runs/sync [--out P.json]

Prints the held-out R² of the jaw opening and lip rounding for the audio network's log-mel
window and each reading of the sync stage's audio encoder (embedding, pre_activation,
standardized); ``--out`` also writes them as JSON.
"""

import pathlib

from absl import flags

from jaxhead.experiments import lip_probe
from jaxhead.train import cli
from jaxhead.train.workdir import write_json_atomic

_CONFIG = cli.define_config_flag()
_SYNC = flags.DEFINE_string("sync_workdir", "", "A trained sync stage (scripts/train_sync.py).")
_OUT = flags.DEFINE_string("out", "", "Also write the results to this JSON file.")


def main(argv):
    del argv
    results = lip_probe.lip_feature_probe(_CONFIG.value, _SYNC.value)
    if _OUT.value:
        write_json_atomic(pathlib.Path(_OUT.value), {"lip_probe": results})
    print(lip_probe.probe_table(results))


if __name__ == "__main__":
    cli.run(main)
