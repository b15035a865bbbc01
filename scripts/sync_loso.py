"""Leave-one-speaker-out evaluation of the sync expert (pre-training across speakers + adaptation).

    python scripts/sync_loso.py --workdir runs/sync_loso \\
        --roots data/french,data/Trump_10s,data/May_5s,data/WDA_KatieHill_000,data/WDA_AOC_000

Each root is a folder written by ``scripts/preprocess.py`` (one speaker). For every root the
sync stage is pre-trained on the synthetic speakers and the other roots (``--nosynthetic``: the
other roots alone), adapted to the root's first part, trained from scratch on that part (today's
single-speaker stage), and each of these (and the pre-trained run without adaptation) is scored
on the root's held-out end in 2 s windows
at the true alignment and at planted offsets (:mod:`jaxhead.experiments.sync_loso`). Runs resume;
finished ones are only scored. Writes ``WORKDIR/eval.json`` and ``WORKDIR/loso.md``.
"""

from __future__ import annotations

import dataclasses
import pathlib

from absl import flags

from jaxhead.experiments import sync_loso
from jaxhead.train import cli
from jaxhead.train.errors import UserError
from jaxhead.train.workdir import write_json_atomic

_WORKDIR = cli.define_workdir_flag()
_ROOTS = flags.DEFINE_list("roots", [], "Preprocessed video folders, one speaker each.")
_VAL = flags.DEFINE_float("val_fraction", 0.2, "Held-out end of each video.")
_WINDOW = flags.DEFINE_float("window_seconds", 2.0, "Scoring window (s).")
_CACHE = flags.DEFINE_string("cache_dir", "", "Data cache (synthetic speakers).")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny models and budgets (plumbing check).")
_SYNTHETIC = flags.DEFINE_bool(
    "synthetic", True, "Pre-train on the synthetic speakers too (--nosynthetic: the videos alone)."
)


def main(argv):
    del argv
    if len(_ROOTS.value) < 2:
        raise UserError("--roots needs at least two preprocessed video folders")
    protocol = sync_loso.Protocol(
        _VAL.value, _WINDOW.value, smoke=_SMOKE.value, synthetic=_SYNTHETIC.value
    )
    workdir = pathlib.Path(_WORKDIR.value)
    results = sync_loso.run(_ROOTS.value, workdir, protocol, _CACHE.value)
    text = sync_loso.table(results)
    protocol_record = dataclasses.asdict(protocol)
    write_json_atomic(workdir / "eval.json", {"protocol": protocol_record, "speakers": results})
    (workdir / "loso.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    cli.run(main)
