"""Trains the sync stage (audio + lip encoders) into a workdir; re-running resumes.

python scripts/train_sync.py --config configs/sync.py --workdir runs/sync
python scripts/train_sync.py --config configs/sync.py:smoke --workdir runs/sync_smoke
"""

from __future__ import annotations

from jaxhead.sync import stage
from jaxhead.train import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()


def main(argv: list[str]) -> None:
    del argv
    stage.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
